"""Match levels: how strong a search result is (same, similar, related, weak), from its score corrected per query.

A cosine means little on its own: one query's tenth result at 0.6 is a close match, another's
first at 0.6 is noise (distances vary by query and by model). So each result's cosine is
compared with how similar the query is to the library at large: ``corrected`` turns it into a
z-score against the query's cosines to a random background sample of the library
(``Background``, ``BACKGROUND_SIZE`` rows drawn with ``Catalog.sample_vectors``). The cuts on
the corrected score (``CUTS``) are per extractor. ``same`` is not a cut: the caller marks it
(the same content, or a copy by the copy floor and the framing check) and ``levels`` keeps it.

Why a z-score (bench/bench_match.py, BENCHMARKS.md "Match levels (issue 30)"; EfficientNet-Lite0,
117 scenes of real photos and 120 unrelated pictures, every photo and unrelated query's top 20
pooled): the share of same-category results a cut keeps at precision 0.9 / 0.8 / 0.5 is
0.578 / 0.802 / 0.996 for the z-score, 0.537 / 0.780 / 0.978 for the raw cosine and
0.596 / 0.682 / 0.984 for SSCD's "minus the mean of the 10th-49th background neighbours":
the z-score is best or close everywhere, SSCD's only at the strictest cut.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

LEVELS: tuple[str, ...] = ("same", "similar", "related", "weak")  # strongest first

# Rows asked of Catalog.sample_vectors per (extractor, model): 5 MiB of EfficientNet's 1280-d
# rows. The levels from a sample agree with those from the whole 939-picture library for 78% of
# results at 128 rows and 86% at 256 (the bench): more rows, steadier levels.
BACKGROUND_SIZE = 1024
# Fewer rows than this: the prior stands in. At 64 rows a sample's levels agree with the whole
# library's a little better than the prior's (0.68-0.72 against 0.67; 0.78 at 128 rows, the
# bench), and the prior was fitted to that very library: a library unlike it (all documents,
# all screenshots) is followed by its sample, not by the prior. Under 64, the spread is too rough.
MIN_BACKGROUND = 64
SELF = 0.999  # a background row this close to the query is the query itself: left out


def at_least(level: str, minimum: str) -> bool:
    """True when ``level`` is ``minimum`` or stronger."""
    return LEVELS.index(check_level(level)) <= LEVELS.index(check_level(minimum))


def check_level(value: str) -> str:
    """``value`` when it names a level, else ValueError naming the allowed values."""
    if value not in LEVELS:
        raise ValueError(f"min_match must be one of {', '.join(LEVELS)}, got {value!r}")
    return value


@dataclass(frozen=True)
class Cuts:
    """Cuts on the corrected score: at or above ``similar`` is similar, at or above ``related``
    related, below weak; the ``text_`` pair for text queries."""

    similar: float
    related: float
    text_similar: float
    text_related: float


@dataclass(frozen=True)
class Prior:
    """What a query's cosines to a library look like when there is no usable background: their mean and spread."""

    mean: float
    spread: float


# efficientnet, measured (bench/bench_match.py, fp32 and bf16 agree to 0.003): at similar 4.5,
# 81% of `similar` results are of the query's scene and 99.9% of its scene or source photo,
# they hold 71% of the scene's pictures in the top 20, and no unrelated query (drawings, text,
# charts, flat colour, noise) gets a `similar` photo (at 4.0: 74% / 98.8% / 84%, and 2.5% of
# unrelated queries, text pages, get one). At related 2.5 half of the results at or above it
# are of the query's category (pooled: the cut for precision 0.5 is 2.56). EfficientNet has no
# text encoder: its text cuts are never used.
# clip and resnet: guesses (no weights here; their random-weight runs only show the mechanics).
# CLIP's text cuts are lower: a text's cosines to pictures are all small and close together.
CUTS: dict[str, Cuts] = {
    "efficientnet": Cuts(similar=4.5, related=2.5, text_similar=4.5, text_related=2.5),  # measured
    "clip": Cuts(similar=4.0, related=2.5, text_similar=3.5, text_related=2.0),
    "resnet": Cuts(similar=4.0, related=2.5, text_similar=4.0, text_related=2.5),
}
DEFAULT_CUTS = Cuts(similar=4.0, related=2.5, text_similar=3.5, text_related=2.0)
# The prior: efficientnet's is the median of the bench's queries (cosine mean to the library
# 0.279, p5-p95 0.20-0.35; spread 0.106, p5-p95 0.073-0.152); the others are guesses.
PRIORS: dict[str, Prior] = {
    "efficientnet": Prior(mean=0.28, spread=0.106),
    "clip": Prior(mean=0.45, spread=0.08),
    "resnet": Prior(mean=0.45, spread=0.08),
}
DEFAULT_PRIOR = Prior(mean=0.4, spread=0.1)
TEXT_PRIORS: dict[str, Prior] = {"clip": Prior(mean=0.2, spread=0.03)}
DEFAULT_TEXT_PRIOR = Prior(mean=0.2, spread=0.03)


def cuts_for(extractor: str) -> Cuts:
    """The extractor's cuts; an unknown name gets ``DEFAULT_CUTS``."""
    return CUTS.get(extractor, DEFAULT_CUTS)


def prior_for(extractor: str, text: bool = False) -> Prior:
    """The extractor's prior (for a text query: ``TEXT_PRIORS``); an unknown name gets the default."""
    if text:
        return TEXT_PRIORS.get(extractor, DEFAULT_TEXT_PRIOR)
    return PRIORS.get(extractor, DEFAULT_PRIOR)


@dataclass(frozen=True)
class Background:
    """A random sample of the library's vectors of one (extractor, model): (k, dim) float32 unit rows, k may be 0.

    ``extractor`` names whose prior stands in when the sample is too small."""

    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    extractor: str = ""

    @property
    def usable(self) -> bool:
        """Enough rows for the correction (``MIN_BACKGROUND``)."""
        return int(self.vectors.shape[0]) >= MIN_BACKGROUND


def query_stats(query: np.ndarray, background: Background, text: bool = False) -> Prior:
    """The query's cosines to the background (itself left out): their mean and spread, else the prior."""
    if background.usable and background.vectors.shape[1] == query.shape[-1]:
        cosines = background.vectors @ np.asarray(query, dtype=np.float32).reshape(-1)
        cosines = cosines[cosines < SELF]
        if cosines.size >= MIN_BACKGROUND:
            return Prior(float(cosines.mean()), max(float(cosines.std()), 1e-3))
    return prior_for(background.extractor, text)


def corrected(query: np.ndarray, scores: np.ndarray, background: Background, text: bool = False) -> np.ndarray:
    """The scores (cosines of the results to the query, best first) as z-scores against the
    query's cosines to the background; ``text``: a text query (only its prior differs)."""
    stats = query_stats(query, background, text)
    return ((np.asarray(scores, dtype=np.float32) - stats.mean) / stats.spread).astype(np.float32)


def levels(corrected_scores: np.ndarray, cuts: Cuts, same: np.ndarray, text: bool = False) -> list[str]:
    """Each result's level: ``same`` where the caller's mask says so (never for text), else by the cuts."""
    similar, related = (cuts.text_similar, cuts.text_related) if text else (cuts.similar, cuts.related)
    out = []
    for score, is_same in zip(np.asarray(corrected_scores).tolist(), np.asarray(same, dtype=bool).tolist()):
        if is_same and not text:
            out.append("same")
        elif score >= similar:
            out.append("similar")
        elif score >= related:
            out.append("related")
        else:
            out.append("weak")
    return out
