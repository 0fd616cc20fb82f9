"""One file made ready for the models: read, hashed, metadata read, decoded and preprocessed.

The pipeline's loader threads and the backfill's workers on a Ray cluster (``bulk.worker``)
both call ``load_file``; what differs is where stored vectors come from (``reuse``: the
catalogue for the pipeline, the set of known contents for a worker) and whether a thumbnail
is kept (``on_picture``). One bad file is an ``ImageError`` in the result, never a raise.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from ..extractors import Extractor
from ..media import files, images, photo_metadata
from ..media.failures import ImageError, Reason
from ..media.limits import ImageLimits
from ..media.photo_metadata import PhotoMetadata
from ..store.disk_health import is_storage_error

log = logging.getLogger("imgsearchd.ingest.prepare")

# (content hash, extractor name) -> (model id, stored vector), or None to embed it.
Reuse = Callable[[str, str], tuple[str, np.ndarray] | None]
# (content hash, decoded picture): e.g. the thumbnail store keeps a preview.
PictureSink = Callable[[str, Image.Image], object]


@dataclass
class Loaded:
    """What loading made of one path."""

    path: str
    size: int = 0
    mtime_ns: int = 0
    content_hash: str | None = None
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    reused: dict[str, tuple[str, np.ndarray]] = field(default_factory=dict)
    metadata: PhotoMetadata | None = None
    error: ImageError | None = None


def load_file(
    path: str,
    extractors: Mapping[str, Extractor],
    limits: ImageLimits,
    roots: Sequence[str] | None,
    reuse: Reuse,
    on_picture: PictureSink | None = None,
    open_path: str | None = None,
) -> Loaded:
    """Read ``path`` (``open_path`` when the file is reached by another name, as on a
    cluster node), hash it, read its metadata, and preprocess it for each extractor whose
    vector ``reuse`` does not give. Errors of the file are in ``Loaded.error``; a storage
    error of the catalogue (raised by ``reuse``) propagates.
    """
    item = Loaded(path=path)
    opened = open_path or path
    try:
        file = files.read_file(opened, limits, roots)
        item.size, item.mtime_ns = file.size, file.mtime_ns
        item.content_hash = file.content_hash
        item.metadata = photo_metadata.read_metadata(file.data, file.mtime_ns)
        missing = []
        for name in extractors:
            stored = reuse(item.content_hash, name)
            if stored is not None:
                item.reused[name] = stored
            else:
                missing.append(name)
        if missing:
            side = max(extractors[name].decode_side for name in missing)
            picture = images.decode(file.data, side, limits)
            for name in missing:
                item.tensors[name] = extractors[name].preprocess(picture)
            if on_picture is not None:
                # from the picture decoded for the model: no second decode of the file
                on_picture(item.content_hash, picture)
    except ImageError as exc:
        item.error = exc
        if not item.size:
            try:
                st = os.stat(opened)
                item.size, item.mtime_ns = st.st_size, st.st_mtime_ns
            except OSError:
                pass
    except Exception as exc:  # a bug in a decoder must not stop the run
        if is_storage_error(exc):
            raise  # the catalogue, not the file: the batch waits for the disk
        log.exception("unexpected error loading %s", opened)
        item.error = ImageError(Reason.CORRUPT, f"{type(exc).__name__}: {exc}")
    return item
