"""The README and docs/: short enough to read, every link and path they name real, every setting documented.

A newcomer reads README.md in five minutes (at most 300 lines) and follows its links into
docs/; a link or a path that leads nowhere, or a setting the reference leaves out, is a bug.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from imgsearchd.config import SCHEMA

from helpers import REPO

README = REPO / "README.md"
MAX_README_LINES = 300
DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [README, *DOCS, REPO / "BENCHMARKS.md"]

FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)
# A path inside the repository as prose or code names it: daemon/search/index.py, tests/helpers.py.
REPO_PATH = re.compile(r"(?<![\w./~-])((?:daemon|tests|bench|config|docs|\.ci)/[\w./*-]*[\w*])")


def prose(text: str) -> str:
    """``text`` without code blocks and code spans, where links are not links."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def links(page: Path) -> list[str]:
    return LINK.findall(prose(page.read_text(encoding="utf-8")))


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    found: set[str] = set()
    for heading in HEADING.findall(FENCE.sub("", page.read_text(encoding="utf-8"))):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def test_the_readme_reads_in_five_minutes() -> None:
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines (at most {MAX_README_LINES}): move detail to docs/"


def test_the_readme_keeps_the_test_command_ci_runs() -> None:
    """``.ci/run`` runs "the README's test command"."""
    assert "\nmake test " in README.read_text(encoding="utf-8")
    assert "make test PYTHON=" in (REPO / ".ci" / "run").read_text(encoding="utf-8")


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: p.name)
def test_links_stay_inside_the_repository(page: Path) -> None:
    """Relative links only: nothing that leaves the checkout, nothing a reader offline cannot open."""
    text = prose(page.read_text(encoding="utf-8"))
    outside = [target for target in links(page) if re.match(r"[a-z][a-z0-9+.-]*:|//", target)]
    assert not outside, f"{page.name} links outside the repository: {outside}"
    bare = re.findall(r"(?:https?://|www\.)\S+", text)
    assert not bare, f"{page.name} has addresses outside code spans (they become links): {bare}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:|//", target):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists() or not file.is_relative_to(REPO):
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {file.relative_to(REPO)}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_path_named_exists(page: Path) -> None:
    """A module that moved (``daemon/indexer.py`` -> ``daemon/ingest/pipeline.py``) leaves no stale name."""
    missing = sorted(
        {
            name
            for name in REPO_PATH.findall(page.read_text(encoding="utf-8"))
            if "*" not in name and not (REPO / name).exists()
        }
    )
    assert not missing, f"{page.name} names paths that do not exist: {missing}"


def test_the_checks_find_what_they_look_for(tmp_path: Path) -> None:
    """The link and path checks are not vacuous: a broken link, a foreign one and a stale path are seen."""
    page = tmp_path / "page.md"
    page.write_text(
        "# A title\n\nSee [here](nowhere.md), [there](#a-title), [web](https://example.org/), "
        "[code](`x`) and `daemon/indexer.py`.\n```\n[not a link](nowhere-either.md)\n```\n",
        encoding="utf-8",
    )
    assert links(page) == ["nowhere.md", "#a-title", "https://example.org/"]
    assert anchors(page) == {"a-title"}
    assert slug("The token and the page's login") == "the-token-and-the-pages-login"
    assert slug("### `[server]`".lstrip("# ")) == "server"
    assert REPO_PATH.findall(page.read_text(encoding="utf-8")) == ["daemon/indexer.py"]
    assert not (REPO / "daemon/indexer.py").exists()


def _section_text(text: str, section: str) -> str:
    """The part of configuration.md under the heading that names ``[section]``."""
    heading = re.search(rf"^### .*`\[{re.escape(section)}\]`.*$", text, re.M)
    assert heading, f"docs/configuration.md has no heading for [{section}]"
    rest = text[heading.end() :]
    end = re.search(r"^##", rest, re.M)
    return rest[: end.start()] if end else rest


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


@pytest.mark.parametrize("section", sorted(SCHEMA))
def test_every_setting_is_documented_with_its_default(section: str) -> None:
    text = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    part = _section_text(text, section)
    for key, setting in SCHEMA[section].items():
        rows = [line for line in part.splitlines() if line.startswith(f"| `{key}`")]
        assert rows, f"docs/configuration.md has no row for {section}.{key}"
        default = _toml(setting.default)
        if not section.startswith("extractors.") and len(default) < 40:
            assert f"| `{default}` |" in rows[0], f"{section}.{key}: the default is {default}, the row says {rows[0]}"
