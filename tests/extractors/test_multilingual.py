"""Multilingual CLIP (open_clip's models with a Hugging Face text tower) with random weights: the
mechanics, offline.

Nothing can be fetched from Hugging Face here, so the text tower's config and tokenizer are made
in the test: a tiny XLM-R (2 layers, width 32) and a Unigram tokenizer trained with ``tokenizers``
on a few sentences in five languages, put in a Hugging Face cache as ``hf download xlm-roberta-base
config.json tokenizer.json`` would (those two files only: what the advice names); a tiny NLLB the
same way. The
settings are a user's, ``model = "xlm-roberta-base-ViT-B-32"``; the daemon reads the cache offline
(``HF_HUB_OFFLINE``), as it would on a machine where the files were fetched once.
"""

from __future__ import annotations

import json
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from imgsearchd.extractors import ModelUnavailableError, create, load, openclip_table
from imgsearchd.extractors import clip as clip_module
from imgsearchd.extractors.openclip_table import TextTower
from imgsearchd.media import images

from helpers import EFFICIENTNET_FP32, REPO, free_port, wait_for, write_config
from served import serve

pytest.importorskip("transformers", reason="the multilingual extra (pip install '.[multilingual]')")

MODEL = "xlm-roberta-base-ViT-B-32"
SETTINGS = {
    "model": MODEL,
    "pretrained": "none",
    "device": "cpu",
    "batch_size": 4,
    "precision": "fp32",
    "engine": "torch",
}
INSTALL = "pip install 'imgsearchd[multilingual]'"
QUERIES = {
    "de": "eine Katze schläft auf dem Sofa",
    "ja": "ソファで寝ている猫",
    "ar": "قطة نائمة على الأريكة",
    "en": "a cat sleeping on the sofa",
}
CORPUS = [
    *QUERIES.values(),
    "ein Hund läuft am Strand",
    "eine Tasse Kaffee auf dem Tisch",
    "浜辺を走る犬",
    "テーブルの上のコーヒー",
    "كلب يركض على الشاطئ",
    "فنجان قهوة على الطاولة",
    "a dog running on the beach",
    "a cup of coffee on the table",
    "un chat qui dort sur le canapé",
]
SPECIAL = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # XLM-R's, at its ids 0-4
# NLLB's: the same four first, then language codes (here four of its 202), then <mask>
NLLB_SPECIAL = ["<s>", "<pad>", "</s>", "<unk>", "eng_Latn", "deu_Latn", "jpn_Jpan", "arb_Arab", "<mask>"]
NLLB = "nllb-clip-base"


def trained_tokenizer(special: list[str]) -> Any:
    """A Unigram tokenizer (XLM-R's and NLLB's kind) trained on CORPUS, ``special`` at ids 0, 1, ..."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.train_from_iterator(
        CORPUS * 4, trainers.UnigramTrainer(vocab_size=400, special_tokens=special, unk_token="<unk>")
    )
    assert [tokenizer.token_to_id(token) for token in special] == list(range(len(special)))
    return tokenizer


def xlm_roberta_files(folder: Path) -> None:
    """config.json and tokenizer.json of a tiny XLM-R, as the xlm-roberta-base repository has them."""
    from tokenizers import processors

    tokenizer = trained_tokenizer(SPECIAL)
    tokenizer.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    tokenizer.save(str(folder / "tokenizer.json"))
    config = {
        "model_type": "xlm-roberta",
        "architectures": ["XLMRobertaForMaskedLM"],
        "vocab_size": tokenizer.get_vocab_size(),
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 80,  # XLM-R's positions start after the padding id: 77 tokens + 2
        "type_vocab_size": 1,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
    }
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")


def nllb_files(folder: Path) -> None:
    """config.json, tokenizer.json and tokenizer_config.json (naming NllbTokenizer, as NLLB's
    does) of a tiny NLLB-200 (an M2M100 encoder-decoder; open_clip keeps the encoder)."""
    tokenizer = trained_tokenizer(NLLB_SPECIAL)
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "NllbTokenizer"}), encoding="utf-8")
    config = {
        "model_type": "m2m_100",
        "is_encoder_decoder": True,
        "vocab_size": tokenizer.get_vocab_size(),
        "d_model": 32,
        "encoder_layers": 2,
        "decoder_layers": 1,
        "encoder_attention_heads": 2,
        "decoder_attention_heads": 2,
        "encoder_ffn_dim": 64,
        "decoder_ffn_dim": 64,
        "max_position_embeddings": 128,
        "scale_embedding": True,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "decoder_start_token_id": 2,
    }
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")


def hub_cache(root: Path) -> Path:
    """A Hugging Face cache (huggingface_hub's layout) holding the tiny ``xlm-roberta-base`` and
    ``facebook/nllb-200-distilled-600M``, each with only the files the daemon's advice names."""
    revision = "0" * 40
    for repo_id, files in (("xlm-roberta-base", xlm_roberta_files), ("facebook/nllb-200-distilled-600M", nllb_files)):
        repo = root / f"models--{repo_id.replace('/', '--')}"
        (repo / "snapshots" / revision).mkdir(parents=True)
        files(repo / "snapshots" / revision)
        needed = TextTower(repo_id, repo_id).needed()
        assert sorted(p.name for p in (repo / "snapshots" / revision).iterdir()) == sorted(f for _, f in needed)
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(revision, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The cache, read offline by this process and by the daemons it starts."""
    import huggingface_hub.constants

    cache = hub_cache(tmp_path_factory.mktemp("hf") / "hub")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_CACHE", str(cache))
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
        patch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        yield cache


@pytest.fixture(scope="module")
def multilingual(hub: Path) -> Any:
    return create("clip", SETTINGS)


def test_transformers_comes_with_the_extra_only():
    """A plain install stays without transformers (open_clip imports it whenever it is there); the
    multilingual extra, which the message names, brings it, and the test extra runs these tests."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    assert not [r for r in project["dependencies"] if r.startswith("transformers")]
    assert [r for r in extras["multilingual"] if r.startswith("transformers")]
    assert set(extras["multilingual"]) <= set(extras["test"])
    assert INSTALL == openclip_table.MULTILINGUAL_INSTALL


def test_the_text_towers_read_alone_are_open_clips_own():
    """openclip_table reads the model configs without importing open_clip: the same towers."""
    import open_clip

    towers = 0
    for model in open_clip.list_models():
        text = open_clip.get_model_config(model)["text_cfg"]
        name = text.get("hf_model_name")
        expected = TextTower(name, text.get("hf_tokenizer_name") or name) if name else None
        assert openclip_table.text_tower(model) == expected, model
        towers += expected is not None
    assert towers >= 10 and openclip_table.text_tower("ViT-B-32") is None
    assert openclip_table.text_tower(MODEL) == TextTower("xlm-roberta-base", "xlm-roberta-base")


def test_texts_of_several_languages_embed_to_unit_vectors(multilingual):
    texts = list(QUERIES.values())
    vectors = multilingual.encode_text(texts)
    assert vectors.shape == (len(texts), multilingual.dim) == (4, 512) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosines = vectors @ vectors.T
    assert np.max(cosines[~np.eye(len(texts), dtype=bool)]) < 0.999  # four texts, four vectors
    # The tokenizer is the cached one (the vocabulary trained above): every word of each language
    # is in it, so no <unk>; open_clip's own English tokenizer would give ids far beyond its 400.
    tokens = multilingual._tokenizer(texts).numpy()
    assert type(multilingual.model.text).__name__ == "HFTextEncoder"
    assert tokens.max() < 400 and not np.any(tokens == SPECIAL.index("<unk>"))
    assert all(np.count_nonzero(row != SPECIAL.index("<pad>")) > 3 for row in tokens)


def test_nllb_tags_each_text_english_and_embeds_it(hub):
    """NLLB-CLIP: an encoder-decoder's encoder, its CLS token, a linear projection; the tokenizer
    class named by tokenizer_config.json, which puts eng_Latn first (docs/configuration.md says so)."""
    nllb: Any = create("clip", {**SETTINGS, "model": NLLB})
    texts = list(QUERIES.values())
    vectors = nllb.encode_text(texts)
    assert vectors.shape == (4, 512) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    tokens = nllb._tokenizer(texts).numpy()
    assert np.all(tokens[:, 0] == NLLB_SPECIAL.index("eng_Latn")) and not np.any(tokens == NLLB_SPECIAL.index("<unk>"))
    assert nllb.model_id.startswith(f"clip:{NLLB}:random-seed0"), nllb.model_id


def test_pictures_embed_to_unit_vectors_under_their_own_model_id(multilingual, photos):
    pictures = [photos[name].convert("RGB") for name in ("chelsea", "coffee", "rocket")]
    vectors = multilingual.embed_images(pictures)
    assert vectors.shape == (3, 512) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # its own index and vectors, never mixed with ViT-B-32's ("clip:ViT-B-32:random-seed0...")
    assert multilingual.model_id.startswith(f"clip:{MODEL}:random-seed0"), multilingual.model_id


def test_bf16_keeps_each_languages_text_where_fp32_puts_it(multilingual):
    """bf16 is what ``precision = "auto"`` runs on a CPU with avx512_bf16 or AMX (the run's header
    says whether this one has them; elsewhere oneDNN emulates the same arithmetic, slower): the
    Hugging Face tower converts and passes the check at load like open_clip's own."""
    bf16 = create("clip", {**SETTINGS, "precision": "bf16", "engine": "torch"})
    assert bf16.precision.used == "bf16" and bf16.model_id == multilingual.model_id, bf16.precision
    texts = list(QUERIES.values())
    # bf16 against fp32, cosine of each text's two vectors: 0.99998 measured on a Zen 4 with avx512_bf16
    assert np.min(np.sum(bf16.encode_text(texts) * multilingual.encode_text(texts), axis=1)) > 0.998


def test_without_transformers_the_fallback_says_what_to_install(hub, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # what the import system sees when it is missing
    monkeypatch.setattr(clip_module, "host_reachable", lambda host, port=443, timeout=3.0: False)
    with pytest.raises(ModelUnavailableError, match=r"needs transformers: pip install 'imgsearchd\[multilingual\]'"):
        create("clip", SETTINGS)
    settings = {"clip": {**SETTINGS, "pretrained": "laion5b_s13b_b90k"}, "efficientnet": EFFICIENTNET_FP32}
    loaded = load(["clip"], "efficientnet", settings.__getitem__)
    assert loaded.primary == "efficientnet" and loaded.fallback is not None and loaded.fallback.advice is not None
    assert INSTALL in loaded.fallback.reason
    assert any(INSTALL in line for line in loaded.fallback.advice.lines), loaded.fallback.advice.lines


def test_offline_the_advice_names_the_weights_and_the_tokenizer_repository(hub, monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr(clip_module, "host_reachable", lambda host, port=443, timeout=3.0: False)
    fetch_text = "hf download xlm-roberta-base config.json tokenizer.json"
    with pytest.raises(ModelUnavailableError, match=r"xlm-roberta-base/config\.json") as caught:
        create("clip", SETTINGS)  # random weights: only the text tower's files are missing
    assert "cannot be reached" in str(caught.value) and fetch_text in str(caught.value)
    settings = {"clip": {**SETTINGS, "pretrained": "laion5b_s13b_b90k"}, "efficientnet": EFFICIENTNET_FP32}
    loaded = load(["clip"], "efficientnet", settings.__getitem__)
    assert loaded.fallback is not None and loaded.fallback.advice is not None
    advice = loaded.fallback.advice
    assert advice.fetch is not None and advice.put_in is not None
    assert advice.fetch["repo"] == "laion/CLIP-ViT-B-32-xlm-roberta-base-laion5B-s13B-b90k"
    assert advice.fetch["size"] == "about 1.5 GB" and advice.fetch["bytes"] is None  # estimated, not known
    assert advice.put_in["command"] == f"hf download {advice.fetch['repo']} {advice.fetch['file']}"
    assert any(fetch_text in line for line in advice.lines), advice.lines
    assert not any(INSTALL in line for line in advice.lines)  # transformers is installed here


@pytest.mark.process
def test_a_daemon_answers_a_german_text_search(hub, multilingual, photos, tmp_path):
    """A real daemon with the multilingual model: it embeds the watched pictures and answers a text
    in German with the scores this process computes for the same files and text (fp32 both)."""
    watched = tmp_path / "photos"
    watched.mkdir()
    for name in ("chelsea", "coffee", "rocket"):
        photos[name].convert("RGB").save(watched / f"{name}.jpg", quality=90)
    port = free_port()
    config = write_config(
        tmp_path / "imgsearchd.toml",
        {
            "server": {"host": "127.0.0.1", "port": port},
            "index": {"data_dir": str(tmp_path / "data"), "extractors": ["clip"], "fallback_extractor": ""},
            "watch": {"directories": [str(watched)]},
            "extractors.clip": SETTINGS,
        },
    )
    with serve(config, port) as daemon:
        wait_for(lambda: daemon.get("/stats")[1]["images"] == 3, 120, "the three pictures to be indexed")
        status, stats = daemon.get("/stats")
        assert stats["extractors"]["clip"]["model"] == multilingual.model_id and stats["extractors"]["clip"]["text"]
        status, answer = daemon.get("/search", text=QUERIES["de"], limit="3")
    assert status == 200 and answer["extractor"] == "clip", answer
    text = multilingual.encode_text([QUERIES["de"]])[0]
    here = {}
    for path in sorted(watched.iterdir()):
        picture = images.decode(path.read_bytes(), multilingual.decode_side)
        here[str(path)] = float(multilingual.embed_images([picture])[0] @ text)
    served = {result["image"]: result["score"] for result in answer["results"]}
    assert served.keys() == here.keys()
    assert all(abs(served[path] - here[path]) < 1e-4 for path in here), (served, here)
