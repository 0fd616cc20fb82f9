"""remembered: the engine choice of a first load, kept beside the converted models and read back at the next.

No model: a fake extractor (a name and a model id) and ``models_dir = tmp_path``. What decides the
choice's file (the CPU's flags and model, the versions) is pinned by a fixture, so each test changes
one input at a time.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from imgsearchd.extractors import openvino_ir, remembered
from imgsearchd.extractors.base import Extractor
from imgsearchd.extractors.precision import Option, Tried
from imgsearchd.extractors.remembered import Remembered

MODEL_ID = "clip:ViT-B-32:openai:squash"
OPTIONS = [Option("torch", "bf16", "auto: the CPU has avx512_bf16"), Option("openvino", "bf16", "auto")]
TRIED = (
    Tried("torch", "bf16", "slower", 0.996, 0.999, 0.41),
    Tried("openvino", "bf16", "kept", 0.997, 0.9995, 0.19),
    Tried("openvino", "int8", "failed the check", 0.93, 0.97),
)
FLAGS = frozenset({"avx2", "avx512f", "avx512_bf16"})


@pytest.fixture(autouse=True)
def same_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """The key's machine and versions fixed, whatever runs the tests."""
    monkeypatch.setattr(remembered, "cpu_flags", lambda: FLAGS)
    monkeypatch.setattr(remembered, "cpu_model", lambda: "Test CPU 9000")
    monkeypatch.setattr(openvino_ir, "openvino", lambda: SimpleNamespace(__version__="2026.0.0-test"))


def memory(models_dir: Path | None, model_id: str = MODEL_ID, name: str = "clip", options: Any = None) -> Remembered:
    extractor = cast(Extractor, SimpleNamespace(name=name, model_id=model_id))
    return Remembered(models_dir, extractor, OPTIONS if options is None else options)


def choices(models_dir: Path) -> list[str]:
    return sorted(p.name for p in models_dir.glob("*-choice-*.json"))


def test_a_choice_written_is_read_back(tmp_path: Path) -> None:
    memory(tmp_path).write(OPTIONS[1], TRIED, 2.16)
    got = memory(tmp_path).read()  # a later load: another Remembered, the same inputs
    assert got is not None
    assert got.option == OPTIONS[1]  # the option as offered now, with its reason
    assert got.tried == TRIED
    assert got.speedup == 2.16
    assert "timed at the first load" in got.note and "checked again now" in got.note
    assert [p.name for p in tmp_path.iterdir()] == choices(tmp_path)  # no scratch file left behind


def test_a_choice_without_a_speedup_reads_back(tmp_path: Path) -> None:
    memory(tmp_path).write(OPTIONS[0], TRIED[:1], None)
    got = memory(tmp_path).read()
    assert got is not None and got.option == OPTIONS[0] and got.speedup is None


def test_nothing_is_read_before_a_choice_is_written(tmp_path: Path) -> None:
    assert memory(tmp_path).read() is None


def test_without_a_models_folder_nothing_is_kept(tmp_path: Path) -> None:
    nowhere = memory(None)
    nowhere.write(OPTIONS[1], TRIED, 2.0)
    nowhere.forget()
    assert nowhere.path is None and nowhere.read() is None


@pytest.mark.parametrize(
    "change",
    [
        "options",
        "reason",
        "model",
        "flags",
        "cpu model",
        "cores",
        "torch",
        "openvino",
    ],
)
def test_what_decides_the_choice_gives_another_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    first = memory(tmp_path)
    first.write(OPTIONS[1], TRIED, 2.16)
    options = OPTIONS
    model_id = MODEL_ID
    if change == "options":
        options = OPTIONS[1:]
    elif change == "reason":
        options = [OPTIONS[0], Option("openvino", "bf16", "set in the config")]
    elif change == "model":
        model_id = "clip:ViT-B-32:laion2b:squash"
    elif change == "flags":
        monkeypatch.setattr(remembered, "cpu_flags", lambda: FLAGS - {"avx512_bf16"})
    elif change == "cpu model":
        monkeypatch.setattr(remembered, "cpu_model", lambda: "Test CPU 9001")
    elif change == "cores":
        monkeypatch.setattr(remembered.os, "cpu_count", lambda: 1234)
    elif change == "torch":
        monkeypatch.setattr(remembered.torch, "__version__", "0.0.0-test")
    else:
        monkeypatch.setattr(openvino_ir, "openvino", lambda: SimpleNamespace(__version__="2099.0.0-test"))
    other = memory(tmp_path, model_id, options=options)
    assert other.path != first.path
    assert other.read() is None  # timed again


def _drop_tried(body: dict[str, Any]) -> None:
    del body["tried"]


def _unknown_option(body: dict[str, Any]) -> None:
    body["option"] = ["openvino", "int8"]  # no longer offered (another setting, or the CPU lost bf16)


def _unknown_field(body: dict[str, Any]) -> None:
    body["tried"][0]["colour"] = "blue"


def _speedup_in_words(body: dict[str, Any]) -> None:
    body["speedup"] = "1.5"  # valid JSON: describe()'s "{:.2f}" stopped every start (a hostile test)


def _cosine_in_words(body: dict[str, Any]) -> None:
    body["tried"][0]["min_cosine"] = "high"


def _outcome_a_number(body: dict[str, Any]) -> None:
    body["tried"][1]["outcome"] = 7


@pytest.mark.parametrize(
    "damage", [_drop_tried, _unknown_option, _unknown_field, _speedup_in_words, _cosine_in_words, _outcome_a_number]
)
def test_a_damaged_choice_is_timed_again(tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: Any) -> None:
    kept = memory(tmp_path)
    kept.write(OPTIONS[1], TRIED, 2.16)
    assert kept.path is not None
    body = json.loads(kept.path.read_text(encoding="utf-8"))
    damage(body)
    kept.path.write_text(json.dumps(body), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="imgsearchd.extractors"):
        assert memory(tmp_path).read() is None
    assert "cannot use the engine choice" in caplog.text and "timing the options again" in caplog.text


@pytest.mark.parametrize("text", ['{"option": ["openvino", "bf1', "[1, 2, 3]", ""])
def test_a_choice_that_does_not_parse_is_timed_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str
) -> None:
    kept = memory(tmp_path)
    assert kept.path is not None
    kept.path.write_text(text, encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="imgsearchd.extractors"):
        assert kept.read() is None
    assert "cannot use the engine choice" in caplog.text


def test_forget_removes_the_choice(tmp_path: Path) -> None:
    kept = memory(tmp_path)
    kept.write(OPTIONS[1], TRIED, 2.16)
    kept.forget()
    assert choices(tmp_path) == []
    assert memory(tmp_path).read() is None
    kept.forget()  # already gone: nothing to do


def test_a_folder_that_cannot_be_written_costs_only_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocked = tmp_path / "models"
    blocked.write_text("a file where the models folder should be", encoding="utf-8")
    kept = memory(blocked)
    with caplog.at_level(logging.WARNING, logger="imgsearchd.extractors"):
        kept.write(OPTIONS[1], TRIED, 2.16)  # raises nothing
    assert "cannot keep the engine choice" in caplog.text
    assert kept.read() is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]  # no scratch file either


def test_a_new_choice_replaces_only_the_same_models_older_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a new timing the model's older choice goes; other models' and extractors' choices stay."""
    memory(tmp_path).write(OPTIONS[1], TRIED, 2.16)
    other_model = "clip:ViT-B-32:laion2b:squash"
    memory(tmp_path, other_model).write(OPTIONS[0], TRIED, 1.0)
    memory(tmp_path, "efficientnet:lite0:shipped", name="efficientnet").write(OPTIONS[0], TRIED, 1.0)
    assert len(choices(tmp_path)) == 3  # two models of one extractor, and another extractor

    monkeypatch.setattr(remembered, "cpu_flags", lambda: FLAGS | {"amx_bf16"})  # another key for the first model
    newest = memory(tmp_path)
    newest.write(OPTIONS[0], TRIED, 1.5)

    assert newest.path is not None and newest.path.is_file()
    kept = memory(tmp_path)
    got = kept.read()
    assert got is not None and got.option == OPTIONS[0] and got.speedup == 1.5
    monkeypatch.setattr(remembered, "cpu_flags", lambda: FLAGS)
    assert memory(tmp_path).read() is None  # the first model's older choice is gone
    assert memory(tmp_path, other_model).read() is not None  # the other model's stays
    assert memory(tmp_path, "efficientnet:lite0:shipped", name="efficientnet").read() is not None
    assert len(choices(tmp_path)) == 3


def test_other_settings_keep_their_own_choice(tmp_path: Path) -> None:
    """A model change builds the old model (its stored settings) and the new (the configured ones) at each
    start: two sets of options for one model, whose choices must not erase each other."""
    memory(tmp_path).write(OPTIONS[1], TRIED, 2.16)
    named = [OPTIONS[0]]
    memory(tmp_path, options=named).write(OPTIONS[0], TRIED[:1], None)
    first, second = memory(tmp_path).read(), memory(tmp_path, options=named).read()
    assert first is not None and first.option == OPTIONS[1]
    assert second is not None and second.option == OPTIONS[0]
    assert len(choices(tmp_path)) == 2


def test_torch_fp32s_check_vectors_are_kept_exactly_with_the_choice(tmp_path: Path) -> None:
    """A later load checks against these instead of running torch fp32 again: they come back bit for bit."""
    import torch

    generator = torch.Generator().manual_seed(5)
    wanted = (torch.randn(8, 16, generator=generator), torch.randn(24, 16, generator=generator), None)
    memory(tmp_path).write(OPTIONS[1], TRIED, 2.16, wanted)
    got = memory(tmp_path).read()
    assert got is not None and got.wanted is not None
    assert torch.equal(got.wanted[0], wanted[0]) and torch.equal(got.wanted[1], wanted[1]) and got.wanted[2] is None
    path = memory(tmp_path).path
    assert path is not None
    saved = json.loads(path.read_text())
    saved["reference"]["photos"]["float32"] = "not base64!"
    path.write_text(json.dumps(saved))
    assert memory(tmp_path).read() is None  # damaged: timed again


def test_another_check_set_is_another_choice(tmp_path: Path) -> None:
    extractor = cast(Extractor, SimpleNamespace(name="clip", model_id=MODEL_ID))
    first = Remembered(tmp_path, extractor, OPTIONS, "photos a")
    first.write(OPTIONS[1], TRIED, 2.0)
    assert Remembered(tmp_path, extractor, OPTIONS, "photos b").read() is None
    assert Remembered(tmp_path, extractor, OPTIONS, "photos a").read() is not None


def _age(path: Path | None, days: float) -> None:
    assert path is not None
    when = time.time() - days * 86400
    os.utime(path, (when, when))


def test_choices_no_load_read_for_long_go_at_the_next_write(tmp_path: Path) -> None:
    """Settings put aside leave their choice behind (~100 KB each): the next timing anywhere removes those
    unread for ``UNUSED_DAYS``, whatever extractor or settings they were of, and keeps the others."""
    put_aside = memory(tmp_path, options=[OPTIONS[0]])
    put_aside.write(OPTIONS[0], TRIED[:1], None)
    recent = memory(tmp_path)
    recent.write(OPTIONS[1], TRIED, 2.16)
    other = memory(tmp_path, "efficientnet:lite0:shipped", name="efficientnet")
    other.write(OPTIONS[0], TRIED, 1.0)
    _age(put_aside.path, remembered.UNUSED_DAYS + 1)
    _age(other.path, remembered.UNUSED_DAYS + 1)
    _age(recent.path, remembered.UNUSED_DAYS - 1)

    memory(tmp_path, "clip:ViT-L-14:openai:squash").write(OPTIONS[1], TRIED, 3.0)

    assert put_aside.read() is None and other.read() is None
    assert recent.read() is not None
    assert len(choices(tmp_path)) == 2  # the recent one and the one just written


def test_a_choice_read_at_a_load_is_kept(tmp_path: Path) -> None:
    """A model started every day for a year is not timed again: each read makes its choice recent."""
    daily = memory(tmp_path)
    daily.write(OPTIONS[1], TRIED, 2.16)
    _age(daily.path, remembered.UNUSED_DAYS + 30)
    assert memory(tmp_path).read() is not None  # today's load

    memory(tmp_path, "clip:ViT-L-14:openai:squash").write(OPTIONS[1], TRIED, 3.0)

    assert memory(tmp_path).read() is not None


def test_kept_vectors_of_another_shape_are_dropped_not_the_choice(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Vectors that do not fit the check set (a row count, a width, or no dimensions at all, which raised
    IndexError out of the read): the choice stands, torch fp32 runs the check set again."""
    import torch

    for wanted in (
        (torch.ones(8, 16), torch.ones(24, 16), None),  # fits
        (torch.ones(7, 16), torch.ones(24, 16), None),
        (torch.ones(8, 16), torch.ones(24, 15), None),
        (torch.tensor(1.0), torch.tensor(2.0), None),
        (torch.ones(8, 16), torch.ones(24, 16), torch.ones(6, 16)),  # texts where the check has none
    ):
        memory(tmp_path).write(OPTIONS[1], TRIED, 2.16, wanted)
        with caplog.at_level(logging.WARNING, logger="imgsearchd.extractors"):
            got = memory(tmp_path).read((8, 24, 0))
        assert got is not None and got.option == OPTIONS[1]
        assert (got.wanted is not None) == (
            wanted[0].shape == (8, 16) and wanted[1].shape == (24, 16) and wanted[2] is None
        )
