"""A model change without a gap, at start: which model serves each extractor while a new one embeds the library.

The catalogue records per extractor the serving model, the settings that built it and its
index folder (``store.models``). At start each running extractor's configured model is
compared with the serving one. Unchanged (or a fresh catalogue): its settings are recorded,
so a later change can build it again. Changed: the old model is built again from its stored
settings and serves (``LoadedExtractors.extractors[NAME]``, and so its index) while
``model_switch`` embeds every content with the new one and then switches. When the old model
cannot be built again (no stored settings: a catalogue from before schema 6; its weights
gone or changed) the new model serves at once with what it has, as before, and the change
says why there is a gap. When the configured model cannot load but the old one can, the old
one goes on serving and the change is ``failed`` with the reason.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

from ..config import Config, ConfigError, ExtractorSettings
from ..extractors import Extractor, LoadedExtractors, load, models_dir
from ..extractors.base import ModelUnavailableError, file_fingerprint, legacy_file_fingerprint
from ..extractors.precision import int8_apart
from ..extractors.registry import create, extractor_settings
from ..store.catalog import Catalog
from ..store.models import NEXT, SERVING, ModelRow
from ..timestamps import iso_utc

log = logging.getLogger("imgsearchd.service.model_change")

Load = Callable[[Sequence[str], str, Callable[[str], ExtractorSettings], Path, Mapping[str, str]], LoadedExtractors]

# The rate is measured over the last minute of progress: long enough to smooth out the
# pauses while the indexer has work, short enough to follow a change of pace.
RATE_WINDOW_S = 60.0

# ``/stats.extractors[NAME].change`` ("from" is a Python keyword: the functional form).
ChangeDict = TypedDict(
    "ChangeDict",
    {
        "from": str,
        "to": str | None,
        "state": str,
        "done": int,
        "total": int,
        "rate": float | None,
        "eta_seconds": float | None,
        "started_at": str,
        "error": str | None,
        "old_model_bytes": int | None,
    },
)


@dataclass
class Change:
    """One extractor's model change, as it goes: ``embedding``, ``switching`` or ``failed``."""

    name: str
    from_id: str
    to_id: str | None  # None: the configured model could not load, so its id is not known
    state: str
    started_at: float
    new: Extractor | None = None  # the model the library is embedded with
    old: Extractor | None = None  # the old model, serving until the switch; None: none (a gap)
    new_folder: str = ""
    old_folder: str = ""
    error: str | None = None
    old_model_bytes: int | None = None
    done: int = 0
    total: int = 0
    handed: set[str] = field(default_factory=set)  # contents whose file went to the indexer: not asked again
    _progress: collections.deque[tuple[float, int]] = field(default_factory=collections.deque, repr=False)

    def counted(self, total: int, done: int) -> None:
        """Take the stored counts (contents, those with the new model's vector) and measure the rate."""
        self.total, self.done = total, done
        now = time.monotonic()
        self._progress.append((now, done))
        while len(self._progress) > 2 and now - self._progress[0][0] > RATE_WINDOW_S:
            self._progress.popleft()

    @property
    def rate(self) -> float | None:
        """Contents embedded a second over the last minute; None before there is progress to measure."""
        if len(self._progress) < 2:
            return None
        (t0, d0), (t1, d1) = self._progress[0], self._progress[-1]
        return (d1 - d0) / (t1 - t0) if t1 > t0 and d1 > d0 else None

    def as_dict(self) -> ChangeDict:
        rate = self.rate
        left = max(0, self.total - self.done)
        return {
            "from": self.from_id,
            "to": self.to_id,
            "state": self.state,
            "done": self.done,
            "total": self.total,
            "rate": round(rate, 2) if rate is not None else None,
            "eta_seconds": round(left / rate, 1) if rate else None,
            "started_at": iso_utc(self.started_at),
            "error": self.error,
            "old_model_bytes": self.old_model_bytes,
        }


def model_bytes(extractor: Extractor) -> int:
    """The memory a model's weights hold (the bulk of what a second model costs), on either engine."""
    return extractor.weight_bytes()


def settings_json(config: Config, name: str) -> str:
    """The model's ``[extractors.NAME]`` section as JSON: what builds it again (``registry.create``)."""
    return json.dumps(dataclasses.asdict(config.extractor(name)), sort_keys=True)


def folder_for(name: str, model_id: str) -> str:
    """The index folder of a model that comes next: the extractor's name and a short digest of the id."""
    return f"{name}-{hashlib.sha256(model_id.encode()).hexdigest()[:10]}"


def load_models(catalog: Catalog, config: Config, load: Load = load) -> tuple[LoadedExtractors, dict[str, Change]]:
    """The models that serve (the old one of an extractor whose model changed) and the changes under way.

    ``load`` is ``registry.load`` (with its fallback) for the extractors not built here.
    """
    wanted = config.index.extractors
    fallback = config.index.fallback_extractor
    ids = index_model_ids(catalog, [*wanted, fallback] if fallback else wanted)
    prebuilt, unloadable = _build_recorded(catalog, config, wanted, ids)
    loaded = _merge(prebuilt, wanted, config, load, ids)
    changes: dict[str, Change] = {}
    for name, extractor in list(loaded.extractors.items()):
        change = _compare(catalog, config, name, extractor, unloadable.get(name))
        if change is None:
            continue
        changes[name] = change
        if change.old is not None and change.state != "failed":
            loaded.extractors[name] = change.old
        if change.state == "failed":
            continue  # ``_compare`` logged why; nothing is embedded
        total, done = catalog.count_contents(name, change.to_id) if change.to_id else (0, 0)
        change.counted(total, done)
        log.warning(
            "%s: model change from %s to %s: %d of %d different pictures (contents) have a vector of the new model",
            name, change.from_id, change.to_id, done, total,
        )  # fmt: skip
    return loaded, changes


def index_model_ids(catalog: Catalog, names: Sequence[str]) -> dict[str, str]:
    """The model id of the vectors each extractor's index holds: the serving model's, else the one
    that made most of its vectors (none: a new library). ``engine = "auto"`` keeps to its kind
    (engines.for_the_index: int8's vectors are indexed apart); the serving one, not a model coming
    next, so that putting the old settings back gives a change up."""
    ids = {}
    for name in dict.fromkeys(names):
        serving, _ = _index_rows(catalog, name)
        if serving is not None:
            ids[name] = serving.model_id
    return ids


def _index_rows(catalog: Catalog, name: str) -> tuple[ModelRow | None, ModelRow | None]:
    """The model whose vectors the extractor's index holds, and the one coming next (a change).

    The serving row; where none is recorded (a catalogue indexed offline by an earlier version),
    the model that made most of its vectors, as a serving row without settings (not recorded
    here); None for a new library."""
    rows = catalog.models(name)
    serving = rows.get(SERVING)
    if serving is None:
        made = catalog.vector_models(name)
        if made:
            most_used = max(made, key=lambda model_id: made[model_id])
            serving = ModelRow(name, SERVING, most_used, None, name, time.time())
    return serving, rows.get(NEXT)


def _build_recorded(
    catalog: Catalog, config: Config, wanted: Sequence[str], ids: Mapping[str, str]
) -> tuple[dict[str, Extractor], dict[str, str]]:
    """Build the configured model of each extractor whose serving model has stored settings; when it
    cannot load, the stored one instead. Returns the models built and, per extractor, why the
    configured one could not load. The rest are the registry's (with its fallback)."""
    built: dict[str, Extractor] = {}
    unloadable: dict[str, str] = {}
    for name in dict.fromkeys(wanted):
        serving = catalog.models(name).get(SERVING)
        if serving is None or serving.settings is None:
            continue
        try:
            built[name] = create(name, config.extractor(name), models_dir(config), ids.get(name))
        except ModelUnavailableError as exc:
            old, why = _build_old(name, serving, models_dir(config))
            if old is None:
                log.warning("%s: the configured model cannot load (%s), nor the serving one: %s", name, exc.why, why)
                continue  # the registry's fallback decides
            built[name], unloadable[name] = old, exc.why
    return built, unloadable


def _merge(
    built: dict[str, Extractor], wanted: Sequence[str], config: Config, load: Load, ids: Mapping[str, str]
) -> LoadedExtractors:
    """The extractors built here and the registry's for the rest, in the configured order."""
    rest = [name for name in wanted if name not in built]
    index = config.index
    loaded = (
        load(rest, index.fallback_extractor, config.extractor, models_dir(config), ids)
        if rest
        else LoadedExtractors({}, wanted[0])
    )
    extractors: dict[str, Extractor] = {}
    for name in [*wanted, *loaded.extractors]:
        if name in built:
            extractors[name] = built[name]
            if name in loaded.extractors:  # also the registry's fallback: keep its note on text search
                built[name].text_refusal_note = loaded.extractors[name].text_refusal_note
        elif name in loaded.extractors:
            extractors[name] = loaded.extractors[name]
    primary = wanted[0] if wanted[0] in extractors else loaded.primary
    return LoadedExtractors(extractors=extractors, primary=primary, fallback=loaded.fallback)


# What a change whose old model cannot be built means for searches (after ``_build_old``'s reason).
GAP = ": searches use the new model's index, which holds what is embedded so far"


def _build_old(name: str, serving: ModelRow, models: Path | None) -> tuple[Extractor | None, str]:
    """The serving model built again from its stored settings, or None and why it cannot be."""
    if serving.settings is None:
        return None, (
            f"the settings of {serving.model_id} were not recorded (indexed offline by an earlier version, or a "
            "catalogue from before schema version 6), so it cannot be built again"
        )
    try:
        values = json.loads(serving.settings)
        # Settings stored before the engine setting (issue 32) ran on torch: built again as they ran.
        values.setdefault("engine", "torch")
        stored = extractor_settings(name, values, f"the stored settings of {name}")
        # auto keeps to the serving index's kind; int8 that runs answers from its index though it now
        # fails the check (an upgrade, another CPU): the change re-embeds, the old index serves meanwhile
        old = create(name, stored, models, serving.model_id, old_index=True)
    except (ModelUnavailableError, ConfigError, ValueError) as exc:
        why = exc.why if isinstance(exc, ModelUnavailableError) else str(exc)
        return None, f"the old model {serving.model_id} cannot be built again ({why})"
    if int8_apart(old.model_id, serving.model_id):
        return None, (
            f"the old model {serving.model_id} cannot run OpenVINO int8 here, or its vectors now fall too far from "
            f"fp32's (it would run as {old.model_id}: the log says why)"
        )
    if old.model_id != serving.model_id:
        return None, f"the stored settings now build {old.model_id}, not {serving.model_id} (its weights changed)"
    return old, ""


def _compare(
    catalog: Catalog, config: Config, name: str, extractor: Extractor, unloadable: str | None
) -> Change | None:
    """Record an unchanged or new model and return None; or the change from the serving model."""
    recorded = catalog.models(name).get(SERVING)
    serving, coming = _index_rows(catalog, name)
    now = time.time()
    if unloadable is not None:
        assert serving is not None
        error = f"the configured model cannot load ({unloadable})"
        log.error("%s: %s; %s goes on serving", name, error, serving.model_id)
        # ``to`` is null: a model id is known only once the model loads (weights, framing)
        return Change(name, serving.model_id, None, "failed", now, error=error)
    settings = settings_json(config, name)
    if recorded is None and serving is not None:  # a catalogue the daemon never served: recorded now
        catalog.record_model(serving)
    if serving is not None and _renamed_legacy(catalog, config, name, serving.model_id, extractor.model_id):
        serving = catalog.models(name)[SERVING]
    if serving is None or serving.model_id == extractor.model_id:
        folder = serving.folder if serving is not None else name
        catalog.record_model(ModelRow(name, SERVING, extractor.model_id, settings, folder, now))
        if coming is not None:  # a change given up (the settings went back): its vectors go
            log.info("%s: the change to %s was given up; its vectors go", name, coming.model_id)
            catalog.forget_next_model(name)
            catalog.prune_other_models(name, keep=(extractor.model_id,))
        return None
    if coming is not None and coming.model_id != extractor.model_id:  # changed again mid-change
        catalog.prune_other_models(name, keep=(serving.model_id,))
        coming = None
    folder = coming.folder if coming is not None else folder_for(name, extractor.model_id)
    since = coming.since if coming is not None else now
    catalog.record_model(ModelRow(name, NEXT, extractor.model_id, settings, folder, since))
    change = Change(name, serving.model_id, extractor.model_id, "embedding", since, new=extractor)
    change.new_folder, change.old_folder = folder, serving.folder
    old, why = _build_old(name, serving, models_dir(config))
    if old is None:
        change.error = why + GAP
        log.error("%s: %s", name, change.error)
    else:
        change.old, change.old_model_bytes = old, model_bytes(old)
    return change


def _renamed_legacy(catalog: Catalog, config: Config, name: str, serving_id: str, configured_id: str) -> bool:
    """Rename the serving model's id in place when it differs from the configured one only in a weights
    file's fingerprint of the old form (name, size, mtime) that the file still matches: the same
    weights, so no re-embedding after the upgrade to content digests. The index snapshot, built
    for the old id, is then rebuilt from the stored vectors at open (no model runs)."""
    if serving_id == configured_id:
        return False
    settings = settings_json(config, name)  # recorded with the new id: the configured ones
    for value in dataclasses.asdict(config.extractor(name)).values():
        if not isinstance(value, str) or not value or not os.path.isfile(value):
            continue
        try:
            legacy, current = legacy_file_fingerprint(value), file_fingerprint(value)
        except OSError:
            continue
        if current in configured_id and configured_id.replace(current, legacy) == serving_id:
            renamed = catalog.rename_model(name, serving_id, configured_id, settings)
            log.warning(
                "%s: the model id %s is now %s (weights are fingerprinted by their bytes now; %s is unchanged): "
                "%d vectors renamed, nothing re-embedded; the index is rebuilt from them",
                name, serving_id, configured_id, value, renamed,
            )  # fmt: skip
            return True
    return False


def use_serving_models(catalog: Catalog, loaded: LoadedExtractors, config: Config) -> tuple[list[str], list[str]]:
    """For a search without the daemon (``search --local``): answer from the model whose vectors each
    extractor's index holds where the configured model differs, built again from its stored settings
    as the daemon does. Returns notes (a change under way whose old model cannot be built: its search
    has a gap, as the daemon's has) and refusals (no change under way and the index's model cannot be
    built: the configured model has no vectors there to answer from)."""
    notes, refusals = [], []
    for name, extractor in list(loaded.extractors.items()):
        serving, coming = _index_rows(catalog, name)
        if serving is None or serving.model_id == extractor.model_id:
            continue
        if _renamed_legacy(catalog, config, name, serving.model_id, extractor.model_id):
            continue  # the same weights under an id of the old form: renamed, the configured model serves
        old, why = _build_old(name, serving, models_dir(config))
        if old is not None:
            loaded.extractors[name] = old
        elif coming is not None and coming.model_id == extractor.model_id:
            notes.append(f"{name}: a model change is under way, and {why}{GAP}")
        else:
            refusals.append(
                f"{_holds_other(name, serving.model_id, extractor)}, which has no vectors there to answer from; "
                f"{why}. Put back the settings that made the index, or let the daemon (imgsearchd serve) embed "
                "the library with these"
            )
    return notes, refusals


def _holds_other(name: str, index_id: str, extractor: Extractor) -> str:
    """ "NAME: the index holds the vectors of X, and these settings run Y (how)": an offline refusal's start."""
    running = extractor.precision
    return (
        f"{name}: the index holds the vectors of {index_id}, and these settings run {extractor.model_id} "
        f"({running.engine} {running.used}: {running.reason})"
    )


def offline_models(catalog: Catalog, config: Config, loaded: LoadedExtractors) -> list[str]:
    """For an offline command that embeds (``index``, ``backfill``): why it must not, for each extractor
    whose index holds another model's vectors or is in a change (embedded offline, its files would get
    vectors the index does not search: a model change is the daemon's). With none, each model is
    recorded as serving where no settings are (a later change can build it again and serve from the old
    index, as after a daemon's start); the daemon's recorded settings are left as they are."""
    refusals, records = [], []
    for name, extractor in loaded.extractors.items():
        serving, coming = _index_rows(catalog, name)
        index_id = serving.model_id if serving is not None else None
        # the daemon's migration: the same weights under an id of the old form
        renamed = index_id is not None and _renamed_legacy(catalog, config, name, index_id, extractor.model_id)
        index_id = extractor.model_id if renamed else index_id
        if coming is not None and index_id == extractor.model_id:
            refusals.append(
                f"{name}: a model change to {coming.model_id} is recorded, and these settings build the index's "
                "own model: the daemon gives the change up at its next start (imgsearchd serve)"
            )
        elif coming is not None:
            refusals.append(
                f"{name}: a model change from {index_id} to {coming.model_id} is under way: the daemon finishes it "
                "(imgsearchd serve; `imgsearchd stats` shows how far); add these files through it "
                "(imgsearchd add) or after its switch"
            )
        elif index_id is not None and index_id != extractor.model_id:
            refusals.append(
                f"{_holds_other(name, index_id, extractor)}: files embedded here would be missing from "
                "its searches. A model change is the daemon's: run imgsearchd serve with these settings until "
                "`imgsearchd stats` shows no change under way (it embeds the library again while the old index "
                "answers), then index here again; or put back the settings that made the index"
            )
        elif serving is None or serving.settings is None or renamed:
            folder = serving.folder if serving is not None else name
            records.append(
                ModelRow(name, SERVING, extractor.model_id, settings_json(config, name), folder, time.time())
            )
    for row in records if not refusals else []:
        catalog.record_model(row)
    return refusals
