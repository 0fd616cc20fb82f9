"""imgsearchd: a local image-search daemon."""

__version__ = "0.1.0"
