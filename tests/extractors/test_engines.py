"""engines: torch or OpenVINO, each option checked against torch fp32 at load, the fastest that passes kept.

Real OpenVINO and NNCF on the real models: EfficientNet-Lite0 with its shipped weights, and a
small CLIP (ViT-S-32, random weights) for the text tower and int8. Converted models are cached
in one folder for the session (``shared_models``), so each converts once. The bf16 test needs a
CPU that computes bf16 natively (avx512_bf16 or amx_bf16); on one without it is skipped, since
OpenVINO then runs the bf16 setting in fp32 (``openvino_options``, tested below on both kinds of CPU).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from imgsearchd.config import ConfigError, load_config
from imgsearchd.extractors import create, engines, openvino_build, precision
from imgsearchd.extractors.openvino_build import cut, openvino_model

from helpers import EFFICIENTNET_FP32, write_config

SMALL_CLIP = {"model": "ViT-S-32", "pretrained": "none", "device": "cpu", "batch_size": 4}
NO_BF16 = frozenset({"avx2", "fma", "avx512f", "avx512_vnni"})
WITH_BF16 = NO_BF16 | {"avx512_bf16"}
OUTCOMES = ("kept", "slower", "failed the check")
PROMPTS = ["a photo of a cat", "a rocket on its launch pad", "two motorcycles", "a cup of coffee"]
# What the options that pass the check keep of torch fp32's vectors on the skimage photos: passing bf16 and int8
# measured 0.99+ on 600 real pictures (BENCHMARKS.md "Engines"); a broken engine gives far less.
CLOSE = 0.99


@pytest.fixture(scope="module")
def shared_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The models folder the engine tests share (one per session and xdist worker): each model converts once."""
    return tmp_path_factory.getbasetemp() / "openvino-models"


@pytest.fixture(scope="module")
def pictures(photos: dict[str, Any], efficientnet: Any) -> torch.Tensor:
    return torch.stack([efficientnet.preprocess(p.convert("RGB")) for p in photos.values()])


@pytest.fixture(scope="module")
def ov_fp32(shared_models: Path) -> Any:
    return create("efficientnet", {**EFFICIENTNET_FP32, "engine": "openvino"}, shared_models)


@pytest.fixture(scope="module")
def clip_int8(shared_models: Path) -> Any:
    return create("clip", {**SMALL_CLIP, "precision": "int8", "engine": "openvino"}, shared_models)


@pytest.fixture(scope="module")
def small_clip_torch() -> Any:
    """The small CLIP on torch fp32: the same seeded weights as clip_int8's (whose torch model is let go)."""
    return create("clip", {**SMALL_CLIP, "precision": "fp32", "engine": "torch"})


@pytest.fixture
def torch_fp32() -> Any:
    """A fresh EfficientNet on torch fp32, for a test to settle again (and spoil)."""
    return create("efficientnet", dict(EFFICIENTNET_FP32))


def settled(extractor: Any, engine: str, asked: str, models_dir: Path | None) -> precision.Precision:
    """Settle ``extractor`` again, as ``create`` does at load."""
    extractor.precision = engines.settle(extractor, engine, asked, models_dir)
    return extractor.precision


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)))


def kept(outcome: precision.Precision) -> list[precision.Tried]:
    return [t for t in outcome.tried if t.outcome == "kept"]


class Counting:
    """Wraps a callable and counts its calls (to see which engine embeds)."""

    def __init__(self, wrapped: Any) -> None:
        self.wrapped, self.calls = wrapped, 0

    def __call__(self, *args: Any) -> Any:
        self.calls += 1
        return self.wrapped(*args)


@pytest.fixture
def warnings_logged(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.WARNING, logger="imgsearchd.extractors"):
        yield caplog


# -- the options


@pytest.mark.parametrize(
    ("asked", "flags", "expected"),
    [
        ("fp32", WITH_BF16, ["fp32"]),
        ("bf16", WITH_BF16, ["bf16"]),
        ("bf16", NO_BF16, ["fp32"]),  # OpenVINO computes it in fp32 there: said in the reason
        ("int8", NO_BF16, ["int8"]),
        ("fp16", WITH_BF16, ["fp32"]),
        ("auto", WITH_BF16, ["bf16", "int8"]),  # int8 where the index allows it (for_the_index)
        ("auto", NO_BF16, ["fp32", "int8"]),
    ],
)
def test_openvino_options_follow_the_setting_and_the_cpu(asked, flags, expected):
    options = engines.openvino_options(asked, flags)
    assert [o.precision for o in options] == expected and {o.engine for o in options} == {"openvino"}
    if asked == "bf16" and not precision.native_bf16(flags):
        assert "no native bf16" in options[0].reason


# -- OpenVINO on EfficientNet


def test_openvino_fp32_gives_torch_fp32s_vectors(ov_fp32, efficientnet, pictures):
    """engine openvino, fp32: OpenVINO embeds, one model (no cut), the vectors torch fp32 gives."""
    chosen = ov_fp32.precision
    assert (chosen.engine, chosen.used, chosen.asked) == ("openvino", "fp32", "fp32")
    assert [(t.engine, t.precision, t.outcome) for t in chosen.tried] == [("openvino", "fp32", "kept")]
    assert ov_fp32.openvino is not None and len(ov_fp32.openvino.image_parts) == 1
    assert ov_fp32.model_id == efficientnet.model_id
    ours, reference = ov_fp32.embed(pictures), efficientnet.embed(pictures)
    assert ours.dtype == np.float32 and np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert cosines(ours, reference).min() >= 0.9999


def test_openvino_bf16_runs_cut_in_two_and_passes(shared_models, efficientnet, pictures):
    """engine openvino, bf16 on native bf16: the fp32 stages as their own model, the rest in bf16."""
    flag = precision.native_bf16(precision.cpu_flags())
    if flag is None:
        pytest.skip("this CPU has neither avx512_bf16 nor amx_bf16: OpenVINO would run the bf16 setting in fp32")
    extractor = create("efficientnet", {**EFFICIENTNET_FP32, "precision": "bf16", "engine": "openvino"}, shared_models)
    chosen = extractor.precision
    assert (chosen.engine, chosen.used) == ("openvino", "bf16") and flag in chosen.reason
    assert chosen.min_cosine is not None and chosen.min_cosine >= engines.PROBES_MIN_COSINE
    assert len(kept(chosen)) == 1 and kept(chosen)[0].mean_cosine >= engines.PHOTOS_MEAN_COSINE
    assert len(extractor.openvino.image_parts) == 2
    ours = extractor.embed(pictures)
    assert cosines(ours, efficientnet.embed(pictures)).min() >= CLOSE


def test_cut_head_then_rest_is_the_whole_model(efficientnet, pictures):
    """The fp32 stages and the rest, run one after the other, give the whole model's features."""
    model = efficientnet.model
    head, rest = cut(model, efficientnet.fp32_stages)
    assert len(list(head.children())) == len(efficientnet.fp32_stages)
    assert all(isinstance(rest.get_submodule(name), torch.nn.Identity) for name in efficientnet.fp32_stages)
    assert not isinstance(model.get_submodule("conv_stem"), torch.nn.Identity)  # the original is left whole
    with torch.no_grad():
        x = efficientnet._as_input(pictures, torch.float32)
        whole = efficientnet._image_features(model, x)
        parted = efficientnet._image_features(rest, head(x))
    assert torch.allclose(whole, parted, atol=1e-4)


def test_auto_records_every_option_and_keeps_one(shared_models, efficientnet, pictures, monkeypatch):
    """engine auto: torch's candidate and OpenVINO's all tried, one kept, and that one embeds."""
    extractor = create("efficientnet", {**EFFICIENTNET_FP32, "precision": "auto", "engine": "auto"}, shared_models)
    chosen = extractor.precision
    plan = precision.plan("auto", torch.device("cpu"), False)
    options = [("torch", plan.candidate)] + [
        (o.engine, o.precision) for o in engines.openvino_options("auto", precision.cpu_flags())
    ]
    assert [(t.engine, t.precision) for t in chosen.tried] == options
    assert all(t.outcome in OUTCOMES for t in chosen.tried)
    assert [(t.engine, t.precision) for t in kept(chosen)] == [(chosen.engine, chosen.used)]
    assert (extractor.openvino is not None) == (chosen.engine == "openvino")
    if len([t for t in chosen.tried if t.outcome in ("kept", "slower")]) > 1:  # timed against each other
        assert all(t.seconds is not None for t in chosen.tried if t.outcome in ("kept", "slower"))
        assert chosen.speedup is not None
    engine_calls = Counting(extractor.openvino.image if extractor.openvino else extractor._forward)
    monkeypatch.setattr(extractor.openvino or extractor, "image" if extractor.openvino else "_forward", engine_calls)
    ours = extractor.embed(pictures)
    assert engine_calls.calls == 1, f"{chosen.engine} {chosen.used} was kept but did not embed"
    assert cosines(ours, efficientnet.embed(pictures)).min() >= CLOSE


def test_efficientnet_int8_is_refused_by_the_check(shared_models, warnings_logged):
    """Forced int8 drifts too far on real weights (measured: min 0.982, mean 0.992): refused, torch fp32 runs."""
    extractor = create("efficientnet", {**EFFICIENTNET_FP32, "precision": "int8", "engine": "openvino"}, shared_models)
    chosen = extractor.precision
    first = chosen.tried[0]
    assert (first.engine, first.precision, first.outcome) == ("openvino", "int8", "failed the check")
    assert first.min_cosine is not None and first.mean_cosine is not None
    assert first.min_cosine < engines.PROBES_MIN_COSINE or first.mean_cosine < engines.PHOTOS_MEAN_COSINE
    # torch's own choice for int8 on a convolutional model: fp32, with both reasons
    assert (chosen.engine, chosen.used) == ("torch", "fp32") and "in convolutions" in chosen.reason
    assert "no OpenVINO option could run and pass the check" in chosen.reason
    assert extractor.openvino is None and not extractor.model_id.endswith(precision.INT8_ID)
    assert any("openvino int8 FAILED the check" in r.getMessage() for r in warnings_logged.records)


# -- CLIP: the text tower and int8


def test_clip_int8_passes_the_check(clip_int8, small_clip_torch, photos):
    chosen = clip_int8.precision
    assert (chosen.engine, chosen.used) == ("openvino", "int8")
    # static int8's vectors are indexed apart from fp32/bf16 ones (engines.py says why)
    assert clip_int8.model_id == small_clip_torch.model_id + precision.INT8_ID
    assert [(t.engine, t.precision, t.outcome) for t in chosen.tried] == [("openvino", "int8", "kept")]
    assert chosen.min_cosine is not None and chosen.min_cosine >= engines.PROBES_MIN_COSINE
    batch = torch.stack([clip_int8.preprocess(p.convert("RGB")) for p in photos.values()])
    assert clip_int8.model is None  # OpenVINO runs it all: the torch weights are let go
    with torch.no_grad():
        reference = small_clip_torch._image_features(small_clip_torch.model, batch).numpy()
    assert cosines(clip_int8.embed(batch), reference).min() >= CLOSE


def test_clip_text_goes_through_openvino(clip_int8, small_clip_torch, shared_models, monkeypatch):
    """encode_text calls OpenVINO's text model; in fp32 it gives torch fp32's text vectors."""
    with torch.no_grad():
        reference = small_clip_torch._text_features(small_clip_torch.model, PROMPTS).numpy()
    text_calls = Counting(clip_int8.openvino.text)
    monkeypatch.setattr(clip_int8.openvino, "text", text_calls)
    ours = clip_int8.encode_text(PROMPTS)
    assert text_calls.calls == 1
    assert cosines(ours, reference).min() >= CLOSE  # bf16 compute beside int8 (compute_precision)
    fp32 = openvino_model(small_clip_torch, "fp32", shared_models)  # the fp32 text model, from the cache
    assert cosines(fp32.text(clip_int8._tokens(PROMPTS)).numpy(), reference).min() >= 0.999


# -- the index decides whether auto may take int8 (its vectors have a model id of their own)

BOTH_KINDS = [precision.Option("torch", "bf16", ""), precision.Option("openvino", "bf16", ""),
              precision.Option("openvino", "int8", "")]  # fmt: skip


def test_a_new_library_keeps_every_option():
    assert engines.for_the_index(BOTH_KINDS, None) == (BOTH_KINDS, [], "")


def test_an_index_of_float_vectors_leaves_int8_out_and_says_why():
    """Whatever its model: one that replaces it (a model change; an id of the older fingerprint form) keeps its kind."""
    for index_id in ("m", "another-model"):
        options, left, prefer = engines.for_the_index(BOTH_KINDS, index_id)
        assert options == BOTH_KINDS[:2] and prefer == ""
        assert [(t.engine, t.precision, t.outcome) for t in left] == [("openvino", "int8", engines.KEPT_TO_THE_INDEX)]


def test_an_index_of_int8_vectors_prefers_int8():
    assert engines.for_the_index(BOTH_KINDS, "m" + precision.INT8_ID) == (BOTH_KINDS, [], "openvino int8")


def test_a_choice_of_one_kind_is_left_as_it_is():
    """int8 named (engine openvino, precision int8) moves a float index: a model change, asked for."""
    named = [BOTH_KINDS[2]]
    assert engines.for_the_index(named, "m") == (named, [], "")
    floats = BOTH_KINDS[:2]
    assert engines.for_the_index(floats, "m" + precision.INT8_ID) == (floats, [], "")


def linked_copy(folder: Path, to: Path) -> Path:
    """The shared converted models, hard-linked: a test's choice files stay its own (nothing is written in place)."""
    if folder.exists():
        shutil.copytree(folder, to, copy_function=os.link)
    return to


def test_auto_on_a_float_index_runs_a_float_option_with_the_same_model_id(shared_models, small_clip_torch):
    chosen = create("clip", {**SMALL_CLIP, "precision": "auto", "engine": "auto"}, shared_models,
                    small_clip_torch.model_id)  # fmt: skip
    tried = [(t.engine, t.precision, t.outcome) for t in chosen.precision.tried]
    assert ("openvino", "int8", engines.KEPT_TO_THE_INDEX) in tried
    # torch's dynamic int8 may run (a CPU without native bf16): it shares the float index
    assert (chosen.precision.engine, chosen.precision.used) != ("openvino", "int8")
    assert chosen.model_id == small_clip_torch.model_id


def test_a_timing_never_moves_an_int8_index(shared_models, small_clip_torch, tmp_path, monkeypatch, caplog):
    """A new index: the timing picks (here made to favour torch: what is tested is what follows). An
    index of int8 vectors: int8 is tried first and kept untimed, although the choice kept says torch;
    on the CPU with ``device = "auto"`` (a GPU's vectors could not go in that index)."""
    models = linked_copy(shared_models, tmp_path / "models")

    def favour_torch(passed: list[Any], pictures: torch.Tensor, reference: Any) -> dict[str, float]:
        return {"torch fp32": 2.0} | {c.option.label: 0.5 if c.option.engine == "torch" else 1.0 for c in passed}

    settings = {**SMALL_CLIP, "precision": "auto", "engine": "auto"}
    with monkeypatch.context() as patched:
        patched.setattr(engines, "_time", favour_torch)
        first = create("clip", settings, models)
    outcomes = {(t.engine, t.precision): t.outcome for t in first.precision.tried}
    assert first.precision.engine == "torch" and outcomes[("openvino", "int8")] == "slower", outcomes
    assert first.model_id == small_clip_torch.model_id

    timed: list[int] = []

    def counted(*args: Any) -> dict[str, float]:
        timed.append(1)
        return {}

    monkeypatch.setattr(engines, "_time", counted)
    caplog.set_level(logging.INFO, logger="imgsearchd.extractors")
    on_int8 = create("clip", {**settings, "device": "auto"}, models, small_clip_torch.model_id + precision.INT8_ID)
    listed = [(t.engine, t.precision, t.outcome) for t in on_int8.precision.tried]
    assert listed[0] == ("openvino", "int8", "kept") and {entry[2] for entry in listed[1:]} == {engines.INT8_KEPT}
    assert len(listed) == 3  # /stats still lists every option
    assert on_int8.model_id == small_clip_torch.model_id + precision.INT8_ID and timed == []
    assert on_int8.device.type == "cpu" and any("on the CPU" in r.getMessage() for r in caplog.records)
    again = create("clip", settings, models, on_int8.model_id)  # the choice kept now: int8, checked again
    assert again.model_id == on_int8.model_id and "checked again now" in again.precision.reason


def test_an_int8_index_whose_int8_fails_here_says_the_library_is_re_embedded(shared_models, efficientnet, caplog):
    """EfficientNet's int8 fails the check: on an index of int8 vectors a float option runs, and the log says
    so as an error (its vectors cannot go in that index)."""
    caplog.set_level(logging.INFO, logger="imgsearchd.extractors")
    int8_index = efficientnet.model_id + precision.INT8_ID
    chosen = create("efficientnet", {**EFFICIENTNET_FP32, "precision": "auto", "engine": "auto"}, shared_models,
                    int8_index)  # fmt: skip
    first = chosen.precision.tried[0]
    assert (first.engine, first.precision, first.outcome) == ("openvino", "int8", "failed the check")
    assert chosen.model_id == efficientnet.model_id
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("embeds the library again" in m and int8_index in m for m in errors), errors
    # one of auto's options failing is no warning (EfficientNet's int8 fails at every first start)
    failed = [r for r in caplog.records if "FAILED the check" in r.getMessage()]
    assert failed and {r.levelno for r in failed} == {logging.INFO}
    assert all("texts" not in r.getMessage() for r in failed)  # EfficientNet reads no texts
    caplog.clear()  # the settings asking for the move (torch fp32 by name): said, but as a warning
    create("efficientnet", dict(EFFICIENTNET_FP32), shared_models, int8_index)
    said = [r for r in caplog.records if "embeds the library again" in r.getMessage()]
    assert said and {r.levelno for r in said} == {logging.WARNING}


SIGNAL_AFTER_OPENVINO = """
import os, signal, sys, time
from pathlib import Path
import torch
from imgsearchd.extractors import create, openvino_build, probes
from imgsearchd.process.signals import SignalInbox

extractor = create("efficientnet", {"device": "cpu", "precision": "fp32", "engine": "torch"})
batch = torch.stack([extractor.preprocess(p) for p in probes.images()])
for _ in range(2):  # two models built, used and freed, as a model change or a test does
    openvino_build.openvino_model(extractor, "fp32", Path(sys.argv[1])).image(batch)
inbox = SignalInbox((signal.SIGTERM,))
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(0.2)
print(inbox.wait(2))
"""


def test_a_sigterm_after_openvino_models_were_freed_is_received(shared_models):
    """Each model compiled by its own Core, freed, unloaded OpenVINO's CPU plugin: the next SIGTERM (a
    daemon's stop) crashed the process with SIGSEGV in its handler. One Core for the process keeps it."""
    done = subprocess.run(
        [sys.executable, "-c", SIGNAL_AFTER_OPENVINO, str(shared_models)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
    assert "SIGTERM" in done.stdout


# -- when OpenVINO cannot run


def test_no_openvino_runs_torch_and_says_why(torch_fp32, tmp_path, monkeypatch, warnings_logged):
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` raises ImportError
    # openvino() blocks telemetry's module before importing: put back as it was after the test
    monkeypatch.setitem(sys.modules, "openvino_telemetry", None)
    chosen = settled(torch_fp32, "openvino", "fp32", tmp_path)
    assert (chosen.engine, chosen.used) == ("torch", "fp32") and torch_fp32.openvino is None
    assert "openvino cannot be imported" in chosen.reason and "pip install openvino" in chosen.reason
    assert any("engine openvino asked for, running torch" in r.getMessage() for r in warnings_logged.records)
    warnings_logged.clear()
    assert settled(torch_fp32, "auto", "fp32", tmp_path).engine == "torch"
    assert not warnings_logged.records, "auto without openvino is not worth a warning"


def test_a_failing_conversion_is_recorded_and_torch_runs(torch_fp32, tmp_path, monkeypatch, warnings_logged):
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("conversion broke")

    # openvino_build imported convert by name: patching openvino_ir.convert would not reach it.
    monkeypatch.setattr(openvino_build, "convert", broken)
    chosen = settled(torch_fp32, "openvino", "fp32", tmp_path)
    outcomes = [(t.engine, t.precision, t.outcome) for t in chosen.tried]
    assert outcomes == [("openvino", "fp32", "cannot run: RuntimeError: conversion broke"), ("torch", "fp32", "kept")]
    assert (chosen.engine, chosen.used) == ("torch", "fp32") and torch_fp32.openvino is None
    assert any("openvino fp32 cannot run" in r.getMessage() for r in warnings_logged.records)
    assert torch_fp32.embed_images([]).shape == (0, torch_fp32.dim)


def test_nothing_passing_the_check_runs_torch_fp32(torch_fp32, shared_models, monkeypatch, efficientnet, pictures):
    monkeypatch.setattr(engines, "PROBES_MIN_COSINE", 1.01)
    chosen = settled(torch_fp32, "openvino", "fp32", shared_models)
    assert [(t.engine, t.precision, t.outcome) for t in chosen.tried] == [
        ("openvino", "fp32", "failed the check"),
        ("torch", "fp32", "kept"),
    ]
    assert (chosen.engine, chosen.used) == ("torch", "fp32")
    assert chosen.reason == "set in the config; torch: no OpenVINO option could run and pass the check"
    assert torch_fp32.openvino is None
    assert np.array_equal(torch_fp32.embed(pictures), efficientnet.embed(pictures))


def test_a_gpu_model_stays_on_torch(torch_fp32, tmp_path, warnings_logged):
    """OpenVINO runs on the CPU: a model on CUDA settles on torch (fp32 asked: nothing runs on the fake device)."""
    torch_fp32.device = torch.device("cuda")
    chosen = settled(torch_fp32, "openvino", "fp32", tmp_path)
    assert (chosen.engine, chosen.used, chosen.tried) == ("torch", "fp32", ())
    assert "OpenVINO runs on the CPU and this model runs on cuda" in chosen.reason
    assert any("engine openvino asked for" in r.getMessage() for r in warnings_logged.records)
    warnings_logged.clear()
    chosen = settled(torch_fp32, "auto", "fp32", tmp_path)
    assert (chosen.engine, chosen.reason) == ("torch", "set in the config") and not warnings_logged.records
    assert not list(tmp_path.iterdir())  # nothing converted


# -- the setting


def test_config_names_the_key_of_a_bad_engine(tmp_path):
    path = write_config(tmp_path / "c.toml", {"extractors.efficientnet": {"engine": "onnx"}})
    with pytest.raises(ConfigError, match=r"extractors\.efficientnet\.engine") as raised:
        load_config(path)
    assert str(path) in str(raised.value)
    write_config(path, {"extractors.efficientnet": {"engine": "openvino"}})
    assert load_config(path).extractor("efficientnet").engine == "openvino"


def test_a_later_load_checks_the_remembered_option_without_torch_fp32(tmp_path, monkeypatch):
    """The first load times every option and keeps torch fp32's check vectors with its choice; the next
    builds only the option chosen and checks it against those, with no fp32 forward pass."""
    settings = {**EFFICIENTNET_FP32, "precision": "auto", "engine": "auto"}
    first = create("efficientnet", settings, tmp_path)
    assert len([t for t in first.precision.tried if t.outcome in ("kept", "slower")]) >= 2, first.precision
    fp32_passes: list[int] = []
    real_image = engines.TorchRunner.image

    def counted(runner: Any, batch: torch.Tensor) -> torch.Tensor:
        if runner.precision == "fp32":
            fp32_passes.append(int(batch.shape[0]))
        return real_image(runner, batch)

    monkeypatch.setattr(engines.TorchRunner, "image", counted)
    again = create("efficientnet", settings, tmp_path)
    assert (again.precision.engine, again.precision.used) == (first.precision.engine, first.precision.used)
    assert "timed at the first load" in again.precision.reason and again.precision.tried == first.precision.tried
    assert fp32_passes == [], "torch fp32 ran although its check vectors were kept"


def test_a_cached_model_that_fails_the_check_it_passed_is_made_again(tmp_path, caplog):
    """A cache that reads but is not whole (its weights spoilt): the remembered option fails the check it
    passed when chosen, so its cached model is made again from the torch model and runs, not torch instead."""
    settings = {**EFFICIENTNET_FP32, "engine": "openvino"}  # fp32: one option, kept with its check vectors
    first = create("efficientnet", settings, tmp_path)
    assert (first.precision.engine, first.precision.used) == ("openvino", "fp32")
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir() and p.name.startswith("efficientnet-image-")]
    weights = folder / "model.bin"
    spoilt = bytearray(weights.read_bytes())
    middle = len(spoilt) // 2
    spoilt[middle : middle + (1 << 20)] = np.random.default_rng(0).standard_normal(1 << 18, dtype=np.float32).tobytes()
    weights.write_bytes(bytes(spoilt))
    again = create("efficientnet", settings, tmp_path)
    assert (again.precision.engine, again.precision.used) == ("openvino", "fp32"), again.precision
    assert any("made again" in r.getMessage() for r in caplog.records)
    assert weights.read_bytes() != bytes(spoilt)


@pytest.mark.parametrize("shape", ["rows", "width"])
def test_reference_vectors_of_another_shape_in_a_choice_file_cost_a_new_check(tmp_path, caplog, shape):
    """A choice file that parses but whose kept vectors have another shape (edited, or damaged) stopped
    every start in the check's cosines: the option is checked against a new fp32 pass instead, and its
    cached model is kept (the file was wrong, not the model)."""
    import json

    settings = {**EFFICIENTNET_FP32, "engine": "openvino"}
    first = create("efficientnet", settings, tmp_path)
    (choice,) = tmp_path.glob("efficientnet-choice-*.json")
    body = json.loads(choice.read_text())
    probes = body["reference"]["probes"]
    rows, width = probes["shape"]
    # the same bytes read as other rows (the check set's count is wrong), or every kind at another width
    if shape == "rows":
        probes["shape"] = [rows * 2, width // 2]
    else:  # rows as the check set's, every kind as wide as another model's vectors
        import base64

        for kind in ("probes", "photos"):
            count = body["reference"][kind]["shape"][0]
            data = np.ones((count, width // 2), dtype=np.float32)
            body["reference"][kind] = {"shape": list(data.shape), "float32": base64.b64encode(data.tobytes()).decode()}
    choice.write_text(json.dumps(body))
    models = {p.name for p in tmp_path.iterdir() if p.is_dir()}
    with caplog.at_level(logging.WARNING, logger="imgsearchd.extractors"):
        again = create("efficientnet", settings, tmp_path)
    assert (again.precision.engine, again.precision.used) == (first.precision.engine, first.precision.used)
    assert str(choice) in caplog.text and "made again" not in caplog.text
    assert {p.name for p in tmp_path.iterdir() if p.is_dir()} == models
