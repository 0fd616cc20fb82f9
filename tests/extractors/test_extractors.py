"""extractors: real semantics offline (EfficientNet-Lite0), mechanics with random weights (CLIP, ResNet)."""

from __future__ import annotations

import io
import logging
import time

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from imgsearchd.extractors import ModelUnavailableError, TextNotSupportedError, create, load
from imgsearchd.extractors import clip as clip_module
from imgsearchd.extractors import resnet as resnet_module
from imgsearchd.extractors.crop import NormalizedTensor, ResizeCrop, model_transform
from imgsearchd.media import images
from imgsearchd.search.parts import exact_top


def decoded(image: Image.Image, extractor) -> Image.Image:
    """The picture as the pipeline sees it: through a JPEG file and images.decode."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=92)
    return images.decode(buf.getvalue(), extractor.decode_side)


@pytest.fixture(scope="module")
def gallery(photos, efficientnet):
    names = list(photos)
    vectors = efficientnet.embed_images([decoded(photos[n], efficientnet) for n in names])
    return names, vectors


def nearest(names, vectors, query, exclude=()):
    order, _ = exact_top(vectors, np.arange(len(names)), query, len(names))
    return [names[i] for i in order if names[i] not in exclude]


def test_efficientnet_motorcycles_are_each_others_nearest(gallery):
    names, vectors = gallery
    left, right = names.index("motorcycle_left"), names.index("motorcycle_right")
    assert nearest(names, vectors, vectors[left], exclude={"motorcycle_left"})[0] == "motorcycle_right"
    assert nearest(names, vectors, vectors[right], exclude={"motorcycle_right"})[0] == "motorcycle_left"


@pytest.mark.parametrize("name", ["chelsea", "coffee", "astronaut", "rocket"])
@pytest.mark.parametrize("edit", ["rotate_90", "rotate_12", "jpeg_q25", "half_size"])
def test_efficientnet_edited_copy_finds_its_original_first(gallery, photos, efficientnet, name, edit):
    names, vectors = gallery
    photo = photos[name].convert("RGB")
    if edit == "rotate_90":
        copy = photo.transpose(Image.Transpose.ROTATE_90)
    elif edit == "rotate_12":
        copy = photo.rotate(12, resample=Image.Resampling.BICUBIC, expand=False, fillcolor=(128, 128, 128))
    elif edit == "jpeg_q25":
        buf = io.BytesIO()
        photo.save(buf, "JPEG", quality=25)
        copy = Image.open(io.BytesIO(buf.getvalue()))
    else:
        copy = photo.resize((photo.width // 2, photo.height // 2))
    query = efficientnet.embed_images([decoded(copy, efficientnet)])[0]
    assert nearest(names, vectors, query)[0] == name


def test_efficientnet_is_real_imagenet_weights(photos, efficientnet):
    """With its classifier back on, the packaged weights call Chelsea a cat (ImageNet 281-285)."""
    import timm

    from imgsearchd.extractors.efficientnet import load_lite0_state_dict, packaged_weights_path

    full = timm.create_model("efficientnet_lite0", pretrained=False)
    raw = torch.load(packaged_weights_path(), map_location="cpu", weights_only=True)
    body = load_lite0_state_dict(
        packaged_weights_path(), {k: v for k, v in full.state_dict().items() if not k.startswith("classifier.")}
    )
    full.load_state_dict({**body, "classifier.weight": raw["_fc.weight"], "classifier.bias": raw["_fc.bias"]})
    batch = efficientnet.preprocess(decoded(photos["chelsea"], efficientnet))[None]
    with torch.inference_mode():
        top = int(full.eval()(batch).argmax())
    assert 281 <= top <= 285


@pytest.mark.parametrize("fixture,dim", [("clip_random", 512), ("resnet_random", 2048), ("efficientnet", 1280)])
def test_shape_norm_and_batch_equals_singles(request, photos, fixture, dim):
    extractor = request.getfixturevalue(fixture)
    pictures = [decoded(photos[n], extractor) for n in ("chelsea", "coffee", "rocket", "astronaut", "hubble")]
    batch = extractor.embed(torch.stack([extractor.preprocess(p) for p in pictures]))
    assert batch.shape == (5, dim) and batch.dtype == np.float32
    assert np.allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    singles = np.concatenate([extractor.embed(extractor.preprocess(p)[None]) for p in pictures])
    if extractor.precision.used == "fp32":
        assert np.abs(batch - singles).max() < 1e-5
    else:  # int8 scales activations per batch (test_precision has the bound that matters)
        assert np.min(np.sum(batch * singles, axis=1)) > 0.995
    assert extractor.model_id and extractor.dim == dim


def test_forward_passes_are_counted(efficientnet, photos):
    before = (efficientnet.forward_passes, efficientnet.images_embedded)
    efficientnet.embed_images([decoded(photos["coffee"], efficientnet)] * 3)
    assert (efficientnet.forward_passes, efficientnet.images_embedded) == (before[0] + 1, before[1] + 3)


def test_clip_text_encoder_matches_image_dimension(clip_random):
    text = clip_random.encode_text(["a photo of a cat", "a red motorcycle"])
    assert text.shape == (2, clip_random.dim) == (2, 512)
    assert np.allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)


def test_random_weights_are_reproducible(clip_random, photos):
    settings = {
        "pretrained": "none",
        "device": "cpu",
        "batch_size": 4,
        "precision": clip_random.precision.used,
        "engine": "torch",
    }
    again = create("clip", settings)
    picture = decoded(photos["chelsea"], clip_random)
    assert again.model_id == clip_random.model_id
    assert np.allclose(again.embed_images([picture]), clip_random.embed_images([picture]), atol=1e-6)


def test_image_only_extractors_refuse_text(efficientnet, resnet_random):
    for extractor in (efficientnet, resnet_random):
        with pytest.raises(TextNotSupportedError, match="no text encoder"):
            extractor.encode_text(["a cat"])


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network and empty caches: what a fresh offline machine sees."""
    monkeypatch.setattr(clip_module, "host_reachable", lambda host, port=443, timeout=3.0: False)
    monkeypatch.setattr(resnet_module, "host_reachable", lambda host, port=443, timeout=3.0: False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf"))
    old_hub = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "torch"))
    yield
    torch.hub.set_dir(old_hub)


def test_clip_offline_says_what_to_put_where(offline):
    started = time.monotonic()
    with pytest.raises(ModelUnavailableError) as caught:
        create("clip", {"model": "ViT-B-32", "pretrained": "laion2b_s34b_b79k", "device": "cpu"})
    message = str(caught.value)
    assert "cannot be reached" in message and "pretrained = " in message and "local-dir:" in message
    assert time.monotonic() - started < 10


def test_clip_unknown_tag_lists_known_ones():
    with pytest.raises(ModelUnavailableError, match=r"known tags: .*laion2b_s34b_b79k"):
        create("clip", {"model": "ViT-B-32", "pretrained": "no_such_tag", "device": "cpu"})


def test_clip_missing_checkpoint_file(tmp_path):
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        create("clip", {"model": "ViT-B-32", "pretrained": str(tmp_path / "nope.bin"), "device": "cpu"})


def test_clip_loads_a_local_checkpoint_file(tmp_path, clip_random, photos):
    path = tmp_path / "clip.pt"
    torch.save(clip_random.model.state_dict(), path)
    loaded = create(
        "clip", {"model": "ViT-B-32", "pretrained": str(path), "device": "cpu", "precision": "fp32", "engine": "torch"}
    )
    assert loaded.model_id.startswith("clip:ViT-B-32:file:clip.pt:")
    picture = decoded(photos["coffee"], loaded)
    assert np.allclose(loaded.embed_images([picture]), clip_random.embed_images([picture]), atol=1e-5)


def test_resnet_offline_says_what_to_put_where(offline):
    with pytest.raises(ModelUnavailableError) as caught:
        create("resnet", {"device": "cpu"})
    message = str(caught.value)
    assert "resnet50-11ad3fa6.pth" in message and "extractors.resnet.weights" in message


def test_resnet_loads_a_local_pth(tmp_path, resnet_random, photos):
    torch.manual_seed(resnet_module.RANDOM_WEIGHTS_SEED)  # the weights resnet_random has, before folding
    state = resnet_module.models.resnet50(weights=None).state_dict()
    state["fc.weight"] = torch.zeros(1000, 2048)
    state["fc.bias"] = torch.zeros(1000)
    path = tmp_path / "resnet50.pth"
    torch.save(state, path)
    loaded = create(
        "resnet", {"weights": str(path), "device": "cpu", "precision": "fp32", "engine": "torch"}
    )  # as resnet_random
    picture = decoded(photos["coffee"], loaded)
    assert np.allclose(loaded.embed_images([picture]), resnet_random.embed_images([picture]), atol=1e-5)


def test_fallback_runs_efficientnet_loudly(offline, caplog):
    settings = {
        "clip": {"pretrained": "laion2b_s34b_b79k", "device": "cpu"},
        "efficientnet": {"device": "cpu", "engine": "torch"},
    }
    with caplog.at_level(logging.WARNING, logger="imgsearchd.extractors"):
        loaded = load(["clip"], "efficientnet", settings.__getitem__)
    assert loaded.primary == "efficientnet" and list(loaded.extractors) == ["efficientnet"]
    assert loaded.fallback.configured == "clip" and "cannot be reached" in loaded.fallback.reason
    assert any("FALLING BACK to efficientnet" in r.getMessage() for r in caplog.records)


def test_no_fallback_means_a_clear_failure(offline):
    with pytest.raises(ModelUnavailableError, match="clip"):
        load(["clip"], "", {"clip": {"pretrained": "laion2b_s34b_b79k", "device": "cpu"}}.__getitem__)


# -- the tensor step: NormalizedTensor against torchvision's ToTensor + Normalize ------------------

# The extractors' normalisations: EfficientNet-Lite0's [-1, 1], ImageNet's (ResNet), OpenAI CLIP's.
NORMALISATIONS = [
    ((0.498, 0.498, 0.498), (0.502, 0.502, 0.502)),
    ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
]


def torchvision_tensor(mean, std):
    """The tensor step as it was: torchvision's ToTensor then Normalize."""
    return transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])


def tensor_pictures(photos) -> list[Image.Image]:
    """The photos whole, random pictures of odd sizes, and one with every value in every channel."""
    rng = np.random.default_rng(11)
    pictures = [photo.convert("RGB") for photo in photos.values()]
    pictures += [
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in [(1, 1), (7, 13), (224, 224)]
    ]
    pictures.append(Image.fromarray(np.repeat(np.arange(256, dtype=np.uint8), 3).reshape(16, 16, 3)))
    return pictures


@pytest.mark.parametrize("mean,std", NORMALISATIONS)
def test_normalized_tensor_is_torchvisions_to_the_bit(photos, mean, std):
    new, old = NormalizedTensor(mean, std), torchvision_tensor(mean, std)
    for picture in tensor_pictures(photos):
        got, want = new(picture), old(picture)
        assert got.dtype == want.dtype == torch.float32
        assert got.shape == want.shape == (3, picture.height, picture.width)
        assert got.is_contiguous() and torch.equal(got, want), picture.size


def test_normalized_tensor_follows_the_default_dtype_as_to_tensor_does(photos):
    mean, std = NORMALISATIONS[1]
    new, old = NormalizedTensor(mean, std), torchvision_tensor(mean, std)
    picture = photos["coffee"].convert("RGB")
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        got, want = new(picture), old(picture)
    finally:
        torch.set_default_dtype(previous)
    assert got.dtype == want.dtype == torch.float64 and torch.equal(got, want)


def test_normalized_tensor_converts_other_modes_to_rgb(photos):
    mean, std = NORMALISATIONS[0]
    grey = photos["chelsea"].convert("L")
    assert torch.equal(NormalizedTensor(mean, std)(grey), torchvision_tensor(mean, std)(grey.convert("RGB")))


def test_normalized_tensor_refuses_what_normalize_would_fail_on():
    with pytest.raises(ValueError, match="zero"):
        NormalizedTensor((0.5, 0.5, 0.5), (0.5, 0.0, 0.5))
    with pytest.raises(ValueError, match="3 channels"):
        NormalizedTensor((0.5,), (0.5,))


@pytest.mark.parametrize(
    "resize,resample,norm",
    [(256, Image.Resampling.BICUBIC, 0), (232, Image.Resampling.BILINEAR, 1), (224, Image.Resampling.BICUBIC, 2)],
    ids=["efficientnet", "resnet", "clip"],
)
def test_model_transform_equals_the_torchvision_tensor_path(photos, resize, resample, norm):
    """What the loader hands the models, through JPEG files and images.decode, is unchanged."""
    mean, std = NORMALISATIONS[norm]
    old = transforms.Compose([ResizeCrop(resize, 224, resample), torchvision_tensor(mean, std)])
    new = model_transform(resize, 224, resample, mean, std)
    for name, photo in photos.items():
        for picture in (photo, photo.convert("L"), photo.resize((photo.width * 3, photo.height * 3))):
            buf = io.BytesIO()
            picture.save(buf, "JPEG", quality=90)
            loaded = images.decode(buf.getvalue(), resize)
            assert torch.equal(new(loaded), old(loaded)), name


def test_efficientnet_vectors_are_unchanged_by_the_tensor_step(photos, efficientnet_crop):
    """EfficientNet-Lite0's real weights get the same tensors, so the same vectors."""
    efficientnet = efficientnet_crop
    from imgsearchd.extractors.efficientnet import MEAN, STD

    old = transforms.Compose([ResizeCrop(256, 224, Image.Resampling.BICUBIC), torchvision_tensor(MEAN, STD)])
    pictures = [decoded(photo, efficientnet) for photo in photos.values()]
    new_tensors = torch.stack([efficientnet.preprocess(p) for p in pictures])
    old_tensors = torch.stack([old(p) for p in pictures])
    assert torch.equal(new_tensors, old_tensors)
    some = [list(photos).index(name) for name in ("chelsea", "astronaut", "hubble", "motorcycle_left")]
    new_vectors = efficientnet.embed(new_tensors[some]).astype(np.float64)
    old_vectors = efficientnet.embed(old_tensors[some]).astype(np.float64)
    cosines = (
        (new_vectors * old_vectors).sum(axis=1)
        / np.linalg.norm(new_vectors, axis=1)
        / np.linalg.norm(old_vectors, axis=1)
    )
    assert cosines.min() >= 0.9999999, cosines.min()
