"""match_levels: the levels' order, the per-query correction (and its prior), the cuts on real vectors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from PIL import Image

from imgsearchd.config import DUPLICATE_THRESHOLDS
from imgsearchd.search import framing, match_levels
from imgsearchd.search.match_levels import LEVELS, Background, at_least, check_level, corrected, cuts_for, levels
from match_set import drawing, flat, noise, text_page

from duplicate_set import edited, scenes, window


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def test_levels_are_ordered_strongest_first() -> None:
    assert LEVELS == ("same", "similar", "related", "weak")
    assert at_least("same", "similar") and at_least("similar", "similar") and at_least("related", "weak")
    assert not at_least("weak", "related") and not at_least("similar", "same")
    assert check_level("related") == "related"
    with pytest.raises(ValueError, match="min_match must be one of same, similar, related, weak"):
        check_level("close")
    with pytest.raises(ValueError, match="same, similar"):
        at_least("weak", "strong")


def test_cuts_per_extractor_and_a_default() -> None:
    for name in ("efficientnet", "clip", "resnet"):
        cuts = cuts_for(name)
        assert cuts is match_levels.CUTS[name]
        assert cuts.similar > cuts.related and cuts.text_similar > cuts.text_related
    assert cuts_for("no-such-model") is match_levels.DEFAULT_CUTS


def test_levels_keep_the_same_mask_only_for_pictures() -> None:
    cuts = match_levels.Cuts(similar=4.0, related=2.0, text_similar=3.0, text_related=1.0)
    scores = np.array([9.0, 4.0, 3.5, 2.0, 1.5, -1.0], dtype=np.float32)
    same = np.array([True, False, False, False, False, False])
    assert levels(scores, cuts, same) == ["same", "similar", "related", "related", "weak", "weak"]
    # text queries: their own cuts, and never "same" (the caller's mask is ignored)
    assert levels(scores, cuts, same, text=True) == ["similar", "similar", "similar", "related", "related", "weak"]
    assert levels(np.zeros(0), cuts, np.zeros(0, dtype=bool)) == []


def _background(rng: np.random.Generator, centre: np.ndarray, spread: float, n: int) -> np.ndarray:
    """``n`` unit rows scattered around ``centre``: the smaller ``spread``, the closer to it."""
    return _unit(centre[None, :] + spread * rng.standard_normal((n, centre.size)).astype(np.float32))


def test_the_same_cosine_is_a_different_level_for_different_queries() -> None:
    """The correction's point: a cosine of 0.8 is a close match for a query far from the
    library, and nothing special for one close to everything (a hub)."""
    rng = np.random.default_rng(3)
    dim = 64
    library = _background(rng, np.ones(dim, dtype=np.float32), 0.35, 400)  # a library bunched together
    hub = _unit(library.mean(axis=0))  # close to every picture of it
    loner = _unit(rng.standard_normal(dim).astype(np.float32))  # far from all of it
    background = Background(library, "efficientnet")
    score = np.array([0.8], dtype=np.float32)
    cuts = cuts_for("efficientnet")
    none = np.zeros(1, dtype=bool)
    hub_level = levels(corrected(hub, score, background), cuts, none)[0]
    loner_level = levels(corrected(loner, score, background), cuts, none)[0]
    assert float(np.mean(library @ hub)) > 0.8 > float(np.max(library @ loner))
    assert (hub_level, loner_level) == ("weak", "similar")


def test_an_unusable_background_uses_the_prior() -> None:
    rng = np.random.default_rng(4)
    query = _unit(rng.standard_normal(32).astype(np.float32))
    scores = np.array([0.9, 0.5, 0.2], dtype=np.float32)
    prior = match_levels.prior_for("efficientnet")
    expected = (scores - prior.mean) / prior.spread
    few = Background(_unit(rng.standard_normal((match_levels.MIN_BACKGROUND - 1, 32))), "efficientnet")
    assert not few.usable and not Background().usable
    for background in (
        few,
        Background(extractor="efficientnet"),
        Background(np.zeros((0, 0), np.float32), "efficientnet"),
    ):
        np.testing.assert_allclose(corrected(query, scores, background), expected, rtol=1e-5)
    # a vector of another size (a model change under way) is no background for this query either
    other = Background(_unit(rng.standard_normal((200, 16))), "efficientnet")
    assert other.usable
    np.testing.assert_allclose(corrected(query, scores, other), expected, rtol=1e-5)
    # an unknown extractor's prior is the default one, and differs from efficientnet's
    unknown = corrected(query, scores, Background(extractor="mystery"))
    d = match_levels.DEFAULT_PRIOR
    np.testing.assert_allclose(unknown, (scores - d.mean) / d.spread, rtol=1e-5)
    assert not np.allclose(unknown, expected)


def test_a_usable_background_is_not_the_prior() -> None:
    rng = np.random.default_rng(5)
    rows = _unit(rng.standard_normal((match_levels.MIN_BACKGROUND, 32)))
    query = _unit(rng.standard_normal(32).astype(np.float32))
    scores = np.array([0.7], dtype=np.float32)
    cosines = rows @ query
    got = corrected(query, scores, Background(rows, "efficientnet"))
    np.testing.assert_allclose(got, (scores - cosines.mean()) / cosines.std(), rtol=1e-4)


def test_the_query_itself_in_the_background_is_ignored() -> None:
    rng = np.random.default_rng(6)
    rows = _unit(rng.standard_normal((300, 48)))
    query = rows[17].copy()  # a search by the path of an indexed picture: its own row is in the sample
    scores = np.array([0.95, 0.6, 0.3], dtype=np.float32)
    with_it = corrected(query, scores, Background(rows, "efficientnet"))
    without = corrected(query, scores, Background(np.delete(rows, 17, axis=0), "efficientnet"))
    np.testing.assert_allclose(with_it, without, rtol=1e-5)
    # and it would matter: counted, the cosine 1.0 shifts the mean and the spread
    cosines = rows @ query
    counted = (scores - cosines.mean()) / cosines.std()
    assert not np.allclose(with_it, counted, rtol=1e-3)


# -- real vectors: EfficientNet-Lite0 with its ImageNet weights, on real photos -------------------


@pytest.fixture(scope="module")
def real(efficientnet: Any, photos: dict[str, Image.Image]) -> dict[str, Any]:
    """A background of real photo scenes and unrelated pictures, a query photo, its edited
    copy, and pictures of other kinds, embedded in fp32."""
    from imgsearchd.media.images import decode

    rng = np.random.default_rng(0)
    scene_list = scenes(photos[k] for k in sorted(photos))
    others = [maker(rng) for maker in (drawing, text_page, flat, noise) for _ in range(20)]
    moves = ((0.0, 0.0, 0.75), (0.15, 0.0, 0.75), (0.0, 0.15, 0.75), (-0.15, 0.0, 0.75), (0.0, 0.0, 0.5))
    library = [window(s, dx, dy, zoom) for s in scene_list for dx, dy, zoom in moves] + others
    query_scene = scene_list[0]
    query = window(query_scene)
    copy = edited(query, "combo", rng, decode)
    stranger = drawing(np.random.default_rng(99))
    vectors = _unit(efficientnet.embed_images([*library, query, copy, stranger]))
    n = len(library)
    return {
        "background": Background(vectors[:n], "efficientnet"),
        "query": vectors[n],
        "copy": vectors[n + 1],
        "stranger": vectors[n + 2],
        "prints": (framing.print_of(query), framing.print_of(copy)),
    }


def test_real_vectors_an_edited_copy_is_same_eligible_a_drawing_is_weak(real: dict[str, Any]) -> None:
    background, query = real["background"], real["query"]
    assert background.usable, f"the fixture's background has {background.vectors.shape[0]} rows"
    scores = np.array([real["copy"] @ query, real["stranger"] @ query], dtype=np.float32)
    # the daemon's same rule: the copy floor and the framing check
    assert scores[0] >= DUPLICATE_THRESHOLDS["efficientnet"]
    assert framing.framing_score(*real["prints"]) >= framing.FRAMING_COPY
    same = np.array([True, False])
    fixed = corrected(query, scores, background)
    cuts = cuts_for("efficientnet")
    assert levels(fixed, cuts, same) == ["same", "weak"]
    # the copy is similar by its score alone (before the same check marks it)
    assert levels(fixed, cuts, np.zeros(2, dtype=bool))[0] == "similar"


def test_real_vectors_the_correction_is_measured_not_the_prior(real: dict[str, Any]) -> None:
    """The background's own statistics stand in for the prior: a different number, and
    they follow the query (two queries, two means)."""
    background, query, stranger = real["background"], real["query"], real["stranger"]
    score = np.array([0.5], dtype=np.float32)
    measured = corrected(query, score, background)
    prior = corrected(query, score, Background(extractor="efficientnet"))
    assert not np.allclose(measured, prior, atol=0.05)
    assert not np.allclose(measured, corrected(stranger, score, background), atol=0.05)
