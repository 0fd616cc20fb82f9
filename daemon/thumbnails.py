"""Thumbnails: small pictures keyed by content hash, in the data folder, bounded in size.

One file per content hash (``thumbnails/ab/abcdef...-256.webp``), so moved and copied
files share one. Made by the indexer's loader threads from the picture they already
decoded for the model (``add_picture``: no second decode), or on demand for files indexed
before thumbnails existed (``make_from_file``: one decode through ``images``, same caps).

Written atomically (a hidden temporary file, then rename); a crash leaves at worst a
temporary file, removed at the next start. Not fsynced: a thumbnail is a cache that can
be made again, and an fsync per file would cost the indexer more than the thumbnail does.

Least recently used first out when the total passes ``max_bytes``. Recency is kept in
memory (an ordered dict, O(1) per use and per eviction) and in each file's mtime, touched
at most once an hour, so it survives a restart: the files are the only state, with nothing
(a table of sizes and times) that a crash could leave disagreeing with them. The start
scans the folder once to learn sizes and times.
"""

from __future__ import annotations

import collections
import io
import logging
import os
import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, features

from . import images

log = logging.getLogger("imgsearchd.thumbnails")

# format name in the config -> (Pillow format, content type, file suffix)
FORMATS = {"webp": ("WEBP", "image/webp", ".webp"), "jpeg": ("JPEG", "image/jpeg", ".jpg")}
# Encoder settings, for the indexer's budget (5%: about 2 ms of CPU per picture with
# efficientnet). WebP method 0 is libwebp's fastest: 2.2-3.3 ms of CPU for a 256x171 picture
# here, method 4 (Pillow's default) 7.1 ms and method 6 17 ms, for files 3-4% smaller;
# quality 75 costs as much as 60 and 70, and makes 8.9 KB files (80: 10.3 KB). JPEG at
# quality 85: 0.2-0.3 ms, 14-15 KB.
ENCODE: dict[str, dict[str, Any]] = {"WEBP": {"quality": 75, "method": 0}, "JPEG": {"quality": 85, "optimize": False}}
# A file's mtime (its recency across restarts) is rewritten at most this often when served.
TOUCH_EVERY = 3600.0
# On-demand thumbnails decode at most this many pictures at once, the rest wait their turn
# (a page of a hundred old files must not take every HTTP worker, nor get 503s).
ON_DEMAND_AT_ONCE = max(2, os.cpu_count() or 1)
ON_DEMAND_WAIT = 60.0
_HASH = re.compile(r"[0-9a-f]{8,128}")
_WARN_EVERY = 60.0


class ThumbnailBusy(Exception):
    """Too many thumbnails are being made on demand; the caller may try again shortly."""


@dataclass(frozen=True)
class Thumbnail:
    """A thumbnail's bytes, its content type and its validator."""

    content_hash: str
    data: bytes
    content_type: str
    etag: str  # quoted: the content hash and a tag of size and format


@dataclass
class _Entry:
    size: int  # bytes on disk
    touched: float  # the file's mtime as last set or seen


def webp_available() -> bool:
    return bool(features.check("webp"))


class ThumbnailStore:
    """The thumbnails folder: make, read, bound and forget thumbnails by content hash."""

    def __init__(self, folder: str | os.PathLike[str], size: int = 256, max_bytes: int = 1 << 30, fmt: str = "webp"):
        if fmt == "webp" and not webp_available():
            log.warning("this Pillow cannot write WebP; thumbnails are JPEG")
            fmt = "jpeg"
        self.folder = Path(folder)
        self.size = size
        self.max_bytes = max_bytes
        self.pillow_format, self.content_type, self.suffix = FORMATS[fmt]
        self.tag = f"{size}-{fmt}"
        self.made = 0  # thumbnails made by this process (tests and benchmarks read it)
        self._lock = threading.Lock()
        self._entries: collections.OrderedDict[str, _Entry] = collections.OrderedDict()  # least recent first
        self._total = 0
        self._making: dict[str, threading.Event] = {}
        self._on_demand = threading.BoundedSemaphore(ON_DEMAND_AT_ONCE)
        self._last_warning = 0.0
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._scan()
        except OSError as exc:  # a read-only data folder: thumbnails are then made and served, not kept
            log.warning("cannot use the thumbnails folder %s: %s", self.folder, exc.strerror or exc)

    @classmethod
    def from_settings(cls, data_dir: str | os.PathLike[str], settings: dict[str, Any]) -> ThumbnailStore:
        """The store in ``data_dir/thumbnails`` with the config's [thumbnails] settings."""
        return cls(
            Path(data_dir) / "thumbnails",
            int(settings["size"]),
            int(settings["max_mb"] * 1024 * 1024),
            str(settings["format"]),
        )

    # -- the folder

    def path_for(self, content_hash: str) -> Path:
        if not _HASH.fullmatch(content_hash):
            raise ValueError(f"not a content hash: {content_hash!r}")
        return self.folder / content_hash[:2] / f"{content_hash}-{self.size}{self.suffix}"

    def _scan(self) -> None:
        """Learn what is on disk; drop temporary files, empty ones and other sizes or formats."""
        found: list[tuple[float, str, int]] = []
        stale = 0
        ending = f"-{self.size}{self.suffix}"
        for sub in os.scandir(self.folder):
            if not sub.is_dir(follow_symlinks=False):
                continue
            for entry in os.scandir(sub.path):
                name = entry.name
                try:
                    st = entry.stat(follow_symlinks=False)
                    wanted = name.endswith(ending) and st.st_size > 0 and _HASH.fullmatch(name[: -len(ending)])
                    if not wanted:
                        os.unlink(entry.path)  # a crash's temporary file, or made for another size/format
                        stale += 1
                        continue
                except OSError:
                    continue
                found.append((st.st_mtime, name[: -len(ending)], st.st_size))
        found.sort()
        for mtime, content_hash, size in found:
            self._entries[content_hash] = _Entry(size, mtime)
            self._total += size
        if stale:
            log.info("removed %d stale thumbnail files from %s", stale, self.folder)
        self._evict()

    # -- reading

    def has(self, content_hash: str) -> bool:
        with self._lock:
            return content_hash in self._entries

    def get(self, content_hash: str) -> Thumbnail | None:
        """The stored thumbnail, marked as just used; None when there is none."""
        with self._lock:
            entry = self._entries.get(content_hash)
            if entry is None:
                return None
            self._entries.move_to_end(content_hash)
            now = time.time()
            touch = now - entry.touched > TOUCH_EVERY
            if touch:
                entry.touched = now
        path = self.path_for(content_hash)
        try:
            data = path.read_bytes()
            if touch:
                os.utime(path)
        except FileNotFoundError:  # evicted or removed meanwhile (or by hand)
            self._drop([content_hash])
            return None
        return self._thumbnail(content_hash, data)

    def _thumbnail(self, content_hash: str, data: bytes) -> Thumbnail:
        return Thumbnail(content_hash, data, self.content_type, f'"{content_hash}-{self.tag}"')

    def hashes(self) -> list[str]:
        with self._lock:
            return list(self._entries)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "count": len(self._entries),
                "bytes": self._total,
                "max_bytes": self.max_bytes,
                "dir": str(self.folder),
            }

    # -- making

    def add_picture(self, content_hash: str, picture: Image.Image) -> bool:
        """Make the thumbnail from an already decoded RGB picture unless it exists; never raises.

        For the loader threads: a thumbnail that cannot be written (a full disk) is logged
        (at most once a minute) and skipped, never costing the file its place in the index.
        """
        if not self._claim(content_hash):
            return False
        try:
            self._store(content_hash, self._encode(picture))
            return True
        except Exception as exc:
            self._warn(f"cannot make the thumbnail of {content_hash}: {exc}")
            return False
        finally:
            self._release(content_hash)

    def make_from_file(
        self, path: str, limits: images.ImageLimits = images.ImageLimits(), roots: Sequence[str] | None = None
    ) -> Thumbnail:
        """The thumbnail of a file's current content, made now if needed (one decode).

        Raises ImageError when the file cannot be used, ThumbnailBusy when too many are
        being made at once for longer than ``ON_DEMAND_WAIT`` seconds.
        """
        if not self._on_demand.acquire(timeout=ON_DEMAND_WAIT):
            raise ThumbnailBusy(f"{ON_DEMAND_AT_ONCE} thumbnails are being made; try again shortly")
        try:
            file = images.read_file(path, limits, roots)
            content_hash = file.content_hash
            found = self.get(content_hash)
            if found is not None:
                return found
            claimed = self._claim(content_hash)
            if not claimed:  # being made by another thread right now: wait for it
                self._wait(content_hash)
                found = self.get(content_hash)
                if found is not None:
                    return found
                claimed = self._claim(content_hash)
            try:
                # The shorter side at least ``size`` makes the longer one at least ``size``.
                data = self._encode(images.decode(file.data, self.size, limits))
                try:
                    self._store(content_hash, data)
                except OSError as exc:  # served all the same; made again next time
                    self._warn(f"cannot store the thumbnail of {path}: {exc}")
                return self._thumbnail(content_hash, data)
            finally:
                if claimed:
                    self._release(content_hash)
        finally:
            self._on_demand.release()

    def _claim(self, content_hash: str) -> bool:
        """True when the caller is to make this thumbnail (none stored, nobody making it)."""
        with self._lock:
            if content_hash in self._entries or content_hash in self._making:
                return False
            self._making[content_hash] = threading.Event()
            return True

    def _release(self, content_hash: str) -> None:
        with self._lock:
            event = self._making.pop(content_hash, None)
        if event is not None:
            event.set()

    def _wait(self, content_hash: str) -> None:
        with self._lock:
            event = self._making.get(content_hash)
        if event is not None:
            event.wait(ON_DEMAND_WAIT)

    def _encode(self, picture: Image.Image) -> bytes:
        """The picture shrunk to fit ``size`` x ``size`` (never enlarged), encoded."""
        width, height = picture.size
        scale = self.size / max(width, height)
        if scale < 1:
            target = (max(1, round(width * scale)), max(1, round(height * scale)))
            # A box reduce by the whole factor, then bilinear for the rest (Pillow filters
            # antialias when shrinking): 0.4-1.3 ms of CPU from the 448-896 px pictures the
            # models' decode gives, where bicubic took 1.8-5.0 ms.
            picture = picture.resize(target, Image.Resampling.BILINEAR, reducing_gap=1.0)
        out = io.BytesIO()
        picture.save(out, self.pillow_format, **ENCODE[self.pillow_format])
        return out.getvalue()

    def _store(self, content_hash: str, data: bytes) -> None:
        """Write atomically, count it, and evict the least recently used beyond the bound."""
        target = self.path_for(content_hash)
        target.parent.mkdir(exist_ok=True)
        temporary = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            with open(temporary, "wb") as fh:
                fh.write(data)
            os.replace(temporary, target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        with self._lock:
            old = self._entries.pop(content_hash, None)
            self._total += len(data) - (old.size if old else 0)
            self._entries[content_hash] = _Entry(len(data), time.time())
            self.made += 1
        self._evict()

    # -- forgetting

    def _evict(self) -> int:
        """Remove the least recently used thumbnails until the total fits ``max_bytes``
        (the newest one always stays)."""
        victims: list[str] = []
        with self._lock:
            while self._total > self.max_bytes and len(self._entries) > 1:
                content_hash, entry = self._entries.popitem(last=False)
                self._total -= entry.size
                victims.append(content_hash)
        self._unlink(victims)
        return len(victims)

    def set_max_bytes(self, max_bytes: int) -> None:
        """A new bound (a reloaded config), applied at once."""
        self.max_bytes = max_bytes
        self._evict()

    def remove(self, hashes: Iterable[str]) -> int:
        """Forget these thumbnails (their last file is gone); returns how many went."""
        return len(self._unlink(self._drop(hashes)))

    def _drop(self, hashes: Iterable[str]) -> list[str]:
        dropped: list[str] = []
        with self._lock:
            for content_hash in hashes:
                entry = self._entries.pop(content_hash, None)
                if entry is not None:
                    self._total -= entry.size
                    dropped.append(content_hash)
        return dropped

    def _unlink(self, hashes: list[str]) -> list[str]:
        for content_hash in hashes:
            try:
                self.path_for(content_hash).unlink(missing_ok=True)
            except OSError as exc:
                self._warn(f"cannot remove the thumbnail of {content_hash}: {exc}")
        return hashes

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_warning >= _WARN_EVERY:
            self._last_warning = now
            log.warning("%s (further thumbnail warnings for a minute are not logged)", message)
