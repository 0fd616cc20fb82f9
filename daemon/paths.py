"""File paths as the catalogue keys them: absolute, normalised, links not resolved."""

from __future__ import annotations

import os


def normalise_path(path: str | os.PathLike[str]) -> str:
    """The catalogue key of a file: absolute and normalised, links not resolved."""
    return os.path.normpath(os.path.abspath(os.fspath(path)))


def is_under(path: str, root: str) -> bool:
    """True when normalised ``path`` is ``root`` or lies below it."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)
