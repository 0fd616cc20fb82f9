"""Which file of a duplicate group to keep, and why, in plain words.

The rules (``[duplicates] keep_rules``, in order; ``config.KEEP_RULES`` is the default order)
compare two files; the first rule that tells the best file from the next best decides, and the
reason names it with both values ("most pixels: 4032x3024 (next 3024x2268)"):

- ``prefer``: a file under an earlier ``[duplicates] prefer`` folder wins;
- ``pixels``: more width x height (a resized copy has fewer);
- ``format``: RAW > HEIC/HEIF/AVIF > JPEG > TIFF > PNG > WebP > other (a camera's own file
  over an export; PNG and WebP are most often screenshots or web copies);
- ``metadata``: more of what the photo says about itself (its EXIF capture time, camera, GPS):
  a copy made by a messenger or an editor often lost them;
- ``bytes``: the bigger file (at equal pixels, less compressed);
- ``taken``: the older EXIF capture time (the original before the copies; an mtime is not
  compared: copying a file gives it a new one);
- ``path``: the shorter path, then the first by name (always tells two files apart).

Before every rule, a regular file wins over a symbolic link (keeping the link and trashing its
target would leave it dangling), then a request's ``keep_in`` folder. The rules set members
aside in turn; one whose value a remaining member lacks (no size, no capture date, no metadata
read yet) is passed over, so an unknown never decides. A reason names the first rule that tells
the keeper from the next best, after the folder (or link) that set others aside first:
"in /photos/best (keep_in), then largest file: 42 KB (next 40 KB)".
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..config import AVIF_EXTENSIONS, HEIF_EXTENSIONS, RAW_EXTENSIONS
from ..media.sizes import human_size
from ..paths import is_under

# Lower is better. RAW: the camera's own data; HEIC/AVIF: a phone's own file, smaller than a
# JPEG at the same quality; TIFF and PNG: lossless but most often exports and screenshots.
_FORMATS: dict[str, tuple[int, str]] = {e: (0, "RAW") for e in RAW_EXTENSIONS}
_FORMATS.update({e: (1, e[1:].upper()) for e in (*HEIF_EXTENSIONS, *AVIF_EXTENSIONS)})
_FORMATS.update({".jpg": (2, "JPEG"), ".jpeg": (2, "JPEG"), ".tif": (3, "TIFF"), ".tiff": (3, "TIFF")})
_FORMATS.update({".png": (4, "PNG"), ".webp": (5, "WebP")})


@dataclass(frozen=True)
class MemberFacts:
    """What the rules compare of one file (from the catalogue's photo metadata and file row)."""

    path: str
    bytes: int
    width: int | None = None
    height: int | None = None
    taken_at: float | None = None  # the EXIF capture time (unix seconds), None without one
    taken: str | None = None  # the same as the camera wrote it (ISO 8601)
    metadata: tuple[str, ...] | None = ()  # the known fields' names: "capture time", "camera", "GPS"; None: not read
    link: bool = False  # a symbolic link

    @property
    def pixels(self) -> int:
        return (self.width or 0) * (self.height or 0)

    @property
    def format(self) -> tuple[int, str]:
        """(rank, name): RAW 0 ... other 6."""
        ext = os.path.splitext(self.path)[1].lower()
        rank, name = _FORMATS.get(ext, (6, ext[1:].upper() or "no extension"))
        return rank, f"RAW ({ext[1:].upper()})" if rank == 0 else name


@dataclass(frozen=True)
class _Rule:
    key: Callable[[MemberFacts], Any]  # lower is better; None: not known
    why: Callable[[MemberFacts, MemberFacts], str]  # the keeper, the next best
    first: bool = False  # a rule before the keep_rules (a link, keep_in) or a folder: named when it sets one aside


def _pixels(m: MemberFacts) -> str:
    return f"{m.width}x{m.height}"


def _when(m: MemberFacts, other: MemberFacts) -> str:
    """The capture date, or the whole time when both are of one day."""
    assert m.taken is not None and other.taken is not None  # the rule compares known dates only
    return m.taken[:19].replace("T", " ") if other.taken[:10] == m.taken[:10] else m.taken[:10]


def _fields(m: MemberFacts) -> str:
    return ", ".join(m.metadata or ()) or "none"


_RULES: dict[str, _Rule] = {
    "pixels": _Rule(
        lambda m: -m.pixels if m.pixels else None, lambda k, n: f"most pixels: {_pixels(k)} (next {_pixels(n)})"
    ),
    "format": _Rule(lambda m: m.format[0], lambda k, n: f"{k.format[1]} over {n.format[1]}"),
    "metadata": _Rule(
        lambda m: None if m.metadata is None else -len(m.metadata),
        lambda k, n: f"most metadata: {_fields(k)} (next {_fields(n)})",
    ),
    "bytes": _Rule(
        lambda m: -m.bytes, lambda k, n: f"largest file: {human_size(k.bytes)} (next {human_size(n.bytes)})"
    ),
    "taken": _Rule(
        lambda m: m.taken_at if m.taken is not None else None,  # both or neither (duplicate_page)
        lambda k, n: f"oldest: taken {_when(k, n)} (next {_when(n, k)})",
    ),
    "path": _Rule(
        lambda m: (len(m.path), m.path),
        lambda k, n: "shortest path" if len(k.path) < len(n.path) else "first by name",
    ),
}
_NOT_A_LINK = _Rule(lambda m: m.link, lambda k, n: "a file, not a symbolic link", first=True)


def _folder_rule(folders: Sequence[str], setting: str) -> _Rule:
    """A file under an earlier folder of ``folders`` wins; the reason names the folder and ``setting``."""

    def rank(m: MemberFacts) -> int:
        return next((i for i, folder in enumerate(folders) if is_under(m.path, folder)), len(folders))

    return _Rule(rank, lambda k, n: f"in {folders[rank(k)]} ({setting})", first=True)


def choose(
    members: Sequence[MemberFacts], rules: Sequence[str], prefer: Sequence[str], keep_in: str | None = None
) -> tuple[int, str]:
    """The index of the file to keep among ``members`` (two or more), and the reason in words.

    ``rules`` are ``[duplicates] keep_rules`` names, applied in order; ``prefer`` the folders of
    the "prefer" rule; ``keep_in`` a folder whose files win before every rule (a request's); a
    regular file wins over a symbolic link before that. Each rule keeps the members with its
    best value; a rule with a value unknown for one of them is passed over. With no rule telling
    the best two apart the first member is kept.
    """
    chain = [_NOT_A_LINK, *([_folder_rule([keep_in], "keep_in")] if keep_in else [])]
    chain += [_folder_rule(prefer, "duplicates.prefer") if name == "prefer" else _RULES[name] for name in rules]
    left, said = list(range(len(members))), list[str]()
    for rule in chain:
        values = {i: rule.key(members[i]) for i in left}
        if any(v is None for v in values.values()) or len(set(values.values())) < 2:
            continue  # an unknown never decides; equal values do not either
        ranked = sorted(left, key=lambda i: (values[i], i))
        best = [i for i in ranked if values[i] == values[ranked[0]]]
        runner_up = ranked[len(best)]
        if rule.first or len(best) == 1:
            said.append(rule.why(members[best[0]], members[runner_up]))
        if len(best) == 1:
            return best[0], ", then ".join(said)
        left = best
    return left[0], ", then ".join([*said, "no rule tells them apart: the first listed"])
