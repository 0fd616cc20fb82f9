"""The shape of the code: imports flow one way, modules stay small, constants have one home."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO

PACKAGE = "imgsearchd"
SOURCE = REPO / "daemon"
MAX_LINES = 500
# Written above a module's docstring limit, this phrase says why the module is longer.
LONGER_BECAUSE = "Longer than most modules"


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join((PACKAGE, *parts))


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(SOURCE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every package module ``name`` imports: at the top, inside functions, or for type checking."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from .x import y`` imports x, and y too when y is a module
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycles() -> None:
    graph = import_graph()
    assert "imgsearchd.service" in graph["imgsearchd.serve"]  # the graph sees real imports
    assert "imgsearchd.service" in graph["imgsearchd.server"]  # ... and TYPE_CHECKING ones
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_data_flows_one_way() -> None:
    """Nothing upstream imports what consumes it: the pipeline never reaches for the server,
    the watcher or the jobs; the index never reaches for the pipeline."""
    graph = import_graph()

    def reaches(start: str) -> set[str]:
        seen: set[str] = set()
        todo = [start]
        while todo:
            for nxt in graph[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    downstream = {"imgsearchd.server", "imgsearchd.page", "imgsearchd.serve", "imgsearchd.service", "imgsearchd.cli"}
    downstream |= {m for m in graph if m.startswith("imgsearchd.cli_")}  # the CLI's own modules
    upstream_modules = ("catalog", "images", "workqueue", "folders", "indexer", "index", "snapshot", "watcher", "jobs")
    for upstream in (
        *upstream_modules,
        "folder_search",
        "combined",
        "duplicates",
        "recall",
        "thumbnails",
        "photo_metadata",
        "time_range",
        "loading",
        "backfill",
        "backfill_worker",
        "backfill_progress",
        "vectors_io",
        "vectors_sources",
    ):
        reached = reaches(f"imgsearchd.{upstream}") & downstream
        assert not reached, f"imgsearchd.{upstream} reaches {sorted(reached)}"
    assert "imgsearchd.indexer" not in reaches("imgsearchd.index")
    # duplicates reads the catalogue and queries an index it is handed; it drives nothing
    assert not reaches("imgsearchd.duplicates") & {"imgsearchd.index", "imgsearchd.indexer", "imgsearchd.watcher"}
    assert "imgsearchd.watcher" not in reaches("imgsearchd.indexer")
    # the thumbnail store is handed its hashes; it reads files only through images
    assert not reaches("imgsearchd.thumbnails") & {"imgsearchd.catalog", "imgsearchd.indexer", "imgsearchd.index"}
    # search --local must not need the watcher (watchdog) or the service
    assert not reaches("imgsearchd.query") & {"imgsearchd.watcher", "imgsearchd.service"}
    assert not reaches("imgsearchd.combined") & {"imgsearchd.watcher", "imgsearchd.service"}
    assert "imgsearchd.indexer" not in reaches("imgsearchd.folder_search")
    # the cluster's side never reaches for the catalogue (it has none) nor the pipeline
    assert not reaches("imgsearchd.backfill_worker") & {"imgsearchd.catalog", "imgsearchd.indexer", "imgsearchd.index"}
    # export and import read and write the catalogue; they never drive the pipeline or the daemon
    for module in ("vectors_io", "vectors_sources"):
        reached = reaches(f"imgsearchd.{module}")
        assert not reached & {"imgsearchd.indexer", "imgsearchd.index", "imgsearchd.watcher", "imgsearchd.extractors"}
    # /metrics only reads the /stats answer it is handed: it imports nothing of the daemon
    # but ``paths`` (pure name helpers: a folder's name as a label)
    assert reaches("imgsearchd.metrics") <= {"imgsearchd.paths"}


@pytest.mark.parametrize("name", sorted(modules()))
def test_modules_stay_small_or_say_why(name: str) -> None:
    path = modules()[name]
    lines = len(path.read_text(encoding="utf-8").splitlines())
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    assert docstring, f"{name} has no module docstring stating its job"
    if lines > MAX_LINES:
        assert LONGER_BECAUSE in docstring, f"{name} has {lines} lines and its docstring does not say why"


def test_the_version_has_one_home() -> None:
    """pyproject.toml holds the version; the package reads it from the installed metadata."""
    import imgsearchd

    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    match = re.search(r'^version = "([^"]+)"', pyproject, re.M)
    assert match is not None
    assert imgsearchd.__version__ == match.group(1)
    assert not re.search(r"__version__\s*=\s*[\"']\d+\.", (SOURCE / "__init__.py").read_text(encoding="utf-8"))


@pytest.mark.process
def test_every_module_imports_on_its_own() -> None:
    """Each module imports in a fresh interpreter, first of all (no order it relies on)."""
    code = (
        "import importlib, sys\n"
        "for name in sys.argv[1:]:\n"
        "    for loaded in [m for m in sys.modules if m.startswith('imgsearchd')]:\n"
        "        del sys.modules[loaded]\n"
        "    importlib.import_module(name)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, *sorted(modules())], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
