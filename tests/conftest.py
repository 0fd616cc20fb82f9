"""Shared fixtures: real photos, real extractors (offline), config files and the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent


def skimage_photos() -> dict[str, Image.Image]:
    """Real colour photos shipped with scikit-image."""
    from skimage import data

    left, right, _ = data.stereo_motorcycle()
    return {
        "chelsea": Image.fromarray(data.chelsea()),
        "coffee": Image.fromarray(data.coffee()),
        "astronaut": Image.fromarray(data.astronaut()),
        "rocket": Image.fromarray(data.rocket()),
        "motorcycle_left": Image.fromarray(left),
        "motorcycle_right": Image.fromarray(right),
        "immunohistochemistry": Image.fromarray(data.immunohistochemistry()),
        "hubble": Image.fromarray(data.hubble_deep_field()),
        "retina": Image.fromarray(data.retina()).resize((512, 512)),
    }


@pytest.fixture(scope="session")
def photos() -> dict[str, Image.Image]:
    return skimage_photos()


@pytest.fixture(scope="session")
def efficientnet():
    from imgsearchd.extractors import create

    return create("efficientnet", {"device": "cpu", "batch_size": 8})


@pytest.fixture(scope="session")
def clip_random():
    from imgsearchd.extractors import create

    return create("clip", {"model": "ViT-B-32", "pretrained": "none", "device": "cpu", "batch_size": 4})


@pytest.fixture(scope="session")
def resnet_random():
    from imgsearchd.extractors import create

    return create("resnet", {"weights": "none", "device": "cpu", "batch_size": 4})


def toml_value(value: Any) -> str:
    return json.dumps(value)  # JSON strings, numbers, booleans and lists are valid TOML


def write_config(path: Path, sections: dict[str, dict[str, Any]]) -> Path:
    """Write a TOML settings file from {"section": {"key": value}}."""
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {toml_value(value)}" for key, value in values.items())
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@pytest.fixture
def offline_config(tmp_path: Path) -> Path:
    """Settings for CLI runs: efficientnet only (offline), state under tmp_path."""
    return write_config(tmp_path / "imgsearchd.toml", {
        "index": {"data_dir": str(tmp_path / "data"), "extractors": ["efficientnet"],
                  "fallback_extractor": "", "loader_threads": 2},
        "extractors.efficientnet": {"device": "cpu", "batch_size": 8},
    })


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "imgsearchd.cli", *args]


def run_cli(*args: str, timeout: float = 180, prefix: Sequence[str] = (), env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``imgsearchd`` as a real subprocess."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("IMGSEARCHD_CONFIG", None)
    return subprocess.run(
        [*prefix, *cli_command(*args)], capture_output=True, text=True, timeout=timeout, env=full_env
    )


def without_file_permissions_bypass() -> list[str]:
    """A command prefix that makes root obey file permissions (drops CAP_DAC_*), else nothing."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot make a file unreadable")
    return [setpriv, "--bounding-set", "-dac_override,-dac_read_search"]


def save_jpeg(image: Image.Image, path: Path, quality: int = 90, **kwargs: Any) -> Path:
    image.convert("RGB").save(path, "JPEG", quality=quality, **kwargs)
    return path


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)
