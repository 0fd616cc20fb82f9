"""precision: chosen for the hardware, checked against fp32 at load, falling back cleanly.

This CPU (or CI's) may or may not compute bf16 natively. The tests of the bf16 path take
``bf16_cpu``: on a CPU with avx512_bf16 or amx_bf16 they run its native kernels as they are;
on one without, ``auto`` is told the CPU has avx512_bf16 (simulated) and oneDNN emulates the
arithmetic, so the same conversion and check at load still run for real, only slower. Every
comparison is against an extractor that says ``precision = "fp32"``. ``make test`` prints
which path this machine took (conftest's report header).
"""

from __future__ import annotations

import copy
import logging

import numpy as np
import pytest
import timm
import torch

from imgsearchd.config import ConfigError, load_config
from imgsearchd.extractors import create, precision
from imgsearchd.extractors.efficientnet import load_lite0_state_dict, packaged_weights_path
from imgsearchd.extractors.layout import fold_batch_norms

from helpers import bf16_flags, write_config

CPU = torch.device("cpu")
NO_BF16 = frozenset({"avx2", "fma", "avx512f", "avx512_vnni"})
WITH_BF16 = NO_BF16 | {"avx512_bf16"}


@pytest.mark.parametrize(
    ("asked", "device", "quantisable", "flags", "candidate", "timed", "says"),
    [
        ("auto", "cpu", False, WITH_BF16, "bf16", False, "avx512_bf16"),
        ("auto", "cpu", True, frozenset({"amx_bf16"}), "bf16", False, "amx_bf16"),
        ("auto", "cpu", True, NO_BF16, "int8", True, "no native bf16"),
        ("auto", "cpu", False, NO_BF16, "fp32", False, "no Linear layers"),
        ("auto", "cuda", True, NO_BF16, "fp16", False, "CUDA"),
        ("fp32", "cpu", True, WITH_BF16, "fp32", False, "set in the config"),
        ("bf16", "cpu", False, NO_BF16, "bf16", False, "emulated"),
        ("fp16", "cpu", False, WITH_BF16, "fp32", False, "only on CUDA"),
        ("fp16", "cuda", False, NO_BF16, "fp16", False, "set in the config"),
        ("int8", "cpu", False, NO_BF16, "fp32", False, "convolutions"),
        ("int8", "cuda", True, NO_BF16, "fp32", False, "only on the CPU"),
        ("int8", "cpu", True, WITH_BF16, "int8", False, "set in the config"),
    ],
)
def test_plan_follows_the_hardware(asked, device, quantisable, flags, candidate, timed, says):
    chosen = precision.plan(asked, torch.device(device), quantisable, flags)
    assert (chosen.candidate, chosen.timed) == (candidate, timed)
    assert says in chosen.reason


def test_plan_refuses_an_unknown_precision():
    with pytest.raises(ValueError, match="precision must be one of"):
        precision.plan("fp8", CPU, True, NO_BF16)


def test_cpu_flags_and_model_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu sse2 avx2 avx512_bf16\n\n"
        "processor\t: 1\nmodel name\t: other\nflags\t\t: fpu\n"
    )
    flags = precision.cpu_flags(str(cpuinfo))
    assert flags == {"fpu", "sse2", "avx2", "avx512_bf16"}
    assert precision.native_bf16(flags) == "avx512_bf16"
    assert precision.cpu_model(str(cpuinfo)) == "AMD EPYC 9R14"
    assert precision.cpu_flags(str(tmp_path / "missing")) == frozenset()
    assert precision.cpu_model(str(tmp_path / "missing")) == ""


def test_config_names_the_key_of_a_bad_precision(tmp_path):
    path = write_config(tmp_path / "c.toml", {"extractors.clip": {"precision": "fp8"}})
    with pytest.raises(ConfigError, match=r"extractors\.clip\.precision must be one of auto, fp32, bf16"):
        load_config(path)


def plain_lite0() -> torch.nn.Module:
    """EfficientNet-Lite0 as round 1 ran it: NCHW, batch norms separate, fp32."""
    model = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=0)
    model.load_state_dict(load_lite0_state_dict(packaged_weights_path(), model.state_dict()))
    return model.eval()


def test_fp32_gives_the_vectors_of_the_plain_model(photos):
    """Folding and channels-last only reorder sums: the same vectors to float rounding, same model id."""
    extractor = create("efficientnet", {"device": "cpu", "precision": "fp32", "engine": "torch"})
    assert extractor.precision.used == "fp32" and extractor.model_id == "efficientnet_lite0:lite0-57934424:squash"
    batch = torch.stack([extractor.preprocess(p.convert("RGB")) for p in photos.values()])
    with torch.inference_mode():
        plain = torch.nn.functional.normalize(plain_lite0()(batch), dim=-1).numpy()
    ours = extractor.embed(batch)
    assert np.min(np.sum(plain * ours, axis=1)) > 0.99999
    assert np.max(np.abs(plain - ours)) < 1e-4


def test_folding_removes_every_batch_norm_and_keeps_the_output():
    model = plain_lite0()
    folded = copy.deepcopy(model)
    count = fold_batch_norms(folded)
    assert count == sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) > 30
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        assert torch.allclose(model(x), folded(x), atol=1e-4)


@pytest.fixture
def bf16_cpu(monkeypatch: pytest.MonkeyPatch) -> str:
    """The flag ``auto`` sees bf16 through: this CPU's own (native), or a simulated avx512_bf16."""
    flags, path = bf16_flags()
    if path == "simulated":
        monkeypatch.setattr(precision, "cpu_flags", lambda path="/proc/cpuinfo": flags)
    flag = precision.native_bf16(flags)
    assert flag is not None
    return flag


@pytest.mark.parametrize(
    ("cpu", "path", "seen"),
    [
        (WITH_BF16, "native", WITH_BF16),
        (frozenset({"amx_bf16", "avx2"}), "native", frozenset({"amx_bf16", "avx2"})),
        (NO_BF16, "simulated", WITH_BF16),
    ],
)
def test_bf16_flags_are_a_cpus_own_where_it_has_them(monkeypatch, cpu, path, seen):
    monkeypatch.setattr(precision, "cpu_flags", lambda path="/proc/cpuinfo": cpu)
    assert bf16_flags() == (seen, path)
    assert precision.plan("auto", CPU, False, seen).candidate == "bf16"  # what the bf16 tests rely on


def test_auto_takes_native_bf16_and_search_still_finds_the_same(bf16_cpu, photos, efficientnet):
    assert efficientnet.precision.used == "fp32"  # the reference side, on every CPU
    fast = create("efficientnet", {"device": "cpu", "batch_size": 8, "engine": "torch"})
    assert fast.precision.used == "bf16" and fast.precision.asked == "auto" and bf16_cpu in fast.precision.reason
    assert fast.precision.min_cosine is not None and fast.precision.min_cosine >= precision.MIN_COSINE
    assert fast.model.conv_head.weight.dtype == torch.bfloat16
    # the stem and the first block compute in fp32, from the fp32 weights (not bf16 ones cast back)
    assert isinstance(fast.model.blocks[0], precision.Fp32Stage)
    assert fast.model.conv_stem.stage.weight.dtype == torch.float32
    assert torch.equal(fast.model.conv_stem.stage.weight, efficientnet.model.conv_stem.weight)
    pictures = [p.convert("RGB") for p in photos.values()]
    ours, reference = fast.embed_images(pictures), efficientnet.embed_images(pictures)
    assert ours.dtype == np.float32 and np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert np.min(np.sum(ours * reference, axis=1)) > 0.99
    names = list(photos)
    left = names.index("motorcycle_left")
    nearest = np.argsort(-(ours @ ours[left]))[1]
    assert names[nearest] == "motorcycle_right"
    assert fast.model_id == efficientnet.model_id  # one index for both: see precision.py


def test_fp32_stages_compute_in_fp32_and_hand_bf16_on():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 1)).eval()
    converted = precision.convert(model, "bf16", ("0", "1"))
    first, second = converted.get_submodule("0"), converted.get_submodule("1")
    assert isinstance(first, precision.Fp32Stage) and first.out == torch.float32
    assert isinstance(second, precision.Fp32Stage) and second.out == torch.bfloat16
    assert first.stage.weight.dtype == torch.float32 and converted.get_submodule("2").weight.dtype == torch.bfloat16
    assert model[0].weight.dtype == torch.float32  # the original is left as it was
    x = torch.randn(2, 3, 16, 16)
    with torch.inference_mode():
        out = converted(x)
        # the fp32 stages' own output matches fp32 exactly before the hand-over
        assert torch.equal(first(x), model[0](x))
    assert out.dtype == torch.bfloat16
    assert torch.nn.functional.cosine_similarity(out.float().flatten(1), model(x).flatten(1)).min() > 0.99


def test_a_cpu_without_bf16_falls_back_to_fp32_for_convolutions(monkeypatch, caplog):
    monkeypatch.setattr(precision, "cpu_flags", lambda path="/proc/cpuinfo": NO_BF16)
    with caplog.at_level(logging.INFO, logger="imgsearchd.extractors"):
        slow = create("efficientnet", {"device": "cpu", "engine": "torch"})
    assert slow.precision.used == "fp32" and "no native bf16" in slow.precision.reason
    assert "torch fp32 (auto: no native bf16" in caplog.text


def test_a_conversion_that_breaks_the_model_is_caught_at_load(monkeypatch, caplog, photos, efficientnet):
    """A wrong kernel, simulated by scrambling the converted copy's weights: fp32 runs instead."""
    real_convert = precision.convert

    def broken(model, name, fp32_stages=()):
        converted = real_convert(model, name, fp32_stages)
        with torch.no_grad():
            for param in converted.parameters():
                param.copy_(param.flatten()[torch.randperm(param.numel())].view_as(param))
        return converted

    monkeypatch.setattr(precision, "convert", broken)
    with caplog.at_level(logging.WARNING, logger="imgsearchd.extractors"):
        checked = create("efficientnet", {"device": "cpu", "precision": "bf16", "engine": "torch"})
    assert checked.precision.used == "fp32" and checked.precision.asked == "bf16"
    assert efficientnet.precision.used == "fp32"  # the reference the fallback must equal
    assert "failed the check at load" in checked.precision.reason
    assert (checked.precision.min_cosine or 1.0) < precision.MIN_COSINE
    assert "FAILED the check" in caplog.text
    picture = [photos["chelsea"].convert("RGB")]
    assert np.allclose(checked.embed_images(picture), efficientnet.embed_images(picture), atol=1e-5)


# CLIP's int8 mechanics on ViT-S-32 (random weights): the same towers of Linear layers as the default
# ViT-B-32, a quarter of the arithmetic. The timed check of auto took 5.9 s per load on B-32, 1.5 s here.
SMALL_CLIP = {"model": "ViT-S-32", "pretrained": "none", "device": "cpu", "batch_size": 4, "engine": "torch"}


@pytest.fixture(scope="module")
def clip_int8():
    return create("clip", {**SMALL_CLIP, "precision": "int8", "engine": "torch"})


def test_clip_int8_covers_both_towers(clip_int8, photos):
    assert clip_int8.precision.used == "int8" and clip_int8.precision.min_cosine >= precision.MIN_COSINE
    quantised = [m for m in clip_int8.model.modules() if type(m).__module__.startswith("torch.ao.nn.quantized")]
    assert any(name.startswith("visual.") for name, m in clip_int8.model.named_modules() if m in quantised)
    assert any(name.startswith("transformer.") for name, m in clip_int8.model.named_modules() if m in quantised)
    texts = ["a photo of a cat", "a cup of coffee"]
    reference = create("clip", {**SMALL_CLIP, "precision": "fp32", "engine": "torch"})
    assert np.min(np.sum(clip_int8.encode_text(texts) * reference.encode_text(texts), axis=1)) > 0.99
    pictures = [photos[n].convert("RGB") for n in ("chelsea", "coffee", "rocket")]
    assert np.min(np.sum(clip_int8.embed_images(pictures) * reference.embed_images(pictures), axis=1)) > 0.99
    assert clip_int8.model_id == reference.model_id


def test_a_batch_of_one_gets_the_vector_it_gets_in_a_batch(clip_int8, photos):
    """int8 scales activations per batch: a lone query still lands where its indexed copy is."""
    pictures = [photos[n].convert("RGB") for n in ("chelsea", "coffee", "rocket", "astronaut")]
    together = clip_int8.embed_images(pictures)
    alone = np.concatenate([clip_int8.embed_images([p]) for p in pictures])
    assert np.min(np.sum(together * alone, axis=1)) > 0.995


def test_auto_int8_is_kept_only_when_it_measures_faster(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda path="/proc/cpuinfo": NO_BF16)
    monkeypatch.setattr(precision, "INT8_MIN_SPEEDUP", 1000.0)
    slow = create("clip", SMALL_CLIP)
    assert slow.precision.used == "fp32" and "measured" in slow.precision.reason
    monkeypatch.setattr(precision, "INT8_MIN_SPEEDUP", 0.0)
    fast = create("clip", SMALL_CLIP)
    assert fast.precision.used == "int8" and (fast.precision.speedup or 0) > 0
