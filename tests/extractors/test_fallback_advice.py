"""The advice for a model that cannot load (advice.py) and open_clip's table read alone
(openclip_table.py): a CLIP that cannot load never imports open_clip, and the table read alone
is open_clip's own."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from imgsearchd.config import validate
from imgsearchd.extractors import TextNotSupportedError, openclip_table
from imgsearchd.extractors.advice import advise, human_bytes
from imgsearchd.extractors.resnet import WEIGHTS, cached_weights_path


def test_a_clip_that_cannot_load_never_imports_open_clip(tmp_path):
    """In a fresh process (open_clip is imported by other tests here): offline, the fallback runs
    and open_clip stays out of the process (31 MiB of resident memory measured on top of torch
    and timm)."""
    script = textwrap.dedent(
        """
        import sys
        import imgsearchd.extractors.clip as clip
        from imgsearchd.extractors import load
        clip.host_reachable = lambda host, port=443, timeout=3.0: False
        loaded = load(["clip"], "efficientnet", lambda name: {"device": "cpu", "precision": "fp32", "engine": "torch"})
        assert loaded.primary == "efficientnet", loaded.primary
        assert loaded.fallback.advice.fetch["file"] == "open_clip_model.safetensors"
        print("open_clip" in sys.modules, "open_clip.factory" in sys.modules)
        """
    )
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hf")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["False", "False"], done.stdout


def test_the_table_read_alone_is_open_clips_own():
    import open_clip

    checked = 0
    for model, tag in open_clip.list_pretrained():
        cfg = open_clip.get_pretrained_cfg(model, tag)
        found = openclip_table.weights_source(model, tag)
        assert found is not None, (model, tag)
        hub = cfg.get("hf_hub", "")
        if hub:  # "org/repo/" (the default file) or "org/repo/file"
            assert found.repo == (hub.rstrip("/") if hub.endswith("/") else hub.rsplit("/", 1)[0]), (model, tag)
            assert found.url == f"https://huggingface.co/{found.repo}/resolve/main/{found.files[0]}"
        else:
            assert found.url == cfg["url"] and not found.repo
        checked += 1
    assert checked > 100
    assert openclip_table.weights_source("ViT-B-32", "no_such_tag") is None
    assert openclip_table.model_known("ViT-B-32") and not openclip_table.model_known("ViT-No-Such")


def clip_settings(**values):
    return validate({"extractors": {"clip": values}}, "test").extractor("clip")


def test_resnet_advice_names_torchvisions_file_size_and_cache():
    settings = validate({}, "test").extractor("resnet")
    advice = advise("resnet", settings, "offline", "efficientnet", ["resnet", "clip"])
    assert advice.fetch is not None and advice.put_in is not None
    assert advice.fetch["file"] == "resnet50-11ad3fa6.pth" and advice.fetch["url"] == WEIGHTS.url
    assert advice.fetch["size"] == "97.8 MiB"  # torchvision's own figure for the file
    assert (
        advice.put_in["cache"]
        == os.path.dirname(cached_weights_path())
        == os.path.join(torch.hub.get_dir(), "checkpoints")
    )
    assert advice.keep_fallback == {"setting": "index.extractors", "value": ["efficientnet", "clip"]}
    assert any(cached_weights_path() in line for line in advice.lines)


def test_a_missing_checkpoint_file_is_a_setting_to_fix_not_a_download(tmp_path):
    missing = str(tmp_path / "nowhere" / "clip.safetensors")
    advice = advise("clip", clip_settings(pretrained=missing), "missing", "efficientnet", ["clip"])
    assert advice.fetch is None and advice.put_in is None
    assert any(missing in line and "extractors.clip.pretrained" in line for line in advice.lines)


@pytest.mark.parametrize(("count", "text"), [(605_143_316, "605.1 MB"), (999, "999 B"), (1_500, "1.5 kB")])
def test_sizes_read_as_a_download_page_shows_them(count, text):
    assert human_bytes(count) == text


def test_a_text_query_without_clip_names_the_setting(efficientnet):
    with pytest.raises(TextNotSupportedError, match=r"needs clip, listed in index\.extractors"):
        efficientnet.encode_text(["a cat"])
