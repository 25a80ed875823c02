"""Parse, validate and render purge URL templates. Pure functions, no I/O but the ORM reads
that rendering through relations needs.

The language is deliberately tiny: literal path text and placeholders ``{name}`` where
``name`` is a field of the model, or a dotted path through relations: forward ones
(``{author.username}``, ``{tags.slug}``) and reverse ones, named as in a query
(``Author``: ``{posts.slug}`` with ``related_name="posts"``, else ``{post.slug}``; the
accessor ``{post_set.slug}`` is understood too); ``get_absolute_url`` may end a path. There are
no method calls, indexing, conversions or format specs, and no name may start with an
underscore, so a template cannot reach into Python objects. Each rendered value is
percent-encoded as one path segment. A template ending in ``*`` is a prefix purge.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from django.core.exceptions import FieldDoesNotExist, ObjectDoesNotExist
from django.db import models
from django.db.models import ForeignObjectRel, ManyToManyRel, ManyToOneRel
from django.utils.text import capfirst
from django.utils.translation import gettext as _

from roan.rules.access import is_private_field, looks_secret, rule_model_refusal

MAX_LENGTH = 2048
ABSOLUTE_URL = "get_absolute_url"

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_CONTROL = re.compile(r"[\x00-\x20\x7f]")


class TemplateError(ValueError):
    """A template that cannot be used; ``str()`` names the line and the reason."""

    def __init__(self, message: str, *, line: int | None = None, template: str = "") -> None:
        self.reason = message
        self.line = line
        self.template = template
        if line is None:
            super().__init__(message)
        else:
            super().__init__(_("Line %(line)d: %(reason)s") % {"line": line, "reason": message})


@dataclasses.dataclass(frozen=True, slots=True)
class Step:
    """One name in a placeholder, resolved against a model."""

    #: The name a query would use (a reverse relation's ``related_query_name``).
    name: str
    #: "field" (a value), "fk" (follow one object), "m2m" (expand to many), "reverse"
    #: (a reverse foreign key or many-to-many: expand to many), "reverse_one" (a reverse
    #: one-to-one: follow one object, which may be missing), or "url" (get_absolute_url:
    #: the value is a path, not a segment).
    kind: str
    #: The column of the model itself it reads ("" when none: relations to many, reverse).
    attname: str
    #: The attribute of a reverse relation on the object (``post_set``, ``posts``).
    accessor: str = ""


#: Steps that stand for many objects: a template may cross at most one of them.
MANY = frozenset({"m2m", "reverse"})
#: Steps that go from one model into another.
RELATIONS = frozenset({"fk", "m2m", "reverse", "reverse_one"})


@dataclasses.dataclass(frozen=True, slots=True)
class Placeholder:
    source: str
    steps: tuple[Step, ...]

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(step.name for step in self.steps)


@dataclasses.dataclass(frozen=True, slots=True)
class Template:
    """A parsed template: literal parts interleaved with placeholders."""

    source: str
    #: literal, placeholder, literal, placeholder, ..., literal (always odd length).
    parts: tuple[str | Placeholder, ...]
    prefix: bool

    @property
    def is_static(self) -> bool:
        return len(self.parts) == 1

    @property
    def placeholders(self) -> tuple[Placeholder, ...]:
        return tuple(p for p in self.parts if isinstance(p, Placeholder))

    @property
    def local_attnames(self) -> frozenset[str]:
        """Columns of the model itself that the rendering reads (for old/new values)."""
        return frozenset(p.steps[0].attname for p in self.placeholders if p.steps[0].attname)


def parse(source: str, model: type[models.Model], *, line: int | None = None) -> Template:
    """Parse and validate one template against ``model``; raise ``TemplateError``."""

    def fail(message: str) -> TemplateError:
        return TemplateError(message, line=line, template=source)

    if not source:
        raise fail(_("the template is empty."))
    if len(source) > MAX_LENGTH:
        raise fail(_("the template is longer than %d characters.") % MAX_LENGTH)
    control = _CONTROL.search(source)
    if control:
        if control.group() == " ":
            raise fail(_("the template contains a space (encode it as %XX)."))
        raise fail(_("the template contains a control character (encode it as %XX)."))
    prefix = source.endswith("*")
    body = source[:-1] if prefix else source
    if "*" in body:
        raise fail(_("'*' may only end a template (a prefix purge)."))
    parts: list[str | Placeholder] = []
    pos = 0
    for match in _PLACEHOLDER.finditer(body):
        parts.append(_literal(body[pos : match.start()], fail))
        parts.append(_placeholder(match.group(1), model, fail))
        pos = match.end()
    parts.append(_literal(body[pos:], fail))
    template = Template(source=source, parts=tuple(parts), prefix=prefix)
    _check_is_path(template, fail)
    crossing = [p.source for p in template.placeholders for s in p.steps if s.kind in MANY]
    if len(crossing) > 1:
        # Two expansions multiply: nine {tags.slug} on ten tags are 10**9 URLs, and so
        # are {posts.tags.slug} on an author of a thousand posts with a thousand tags.
        named = ", ".join("{" + c + "}" for c in dict.fromkeys(crossing))
        raise fail(
            _(
                "a template may cross at most one many-to-many relation or reverse relation "
                "(each stands for many objects); %(named)s cross %(count)d. "
                "Write one template per relation."
            )
            % {"named": named, "count": len(crossing)}
        )
    _check_no_dot_segments(body, fail)
    return template


def parse_lines(text: str | Iterable[str], model: type[models.Model]) -> list[Template]:
    """Parse one template per non-blank line; raise a ``TemplateErrors`` naming every bad line."""
    lines = text.splitlines() if isinstance(text, str) else list(text)
    templates: list[Template] = []
    errors: list[TemplateError] = []
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        try:
            templates.append(parse(line, model, line=number))
        except TemplateError as exc:
            errors.append(exc)
    if errors:
        raise TemplateErrors(errors)
    if not templates:
        raise TemplateErrors([TemplateError(_("give at least one URL template."))])
    return templates


class TemplateErrors(ValueError):
    """Every bad line of a multi-line template field."""

    def __init__(self, errors: Sequence[TemplateError]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(str(e) for e in self.errors))


def _literal(text: str, fail: Any) -> str:
    if "{" in text or "}" in text:
        raise fail(_("unbalanced '{' or '}' (placeholders look like {slug})."))
    return text


def _check_is_path(template: Template, fail: Any) -> None:
    first = template.parts[0]
    assert isinstance(first, str)
    if first == "":
        # Only an object's own URL may stand first: it renders to a path itself.
        placeholder = template.parts[1] if len(template.parts) > 1 else None
        if not (isinstance(placeholder, Placeholder) and placeholder.steps[-1].kind == "url"):
            raise fail(_("a template must start with '/' (a path on the site, not a URL)."))
        return
    if first.startswith("//") or "://" in first or not first.startswith("/"):
        raise fail(_("a template must be a path starting with a single '/', not a URL."))
    if any("#" in p for p in template.parts if isinstance(p, str)):
        raise fail(_("a template cannot contain '#' (fragments never reach a cache)."))


def has_dot_segment(path: str) -> bool:
    """True if the path part of ``path`` holds a ``.`` or ``..`` segment.

    Servers, caches and purge APIs resolve those (``/v1/zone/../other/``), so a path
    holding one can purge, or call, another place than it names. Percent-encoded dots
    count (``%2e``, ``%2E%2E``, and encoded twice, ``%252e``), as do segments behind an
    encoded slash or a backslash and ``..;param`` (which Tomcat-style servers read as
    ``..``).
    """
    path = path.split("?", 1)[0]
    for _round in range(3):
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
    return any(segment.split(";", 1)[0] in {".", ".."} for segment in re.split(r"[/\\]", path))


def _check_no_dot_segments(body: str, fail: Any) -> None:
    # The literal text only: a placeholder stands for one encoded segment here, and what
    # values render to is checked once rendered (roan.outbox.pipeline.render_rule).
    if has_dot_segment(_PLACEHOLDER.sub("x", body)):
        raise fail(
            _(
                "a template cannot contain '.' or '..' path segments (nor %2E): caches and "
                "purge APIs resolve them to another path."
            )
        )


def _placeholder(expr: str, model: type[models.Model], fail: Any) -> Placeholder:
    if expr == "":
        raise fail(_("'{}' names nothing: write a field name, such as {slug}."))
    names = expr.split(".")
    for name in names:
        if not _NAME.match(name):
            raise fail(
                _(
                    "'%s' is not allowed: a placeholder is a field name or a dotted path "
                    "of field names (letters, digits, underscores; no leading underscore, "
                    "no '!', ':', '[' or calls)."
                )
                % f"{{{expr}}}"
            )
    steps: list[Step] = []
    current: type[models.Model] = model
    for index, name in enumerate(names):
        last = index == len(names) - 1
        label = current._meta.label
        if name == ABSOLUTE_URL:
            if not last:
                raise fail(_("'%s': get_absolute_url must end the placeholder.") % f"{{{expr}}}")
            if not callable(getattr(current, ABSOLUTE_URL, None)):
                raise fail(
                    _("'%(placeholder)s': %(model)s has no get_absolute_url().")
                    % {"placeholder": f"{{{expr}}}", "model": label}
                )
            steps.append(Step(name, "url", ""))
            break
        if name == "pk":
            if not last:
                raise fail(_("'%s': nothing can follow pk.") % f"{{{expr}}}")
            if is_private_field(current, current._meta.pk):
                # A session's or an API token's key is its primary key.
                raise fail(_private(expr, label, current._meta.pk.name))
            steps.append(Step(name, "field", current._meta.pk.attname))
            break
        field: Any = _get_field(current, name)
        if field is None:
            raise fail(_no_field(expr, label, name))
        if isinstance(field, ForeignObjectRel) or field.one_to_many:
            step = _reverse_step(expr, current, field, last, fail)
            steps.append(step)
            current = field.related_model
            continue
        if is_private_field(current, field):
            raise fail(_private(expr, label, name))
        if field.is_relation:
            if field.related_model is None:
                raise fail(
                    _("'%(placeholder)s': %(name)r is a generic relation; it cannot be used.")
                    % {"placeholder": f"{{{expr}}}", "name": name}
                )
            if last and name == field.attname != field.name:
                # {author_id}: the column itself, which is the related row's key (or the
                # field its to_field names), so that field's privacy decides.
                if is_private_field(field.related_model, field.target_field):
                    raise fail(_private(expr, label, name))
                steps.append(Step(name, "field", field.attname))
                continue
            if last:
                raise fail(_relation_needs_field(expr, name))
            kind = "m2m" if field.many_to_many else "fk"
            steps.append(Step(name, kind, "" if kind == "m2m" else field.attname))
            current = field.related_model
            continue
        if not last:
            raise fail(
                _("'%(placeholder)s': %(name)r is not a relation, so nothing can follow it.")
                % {"placeholder": f"{{{expr}}}", "name": name}
            )
        steps.append(Step(name, "field", field.attname))
    return Placeholder(source=expr, steps=tuple(steps))


def _get_field(model: type[models.Model], name: str) -> Any:
    """The field or relation ``name`` of ``model`` (``None`` when there is none).

    ``_meta.get_field`` knows a reverse relation by its query name (``post``); the
    accessor (``post_set``) is what Python code writes, so it is accepted too.
    """
    try:
        return model._meta.get_field(name)
    except FieldDoesNotExist:
        pass
    for rel in model._meta.related_objects:
        if not rel.hidden and rel.get_accessor_name() == name:
            return rel
    return None


def _reverse_step(expr: str, model: type[models.Model], rel: Any, last: bool, fail: Any) -> Step:
    """Validate a step through a reverse relation of ``model``; raise ``fail(...)``."""
    label = model._meta.label
    name = rel.name
    # ManyToOneRel (reverse foreign key, and OneToOneRel) and ManyToManyRel only:
    # GenericRelation, GenericRel and composite ForeignObject relations are refused.
    plain = isinstance(rel, (ManyToOneRel, ManyToManyRel)) and isinstance(
        getattr(rel, "field", None), (models.ForeignKey, models.ManyToManyField)
    )
    if not plain or rel.related_model is None:
        raise fail(
            _("'%(placeholder)s': %(name)r is a generic relation; it cannot be used.")
            % {"placeholder": f"{{{expr}}}", "name": name}
        )
    accessor = rel.get_accessor_name()
    if rel.hidden or not accessor:
        # related_name="+": the project chose to give this relation no reverse side.
        raise fail(_no_field(expr, label, name))
    if is_private_field(model, rel) or looks_secret(accessor):
        raise fail(_private(expr, label, name))
    refusal = rule_model_refusal(rel.related_model)
    if refusal:
        # A reverse step reads rows of another table, many of them: that table must be
        # one a rule could name itself (an account's admin log, sessions, roan's log).
        raise fail(
            _("'%(placeholder)s': %(name)r leads to a model rules may not read: %(why)s")
            % {"placeholder": f"{{{expr}}}", "name": name, "why": refusal}
        )
    if last:
        raise fail(_relation_needs_field(expr, name))
    kind = "reverse_one" if rel.one_to_one else "reverse"
    return Step(name, kind, "", accessor)


def _private(expr: str, label: str, name: str) -> str:
    return _(
        "'%(placeholder)s': %(field)s is private (a password, key, token, secret or hash, "
        "or listed in ROAN_PRIVATE_FIELDS); a placeholder can never read it."
    ) % {"placeholder": f"{{{expr}}}", "field": f"{label}.{name}"}


def _no_field(expr: str, label: str, name: str) -> str:
    return _("'%(placeholder)s': %(model)s has no field named %(name)r.") % {
        "placeholder": f"{{{expr}}}",
        "model": label,
        "name": name,
    }


def _relation_needs_field(expr: str, name: str) -> str:
    return _(
        "'%(placeholder)s': %(name)r is a relation; name a field of it, such as %(example)s."
    ) % {"placeholder": f"{{{expr}}}", "name": name, "example": f"{{{expr}.pk}}"}


# -- rendering ---------------------------------------------------------------------------


class RenderError(ValueError):
    """A template rendered to something that is not a usable path."""


def encode_segment(value: object) -> str:
    """Percent-encode ``value`` so it stays one path segment (``/``, ``?``, ``#`` included)."""
    text = str(value)
    encoded = quote(text, safe="")
    if encoded.strip(".") == "":
        # "." and ".." are dot-segments that servers and caches would resolve away.
        encoded = encoded.replace(".", "%2E")
    return encoded


def render(template: Template, obj: models.Model, *, limit: int | None = None) -> list[str]:
    """The distinct paths ``template`` renders to for ``obj``, at most ``limit`` of them.

    A template crosses at most one relation to many objects, many-to-many or reverse
    (``parse`` refuses more), so every placeholder has one value but that one, which has
    one per related object;
    those are read lazily and reading stops once ``limit`` paths are rendered, so an
    object with 100,000 tags costs no more than ``limit`` of them. Paths come in the
    related objects' order (their ``Meta.ordering``, then primary key).

    A placeholder whose value is missing (``None``, ``""``, no related object, no object
    on the other side of a reverse one-to-one) renders nothing for that template. A
    ``get_absolute_url`` that is not a site path raises ``RenderError``; anything the
    object's own code raises (a dangling foreign key, a ``NoReverseMatch``) is passed on
    for the caller to record.
    """
    paths: list[str] = []
    if limit is not None and limit <= 0:
        return paths
    seen: set[str] = set()
    for path in _paths(template, obj, page=limit):
        if path not in seen:
            seen.add(path)
            paths.append(path)
            if limit is not None and len(paths) >= limit:
                break
    return paths


def _paths(template: Template, obj: models.Model, *, page: int | None) -> Iterator[str]:
    """Every path, duplicates included, generated lazily."""
    texts: list[str] = []
    expanding: Placeholder | None = None
    split = 0
    for part in template.parts:
        if isinstance(part, str):
            texts.append(part)
        elif any(step.kind in MANY for step in part.steps):
            expanding, split = part, len(texts)
        else:
            # Without a step to many objects a placeholder resolves to one value at most.
            text = next((_format(part, v) for v in _resolve(obj, part.steps)), "")
            if not text:
                return
            texts.append(text)
    if expanding is None:
        yield "".join(texts)
        return
    head, tail = "".join(texts[:split]), "".join(texts[split:])
    for value in _resolve(obj, expanding.steps, page=page):
        text = _format(expanding, value)
        if text:
            yield head + text + tail


def _format(placeholder: Placeholder, value: object) -> str:
    if value is None:
        return ""
    if placeholder.steps[-1].kind == "url":
        return _site_path(str(value))
    text = str(value)
    return encode_segment(text) if text else ""


def _site_path(url: str) -> str:
    """The path (and query) of a ``get_absolute_url`` result, which must stay on the site."""
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or not url.startswith("/") or url.startswith("//"):
        raise RenderError(f"get_absolute_url() returned {url[:100]!r}, not a path on the site.")
    if _CONTROL.search(url.replace(" ", "%20")):
        raise RenderError("get_absolute_url() returned a path with control characters.")
    if has_dot_segment(url):
        raise RenderError(f"get_absolute_url() returned {url[:100]!r}, a path with '.' or '..'.")
    return url.split("#", 1)[0]


#: Related objects read per query when a step to many objects has no limit.
_PAGE = 1000


def _resolve(obj: Any, steps: Sequence[Step], *, page: int | None = None) -> Iterator[object]:
    if obj is None:
        return
    step, rest = steps[0], steps[1:]
    if step.kind == "field":
        yield obj.pk if step.name == "pk" else getattr(obj, step.attname)
    elif step.kind == "url":
        yield obj.get_absolute_url()
    elif step.kind == "fk":
        if getattr(obj, step.attname) is None:
            return
        yield from _resolve(getattr(obj, step.name), rest, page=page)
    elif step.kind == "reverse_one":
        if obj.pk is None:
            return
        try:
            related = getattr(obj, step.accessor)
        except ObjectDoesNotExist:  # no row points to this one: nothing to render
            return
        yield from _resolve(related, rest, page=page)
    else:  # m2m, reverse: the same paging path, so the cap bounds what is read
        if obj.pk is None:
            return
        manager = getattr(obj, step.accessor or step.name)
        for related in _related(manager.all(), rest, page or _PAGE):
            yield from _resolve(related, rest, page=page)


def _related(queryset: Any, rest: Sequence[Step], page: int) -> Iterator[models.Model]:
    """The objects of a relation to many, read ``page`` at a time as they are used."""
    if queryset._result_cache is not None:  # prefetch_related() already read them all
        yield from queryset
        return
    # The foreign keys the rest of the placeholder follows come in the same query.
    follow = "__".join(s.name for s in itertools.takewhile(lambda s: s.kind == "fk", rest))
    if follow:
        queryset = queryset.select_related(follow)
    # The model's own order, then pk: pages that neither skip nor repeat an object.
    ordering = queryset.query.order_by or queryset.model._meta.ordering
    queryset = queryset.order_by(*ordering, "pk")
    start = 0
    while True:
        # LIMIT/OFFSET pages: a caller that stops early has read only what it used, on
        # every database (a server-side cursor would need a transaction on PostgreSQL).
        chunk = list(queryset[start : start + page])
        yield from chunk
        if len(chunk) < page:
            return
        start += page


# -- what a placeholder may name (the rule form's list) --------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class UsableGroup:
    """Placeholders of one model a rule can reach: its own, or through one relation."""

    title: str
    #: (placeholder such as "{author.username}", what it is)
    placeholders: tuple[tuple[str, str], ...]
    #: True for a relation to many objects (one URL per object, one such per template).
    many: bool = False


def usable_placeholders(model: type[models.Model], *, may_view: Any = None) -> list[UsableGroup]:
    """What a template on ``model`` may name: its fields, ``pk``, ``get_absolute_url``,
    then each relation, forward or reverse, with the fields of its model, one level deep.

    Every entry is checked with :func:`parse`, so private fields and relations into
    models rules may not name never appear. Relations into a model ``ROAN_RULE_MODELS``
    refuses, or that ``may_view(model)`` says no to, are left out entirely: the list
    shows field names, which are the other model's schema.
    """

    def fields_of(current: type[models.Model], prefix: str) -> tuple[tuple[str, str], ...]:
        names: list[tuple[str, str]] = [("pk", str(_("primary key")))]
        for field in current._meta.concrete_fields:
            if field.primary_key and not field.is_relation:
                continue  # {pk} says it
            if field.is_relation:
                if not prefix:  # the column only: the related row's key
                    names.append((field.attname, str(_("key of %s") % field.verbose_name)))
                continue
            names.append((field.name, f"{field.verbose_name} ({type(field).__name__})"))
        if callable(getattr(current, ABSOLUTE_URL, None)):
            names.append((ABSOLUTE_URL, str(_("its own URL, a whole path"))))
        usable = []
        for name, about in names:
            expr = f"{prefix}{name}"
            try:
                parse(f"/{{{expr}}}", model)
            except TemplateError:
                continue
            usable.append((f"{{{expr}}}", about))
        return tuple(usable)

    groups = [UsableGroup(capfirst(str(model._meta.verbose_name)), fields_of(model, ""))]
    relations: list[tuple[str, Any, bool]] = []
    # Forward relations first, then the reverse ones.
    fields = model._meta.get_fields()
    ordered = [f for f in fields if not isinstance(f, ForeignObjectRel)]
    for field in ordered + [f for f in fields if isinstance(f, ForeignObjectRel)]:
        if isinstance(field, ForeignObjectRel):
            if field.hidden:
                continue
            relations.append((field.name, field, field.one_to_many or field.many_to_many))
        elif field.is_relation and not field.one_to_many:
            relations.append((field.name, field, bool(field.many_to_many)))
    for name, field, many in relations:
        related = field.related_model
        if not (isinstance(related, type) and issubclass(related, models.Model)):
            continue  # a generic foreign key
        if rule_model_refusal(related):
            continue
        if may_view is not None and not may_view(related):
            continue
        usable = fields_of(related, f"{name}.")
        if not usable:
            continue
        what = related._meta.verbose_name_plural if many else related._meta.verbose_name
        if isinstance(field, ForeignObjectRel):
            title = _("%(name)s: the %(what)s pointing here") % {"name": name, "what": what}
        else:
            title = _("%(name)s: the %(what)s it points to") % {"name": name, "what": what}
        groups.append(UsableGroup(str(title), usable, many))
    return groups
