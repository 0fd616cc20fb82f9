"""``imgsearchd completion bash|zsh|fish``: each script, loaded into its real shell, completes a
command, an option, a subcommand and an option's choices. A shell that is not installed is
skipped (CI installs all three: .ci/run)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from imgsearchd.cli.completion import SHELLS, script_for
from imgsearchd.cli.main import build_parser

HERE = Path(__file__).parent
# (what is typed, what the shell offers): a command, an option, a subcommand, choices, a positional's choices
CASES = [
    ("imgsearchd se", ["search", "serve"]),
    ("imgsearchd search --pa", ["--paths"]),
    ("imgsearchd config ", ["check", "show"]),
    ("imgsearchd config show --ch", ["--changed"]),
    ("imgsearchd duplicates --kind ", ["all", "identical", "copies", "similar"]),
    ("imgsearchd duplicates ", ["resolve", "undo"]),
    ("imgsearchd duplicates resolve --action ", ["trash", "move", "link"]),
    ("imgsearchd completion ", ["bash", "zsh", "fish"]),
]


def shell(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"no {name} here")
    return found


def script(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"imgsearchd.{name}"
    path.write_text(script_for(name, build_parser()))
    return path


def test_bash_completes_commands_options_and_choices(tmp_path):
    bash, loaded = shell("bash"), script(tmp_path, "bash")
    probes = []
    for typed, _ in CASES:
        words = typed.split(" ")
        probes.append(
            f"COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}; "
            '_imgsearchd; echo "${COMPREPLY[@]}"'
        )
    result = subprocess.run(
        [bash, "-c", f"source {loaded}\n" + "\n".join(probes)], capture_output=True, text=True, timeout=30
    )
    assert [sorted(line.split()) for line in result.stdout.splitlines()] == [sorted(w) for _, w in CASES], result.stderr


def test_zsh_completes_commands_options_and_choices(tmp_path):
    """An interactive zsh on a pseudo-terminal types each line and Tab (tests/cli/zsh_complete.zsh)."""
    zsh, loaded = shell("zsh"), script(tmp_path, "zsh")
    result = subprocess.run(
        [zsh, "-f", str(HERE / "zsh_complete.zsh"), str(loaded), *(typed for typed, _ in CASES)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path), "TERM": "dumb"},
    )
    offered = [sorted(block.split()) for block in result.stdout.split("--\n")[: len(CASES)]]
    assert offered == [sorted(w) for _, w in CASES], (result.stdout, result.stderr)


def test_zsh_offers_a_command_s_help_and_files_for_paths(tmp_path):
    """The zsh script is zsh's own kind (``_arguments``, described commands), not bash's loaded into zsh."""
    text = script_for("zsh", build_parser())
    assert "bashcompinit" not in text
    assert "'search:find the images most like IMAGE" in text
    assert "'--data-dir[state folder (catalogue and indexes)]:DIR:_files -/'" in text


def test_fish_completes_commands_options_and_choices(tmp_path):
    fish, loaded = shell("fish"), script(tmp_path, "fish")
    probes = "; ".join(f"complete -C {typed!r}; echo ---" for typed, _ in CASES)
    result = subprocess.run(
        [fish, "--no-config", "-c", f"source {loaded}; {probes}"], capture_output=True, text=True, timeout=30
    )
    offered = [
        sorted(line.split("\t")[0] for line in block.strip().splitlines())
        for block in result.stdout.split("---\n")[: len(CASES)]
    ]
    assert offered == [sorted(w) for _, w in CASES], result.stderr
    described = subprocess.run(
        [fish, "--no-config", "-c", f"source {loaded}; complete -C 'imgsearchd sta'"], capture_output=True, text=True
    )
    assert described.stdout.startswith("stats\tthe running daemon"), described.stdout


def test_every_shell_has_a_script_and_each_names_every_command():
    commands = ["index", "search", "serve", "add", "stats", "duplicates", "config", "completion"]
    for name in SHELLS:
        text = script_for(name, build_parser())
        assert all(command in text for command in commands), name
