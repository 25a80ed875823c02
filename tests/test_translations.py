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
from roan.models import BackendState, PurgeAttempt
from tests.testapp.models import Post

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
    return {"client": client, "rule": rule, "post": post, "attempt": attempt}


def pages(world) -> dict[str, tuple[str, dict[str, str] | None]]:
    """roan's pages: name -> (URL, POST data or None for a GET)."""
    from django.contrib.contenttypes.models import ContentType

    rule, post, attempt = world["rule"], world["post"], world["attempt"]
    bad_rule = {  # errors in every field roan validates
        "name": "qzx-bad",
        "content_type": str(ContentType.objects.get_for_model(Post).pk),
        "templates": "qzx/\n/qzx/{nosuchfield}/\n/a b/",
        "backends": ["nosuchbackend"],
        "description": "",
    }
    return {
        "rules": ("/admin/roan/purgerule/", None),
        "rule form": ("/admin/roan/purgerule/add/", None),
        "rule form errors": ("/admin/roan/purgerule/add/", bad_rule),
        "rule change": (f"/admin/roan/purgerule/{rule.pk}/change/", None),
        "preview": (f"/admin/roan/purgerule/{rule.pk}/preview/?object_id={post.pk}", None),
        "purge log": ("/admin/roan/purgeattempt/", None),
        "attempt": (f"/admin/roan/purgeattempt/{attempt.pk}/change/", None),
        "dashboard": ("/admin/roan/dashboard/", None),
        "backends": ("/admin/roan/backendstate/", None),
        "purge URLs": ("/admin/roan/purge/", None),
        "purge URLs errors": ("/admin/roan/purge/", {"urls": "qzx", "kind": "url"}),
        "purge everything": ("/admin/roan/purge/all/", {"backend": "default"}),
    }


def render(client: Client, url: str, language: str, data: dict[str, str] | None = None) -> str:
    with translation.override(language):
        response = client.post(url, data) if data is not None else client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return response.content.decode()


@pytest.mark.parametrize("language", LANGUAGES)
def test_roans_pages_show_no_english(world, settings, language) -> None:
    client = world["client"]
    english = [
        piece
        for message, translated in catalog(language)
        if translated and translated != message
        for piece in fragments(message)
    ]
    assert len(english) > 200
    theirs = others_english(language)
    from_catalog: dict[str, list[str]] = {}
    unmarked: dict[str, list[str]] = {}
    for name, (url, data) in pages(world).items():
        settings.LANGUAGE_CODE = "en-us"
        in_english = set(visible_text(render(client, url, "en-us", data)))
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
        ]:
            unmarked[name] = same
    assert from_catalog == {}, "\n".join(f"{k}: {v}" for k, v in from_catalog.items())
    assert unmarked == {}, "\n".join(f"{k}: {v}" for k, v in unmarked.items())
