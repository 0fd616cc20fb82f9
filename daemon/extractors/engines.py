"""Which engine (torch or OpenVINO) and precision a model runs in: the fastest option that passes the check at load.

``engine`` in an extractor's section is ``auto`` (default), ``torch`` or ``openvino``; ``precision``
keeps its meaning on both (precision.py). ``torch`` (and any GPU) is precision.py's choice alone.
Otherwise the options are torch's precision for the setting and OpenVINO's (``openvino_options``):
each is built (OpenVINO's converted once and cached: openvino_ir.py), its vectors of the check
pictures (the built-in probes and the shipped photos; texts too for CLIP) compared with torch
fp32's, refused under the thresholds below (``Agreement``); of those that pass, the fastest on the
check pictures runs. An option that cannot be built (no openvino, a conversion that fails) is
skipped with its reason in the log and in ``/stats`` (``tried``); torch fp32 is always there.

Measured on the 2-core Zen 4 (avx512_bf16, avx512_vnni), batch 32 (BENCHMARKS.md "Engines"):
CLIP ViT-B-32's image tower runs at 1.24x our torch bf16 on OpenVINO bf16 and 2.2x on OpenVINO
int8; EfficientNet-Lite0 at 1.7x torch bf16 on OpenVINO bf16 (its stem in fp32).

OpenVINO's int8 (static: weights and activations, calibrated) gets its own model id (``precision.INT8_ID``),
so its vectors never share an index with fp32/bf16 ones. Measured: CLIP (random weights) int8 queries
against an fp32 index found 57.3% of the copies against fp32's own 60.3%, although against its own
index it found 60.0% and its top-10 neighbour overlap with fp32 was 0.96; EfficientNet's int8 lost 6
points on an fp32 index (and fails the check). bf16, fp32 and torch's dynamic int8 (min cosine 0.9998
to fp32, 60.7% on an fp32 index) share one index: what passes the check moved recall@1 on an fp32
index by less than a point, so ``auto`` may choose among them otherwise on another machine without
re-embedding a library.

So the kind of index an extractor has decides whether ``auto`` may pick int8 (``for_the_index``):
a new library (nothing embedded yet) takes the fastest option that passes, int8 included (CLIP: 2.1x
torch bf16 on the Zen 4, 1.36x on a 2-core Xeon with AMX, where torch's bf16 is 4.6x its fp32); an
index of fp32/bf16 vectors keeps to those, also for a model that replaces its model (int8 would
re-embed the library because a timing said so: that takes ``engine = "openvino"`` and ``precision =
"int8"`` by name); an index of int8 vectors keeps int8 while it passes the check, untimed (on the
CPU, when ``device = "auto"`` would take a GPU: registry.create). When an int8 index's kind cannot
be kept here, the log says so as an error (a warning where the settings ask for the move): the library
is re-embedded.
"""

from __future__ import annotations

import functools
import gc
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .precision import INT8_ID, MIN_COSINE, Option, Precision, Tried, convert, cpu_flags, native_bf16, plan, seconds
from .precision import settle as settle_torch
from .remembered import Remembered

if TYPE_CHECKING:
    from .base import Extractor

log = logging.getLogger("imgsearchd.extractors")

# A faster option is kept only when its vectors of the check pictures are this close to torch fp32's
# (cosine). Measured with EfficientNet-Lite0's real weights against top-10 neighbour overlap with fp32
# on 300 real photos (BENCHMARKS.md "Engines"); the options that keep >= 0.95 pass, the others fail:
# - the 8 synthetic probes, smallest: bf16's drift gathers on flat regions. Passing bf16 (its stem in
#   fp32): 0.9939-0.9942; OpenVINO bf16 of the whole model (overlap 0.949): 0.9906; int8 with the stem
#   kept float (0.89): 0.9896. The old single rule (0.98 on the probes) let both through.
# - real photos (crops of the shipped ones), mean: int8's drift is small and even, so the probes
#   under-read it; int8 with every depthwise layer kept float (overlap 0.945) had 0.99847 on real
#   crops against 0.99951 for the passing bf16.
# - texts (CLIP), smallest: every variant measured had 0.9991-1.0, so this only says nothing broke.
# CLIP's own thresholds cannot be set without its real weights (random weights keep every variant
# near 1.0); with them, int8 calibrated on 32 pictures instead of 64 fails the probe rule (0.9923).
PROBES_MIN_COSINE = 0.993
PHOTOS_MEAN_COSINE = 0.999
TEXTS_MIN_COSINE = 0.998
# Real check pictures: other crops (another seed) of the same shipped photos int8 is calibrated on.
CHECK_CROPS = 24
CHECK_SEED = 7


@dataclass(frozen=True)
class CheckSet:
    """The check's inputs: the probes and the real photos (preprocessed), and the texts (CLIP)."""

    probes: torch.Tensor
    photos: torch.Tensor
    texts: Sequence[str]


@dataclass(frozen=True)
class Agreement:
    """How close an option's check vectors are to torch fp32's, per kind of input."""

    probes_min: float
    photos_min: float
    photos_mean: float
    texts_min: float | None = None

    @property
    def worst(self) -> float:
        return min(v for v in (self.probes_min, self.photos_min, self.texts_min) if v is not None)

    def passes(self) -> bool:
        """Close enough to torch fp32 to share its index (the thresholds above)."""
        texts_ok = self.texts_min is None or self.texts_min >= TEXTS_MIN_COSINE
        return self.probes_min >= PROBES_MIN_COSINE and self.photos_mean >= PHOTOS_MEAN_COSINE and texts_ok

    def describe(self) -> str:
        texts = f", texts min {self.texts_min:.5f}" if self.texts_min is not None else ""
        return f"probes min {self.probes_min:.5f}, photos mean {self.photos_mean:.5f}{texts}"


Vectors = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]


class Runner:
    """What embeds with one option: pictures (a float32 (N, C, H, W) batch) and texts."""

    def image(self, batch: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def text(self, texts: Sequence[str]) -> torch.Tensor:
        raise NotImplementedError


class TorchRunner(Runner):
    """The extractor's torch model (converted to ``precision``)."""

    def __init__(self, extractor: Extractor, model: Any, precision: str) -> None:
        self.extractor, self.model, self.precision = extractor, model, precision

    def image(self, batch: torch.Tensor) -> torch.Tensor:
        ex = self.extractor
        return ex._image_features(self.model, ex._as_input(batch, ex._input_dtype(self.precision)))

    def text(self, texts: Sequence[str]) -> torch.Tensor:
        return self.extractor._text_features(self.model, texts)


class OpenVinoRunner(Runner):
    """The extractor's model on OpenVINO (openvino_run.OpenVinoModel)."""

    def __init__(self, extractor: Extractor, model: Any) -> None:
        self.extractor, self.model = extractor, model

    def image(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model.image(batch)

    def text(self, texts: Sequence[str]) -> torch.Tensor:
        return self.model.text(self.extractor._tokens(texts))


def openvino_options(asked: str, flags: frozenset[str]) -> list[Option]:
    """What OpenVINO tries for a ``precision`` setting on a CPU with ``flags`` (``auto``: int8 too)."""
    bf16 = native_bf16(flags)
    if asked == "fp32":
        return [Option("openvino", "fp32", "set in the config")]
    if asked == "bf16":
        note = f"the CPU has {bf16}" if bf16 else "this CPU has no native bf16: computed in fp32 by OpenVINO"
        return [Option("openvino", "bf16" if bf16 else "fp32", f"set in the config; {note}")]
    if asked == "int8":
        return [Option("openvino", "int8", "set in the config")]
    if asked == "fp16":
        return [Option("openvino", "fp32", "fp16 runs only on CUDA; this runs on the CPU")]
    floats = Option("openvino", "bf16", f"auto: the CPU has {bf16}") if bf16 else Option("openvino", "fp32", "auto")
    return [floats, Option("openvino", "int8", "auto: static int8, calibrated (an index of its own)")]


def own_index(option: Option) -> bool:
    """Whether the option's vectors go in an index of their own (OpenVINO's int8: ``INT8_ID``)."""
    return option.label == "openvino int8"


# Why auto leaves OpenVINO's int8 out for an index of fp32/bf16 vectors (``/stats`` precision.tried).
KEPT_TO_THE_INDEX = (
    'not tried: this index holds fp32/bf16 vectors and int8 needs an index of its own (engine = "openvino" '
    'and precision = "int8" move it, re-embedding the library)'
)
# Why the others were not tried on an index of int8's vectors where int8 passed.
INT8_KEPT = "not tried: this index holds OpenVINO int8's vectors and int8 passed the check (kept untimed)"


def for_the_index(options: list[Option], index_id: str | None) -> tuple[list[Option], list[Tried], str]:
    """The options ``auto`` may take for an index that holds ``index_id``'s vectors, those left out,
    and the one preferred.

    Only a choice between both kinds of option (int8's own index and the shared one) is narrowed,
    by the kind of the index, whatever its model (a model that replaces it keeps its kind): an
    index of fp32/bf16 vectors leaves int8 out; an index of int8 vectors prefers int8 (taken
    untimed when it passes the check); a new library keeps them all. A timing never moves an index
    from one kind to the other.
    """
    if index_id is None or len({own_index(option) for option in options}) < 2:
        return options, [], ""
    if index_id.endswith(INT8_ID):
        return options, [], "openvino int8"
    left = [Tried(o.engine, o.precision, KEPT_TO_THE_INDEX) for o in options if own_index(o)]
    return [o for o in options if not own_index(o)], left, ""


def settle(
    extractor: Extractor,
    engine: str,
    asked: str,
    models_dir: Path | None,
    index_id: str | None = None,
    old_index: bool = False,
) -> Precision:
    """Run ``extractor`` on the engine and precision that pass the check and measure fastest.

    ``index_id``: the model id of the vectors the extractor's index holds now (None: a new library),
    which decides whether OpenVINO's int8 may be chosen (``for_the_index``). ``old_index``: the model
    only answers from that index while a model change embeds the library again (model_change): int8
    that runs is kept there though it fails the check, down to probes at ``MIN_COSINE`` (``_choose``)."""
    outcome = _settle(extractor, engine, asked, models_dir, index_id, old_index)
    if old_index:
        return outcome  # the new model's load said it, once
    if index_id is not None and index_id.endswith(INT8_ID) and not extractor.model_id.endswith(INT8_ID):
        # Set so (torch, or a float precision by name: the documented move back) it is a warning;
        # where int8 was wanted but cannot run or pass here, an error.
        chosen = engine == "torch" or asked not in ("auto", "int8")
        log.log(
            logging.WARNING if chosen else logging.ERROR,
            "%s: the index holds OpenVINO int8's vectors (%s), but this model runs %s (%s): its vectors cannot "
            "go in that index, so the daemon embeds the library again with it (its searches use the old index "
            "until the switch); engine = \"openvino\" with precision = \"int8\" on a CPU where it runs keeps the "
            "index",
            extractor.name, index_id, outcome.describe(), extractor.model_id,
        )  # fmt: skip
    return outcome


def _settle(
    extractor: Extractor, engine: str, asked: str, models_dir: Path | None, index_id: str | None, old_index: bool
) -> Precision:
    if engine == "torch" or extractor.device.type != "cpu":
        outcome = settle_torch(extractor, asked)
        if engine == "openvino":
            outcome = _noted(extractor, outcome, f"OpenVINO runs on the CPU and this model runs on {extractor.device}")
        return outcome
    try:
        from .openvino_ir import openvino

        openvino()
    except ImportError as exc:
        outcome = settle_torch(extractor, asked)
        return _noted(extractor, outcome, f"openvino cannot be imported ({exc}); pip install openvino", engine)
    options = openvino_options(asked, cpu_flags())
    if engine == "auto":
        torch_plan = plan(asked, extractor.device, extractor.quantisable)
        options.insert(0, Option("torch", torch_plan.candidate, torch_plan.reason))
    options, left_out, prefer = for_the_index(options, index_id)
    return _choose(extractor, asked, options, models_dir, left_out, prefer, old_index)


def _noted(extractor: Extractor, outcome: Precision, why: str, engine: str = "openvino") -> Precision:
    """torch's outcome with why OpenVINO is not running (a warning when it was asked for by name)."""
    if engine == "openvino":
        log.warning("%s: engine openvino asked for, running torch: %s", extractor.name, why)
    return replace(outcome, reason=f"{outcome.reason}; torch: {why}")


@dataclass
class _Checked:
    option: Option
    runner: Runner
    agreement: Agreement


def _choose(
    extractor: Extractor,
    asked: str,
    options: list[Option],
    models_dir: Path | None,
    left_out: Sequence[Tried] = (),
    prefer: str = "",
    old_index: bool = False,
) -> Precision:
    """Build and check each option; the fastest that passes runs (torch fp32 when none does).

    ``prefer`` (an option's label) is tried first and, when it passes, runs untimed; ``left_out``
    are recorded as they are. The choice is kept beside the converted models (``remembered``): a
    later load with the same model, settings, versions and CPU builds and checks only the option
    chosen, without timing. ``old_index`` (settle): int8 is kept where it runs and its smallest cosines
    reach ``MIN_COSINE`` (torch's own rule) though it fails the check (not kept as a choice), and a
    remembered option that fails leaves the choice and the cache to the new model's load.
    """
    check = check_set(extractor)
    # no_grad, not inference_mode: the conversions trace the model, and tensors made under
    # inference_mode cannot take part in a trace.
    with extractor._lock, torch.no_grad():
        reference = TorchRunner(extractor, extractor.model, "fp32")
        memory = Remembered(models_dir, extractor, options, check_id(), prefer)
        rows = (len(check.probes), len(check.photos), len(check.texts))
        earlier = memory.read(rows)
        # torch fp32's vectors as the first load kept them (same model, torch, check set): CLIP's
        # fp32 pass over the check set took 1.5 s of every start.
        wanted = earlier.wanted if earlier is not None and earlier.wanted is not None else vectors(reference, check)
        if earlier is not None and prefer and earlier.option.label != prefer:
            earlier = None  # chosen for a new index; this one holds int8's vectors: int8 first
        if earlier is not None:
            from .openvino_ir import forget, reading

            from_cache: list[Path] = []
            try:
                with reading() as from_cache:
                    floor = _floor(earlier.option, old_index)
                    checked = _try(extractor, earlier.option, check, wanted, models_dir, [], floor=floor)
            except ValueError as exc:  # the kept vectors do not fit this model's: the file, not the model
                log.warning("cannot use the engine choice in %s (%s); timing the options again", memory.path, exc)
                checked, from_cache = None, []
            if checked is not None:
                return _install(extractor, asked, checked, earlier.tried, earlier.speedup, earlier.note)
            if not old_index:  # the old model of a change leaves the choice and the cache to the new one's load
                memory.forget()
            if from_cache and not old_index:  # it passed when it was chosen: cached models failing now are remade
                log.warning("%s: %s from the cache failed the check it passed when chosen: made again (%s)",
                            extractor.name, earlier.option.label, ", ".join(f.name for f in from_cache))  # fmt: skip
                forget(from_cache)
            wanted = vectors(reference, check)  # the kept ones may be what went wrong
        tried: list[Tried | Option] = list(left_out)
        passed: list[_Checked] = []
        for option in sorted(options, key=lambda o: o.label != prefer):  # the preferred first
            checked = _try(
                extractor, option, check, wanted, models_dir, tried, len(options) > 1, _floor(option, old_index)
            )
            if checked is not None:
                passed.append(checked)
                tried.append(option)  # its outcome once the timing is done
                if option.label == prefer:  # the index's own kind passes: nothing to time it against
                    tried += [Tried(o.engine, o.precision, INT8_KEPT) for o in options if o.label != prefer]
                    break
        only_openvino = all(option.engine == "openvino" for option in options)
        if not passed and not only_openvino:
            exact = Agreement(1.0, 1.0, 1.0, 1.0 if check.texts else None)
            passed.append(_Checked(Option("torch", "fp32", "nothing faster passed the check"), reference, exact))
            tried.append(passed[0].option)
    if not passed:  # engine openvino, and none of its options ran: torch's own choice (outside the lock)
        return _torch_instead(extractor, asked, tuple(entry for entry in tried if isinstance(entry, Tried)))
    with extractor._lock, torch.no_grad():
        timings = _time(passed, check.probes, reference) if len(passed) > 1 else {}
        best = min(passed, key=lambda c: timings.get(c.option.label, 0.0))
    outcomes = {c.option.label: c for c in passed}
    done = tuple(_outcome(entry, outcomes, best, timings) for entry in tried)
    base = timings.get("torch fp32")
    speedup = base / timings[best.option.label] if base and best.option.label in timings else None
    if best.runner is not reference and best.agreement.passes():  # a choice (not int8 kept for an old index)
        memory.write(best.option, done, speedup, wanted)
    return _install(extractor, asked, best, done, speedup)


def _floor(option: Option, old_index: bool) -> float | None:
    """The cosine under which a failed check stops ``option``: int8 for an old int8 index (``_choose``)."""
    return MIN_COSINE if old_index and own_index(option) else None  # only an int8 index offers int8 there


def _torch_instead(extractor: Extractor, asked: str, failed: tuple[Tried, ...]) -> Precision:
    """``engine = "openvino"`` with no OpenVINO option that runs and passes: torch's choice for the setting."""
    extractor.model_id = extractor.model_id.removesuffix(INT8_ID)
    outcome = _noted(extractor, settle_torch(extractor, asked), "no OpenVINO option could run and pass the check")
    kept = Tried("torch", outcome.used, "kept", outcome.min_cosine)
    return replace(outcome, tried=(*failed, kept))


def _outcome(entry: Tried | Option, passed: dict[str, _Checked], best: _Checked, timings: dict[str, float]) -> Tried:
    """A failed option's record as it is; a passing one's with its outcome and timing."""
    if isinstance(entry, Tried):
        return entry
    checked = passed[entry.label]
    outcome = "kept" if checked is best else "slower"
    agreed = checked.agreement
    return Tried(entry.engine, entry.precision, outcome, agreed.worst, agreed.photos_mean, timings.get(entry.label))


def _try(
    extractor: Extractor,
    option: Option,
    check: CheckSet,
    wanted: Vectors,
    models_dir: Path | None,
    tried: list[Tried | Option],
    one_of_several: bool = False,
    floor: float | None = None,
) -> _Checked | None:
    """One option built and checked; None (and why, in ``tried`` and the log) when it cannot run or fails.

    A failed check is a warning for an option the settings name alone; ``one_of_several`` (auto's
    choice, where EfficientNet's int8 fails at every first start) logs it as info. ``floor``: an option
    that fails but whose probes' smallest cosine reaches it is kept all the same (an old index's own kind)."""
    try:
        runner = build(extractor, option, models_dir)
        got = vectors(runner, check)
    except Exception as exc:  # a conversion can fail in any library's way; torch stays
        log.warning("%s: %s cannot run (%s: %s); trying the next option", extractor.name, option.label,
                    type(exc).__name__, exc)  # fmt: skip
        # OpenVINO's messages run to many lines with C++ source paths: the first line says it
        why = (str(exc).strip().splitlines() or [""])[0][:200]
        tried.append(Tried(option.engine, option.precision, f"cannot run: {type(exc).__name__}: {why}"))
        return None
    agreed = agreement(wanted, got)
    if not agreed.passes() and floor is not None and min(agreed.probes_min, agreed.texts_min or 1.0) >= floor:
        log.warning("%s: %s fails the check (%s) but answers from the index its vectors made while the library "
                    "is embedded again (probes and texts min >= %s)", extractor.name, option.label, agreed.describe(),
                    floor)  # fmt: skip
        return _Checked(option, runner, agreed)
    if not agreed.passes():
        texts = f", texts >= {TEXTS_MIN_COSINE}" if check.texts else ""  # EfficientNet reads none
        log.log(logging.INFO if one_of_several else logging.WARNING,
                "%s: %s FAILED the check at load: %s (need probes >= %s, photos mean >= %s%s)",
                extractor.name, option.label, agreed.describe(), PROBES_MIN_COSINE, PHOTOS_MEAN_COSINE,
                texts)  # fmt: skip
        tried.append(Tried(option.engine, option.precision, "failed the check", agreed.worst, agreed.photos_mean))
        return None
    return _Checked(option, runner, agreed)


def agreement(wanted: Vectors, got: Vectors) -> Agreement:
    """The option's vectors (``got``) against torch fp32's (``wanted``), per kind of input."""

    def cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.shape != b.shape:  # kept reference vectors of another shape (a damaged choice file)
            raise ValueError(f"reference vectors of shape {tuple(a.shape)} against the model's {tuple(b.shape)}")
        return torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=-1)

    probes, photos = cosines(wanted[0], got[0]), cosines(wanted[1], got[1])
    texts = float(cosines(wanted[2], got[2]).min()) if wanted[2] is not None and got[2] is not None else None
    return Agreement(float(probes.min()), float(photos.min()), float(photos.mean()), texts)


def vectors(runner: Runner, check: CheckSet) -> Vectors:
    """The runner's raw vectors of the check set: probes, photos, texts (None without texts)."""
    texts = runner.text(check.texts) if check.texts else None
    return runner.image(check.probes), runner.image(check.photos), texts


def _time(passed: list[_Checked], pictures: torch.Tensor, reference: Runner) -> dict[str, float]:
    """Seconds per check batch for each option that passed, and for torch fp32 (the speedup's base)."""
    timings = {}
    for checked in [*passed, _Checked(Option("torch", "fp32", ""), reference, Agreement(1.0, 1.0, 1.0))]:
        checked.runner.image(pictures)  # warm-up: first calls allocate and pick kernels
        timings[checked.option.label] = seconds(functools.partial(checked.runner.image, pictures))
    return timings


def _install(
    extractor: Extractor,
    asked: str,
    best: _Checked,
    tried: tuple[Tried, ...],
    speedup: float | None,
    note: str = "",
) -> Precision:
    """Put the chosen option in place; the others are dropped."""
    option = best.option
    base_id = extractor.model_id.removesuffix(INT8_ID)
    extractor.model_id = base_id + INT8_ID if own_index(option) else base_id
    if isinstance(best.runner, OpenVinoRunner):
        extractor.openvino = best.runner.model
        # OpenVINO now runs every part (CLIP's text too): the torch weights would only hold memory
        # (CLIP ViT-B-32 in fp32: 600 MB, twice what torch bf16 kept before this engine).
        extractor.model = None
    else:
        extractor.openvino = None
        extractor.model = best.runner.model if isinstance(best.runner, TorchRunner) else extractor.model
    gc.collect()  # the options not kept hold hundreds of MB (a CLIP copy in bf16, compiled models)
    reason = f"{option.reason}{note}"
    outcome = Precision(option.precision, asked, reason, min_cosine=best.agreement.worst, speedup=speedup,
                        engine=option.engine, tried=tried)  # fmt: skip
    log.info("%s: %s", extractor.name, outcome.describe())
    return outcome


# -- building


def build(extractor: Extractor, option: Option, models_dir: Path | None) -> Runner:
    """The runner for ``option``: a converted torch copy, or the OpenVINO model (cached)."""
    if option.engine == "torch":
        model = convert(extractor.model, option.precision, extractor.fp32_stages)
        return TorchRunner(extractor, extractor._converted(model, option.precision), option.precision)
    from .openvino_build import openvino_model

    return OpenVinoRunner(extractor, openvino_model(extractor, option.precision, models_dir))


def check_id() -> str:
    """What makes the check set: the shipped photos, the crops taken, the probes."""
    from .calibration import fingerprint
    from .probes import SEED

    return f"photos {fingerprint()} crops {CHECK_CROPS} seed {CHECK_SEED} probes {SEED}"


def check_set(extractor: Extractor) -> CheckSet:
    """The check's pictures, preprocessed, and texts: the built-in probes and crops of the shipped photos."""
    from .calibration import crops
    from .probes import TEXTS, images

    def batch(pictures: list[Any]) -> torch.Tensor:
        return torch.stack([extractor.preprocess(picture) for picture in pictures])

    texts = TEXTS if extractor.supports_text else ()
    return CheckSet(batch(images()), batch(crops(CHECK_CROPS, CHECK_SEED)), texts)
