"""``make install-service`` and ``make install-user-service`` for the tests: fast and offline.

The targets make a venv of the service's own and ``pip install .`` the checkout into it, with
torch. Installing torch again takes minutes and gigabytes, so the tests make that venv first
(the target keeps a venv that exists): without pip, with a path line that puts this
environment's site-packages (torch, pip, setuptools, ...) after the venv's own, as
tests/test_packaging.py does. The target's torch step then finds torch there ("already
satisfied"), and ``SERVICE_PIP_ARGS`` installs the checkout offline, without its
dependencies, into the venv itself (``--ignore-installed``: not over this environment's
editable install, which pip sees through the path line). Only path lines are added, so that
folder's ``.pth`` hooks (the editable install of this checkout) do not run: the imgsearchd in
the venv is the one pip installed there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

OFFLINE = "--no-deps --no-build-isolation --no-index --ignore-installed"


def reusing_venv(path: Path) -> Path:
    """A venv at ``path`` that sees this environment's packages after its own; returns its python."""
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120)
    python = path / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(site) / "_reused_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def make(
    target: str, cwd: Path, env: dict[str, str] | None = None, **variables: str
) -> subprocess.CompletedProcess[str]:
    """``make -s TARGET VAR=value ...`` in ``cwd``, offline; ``env`` adds to (or replaces) the environment."""
    clean = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "PYTHONPATH")}
    settings = [f"{k}={v}" for k, v in {"SERVICE_PIP_ARGS": OFFLINE, **variables}.items()]
    return subprocess.run(
        ["make", "-s", target, *settings],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**clean, "PIP_DISABLE_PIP_VERSION_CHECK": "1", **(env or {})},
    )
