"""roan's admin pages in German and French: every string of roan's is translated.

Two witnesses per page. The catalog: no English text of a translated message shows on
the page. And the English page: a phrase (two words or more) that reads the same in
English and in the other language is one nobody marked for translation, unless it is
the data the test made.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import translation

import roan
from roan import audit
from roan.models import BackendState, PurgeAttempt
from tests.testapp.models import Post, Tag

pytestmark = pytest.mark.django_db

LANGUAGES = ["de", "fr"]
LOCALE = Path(roan.__file__).parent / "locale"
# What the test's data and the project's models are called, and names that read the same
# in every language: a phrase made only of these is not roan's text.
DATA_WORDS = re.compile(
    r"^(?:.*qzx.*|default|edge|ms|testapp|post|posts|author|tag|comment|title|slug|body|"
    r"views|username|name|text|\w*Field|\w*Backend|ROAN_\w+|roan_\w+|purge_\w+|HTTP|URLs?|"
    r"ok|\|)$",
    re.IGNORECASE,
)


def is_data(piece: str) -> bool:
    if " | " in piece:  # a content type ("app | model"): the project's names
        return True
    words = [word.strip("()[],:;.\"'\u00ab\u00bb\u2039\u203a") for word in piece.split()]
    return all(
        DATA_WORDS.match(word) or re.search(r"[._/]", word) or not re.search(r"[A-Za-z]{2}", word)
        for word in words
    )


class Text(HTMLParser):
    """The text a reader sees (and hears: titles, labels, placeholders), one piece each."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.pieces: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "template"):
            self._skip += 1
        for name, value in attrs:
            if name in ("title", "aria-label", "placeholder", "alt"):
                self.add(value or "")
            elif name.startswith("data-") and " " in (value or ""):
                self.add(value or "")  # a message for a script to show
            if (
                name == "value"
                and tag in ("input", "button")
                and dict(attrs).get("type")
                in (
                    "submit",
                    "button",
                )
            ):
                self.add(value or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "template") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.add(data)

    def add(self, text: str) -> None:
        text = " ".join(text.split())
        if text:
            self.pieces.append(text)


def visible_text(html: str) -> list[str]:
    """What roan's page says, without the admin's sidebar (other apps' names)."""
    html = re.sub(r'<nav[^>]*id="nav-sidebar".*?</nav>', "", html, flags=re.S)
    parser = Text()
    parser.feed(html)
    return parser.pieces


def catalog(language: str) -> list[tuple[str, str]]:
    """(English, translation) for every message in roan's catalog for ``language``."""
    return read_catalog(LOCALE / language / "LC_MESSAGES" / "django.po")


def others_english(language: str) -> set[str]:
    """The English messages of Django and django-import-export: the admin's own text
    (which their translators may not have reached yet) is not roan's to translate."""
    import django
    import import_export

    django_root = Path(django.__file__).parent
    paths = [*django_root.glob("conf/locale/en/LC_MESSAGES/*.po")]
    paths += django_root.glob("contrib/*/locale/en/LC_MESSAGES/*.po")
    paths += Path(import_export.__file__).parent.glob(f"locale/{language}/LC_MESSAGES/*.po")
    return {english for path in paths for english, _ in read_catalog(path)}


def patterns_of(messages: set[str]) -> re.Pattern[str]:
    """One pattern matching the messages with placeholders, filled in (Django 6.0's
    "Pagination %(name)s" reads "Pagination posts" on the page)."""
    placeholder = re.compile(r"%\([a-z_]+\)[sd]|%[sd]")
    alternatives = [
        ".+".join(re.escape(part) for part in placeholder.split(message))
        for message in messages
        # Starting with words of its own, enough that it cannot pass for roan's phrases.
        if placeholder.search(message)
        and not placeholder.match(message)
        and len(re.findall(r"[A-Za-z]", placeholder.sub("", message))) >= 6
    ]
    return re.compile("|".join(f"(?:{a})" for a in alternatives) or "(?!)")


def read_catalog(path: Path) -> list[tuple[str, str]]:
    text = path.read_text(errors="replace")
    entries = []
    for block in text.split("\n\n"):
        if block.lstrip().startswith(("#~",)):
            continue
        fields: dict[str, str] = {}
        key = ""
        for line in block.splitlines():
            match = re.match(r'^(msgid|msgid_plural|msgstr(?:\[\d\])?) "(.*)"$', line)
            if match:
                key = match.group(1)
                fields[key] = match.group(2)
            elif line.startswith('"') and key:
                fields[key] += line[1:-1]
        english = fields.get("msgid", "")
        translated = fields.get("msgstr", fields.get("msgstr[0]", ""))
        if english:
            entries.append((unescape(english), unescape(translated)))
            if "msgid_plural" in fields:
                entries.append(
                    (unescape(fields["msgid_plural"]), unescape(fields.get("msgstr[1]", "")))
                )
    return entries


def unescape(po_string: str) -> str:
    return po_string.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")


def fragments(message: str) -> list[str]:
    """The fixed English of ``message``: its text between placeholders and tags, the
    pieces of two words or more (one word alone is too often a name or a value)."""
    text = re.sub(r"%(?:\([a-z_]+\))?[-#0 +]*\d*(?:\.\d+)?[sdifr%]|<[^>]+>|\{[^}]*\}", "|", message)
    return [
        piece.strip(" .,:;()")
        for piece in text.split("|")
        if len(re.findall(r"[A-Za-z]{2,}", piece)) >= 2
    ]


@pytest.fixture
def world(settings, django_user_model, make_rule, django_capture_on_commit_callbacks):
    settings.ROAN_BACKENDS = {
        "default": {"BACKEND": "roan.backends.locmem.LocMemBackend"},
        "edge": {"BACKEND": "roan.backends.locmem.LocMemBackend", "PAUSED": True},
    }
    rule = make_rule("qzx-rule", "/qzx/\n/qzx/{slug}/")
    with django_capture_on_commit_callbacks(execute=True):
        post = Post.objects.create(title="Qzx", slug="qzx-post")
    BackendState.objects.create(alias="default")
    user = django_user_model.objects.create_superuser("qzxadmin", password="pw")
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="roan"))
    client = Client()
    client.force_login(user)
    attempt = PurgeAttempt.objects.filter(status="ok").first()
    assert attempt is not None
    # A rule reading a many-to-many relation without on_m2m (the form warns), and one
    # for a model with no object yet (the preview says so).
    m2m_rule = make_rule("qzx-tags", "/qzx/{tags.slug}/", on_m2m=False)
    # An audit that found a stale page: the dashboard says so, and how to list them.
    found = audit.Result(pages=1204, checked=1204)
    found.stale.append(audit.Stale(audit.Page("k", "qzx.example", "/qzx/"), "", 200, 200, ""))
    audit.remember(found)
    tag_rule = make_rule("qzx-tag", "/qzx/{slug}/", model=Tag)
    return {
        "client": client,
        "rule": rule,
        "post": post,
        "attempt": attempt,
        "m2m_rule": m2m_rule,
        "tag_rule": tag_rule,
    }


def pages(world) -> dict[str, tuple[str, dict[str, str] | None]]:
    """roan's pages: name -> (URL, POST data or None for a GET). A POST that redirects
    is followed: the page after it shows roan's message."""
    from django.contrib.contenttypes.models import ContentType

    rule, post, attempt = world["rule"], world["post"], world["attempt"]
    bad_rule = {  # errors in every field roan validates
        "name": "qzx-bad",
        "content_type": str(ContentType.objects.get_for_model(Post).pk),
        "templates": "qzx/\n/qzx/{nosuchfield}/\n/a b/",
        "backends": ["nosuchbackend"],
        "description": "",
    }
    draft = {
        "name": "qzx-draft",
        "content_type": str(ContentType.objects.get_for_model(Post).pk),
        "templates": "/qzx/{slug}/",
        "on_save": "on",
        "description": "",
    }
    purge_cache = f"/admin/testapp/post/{post.pk}/purge-cache/"
    plan = world["client"].get(purge_cache).context["plan"]
    preview = f"/admin/roan/purgerule/{rule.pk}/preview/"
    return {
        "rules": ("/admin/roan/purgerule/", None),
        "rules, none found": ("/admin/roan/purgerule/?q=qzx-none", None),
        "rule form": ("/admin/roan/purgerule/add/", None),
        "rule form errors": ("/admin/roan/purgerule/add/", bad_rule),
        "rule change": (f"/admin/roan/purgerule/{rule.pk}/change/", None),
        "rule change, m2m warning": (f"/admin/roan/purgerule/{world['m2m_rule'].pk}/change/", None),
        "preview": (f"{preview}?object_id={post.pk}", None),
        "preview search": (f"{preview}?q=qzx", None),
        "preview, none found": (f"{preview}?q=qzx-none", None),
        "preview, no object": (f"/admin/roan/purgerule/{world['tag_rule'].pk}/preview/", None),
        # The rule form's "Preview before saving": a draft, then a draft for one object.
        "draft preview": ("/admin/roan/purgerule/preview/", draft),
        "draft preview, object": (
            "/admin/roan/purgerule/preview/",
            {**draft, "object_id": str(post.pk)},
        ),
        "draft preview, form errors": ("/admin/roan/purgerule/preview/", bad_rule),
        "purge log": ("/admin/roan/purgeattempt/", None),
        "purge log, none found": ("/admin/roan/purgeattempt/?status__exact=failed", None),
        "attempt": (f"/admin/roan/purgeattempt/{attempt.pk}/change/", None),
        "attempt re-purged": (f"/admin/roan/purgeattempt/{attempt.pk}/repurge/", {}),
        "dashboard": ("/admin/roan/dashboard/", None),
        "backends": ("/admin/roan/backendstate/", None),
        "purge URLs": ("/admin/roan/purge/", None),
        "purge URLs errors": ("/admin/roan/purge/", {"urls": "qzx", "kind": "url"}),
        "purge URLs done": (
            "/admin/roan/purge/",
            {"urls": "/qzx/", "kind": "url", "backends": ["default", "edge"]},
        ),
        "purge everything": ("/admin/roan/purge/all/", {"backend": "default"}),
        "post": (f"/admin/testapp/post/{post.pk}/change/", None),
        "post saved": (
            f"/admin/testapp/post/{post.pk}/change/",
            {"title": "Qzx", "slug": "qzx-post", "body": "", "views": "0"},
        ),
        "purge cache": (purge_cache, None),
        "purge cache, plan changed": (purge_cache, {"plan": "qzx"}),
        "purge cache done": (purge_cache, {"plan": plan}),
    }


@pytest.fixture
def empty_world(settings, django_user_model):
    """No rule, no attempt; one backend paused by the admin toggle, one by its option."""
    from roan import pauses

    settings.ROAN_BACKENDS = {
        "default": {"BACKEND": "roan.backends.locmem.LocMemBackend"},
        "edge": {"BACKEND": "roan.backends.locmem.LocMemBackend", "PAUSED": True},
    }
    user = django_user_model.objects.create_superuser("qzxadmin", password="pw")
    pauses.pause("default", user=user)
    client = Client()
    client.force_login(user)
    return client


EMPTY_PAGES: dict[str, tuple[str, dict[str, str] | None]] = {
    "rules, empty": ("/admin/roan/purgerule/", None),
    "purge log, empty": ("/admin/roan/purgeattempt/", None),
    "dashboard, empty and paused": ("/admin/roan/dashboard/", None),
    "backends, paused": ("/admin/roan/backendstate/", None),
}


#: What a page must show for the test to check it (the box, button or message it is for).
SHOWS = {
    "rules, none found": 'id="roan-empty"',
    "rule change, m2m warning": 'id="roan-m2m-warning"',
    "preview, none found": "roan-note",
    "preview, no object": "roan-note",
    "purge log, none found": 'id="roan-empty"',
    "attempt": 'id="roan-repurge"',
    "attempt re-purged": 'class="messagelist"',
    "dashboard": 'id="roan-paused"',
    "purge URLs done": 'class="messagelist"',
    "post": "roan-purges-link",
    "post saved": 'class="messagelist"',
    "purge cache": 'id="roan-targets"',
    "purge cache, plan changed": 'id="roan-plan-changed"',
    "purge cache done": 'class="messagelist"',
    "rules, empty": 'id="roan-empty"',
    "purge log, empty": 'id="roan-empty"',
    "dashboard, empty and paused": 'id="roan-paused"',
}


def render(client: Client, url: str, language: str, data: dict[str, str] | None = None) -> str:
    with translation.override(language):
        response = client.post(url, data, follow=True) if data is not None else client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return response.content.decode()


def untranslated(
    client: Client, settings, language: str, pages: dict[str, tuple[str, dict[str, str] | None]]
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(English of roan's catalog shown, phrases never marked) on each page, by name."""
    english = [
        piece
        for message, translated in catalog(language)
        if translated and translated != message
        for piece in fragments(message)
    ]
    assert len(english) > 200
    theirs = others_english(language)
    theirs_filled = patterns_of(theirs)
    from_catalog: dict[str, list[str]] = {}
    unmarked: dict[str, list[str]] = {}
    for name, (url, data) in pages.items():
        settings.LANGUAGE_CODE = "en-us"
        page = render(client, url, "en-us", data)
        assert SHOWS.get(name, "") in page, (name, SHOWS[name])
        in_english = set(visible_text(page))
        settings.LANGUAGE_CODE = language
        shown = visible_text(render(client, url, language, data))
        text = " | ".join(shown)
        if found := sorted({piece for piece in english if piece in text}):
            from_catalog[name] = found
        # A phrase that reads the same in both languages was never marked.
        if same := [
            piece
            for piece in shown
            if piece in in_english
            and len(re.findall(r"[A-Za-z]{2,}", piece)) >= 2
            and not is_data(piece)
            and piece not in theirs
            and not theirs_filled.fullmatch(piece)
        ]:
            unmarked[name] = same
    return from_catalog, unmarked


@pytest.mark.parametrize("language", LANGUAGES)
def test_roans_pages_show_no_english(world, settings, language) -> None:
    from_catalog, unmarked = untranslated(world["client"], settings, language, pages(world))
    assert from_catalog == {}, "\n".join(f"{k}: {v}" for k, v in from_catalog.items())
    assert unmarked == {}, "\n".join(f"{k}: {v}" for k, v in unmarked.items())


@pytest.mark.parametrize("language", LANGUAGES)
def test_roans_empty_pages_show_no_english(empty_world, settings, language) -> None:
    from_catalog, unmarked = untranslated(empty_world, settings, language, EMPTY_PAGES)
    assert from_catalog == {}, "\n".join(f"{k}: {v}" for k, v in from_catalog.items())
    assert unmarked == {}, "\n".join(f"{k}: {v}" for k, v in unmarked.items())
