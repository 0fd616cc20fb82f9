"""imgsearchd: a local image-search daemon."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("imgsearchd")  # one home: pyproject.toml
except PackageNotFoundError:  # pragma: no cover - run from a tree that was never installed
    __version__ = "0+unknown"
