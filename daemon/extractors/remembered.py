"""The engine and precision timed fastest at a first load, kept beside the converted models for later loads.

Timing every option takes seconds at each start (CLIP: four forward passes of the check pictures,
three times each), and on a busy machine two close options can swap places from one start to the
next. So the choice is written once, keyed by what decides it (the model id, the settings, the
options tried, the torch and OpenVINO versions, the CPU's model, flags and core count); a later
load builds only the option chosen and checks it against torch fp32 again. A file that cannot be
read or written costs only a new timing.

A choice file is touched at every load that reads it, and a write removes the choice files of
this models folder that no load has read for ``UNUSED_DAYS``: the files of settings put aside
(each set of options keeps its own, ~100 KB with the check's reference vectors) would otherwise
stay for ever. One removed by mistake costs one timing at the next load with those settings.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .precision import INT8_ID, Option, Tried, cpu_flags, cpu_model

if TYPE_CHECKING:
    from .base import Extractor

log = logging.getLogger("imgsearchd.extractors")

FORMAT = 1
UNUSED_DAYS = 90


@dataclass(frozen=True)
class Choice:
    """An earlier load's choice: the option, what was tried then, its speed-up, a note for the reason,
    and torch fp32's vectors of the check set then (``wanted``: the check again without torch fp32)."""

    option: Option
    tried: tuple[Tried, ...]
    speedup: float | None
    note: str
    wanted: Reference | None = None


# torch fp32's raw vectors of the check set: probes, photos, texts (engines.Vectors).
Reference = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]


def _packed(tensor: torch.Tensor | None) -> dict[str, object] | None:
    if tensor is None:
        return None
    data = tensor.detach().float().contiguous().numpy()
    return {"shape": list(data.shape), "float32": base64.b64encode(data.tobytes()).decode("ascii")}


def _unpacked(packed: dict[str, object] | None) -> torch.Tensor | None:
    if packed is None:
        return None
    data = np.frombuffer(base64.b64decode(str(packed["float32"])), dtype=np.float32)
    shape = [int(side) for side in packed["shape"]]  # type: ignore[attr-defined]
    return torch.from_numpy(data.reshape(shape).copy())


class Remembered:
    """The choice file of one extractor with these options on this machine (none without a models folder)."""

    def __init__(
        self, models_dir: Path | None, extractor: Extractor, options: list[Option], check: str = "", prefer: str = ""
    ) -> None:
        """``check`` names the check set (its pictures and texts): the reference vectors kept are of it;
        ``prefer``, the option an index's kind prefers (engines.for_the_index): an untimed choice, kept apart."""
        self.path: Path | None = None
        self.options = options
        if models_dir is None:
            return
        from .openvino_ir import openvino

        key = [
            extractor.model_id.removesuffix(INT8_ID),
            *(f"{o.engine} {o.precision} {o.reason}" for o in options),
            f"prefer {prefer}",
            f"format {FORMAT}",
            f"check {check}",
        ]
        key += [f"torch {torch.__version__}", f"openvino {openvino().__version__}", cpu_model()]
        key += [f"cores {os.cpu_count()}", " ".join(sorted(cpu_flags()))]
        digest = hashlib.blake2b("\n".join(key).encode(), digest_size=8).hexdigest()
        # Another model, or another set of options (other settings; auto for an index of either
        # kind: engines.for_the_index), keeps its own file: a model change builds both models at
        # every start until the switch, and one's choice would erase the other's.
        model = hashlib.blake2b("\n".join(key[: len(options) + 2]).encode(), digest_size=4).hexdigest()
        self.path = models_dir / f"{extractor.name}-choice-{model}-{digest}.json"

    def read(self, rows: tuple[int, int, int] | None = None) -> Choice | None:
        """The earlier choice, or None (no file, or one that does not parse: timed again). ``rows``: the
        check set's probes, photos and texts; kept vectors of another shape are dropped (run again)."""
        if self.path is None or not self.path.is_file():
            return None
        try:
            saved = json.loads(self.path.read_text(encoding="utf-8"))
            option = next(o for o in self.options if [o.engine, o.precision] == saved["option"])
            tried = tuple(_tried(entry) for entry in saved["tried"])
            speedup = _number(saved["speedup"], "speedup")
            when = str(saved["when"])
            reference = saved.get("reference")
            wanted = None
            if reference is not None:
                probes, photos = _unpacked(reference["probes"]), _unpacked(reference["photos"])
                if probes is None or photos is None:
                    raise ValueError("the reference vectors lack the probes or the photos")
                wanted = (probes, photos, _unpacked(reference["texts"]))
                if rows is not None and not _fits(wanted, rows):
                    log.warning("the reference vectors in %s do not fit the check set: run again", self.path)
                    wanted = None
        except (OSError, ValueError, KeyError, TypeError, StopIteration, binascii.Error) as exc:
            log.warning("cannot use the engine choice in %s (%s); timing the options again", self.path, exc)
            return None
        try:
            os.utime(self.path)  # in use: kept by the pruning of unused choices (``write``)
        except OSError:
            pass  # a read-only folder: the choice still serves; its age only matters to a write
        timed = any(entry.seconds is not None for entry in tried)
        how = "the fastest of those that passed, timed" if timed else "the one that passed the check"
        note = f"; {how} at the first load ({when}), checked again now"
        return Choice(option, tried, speedup, note, wanted)

    def write(
        self, option: Option, tried: tuple[Tried, ...], speedup: float | None, wanted: Reference | None = None
    ) -> None:
        """Keep a choice just timed (written beside, then renamed: a reader sees all of it or nothing)."""
        if self.path is None:
            return
        from ..timestamps import iso_utc

        body = {"option": [option.engine, option.precision], "tried": [asdict(t) for t in tried]}
        body.update(speedup=speedup, when=iso_utc(time.time()))
        if wanted is not None:  # a later start checks against these instead of running torch fp32 again
            body["reference"] = {
                "probes": _packed(wanted[0]),
                "photos": _packed(wanted[1]),
                "texts": _packed(wanted[2]),
            }
        scratch = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle, scratch = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
            with os.fdopen(handle, "w", encoding="utf-8") as f:
                json.dump(body, f, indent=1)
            os.replace(scratch, self.path)
            for older in self.path.parent.glob(self.path.name.rsplit("-", 1)[0] + "-*.json"):
                if older != self.path:  # other versions or CPUs: never read again here
                    older.unlink(missing_ok=True)
            _prune_unused(self.path.parent, time.time() - UNUSED_DAYS * 86400)
        except OSError as exc:
            if scratch is not None:
                Path(scratch).unlink(missing_ok=True)
            log.warning("cannot keep the engine choice in %s (%s); the next start times the options again", self.path,
                        exc)  # fmt: skip

    def forget(self) -> None:
        """Drop a choice that no longer builds or passes the check (the options are timed again)."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def _prune_unused(models_dir: Path, before: float) -> None:
    """Remove the choice files (any extractor's, any settings') no load has read since ``before``."""
    for path in models_dir.glob("*-choice-*.json"):
        try:
            if path.stat().st_mtime < before:
                path.unlink()
        except OSError:
            pass  # gone meanwhile (another process's prune), or not ours to remove: left as it is


def _number(value: object, key: str) -> float | None:
    """A number or null from a choice file; ValueError for anything else (a file edited or damaged)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} is {value!r}, not a number")
    return float(value)


def _tried(entry: dict[str, object]) -> Tried:
    """One option's outcome from a choice file, its fields checked (``describe`` formats the numbers)."""
    engine, precision, outcome = (entry[key] for key in ("engine", "precision", "outcome"))
    if not (isinstance(engine, str) and isinstance(precision, str) and isinstance(outcome, str)):
        raise ValueError(f"tried: {entry!r} names its option or outcome otherwise than in words")
    numbers = ("min_cosine", "mean_cosine", "seconds")
    if set(entry) - {"engine", "precision", "outcome", *numbers}:
        raise ValueError(f"tried: {entry!r} has fields of another form")
    low, mean, seconds = (_number(entry.get(key), f"tried.{key}") for key in numbers)
    return Tried(engine, precision, outcome, low, mean, seconds)


def _fits(kept: Reference, rows: tuple[int, int, int]) -> bool:
    """Whether kept vectors have the check set's shape: a row per input (no texts: none), one width."""
    shapes = [(kept[0], rows[0]), (kept[1], rows[1])] + ([(kept[2], rows[2])] if kept[2] is not None else [])
    if (kept[2] is None) != (rows[2] == 0) or any(t.dim() != 2 for t, _ in shapes):
        return False
    width = kept[0].shape[1]
    return all(t.shape[0] == count and t.shape[1] == width for t, count in shapes)
