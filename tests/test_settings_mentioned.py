"""No advice names a setting that does not exist (issue 28: the page said ``index.watch_dirs``).

Every setting the page (daemon/api/web: its strings and HTML), the daemon and its CLI (the
string literals of daemon/**/*.py: log lines, errors, advice, help, API descriptions), README.md
and docs/*.md mention is checked against the schema (``config.SCHEMA``). A mention is
``section.key`` (``watch.directories``, ``extractors.clip.pretrained``) or ``[section] key``
(``[index] extractors``). Code is not advice: in Python only string literals are read (an
attribute chain such as ``config.server.port`` is code), in JavaScript only string and template
literals (their ``${...}`` parts left out); a name right after a dot or a word character
(``config.server.port``, ``self.index.kind``) or before ``(`` (``log.warning(``) is not a
mention, nor a file name (``index.html``).
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterator

import pytest

from imgsearchd.config import SCHEMA

from helpers import REPO

SECTIONS = sorted({name.split(".")[0] for name in SCHEMA})  # server, index, ..., extractors
FILE_SUFFIXES = frozenset(
    [
        "html",
        "js",
        "css",
        "md",
        "py",
        "toml",
        "json",
        "txt",
        "png",
        "jpg",
        "jpeg",
        "webp",
        "log",
        "lock",
        "sock",
        "db",
        "sqlite",
        "sqlite3",
    ]
)
WORD = r"[a-z][a-z0-9_]*"
DOTTED = re.compile(rf"(?<![\w.$/\\-])({'|'.join(SECTIONS)})\.({WORD})(?:\.({WORD}))?(?![\w(-])")
BRACKETED = re.compile(rf"\[((?:{'|'.join(SECTIONS)})(?:\.{WORD})?)\]\s+`?({WORD})\b")
PROSE = frozenset({"settings", "section", "sections", "table", "keys"})  # "the [watch] settings"
# Functions of the package that share a section's name, named in docstrings and the design
# notes (each checked to exist below): code, not settings.
CODE_NAMES = {
    "images.decode": ("imgsearchd.media.images", "decode"),
    "index.query": ("imgsearchd.search.index", "ExtractorIndex.query"),
}
# JavaScript: comments (skipped) and string / template literals (read), in source order
JS_TOKENS = re.compile(r"//[^\n]*|/\*.*?\*/|\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*'|`(?:\\.|[^`\\])*`", re.S)


def mentions(text: str) -> Iterator[str]:
    """Each setting ``text`` names, as "section.key" (or "extractors.NAME[.key]")."""
    for match in DOTTED.finditer(text):
        section, key, sub = match.groups()
        if key in FILE_SUFFIXES and sub is None:
            continue  # a file name: index.html
        yield f"{section}.{key}" + (f".{sub}" if sub else "")
    for match in BRACKETED.finditer(text):
        if match.group(2) not in PROSE:
            yield f"{match.group(1)}.{match.group(2)}"


def unknown(setting: str) -> bool:
    """True when ``setting`` is neither a key of the schema nor (extractors.NAME) a section."""
    parts = setting.split(".")
    if parts[0] == "extractors":
        section = ".".join(parts[:2])
        return section not in SCHEMA or (len(parts) == 3 and parts[2] not in SCHEMA[section])
    return len(parts) != 2 or parts[0] not in SCHEMA or parts[1] not in SCHEMA[parts[0]]


def js_strings(source: str) -> Iterator[str]:
    for token in JS_TOKENS.findall(source):
        if token.startswith(("//", "/*")):
            continue
        yield re.sub(r"\$\{[^}]*\}", " ", token[1:-1]) if token.startswith("`") else token[1:-1]


def py_strings(source: str) -> Iterator[str]:
    """Every string literal, f-strings' constant parts and docstrings too (the API's descriptions are)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value


def texts() -> Iterator[tuple[str, str]]:
    """(where, text) of everything read for mentions."""
    web = REPO / "daemon" / "api" / "web"
    for path in sorted(web.glob("*.js")):
        for text in js_strings(path.read_text(encoding="utf-8")):
            yield str(path.relative_to(REPO)), text
    for path in sorted(web.glob("*.html")):
        yield str(path.relative_to(REPO)), path.read_text(encoding="utf-8")
    for path in sorted((REPO / "daemon").rglob("*.py")):
        for text in py_strings(path.read_text(encoding="utf-8")):
            yield str(path.relative_to(REPO)), text
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        yield str(path.relative_to(REPO)), path.read_text(encoding="utf-8")


def wrong_mentions(found: Iterator[tuple[str, str]]) -> list[str]:
    wrong = {f"{where}: {s}" for where, text in found for s in mentions(text) if unknown(s) and s not in CODE_NAMES}
    return sorted(wrong)


def test_the_code_names_let_through_are_code():
    for module, attribute in CODE_NAMES.values():
        found: object = importlib.import_module(module)
        for part in attribute.split("."):
            found = getattr(found, part)
        assert callable(found), (module, attribute)


def test_every_setting_mentioned_exists():
    seen = [s for _, text in texts() for s in mentions(text)]
    assert len(set(seen)) > 30, sorted(set(seen))  # the reader finds them: not a test that cannot fail
    assert {"watch.directories", "index.extractors", "server.token", "extractors.clip.pretrained"} <= set(seen)
    assert wrong_mentions(texts()) == []


# -- the reader itself: a wrong key is caught in each kind of text, code is not read ------------------

PLANTED = {
    "page.js": """
        // index.not_read_in_a_comment
        const hint = `add a folder to index.watch_dirs (${stats.index.kind})`;
        setMessage(el, "set [extractors.clip] pretrain in the settings");
        const n = index.length + config.server.port;
        """,
    "advice.py": """
        log.warning("set watch.folders = [...] in %s", path)
        value = config.server.port  # code, not a string
        raise Invalid(f"{name}: extractors.clip.weights is not a clip key")
        """,
    "page.html": "<p>See <code>server.tokens</code> and index.html, or log.warning(x).</p>",
    "README.md": "Set `index.extractors` and `thumbnails.size`; not `extractors.vgg.weights`.",
}


@pytest.mark.parametrize("name", sorted(PLANTED))
def test_a_wrong_key_is_caught_and_code_is_not_read(name):
    source = PLANTED[name]
    reader = js_strings if name.endswith(".js") else py_strings if name.endswith(".py") else lambda s: iter([s])
    found = wrong_mentions((name, text) for text in reader(source.replace("\n        ", "\n")))
    expected = {
        "page.js": ["page.js: extractors.clip.pretrain", "page.js: index.watch_dirs"],
        "advice.py": ["advice.py: extractors.clip.weights", "advice.py: watch.folders"],
        "page.html": ["page.html: server.tokens"],
        "README.md": ["README.md: extractors.vgg.weights"],
    }[name]
    assert found == expected
