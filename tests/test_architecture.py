"""The shape of the code: imports flow one way, modules stay small, constants have one home."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tokenize
import tomllib
from pathlib import Path

import pytest

from helpers import REPO

PACKAGE = "imgsearchd"
SOURCE = REPO / "daemon"
MAX_LINES = 500


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
        elif isinstance(node, ast.Call) and _is_dynamic_import(node.func):
            # importlib.import_module("imgsearchd.x") / __import__("imgsearchd.x"): an import all the same
            targets = [
                arg.value for arg in node.args[:1] if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
            ]
            assert targets, f"{name}: line {node.lineno} imports a module named at run time; name it in the code"
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


def _is_dynamic_import(func: ast.expr) -> bool:
    return (isinstance(func, ast.Attribute) and func.attr == "import_module") or (
        isinstance(func, ast.Name) and func.id in ("__import__", "import_module")
    )


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


# The rooms (subpackages) and the top modules, lowest first; each room may import only the rooms
# listed for it (and itself). No room imports one above it, so no two rooms import each other.
TOP = "top"
MAY_USE: dict[str, set[str]] = {
    TOP: set(),
    "media": {TOP},
    "extractors": {TOP},
    "store": {TOP, "media"},
    "search": {TOP, "media", "extractors", "store"},
    "ingest": {TOP, "media", "extractors", "store"},
    "bulk": {TOP, "media", "extractors", "store", "ingest"},
    "tidy": {TOP, "media", "extractors", "store", "search"},
    "service": {TOP, "media", "extractors", "store", "search", "ingest", "bulk", "tidy"},
    "api": {TOP, "media", "extractors", "store", "search", "ingest", "bulk", "service", "tidy"},
    "process": {TOP, "media", "extractors", "store", "search", "ingest", "bulk", "service", "api", "tidy"},
    "cli": {TOP, "media", "extractors", "store", "search", "ingest", "bulk", "service", "api", "process", "tidy"},
}
MAX_TOP_MODULES = 6
MAX_FUNCTION_LINES = 80
MAX_DICT_STR_ANY = 40


def room_of(module: str) -> str:
    """``imgsearchd.store.catalog`` -> ``store``; a top module (``imgsearchd.paths``) -> ``top``."""
    parts = module.split(".")
    if len(parts) > 2 or (SOURCE / parts[-1]).is_dir():
        return parts[1]
    return TOP


def test_the_rooms_are_the_folders() -> None:
    """Every subpackage has its rule above, and every rule its subpackage: no room is unaccounted."""
    folders = {p.parent.name for p in SOURCE.glob("*/__init__.py")}
    assert folders == set(MAY_USE) - {TOP}
    top = sorted(p.name for p in SOURCE.glob("*.py"))
    assert len(top) <= MAX_TOP_MODULES, top
    assert len(folders) >= 6


def test_every_package_folder_is_installed() -> None:
    """pyproject lists packages by hand (daemon/ is installed as imgsearchd): a folder missing there
    works in the editable checkout and fails only after a real install."""
    packages = set(
        tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"]
    )
    data = {"imgsearchd.api.web", "imgsearchd.extractors.calibration_photos"}  # the page's files, the shipped photos
    folders = {module_name(p) for p in SOURCE.rglob("__init__.py")} | data
    assert packages == folders


def test_an_import_by_name_at_run_time_is_seen(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text('import importlib\n\ndef f():\n    return importlib.import_module("imgsearchd.api.app")\n')
    assert imports_of("imgsearchd.store.m", module, {"imgsearchd.api.app"}) == {"imgsearchd.api.app"}
    module.write_text("import importlib\n\ndef f(name):\n    return importlib.import_module(name)\n")
    with pytest.raises(AssertionError, match="named at run time"):
        imports_of("imgsearchd.store.m", module, set())


def test_no_import_cycles() -> None:
    graph = import_graph()
    assert (
        "imgsearchd.service.facade" in graph["imgsearchd.process.serve"]
        or "imgsearchd.service" in graph["imgsearchd.process.serve"]
    )  # the graph sees real imports
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_rooms_import_only_the_rooms_below_them() -> None:
    graph = import_graph()
    assert room_of("imgsearchd.store.catalog") == "store" and room_of("imgsearchd.paths") == TOP
    assert room_of("imgsearchd.extractors") == "extractors"
    upward = sorted(
        f"{module} -> {used}"
        for module, targets in graph.items()
        for used in targets
        if room_of(used) != room_of(module) and room_of(used) not in MAY_USE[room_of(module)]
    )
    assert not upward, "imports against the rooms' order:\n" + "\n".join(upward)


def reaches(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module ``start`` imports, directly or through others."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in graph[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_data_flows_one_way_inside_the_rooms() -> None:
    """What the room order cannot say: inside a room, nothing upstream reaches what consumes it."""
    graph = import_graph()
    pkg = PACKAGE
    # the index never reaches for what fills it; duplicates queries an index it is handed
    assert not reaches(graph, f"{pkg}.search.duplicates") & {f"{pkg}.search.index"}
    # the pipeline never reaches for the watcher that feeds it
    assert f"{pkg}.ingest.watcher" not in reaches(graph, f"{pkg}.ingest.pipeline")
    # the cluster's side never reaches for the catalogue (it has none) nor the pipeline
    worker = reaches(graph, f"{pkg}.bulk.worker")
    assert not worker & {f"{pkg}.store.catalog", f"{pkg}.ingest.pipeline", f"{pkg}.search.index"}
    # export and import read and write the catalogue; they never drive the pipeline or load a model
    for module in ("parquet", "sources"):
        reached = reaches(graph, f"{pkg}.bulk.{module}")
        assert not reached & {f"{pkg}.ingest.pipeline", f"{pkg}.search.index", f"{pkg}.ingest.watcher"}
        assert not {m for m in reached if m.startswith(f"{pkg}.extractors")}
    # /metrics only reads the /stats answer it is handed: nothing of the daemon but ``paths``
    assert reaches(graph, f"{pkg}.api.metrics") <= {f"{pkg}.paths"}


def function_lengths(path: Path) -> list[tuple[int, str, int]]:
    """(lines, name, first line) of every function and method in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        ((node.end_lineno or node.lineno) - node.lineno + 1, node.name, node.lineno)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    ]


@pytest.mark.parametrize("name", sorted(modules()))
def test_modules_and_functions_stay_small(name: str) -> None:
    path = modules()[name]
    text = path.read_text(encoding="utf-8")
    assert ast.get_docstring(ast.parse(text)), f"{name} has no module docstring stating its job"
    lines = len(text.splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines (at most {MAX_LINES})"
    long = [f"{fn} (line {at}): {n} lines" for n, fn, at in function_lengths(path) if n > MAX_FUNCTION_LINES]
    assert not long, f"{name}: functions over {MAX_FUNCTION_LINES} lines: {long}"


# A mapping of names to anything: ``dict``, ``Mapping`` or ``MutableMapping`` of ``[str, Any]``.
UNTYPED = r"\b(?:dict|Mapping|MutableMapping)\[str, Any\]"
# ``Name = dict[str, Any]`` (or ``Name: TypeAlias = ...``, ``type Name = ...``): each use of Name counts.
UNTYPED_ALIAS = re.compile(
    rf"^(?:type\s+)?([A-Za-z_]\w*)(?:\s*:\s*TypeAlias)?\s*=\s*(?:[\w.]+\.)?{UNTYPED[2:]}\s*$", re.M
)


def code_of(path: Path) -> str:
    """A module's source with its comments and strings (docstrings too) blanked out."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines(keepends=True)
    with path.open("rb") as f:
        spans = [t[2:4] for t in tokenize.tokenize(f.readline) if t.type in (tokenize.COMMENT, tokenize.STRING)]
    for (row, col), (end_row, end_col) in reversed(spans):
        if row == end_row:
            lines[row - 1] = lines[row - 1][:col] + " " * (end_col - col) + lines[row - 1][end_col:]
        else:
            lines[row - 1] = lines[row - 1][:col] + "\n"
            lines[row : end_row - 1] = ["\n"] * (end_row - 1 - row)
            lines[end_row - 1] = " " * end_col + lines[end_row - 1][end_col:]
    return "".join(lines)


def imported_names(path: Path, package: str) -> set[tuple[str, str]]:
    """(module, name) of every ``from module import name`` in ``path``, relative ones resolved."""
    here = package.split(".")
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here[: len(here) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found |= {(base, alias.name) for alias in node.names}
    return found


def untyped_dicts(codes: dict[Path, str], names: dict[Path, str] | None = None) -> dict[Path, int]:
    """Per module: its untyped mappings written out, and the uses of an alias of one (defined
    there, or imported from the module that defines it: another module's class of the same
    name is not one)."""
    names = names or {p: p.stem for p in codes}
    defined = {(names[p], m.group(1)) for p, code in codes.items() for m in UNTYPED_ALIAS.finditer(code)}
    found = {}
    for path, code in codes.items():
        package = names[path] if path.name == "__init__.py" else names[path].rpartition(".")[0]
        own = {a for module, a in defined if module == names[path]}
        imported = {a for module, a in imported_names(path, package) if (module, a) in defined}
        uses = UNTYPED_ALIAS.sub("", code)
        written = sum(len(re.findall(rf"(?<![\w.]){a}\b", uses)) for a in own | imported)
        found[path] = len(re.findall(UNTYPED, code)) + written - len(imported)  # an import is no use
    return found


def test_untyped_dicts_are_counted_through_aliases(tmp_path: Path) -> None:
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text(
        'Blob = dict[str, Any]  # free-form\nx: Mapping[str, Any]\ny: MutableMapping[str, Any]\n"""dict[str, Any]"""\n'
    )
    b.write_text("from a import Blob\n\ndef f(v: Blob) -> list[Blob]: ...  # dict[str, Any]\nBlobby = 1\n")
    c = tmp_path / "c.py"  # a class of the same name elsewhere is not the alias
    c.write_text("class Blob: ...\n\ndef g(v: Blob) -> Blob: ...\n")
    assert untyped_dicts({p: code_of(p) for p in (a, b, c)}) == {a: 3, b: 2, c: 0}


def test_few_untyped_dicts() -> None:
    """Requests, answers and settings are typed; ``dict[str, Any]`` (or a ``Mapping`` of it, or an
    alias of one) stays for what is truly free-form."""
    paths = list(SOURCE.rglob("*.py"))
    found = untyped_dicts({p: code_of(p) for p in paths}, {p: module_name(p) for p in paths})
    count = sum(found.values())
    worst = sorted(((n, str(p.relative_to(SOURCE))) for p, n in found.items() if n), reverse=True)[:5]
    assert count <= MAX_DICT_STR_ANY, f"{count} untyped dicts in daemon/ (at most {MAX_DICT_STR_ANY}); most in {worst}"


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
        [sys.executable, "-c", code, *sorted(m for m in modules() if not m.endswith(".__main__"))],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
