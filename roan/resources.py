"""Import and export (django-import-export): rules in and out, the purge log out.

Rules are keyed by name; the model is ``app_label.model`` and backends are aliases, so a
file moves between sites whose database ids differ. An import is all or nothing: any bad
row (template, model, backend, duplicate name) is reported with its row number and
reason, and nothing is written.

A file is bounded before it is parsed (:func:`import_refusal`): its size as uploaded and
as unpacked (``ROAN_MAX_IMPORT_BYTES``), its rows (``ROAN_MAX_IMPORT_ROWS``), and for
JSON and YAML its nesting and YAML's aliases, so that a small file cannot unpack into
gigabytes of memory.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections import Counter
from collections.abc import Iterator
from typing import Any

import yaml
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext as _
from import_export import fields, resources, widgets

from roan.conf import roan_settings
from roan.models import PurgeAttempt, PurgeRule
from roan.rules import index as rules
from roan.rules.access import can_view_model
from roan.rules.validation import everything_templates, needs_purge_all_error
from roan.vocabulary import PURGE_ALL

#: A spreadsheet runs a cell that starts with one of these as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class ModelWidget(widgets.Widget):  # type: ignore[misc]
    """A content type as ``app_label.model`` (``blog.post``)."""

    def clean(self, value: Any, row: Any = None, **kwargs: Any) -> ContentType:
        label = str(value or "").strip().lower()
        app_label, _dot, model = label.partition(".")
        if not app_label or not model:
            raise ValueError(f"give the model as app_label.model, not {value!r}")
        try:
            ct = ContentType.objects.get_by_natural_key(app_label, model)
        except ContentType.DoesNotExist:
            raise ValueError(f"unknown model {label!r}") from None
        if ct.model_class() is None:
            raise ValueError(f"model {label!r} is not installed")
        return ct

    def render(self, value: Any, obj: Any = None, **kwargs: Any) -> str:
        if value is None:
            return ""
        return f"{value.app_label}.{value.model}"


class AliasesWidget(widgets.Widget):  # type: ignore[misc]
    """Backend aliases, comma-separated in flat files (a list in JSON and YAML)."""

    def clean(self, value: Any, row: Any = None, **kwargs: Any) -> list[str]:
        if value is None:
            return []
        if isinstance(value, list | tuple):
            return [str(v).strip() for v in value if str(v).strip()]
        return [part.strip() for part in str(value).split(",") if part.strip()]

    def render(self, value: Any, obj: Any = None, **kwargs: Any) -> str:
        return ", ".join(value or [])


class PurgeRuleResource(resources.ModelResource):  # type: ignore[misc]
    model_label = fields.Field(attribute="content_type", column_name="model", widget=ModelWidget())
    backends = fields.Field(attribute="backends", column_name="backends", widget=AliasesWidget())
    # An empty spreadsheet cell reads as None; the column is NOT NULL.
    description = fields.Field(
        attribute="description", column_name="description", widget=widgets.CharWidget()
    )

    class Meta:
        model = PurgeRule
        import_id_fields = ["name"]
        fields = [
            "name",
            "model_label",
            "templates",
            "backends",
            "on_save",
            "on_delete",
            "on_m2m",
            "schedule_fields",
            "enabled",
            "description",
        ]
        export_order = fields
        # full_clean() runs roan's rule validation (templates, backends, events).
        clean_model_instances = True
        use_transactions = True
        skip_unchanged = True
        report_skipped = True

    def export_field(self, field: Any, instance: Any, **kwargs: Any) -> Any:
        # A rule's name and notes are anyone's text, opened in a spreadsheet by another.
        return escape_formula(super().export_field(field, instance, **kwargs))

    def before_import_row(self, row: Any, **kwargs: Any) -> None:
        super().before_import_row(row, **kwargs)
        # Undo escape_formula, so that an exported file imports to the same rules.
        for column in ("name", "description"):
            value = row.get(column)
            if isinstance(value, str):
                row[column] = unescape_formula(value)

    def before_import(self, dataset: Any, **kwargs: Any) -> None:
        names = Counter(
            str(row.get("name") or "").strip() for row in dataset.dict if isinstance(row, dict)
        )
        self._duplicates = {name for name, n in names.items() if name and n > 1}

    def import_instance(self, instance: PurgeRule, row: Any, **kwargs: Any) -> None:
        errors: dict[str, Any] = {}
        name = str(row.get("name") or "").strip()
        if name in getattr(self, "_duplicates", set()):
            errors["name"] = [f"the name {name!r} is used by more than one row of this file"]
        try:
            super().import_instance(instance, row, **kwargs)
        except ValidationError as exc:
            errors = exc.update_error_dict(errors)
        # The admin passes the importing user; an import from code is trusted.
        model = instance.content_type.model_class() if instance.content_type_id else None
        user = kwargs.get("user")
        if model is not None and user is not None and not can_view_model(user, model):
            # As in the admin's model list: an editor only writes rules on models they
            # may see, since the purge log shows what a rule renders.
            errors.setdefault("content_type", []).append(
                f"you do not have permission to view {model._meta.label_lower}"
            )
        everything = everything_templates(instance.templates or "")
        if everything and user is not None and not user.has_perm(PURGE_ALL):
            errors.setdefault("templates", []).append(needs_purge_all_error(everything))
        if errors:
            raise ValidationError(errors)

    def import_data(self, dataset: Any, **kwargs: Any) -> Any:
        # All or nothing, also when called from code: a row that fails validation rolls
        # back the rows before it.
        kwargs.setdefault("use_transactions", True)
        kwargs.setdefault("rollback_on_validation_errors", True)
        # Each row's save would otherwise make the next one reload and recompile every
        # rule (300 rows: 600 loads). The rules are reloaded once, after the import.
        with rules.batched_rule_writes():
            return super().import_data(dataset, **kwargs)

    def after_import(self, dataset: Any, result: Any, **kwargs: Any) -> None:
        super().after_import(dataset, result, **kwargs)
        if not kwargs.get("dry_run"):
            # Row saves do this already; bulk routes a resource subclass may take too.
            rules.invalidate_on_commit(using=self.get_db_connection_name())


def escape_formula(value: Any) -> Any:
    """Prefix a text cell a spreadsheet would run as a formula with ``'`` (OWASP advice)."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def unescape_formula(value: str) -> str:
    """What :func:`escape_formula` was given."""
    if value.startswith("'") and value[1:].startswith(FORMULA_STARTS):
        return value[1:]
    return value


class PurgeAttemptResource(resources.ModelResource):  # type: ignore[misc]
    """The purge log, read-only; text an outsider can influence is formula-escaped."""

    model_label = fields.Field(attribute="content_type", column_name="model", widget=ModelWidget())
    user = fields.Field(attribute="user__username", column_name="user")

    class Meta:
        model = PurgeAttempt
        fields = [
            "id",
            "created_at",
            "finished_at",
            "status",
            "backend",
            "node",
            "host",
            "kind",
            "target",
            "http_status",
            "latency_ms",
            "error",
            "purge_id",
            "tries",
            "coalesced",
            "trigger",
            "rule_name",
            "model_label",
            "object_pk",
            "object_repr",
            "user",
        ]
        export_order = fields

    def export_field(self, field: Any, instance: Any, **kwargs: Any) -> Any:
        return escape_formula(super().export_field(field, instance, **kwargs))

    def filter_export(self, queryset: Any, **kwargs: Any) -> Any:
        return queryset.select_related("user")


# -- bounding a file before it is parsed ------------------------------------------------------

#: A rules file nests three levels (a list of rules, a rule, its backends); more is refused.
MAX_IMPORT_DEPTH = 20
#: The most members an .xlsx may hold (a workbook has a dozen).
MAX_XLSX_MEMBERS = 1000
#: A row of a worksheet: <row ...>, with or without a namespace prefix.
_XLSX_ROW = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?row[\s/>]")
_XLSX_SHEET = re.compile(r"^xl/worksheets/[^/]+\.xml$", re.IGNORECASE)
#: JSON's strings (skipped whole, escapes included) and the characters that nest.
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


class ImportRefused(ValueError):
    """A file refused before parsing (too large, too many rows); ``str()`` says why."""


def import_refusal(data: bytes | str, title: str) -> str:
    """Why the import of ``data`` in the format titled ``title`` (``csv``, ``json``,
    ``yaml``, ``xlsx``) is refused before parsing ("" when it is not).

    The checks stream: none holds more than the file (and one chunk of an .xlsx member)
    in memory. A file these checks cannot read (a broken zip, bad JSON) is not refused
    here: the parser reports it as it always did.
    """
    limit = max(1, roan_settings.MAX_IMPORT_BYTES)
    size = len(data.encode() if isinstance(data, str) else data)
    if size > limit:
        return _(
            "The file is larger than %(limit)s, the most an import may be "
            "(ROAN_MAX_IMPORT_BYTES). Nothing was imported."
        ) % {"limit": filesizeformat(limit)}
    if title == "xlsx":
        return _xlsx_refusal(data.encode() if isinstance(data, str) else data, limit)
    text = data.decode("utf-8-sig", errors="replace") if isinstance(data, bytes) else data
    if title == "csv":
        return _too_many_rows(_csv_rows(text))
    if title == "json":
        return _nested_refusal(_json_items(text))
    if title == "yaml":
        return _nested_refusal(_yaml_items(text))
    return ""


def _too_many_rows(rows: Iterator[object], header: int = 1) -> str:
    """A refusal when ``rows`` yields more than ``ROAN_MAX_IMPORT_ROWS`` (+ a header)."""
    limit = max(1, roan_settings.MAX_IMPORT_ROWS)
    for count, _row in enumerate(rows, start=1):
        if count > limit + header:
            return _(
                "The file has more than %(limit)d rows, the most one import may have "
                "(ROAN_MAX_IMPORT_ROWS). Split it. Nothing was imported."
            ) % {"limit": limit}
    return ""


def _csv_rows(text: str) -> Iterator[list[str]]:
    try:
        for row in csv.reader(io.StringIO(text)):
            if any(cell.strip() for cell in row):
                yield row
    except csv.Error:
        return  # tablib reports it


def _xlsx_refusal(data: bytes, limit: int) -> str:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError):
        return ""  # not a workbook: openpyxl says so
    with archive:
        members = archive.infolist()
        unpacked = sum(member.file_size for member in members)
        # Python's zipfile (which openpyxl reads through) never returns more than a
        # member declares (more fails its CRC check), so the declared sizes bound it.
        if len(members) > MAX_XLSX_MEMBERS or unpacked > limit:
            return _(
                "The file unpacks to %(size)s; an import may be at most %(limit)s "
                "(ROAN_MAX_IMPORT_BYTES). Nothing was imported."
            ) % {"size": filesizeformat(unpacked), "limit": filesizeformat(limit)}
        sheets = [m for m in members if _XLSX_SHEET.match(m.filename)]
        try:
            return _too_many_rows(_xlsx_rows(archive, sheets))
        except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError):
            return ""  # openpyxl reports it


def _xlsx_rows(archive: zipfile.ZipFile, sheets: list[zipfile.ZipInfo]) -> Iterator[None]:
    """One item per row of every worksheet, read a chunk at a time."""
    for sheet in sheets:
        tail = b""
        with archive.open(sheet) as stream:
            while chunk := stream.read(64 * 1024):
                block = tail + chunk
                found = list(_XLSX_ROW.finditer(block))
                # A tag cut at the chunk's end is counted with the next chunk.
                keep = max(0, len(block) - 16)
                for match in found:
                    if match.start() < keep:
                        yield None
                tail = block[keep:]
            for _match in _XLSX_ROW.finditer(tail):
                yield None


def _nested_refusal(items: Iterator[int]) -> str:
    """``items`` yields the depth of each collection opened; the top one holds the rows."""

    def rows() -> Iterator[None]:
        for depth in items:
            if depth > MAX_IMPORT_DEPTH:
                raise ImportRefused(
                    _(
                        "The file nests deeper than %(limit)d levels, which no rules file "
                        "does. Nothing was imported."
                    )
                    % {"limit": MAX_IMPORT_DEPTH}
                )
            if depth == 2:
                yield None

    try:
        return _too_many_rows(rows(), header=0)
    except ImportRefused as exc:
        return str(exc)


def _json_items(text: str) -> Iterator[int]:
    depth = 0
    for match in _JSON_TOKEN.finditer(text):
        piece = match.group()
        if piece in "[{":
            depth += 1
            yield depth
        elif piece in "]}":
            depth -= 1


def _yaml_items(text: str) -> Iterator[int]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    depth = 0
    try:
        for event in yaml.parse(text, Loader=loader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                # An alias repeats a whole collection: a few lines unpack to gigabytes.
                raise ImportRefused(
                    _(
                        "The file uses YAML anchors or aliases (& and *), which an import "
                        "does not accept. Nothing was imported."
                    )
                )
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                yield depth
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        return  # tablib reports it
