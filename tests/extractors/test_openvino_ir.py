"""openvino_ir: OpenVINO models converted once and cached whole, and no telemetry leaving the machine.

The cache tests run a tiny real convolution through real OpenVINO (conversion, save, read,
compile) into real folders: they prove what the cache does with a file system, not what a
big model gives. One test reads EfficientNet's real conversion back from the models folder the
engine tests share (``shared_models``), with conversion made impossible.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from imgsearchd.extractors import openvino_build, openvino_ir
from imgsearchd.extractors.openvino_ir import Part
from imgsearchd.extractors.openvino_run import Compiled, compiled

TINY = Part("tiny", "tiny:1", "image")
EXAMPLE = torch.linspace(-1, 1, 2 * 3 * 8 * 8).reshape(2, 3, 8, 8)


@pytest.fixture(scope="module")
def shared_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The models folder the engine tests share (one per session and xdist worker): each model converts once."""
    return tmp_path_factory.getbasetemp() / "openvino-models"


def tiny_module() -> torch.nn.Module:
    torch.manual_seed(3)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()


def counting_build(module: torch.nn.Module) -> tuple[Callable[[], Any], list[int]]:
    """A build function for ``cached`` that converts ``module`` and counts its calls."""
    calls: list[int] = []

    def build() -> Any:
        calls.append(1)
        return openvino_ir.convert(module, EXAMPLE)

    return build, calls


def runs_like(model: Any, module: torch.nn.Module) -> bool:
    """Whether an OpenVINO model compiled at fp32 gives the torch module's output."""
    with torch.no_grad():
        wanted = module(EXAMPLE).numpy()
    return bool(np.allclose(Compiled(compiled(model, "fp32"))(EXAMPLE.numpy()), wanted, atol=1e-5))


def entries(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def test_a_conversion_is_cached_whole_and_read_back(tmp_path):
    """The first call converts and leaves one folder (model.xml and .bin, no scratch); the second reads it."""
    module = tiny_module()
    build, calls = counting_build(module)
    first = openvino_ir.cached(TINY, tmp_path, build)
    folder = TINY.folder(tmp_path)
    assert entries(tmp_path) == [folder.name] and folder.name.startswith("tiny-image-fp32-")
    assert entries(folder) == ["model.bin", "model.xml"]
    second = openvino_ir.cached(TINY, tmp_path, build)
    assert calls == [1]
    assert runs_like(first, module) and runs_like(second, module)


def test_no_models_dir_builds_every_time(tmp_path):
    build, calls = counting_build(tiny_module())
    openvino_ir.cached(TINY, None, build)
    openvino_ir.cached(TINY, None, build)
    assert calls == [1, 1]


@pytest.mark.parametrize(
    ("damaged", "how"),
    [
        ("model.xml", lambda path: path.write_text("<net name='broken'")),
        ("model.bin", lambda path: path.write_bytes(path.read_bytes()[:10])),
    ],
)
def test_a_damaged_cache_is_made_again_with_a_warning(tmp_path, caplog, damaged, how):
    module = tiny_module()
    build, calls = counting_build(module)
    openvino_ir.cached(TINY, tmp_path, build)
    folder = TINY.folder(tmp_path)
    how(folder / damaged)
    with caplog.at_level(logging.WARNING, logger="imgsearchd.extractors"):
        model = openvino_ir.cached(TINY, tmp_path, build)
    assert calls == [1, 1], "the damaged copy was read instead of converting again"
    assert any("cannot be read" in r.getMessage() and "converting again" in r.getMessage() for r in caplog.records)
    assert runs_like(model, module)
    assert entries(folder) == ["model.bin", "model.xml"]
    assert runs_like(openvino_ir.cached(TINY, tmp_path, build), module) and calls == [1, 1]  # the new copy is good


def test_a_new_format_converts_again_and_prunes_only_its_own_kind(tmp_path, monkeypatch):
    """The older copy of the same name, part, form and model goes; other parts, forms, names and model
    ids stay (a model change runs the old and the new model side by side)."""
    build, calls = counting_build(tiny_module())
    neighbours = [Part("tiny", "tiny:1", "text"), Part("tiny", "tiny:1", "image-head"), Part("other", "o:1", "image")]
    for part in [TINY, *neighbours]:
        openvino_ir.cached(part, tmp_path, build)
    old = TINY.folder(tmp_path)
    kept = {part.folder(tmp_path).name for part in neighbours}
    monkeypatch.setattr(openvino_ir, "FORMAT", openvino_ir.FORMAT + 1)
    openvino_ir.cached(TINY, tmp_path, build)
    new = TINY.folder(tmp_path)
    assert new != old and len(calls) == 5
    assert set(entries(tmp_path)) == kept | {new.name}
    newer_id = Part("tiny", "tiny:2", "image")
    openvino_ir.cached(newer_id, tmp_path, build)
    assert newer_id.folder(tmp_path) != new and len(calls) == 6
    assert set(entries(tmp_path)) == kept | {new.name, newer_id.folder(tmp_path).name}
    openvino_ir.cached(TINY, tmp_path, build)  # the first model again: read, not converted
    assert len(calls) == 6


def test_int8_folders_depend_on_the_calibration(tmp_path):
    """A new set of calibration pictures gives another folder (the int8 weights depend on it)."""
    int8 = Part("tiny", "tiny:1", "image", "int8")
    assert int8.folder(tmp_path, "photos-a") != int8.folder(tmp_path, "photos-b")
    assert int8.folder(tmp_path, "photos-a") != Part("tiny", "tiny:1", "image").folder(tmp_path, "photos-a")


def test_an_unwritable_models_dir_warns_and_the_model_still_runs(tmp_path, caplog):
    """A file where the folder should be (chmod does not stop root): logged, the model built is used."""
    blocked = tmp_path / "models"
    blocked.write_text("not a folder")
    module = tiny_module()
    build, calls = counting_build(module)
    with caplog.at_level(logging.WARNING, logger="imgsearchd.extractors"):
        model = openvino_ir.cached(TINY, blocked, build)
    assert runs_like(model, module) and calls == [1]
    assert any("cannot cache" in r.getMessage() and str(blocked) in r.getMessage() for r in caplog.records)
    assert blocked.read_text() == "not a folder"


def test_a_failing_save_leaves_no_scratch_folder(tmp_path, monkeypatch, caplog):
    module = tiny_module()
    build, _ = counting_build(module)

    def full_disk(*args: Any, **kwargs: Any) -> None:  # what OpenVINO 2026.4 raises when it cannot write
        raise RuntimeError("Check 'bin_file' failed at src/core/src/pass/serialize.cpp:124: No space left")

    monkeypatch.setattr(openvino_ir.openvino(), "save_model", full_disk)
    with caplog.at_level(logging.WARNING, logger="imgsearchd.extractors"):
        model = openvino_ir.cached(TINY, tmp_path, build)
    assert runs_like(model, module)
    assert entries(tmp_path) == [], "a scratch or half folder was left behind"
    assert any("No space left" in r.getMessage() for r in caplog.records)


def test_a_full_disk_is_named_as_such(tmp_path, caplog):
    """On a real full file system OpenVINO 2026.4 says only "basic_ios::clear: iostream error": the
    warning adds that the disk is full, and the model built still runs."""
    from mounts import tmpfs

    torch.manual_seed(4)
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 512, 3), torch.nn.Conv2d(512, 512, 1)).eval()  # ~1 MB
    build, _ = counting_build(module)
    with tmpfs(tmp_path / "small", size="256k", why="a disk that fills up") as small:
        with caplog.at_level(logging.WARNING, logger="imgsearchd.extractors"):
            model = openvino_ir.cached(TINY, small, build)
        assert runs_like(model, module)
        assert entries(small) == [], "a scratch or half folder was left behind"
    assert any("cannot cache" in r.getMessage() and "the disk is full" in r.getMessage() for r in caplog.records)


def test_a_writer_killed_while_saving_leaves_a_scratch_the_next_writer_removes(tmp_path):
    """A scratch folder names its writer's pid: one whose process is gone goes (CLIP's image model left
    up to 350 MB for ever), one of a live process (a conversion now) stays."""
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    name = TINY.folder(tmp_path).name
    host = openvino_ir._host()
    dead = tmp_path / f".{name}.{host}-{int(gone.stdout)}.x1y2z3"
    live = tmp_path / f".{name}.{host}-{os.getppid()}.a1b2c3"
    elsewhere = tmp_path / f".{name}.another-machine-{int(gone.stdout)}.q9"  # a shared folder: not ours to judge
    for scratch in (dead, live, elsewhere):
        scratch.mkdir()
        (scratch / "model.bin").write_bytes(b"half a model")
    build, calls = counting_build(tiny_module())
    openvino_ir.cached(TINY, tmp_path, build)
    assert calls == [1] and not dead.exists() and live.is_dir() and elsewhere.is_dir()
    assert (TINY.folder(tmp_path) / "model.xml").is_file()


def test_efficientnet_is_read_from_the_cache_without_converting(efficientnet, shared_models, monkeypatch, photos):
    """A second build of the real model reads its cached folder: with conversion broken it still runs."""
    first = openvino_build.openvino_model(efficientnet, "fp32", shared_models)
    folders = entries(shared_models)

    def no_conversion(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("converted again although the model was cached")

    monkeypatch.setattr(openvino_build, "convert", no_conversion)
    monkeypatch.setattr(openvino_ir, "convert", no_conversion)
    second = openvino_build.openvino_model(efficientnet, "fp32", shared_models)
    batch = torch.stack([efficientnet.preprocess(p.convert("RGB")) for p in photos.values()])
    assert torch.allclose(first.image(batch), second.image(batch), atol=1e-5)
    assert entries(shared_models) == folders


# -- telemetry

TELEMETRY_CHECK = """
import json, os, sys
import numpy as np, torch
from imgsearchd.extractors import openvino_ir

openvino_ir.openvino()
openvino_ir.nncf()
model = openvino_ir.convert(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval(),
                            torch.zeros(1, 3, 8, 8))
samples = [np.random.default_rng(i).random((1, 3, 8, 8), dtype=np.float32) for i in range(4)]
openvino_ir.quantised(model, samples, transformer=False)
import nncf.telemetry.wrapper as wrapper
print(json.dumps({"blocked": sys.modules["openvino_telemetry"] is None,
                  "nncf": type(wrapper.telemetry).__name__, "home": sorted(os.listdir(os.environ["HOME"]))}))
"""
# Without the guard: importing the two libraries is enough to write a client id under $HOME/intel.
CONTROL = """
import json, os, openvino, nncf
import nncf.telemetry.wrapper as wrapper
print(json.dumps({"nncf": type(wrapper.telemetry).__name__, "home": sorted(os.listdir(os.environ["HOME"]))}))
"""


def fresh_python(code: str, home: Path) -> subprocess.Popen[str]:
    """``code`` in a new interpreter with an empty HOME and no pytest in sight (NNCF mutes itself under pytest)."""
    # OpenVINO's telemetry stays quiet where CI, TF_BUILD or JENKINS_URL is set (a CI job, where the
    # control run wrote nothing and failed): the runs see what a user's shell has.
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("PYTEST") and key not in ("CI", "TF_BUILD", "JENKINS_URL")}  # fmt: skip
    env["HOME"] = str(home)
    home.mkdir()
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip


def answer(proc: subprocess.Popen[str]) -> tuple[dict[str, Any], str]:
    """The JSON line the code printed last, and what it wrote on stderr."""
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-3000:]
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result, err


def test_no_telemetry_through_conversion_and_quantisation(tmp_path):
    """Through openvino()/nncf(): telemetry's module blocked, NNCF's stub in place, nothing written to HOME;
    and nothing in a log (stderr not a terminal, as under systemd): no progress bars, no torch warning
    about CUDA (a newcomer's first start showed both in the daemon's log).

    The control run (the libraries imported without the guard) writes $HOME/intel, which shows the
    check would see it happen."""
    guarded = fresh_python(TELEMETRY_CHECK, tmp_path / "guarded")
    control = fresh_python(CONTROL, tmp_path / "control")
    (result, log), (unguarded, _) = answer(guarded), answer(control)
    assert result == {"blocked": True, "nncf": "MagicMock", "home": []}  # nncf.telemetry: NNCFTelemetryStub = MagicMock
    assert unguarded["nncf"] == "NNCFTelemetry" and "intel" in unguarded["home"]
    assert "━" not in log and "Statistics collection" not in log, log[-2000:]
    assert "No CUDA runtime" not in log, log[-2000:]


def test_quantising_writes_nothing_on_stdout(capfd):
    """NNCF draws progress bars on stdout, where `imgsearchd index --json` writes its answer: never there."""
    model = openvino_ir.convert(tiny_module(), EXAMPLE)
    samples = [np.asarray(EXAMPLE[:1].numpy() * scale, dtype=np.float32) for scale in (0.5, 1.0, 1.5, 2.0)]
    capfd.readouterr()
    quantised = openvino_ir.quantised(model, samples, transformer=False)
    out = capfd.readouterr().out
    assert out == "", f"stdout: {out[:200]!r}"
    assert Compiled(compiled(quantised, "fp32"))(EXAMPLE.numpy()).shape == (2, 4, 6, 6)
