"""Match levels (issue 30): the per-query correction and the cuts, calibrated on real photos.

The set (``tests/match_set.py``): real photos (``bench_retrieval.photo_sources``) cut into
scenes; the library holds each scene's original and its second shots (a scene is a
category: ``similar``), and unrelated pictures made here (drawings, text, screenshots,
charts, flat colour, noise; each kind a category). Queries: the originals' edited copies
(``duplicate_set.COPY_KINDS``; not in the library: the original must come first as
``same``), every scene picture of the library (itself left out of its results: ``similar``
precision and recall against its scene), and unrelated pictures of other seeds (must get no
``same``).

Levels come from the daemon's code: ``match_levels.corrected`` against a background drawn
from the library (``BACKGROUND_SIZE`` rows, as ``Catalog.sample_vectors`` draws it; a library
query's own row is in it, as in the daemon), ``match_levels.levels`` with the extractor's
``CUTS``, and the ``same`` mask by the daemon's rule: cosine >= the extractor's
``duplicate_threshold`` (config default) and ``framing.framing_score`` >= ``FRAMING_COPY``.
Side by side, the corrections compared (``CORRECTIONS``: none, the z-score shipped, SSCD's
"minus the mean of the k-th..n-th neighbours"), each by the recall its best cut reaches at a
precision, pooled over every query (what a per-query correction is for).

Run: ``.venv/bin/python bench/bench_match.py`` (EfficientNet-Lite0 real weights, fp32 and bf16;
``--random clip,resnet`` adds those with random weights: mechanics only, numbers meaningless;
``--service N`` also uploads N copies and the unrelated queries to a real daemon holding the
same library and compares its ``match`` with these levels; ``--save``/``--load`` keep the answers).
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from bench_duplicates import cpu_line  # noqa: E402
from imgsearchd.config import DUPLICATE_THRESHOLDS  # noqa: E402
from imgsearchd.search import framing, match_levels  # noqa: E402
from imgsearchd.search.match_levels import Background, corrected, cuts_for, levels  # noqa: E402
from match_set import UNRELATED_KINDS, MatchSet, match_set  # noqa: E402

from duplicate_set import UNSCORED  # noqa: E402

LIMIT = 20  # results a query looks at (the API's default is 10; 20 shows where the levels fall off)
SSCD_RANKS = (10, 50)  # SSCD-style: minus the mean of the query's 10th..49th background neighbours


def _sscd(query: np.ndarray, scores: np.ndarray, background: Background) -> np.ndarray:
    cosines = background.vectors @ query
    cosines = np.sort(cosines[cosines < match_levels.SELF])[::-1]
    lo, hi = SSCD_RANKS
    return (scores - float(cosines[lo:hi].mean())).astype(np.float32)


CORRECTIONS: dict[str, Callable[[np.ndarray, np.ndarray, Background], np.ndarray]] = {
    "none": lambda q, s, b: np.asarray(s, dtype=np.float32),
    "z-score (shipped)": corrected,
    "sscd 10-50": _sscd,
}


# -- the set, embedded ------------------------------------------------------------------------


def build_set(args: argparse.Namespace) -> MatchSet:
    from bench_retrieval import photo_sources
    from imgsearchd.media.images import decode

    from duplicate_set import COPY_KINDS, scenes

    scene_list: list[Image.Image] = []
    photo_of: list[int] = []
    for k, photo in enumerate(photo_sources()):
        if len(scene_list) >= args.scenes:
            break
        got = scenes([Image.fromarray(photo.load())])[: args.scenes - len(scene_list)]
        scene_list += got
        photo_of += [k] * len(got)
    kinds = COPY_KINDS[: args.copy_kinds] if args.copy_kinds else COPY_KINDS
    return match_set(scene_list, photo_of, args.seed, decode, per_kind=args.per_kind, copy_kinds=kinds)


@dataclass
class Embedded:
    label: str  # "efficientnet fp32"
    extractor: str
    real: bool
    library: np.ndarray
    copies: np.ndarray
    strangers: np.ndarray
    seconds: float  # a picture


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def embed_all(ms: MatchSet, args: argparse.Namespace) -> list[Embedded]:
    from imgsearchd.extractors import create

    specs: list[tuple[str, str, dict[str, str], bool]] = [
        ("efficientnet", p, {}, True) for p in args.precisions.split(",") if p
    ]
    randoms = {"clip": {"model": "ViT-B-32", "pretrained": "none"}, "resnet": {"weights": "none"}}
    specs += [(name, "fp32", randoms[name], False) for name in args.random.split(",") if name]
    out = []
    for name, precision, extra, real in specs:
        settings = {"device": "cpu", "engine": "torch", "precision": precision, "batch_size": args.batch_size, **extra}
        extractor = create(name, settings)
        t0 = time.monotonic()
        library = _unit(extractor.embed_images(ms.library))
        copies = _unit(extractor.embed_images(ms.copies))
        strangers = _unit(extractor.embed_images(ms.strangers))
        seconds = (time.monotonic() - t0) / (len(ms.library) + len(ms.copies) + len(ms.strangers))
        label = f"{name} {precision}" + ("" if real else " (random weights)")
        out.append(Embedded(label, name, real, library, copies, strangers, seconds))
    return out


# -- the queries, answered as the daemon does ----------------------------------------------------


@dataclass
class Answer:
    """One query's top results: library positions, cosines, the same mask, each correction's scores."""

    kind: str  # "copy", "library", "stranger"
    index: int  # the query's position among its kind
    truth: str  # the query's category ("scene:N", "kind:KIND")
    target: int  # a copy's original, else -1
    positions: np.ndarray
    cosines: np.ndarray
    same: np.ndarray
    scores: dict[str, np.ndarray] = field(default_factory=dict)


class Prints:
    """Framing prints of the library and the queries, made once; scores per pair, made once."""

    def __init__(self, ms: MatchSet) -> None:
        self.library = [framing.print_of(p) for p in ms.library]
        self.copies = [framing.print_of(p) for p in ms.copies]
        self.strangers = [framing.print_of(p) for p in ms.strangers]
        self.cache: dict[tuple[str, int, int], float] = {}

    def score(self, kind: str, query: int, position: int) -> float:
        # framing_score is symmetric (the larger of both directions): one score per library pair
        key = (kind, min(query, position), max(query, position)) if kind == "library" else (kind, query, position)
        if key not in self.cache:
            own = {"copy": self.copies, "stranger": self.strangers, "library": self.library}[kind][query]
            self.cache[key] = framing.framing_score(own, self.library[position])
        return self.cache[key]


def answer(e: Embedded, ms: MatchSet, prints: Prints, background: Background) -> list[Answer]:
    floor = DUPLICATE_THRESHOLDS.get(e.extractor, 0.9)
    jobs: list[tuple[str, int, np.ndarray, str, int]] = []
    jobs += [("copy", i, e.copies[i], ms.category[ms.copy_of[i]], ms.copy_of[i]) for i in range(len(ms.copies))]
    jobs += [("library", i, e.library[i], ms.category[i], -1) for i in range(len(ms.library))]
    jobs += [("stranger", i, e.strangers[i], f"kind:{ms.stranger_kind[i]}", -1) for i in range(len(ms.strangers))]
    out = []
    for kind, i, query, truth, target in jobs:
        cosines = e.library @ query
        if kind == "library":
            cosines[i] = -2.0  # itself: found first by its content hash; left out here
        positions = np.argsort(-cosines, kind="stable")[:LIMIT]
        top = cosines[positions]
        same = np.array(
            [c >= floor and prints.score(kind, i, int(p)) >= framing.FRAMING_COPY for p, c in zip(positions, top)]
        )
        a = Answer(kind, i, truth, target, positions, top, same)
        a.scores = {name: f(query, top, background) for name, f in CORRECTIONS.items()}
        out.append(a)
    return out


# -- measures ----------------------------------------------------------------------------------


def pooled(answers: list[Answer], ms: MatchSet, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Every library and stranger query's results: the correction's score, and whether the result is of the query's category."""
    scores, hits = [], []
    for a in answers:
        if a.kind == "copy":
            continue
        scores.append(a.scores[method])
        hits.append(np.array([ms.category[int(p)] == a.truth for p in a.positions]))
    return np.concatenate(scores), np.concatenate(hits)


def recall_at(scores: np.ndarray, hits: np.ndarray, precision: float) -> tuple[float, float]:
    """The lowest cut whose results at or above it are at least ``precision`` right, and the share of all hits it keeps."""
    order = np.argsort(-scores, kind="stable")
    right = np.cumsum(hits[order])
    share = right / np.arange(1, len(order) + 1)
    ok = np.nonzero(share >= precision)[0]
    if ok.size == 0:
        return float("nan"), 0.0
    k = int(ok.max())
    return float(scores[order][k]), float(right[k] / max(1, hits.sum()))


def compare_table(runs: list[tuple[Embedded, list[Answer]]], ms: MatchSet) -> None:
    print(
        "\n### The corrections compared (photo and unrelated queries pooled; a hit: a result of the query's category)\n"
    )
    print(
        "| extractor | correction | cut for P 0.9 | recall at P 0.9 | cut for P 0.8 | recall at P 0.8 | cut for P 0.5 | recall at P 0.5 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for e, answers in runs:
        for method in CORRECTIONS:
            scores, hits = pooled(answers, ms, method)
            cells = []
            for p in (0.9, 0.8, 0.5):
                cut, recall = recall_at(scores, hits, p)
                cells.append(f"{cut:.3f} | {recall:.3f}")
            print(f"| {e.label} | {method} | " + " | ".join(cells) + " |")


@dataclass
class Tally:
    """Counts of one run at the shipped levels."""

    copies_first_same: int = 0  # the original first (by cosine) and same
    copies_same_first: int = 0  # the first `same` result is the original (same results shown first)
    first_no_band: int = 0  # the original first as same, band shots left out of the results
    same_first_no_band: int = 0  # the first same result is the original, band shots left out
    band_ahead: int = 0  # a band shot (a 5-15% crop: scored in neither tier by issue 29) before the original
    copies: int = 0
    strangers_no_same: int = 0
    strangers_similar: int = 0
    strangers_similar_photo: int = 0
    strangers: int = 0
    per_level: dict[str, list[int]] = field(default_factory=lambda: {lv: [0, 0, 0] for lv in match_levels.LEVELS})
    recall: list[int] = field(default_factory=lambda: [0, 0])  # category members found similar or same / all
    per_kind: dict[str, list[int]] = field(default_factory=dict)


def tally(e: Embedded, answers: list[Answer], ms: MatchSet) -> Tally:
    t = Tally()
    cuts = cuts_for(e.extractor)
    members: dict[str, int] = {}
    for c in ms.category:
        members[c] = members.get(c, 0) + 1
    for k, a in enumerate(answers):
        got = levels(a.scores["z-score (shipped)"], cuts, a.same)
        cats = [ms.category[int(p)] for p in a.positions]
        if a.kind == "copy":
            ok = int(a.positions[0]) == a.target and got[0] == "same"
            first_same = next((int(p) for p, lv in zip(a.positions, got) if lv == "same"), -1)
            before = a.positions[: list(a.positions).index(a.target)] if a.target in a.positions else a.positions
            t.copies += 1
            t.copies_first_same += ok
            t.copies_same_first += first_same == a.target
            t.band_ahead += any(ms.made[int(p)].startswith("band:") for p in before)
            kept = [(int(p), lv) for p, lv in zip(a.positions, got) if not ms.made[int(p)].startswith(UNSCORED)]
            t.first_no_band += bool(kept) and kept[0] == (a.target, "same")
            t.same_first_no_band += next((p for p, lv in kept if lv == "same"), -1) == a.target
            row = t.per_kind.setdefault(ms.copy_kind[k], [0, 0, 0])
            row[0] += ok
            row[1] += first_same == a.target
            row[2] += 1
            continue
        photo = ms.photo[a.index] if a.kind == "library" else -2
        for level, cat, p in zip(got, cats, a.positions):
            t.per_level[level][0] += cat == a.truth
            t.per_level[level][1] += cat == a.truth or ms.photo[int(p)] == photo
            t.per_level[level][2] += 1
        if a.kind == "library":
            t.recall[0] += sum(1 for lv, c in zip(got, cats) if c == a.truth and lv in ("same", "similar"))
            t.recall[1] += min(LIMIT, members[a.truth] - 1)
        else:
            t.strangers += 1
            t.strangers_no_same += "same" not in got
            t.strangers_similar += "similar" in got
            t.strangers_similar_photo += any(lv == "similar" and c.startswith("scene:") for lv, c in zip(got, cats))
    return t


def _share(n: int, d: int) -> str:
    return f"{n / d:.3f} ({n}/{d})" if d else "-"


def _two(row: list[int]) -> str:
    return f"{row[0] / row[2]:.3f}; {row[1] / row[2]:.3f} (of {row[2]})" if row[2] else "-"


def levels_table(runs: list[tuple[Embedded, list[Answer]]], ms: MatchSet) -> None:
    print("\n### At the shipped cuts (match_levels.CUTS, z-score, the framing check at the copy floor)\n")
    print(
        "| extractor | cuts similar / related | copy: original first as same | copy: first same is the original "
        "| the same, band shots left out | copy: a band shot before the original | unrelated: no same | unrelated: any similar (a photo) "
        "| similar P (scene; photo) | similar R | related P (scene; photo) | weak P (scene) | same P (library queries) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for e, answers in runs:
        t = tally(e, answers, ms)
        c = cuts_for(e.extractor)
        lv = t.per_level
        print(
            f"| {e.label} | {c.similar} / {c.related} | {_share(t.copies_first_same, t.copies)} "
            f"| {_share(t.copies_same_first, t.copies)} "
            f"| {_share(t.first_no_band, t.copies)}; {_share(t.same_first_no_band, t.copies)} "
            f"| {_share(t.band_ahead, t.copies)} "
            f"| {_share(t.strangers_no_same, t.strangers)} | {_share(t.strangers_similar, t.strangers)} "
            f"({_share(t.strangers_similar_photo, t.strangers)}) | {_two(lv['similar'])} | {_share(*t.recall)} "
            f"| {_two(lv['related'])} | {_share(lv['weak'][0], lv['weak'][2])} | {_share(lv['same'][0], lv['same'][2])} |"
        )
    print("\n### Copies by edit: the original first as same; the first same result is the original\n")
    print("| kind | " + " | ".join(e.label for e, _ in runs) + " |")
    print("|---|" + "---|" * len(runs))
    tallies = [tally(e, a, ms) for e, a in runs]
    for kind in tallies[0].per_kind:
        cells = [
            f"{_share(t.per_kind[kind][0], t.per_kind[kind][2])}; {t.per_kind[kind][1] / t.per_kind[kind][2]:.3f}"
            for t in tallies
        ]
        print(f"| {kind} | " + " | ".join(cells) + " |")


def sweep_table(runs: list[tuple[Embedded, list[Answer]]], ms: MatchSet, cuts: list[float]) -> None:
    print(
        "\n### The z-score cut swept (photo queries): `similar` precision against the scene and against the source "
        "photo, recall against the scene; unrelated queries with a similar photo\n"
    )
    print("| cut | " + " | ".join(f"{e.label} P scene / P photo / R / unrelated" for e, _ in runs) + " |")
    print("|---|" + "---|" * len(runs))
    for cut in cuts:
        cells = []
        for _, answers in runs:
            right = found = strangers = stray = place = 0
            for a in answers:
                if a.kind == "copy":
                    continue
                above = a.scores["z-score (shipped)"] >= cut
                cats = [ms.category[int(p)] for p in a.positions]
                if a.kind == "stranger":
                    strangers += 1
                    stray += any(h and c.startswith("scene:") for h, c in zip(above, cats))
                    continue
                found += int(above.sum())
                right += sum(1 for h, c in zip(above, cats) if h and c == a.truth)
                photo = ms.photo[a.index]
                place += sum(
                    1 for h, c, p in zip(above, cats, a.positions) if h and (c == a.truth or ms.photo[int(p)] == photo)
                )
            total = sum(min(LIMIT, ms.category.count(a.truth) - 1) for a in answers if a.kind == "library")
            cells.append(
                f"{right / max(1, found):.3f} / {place / max(1, found):.3f} / {right / max(1, total):.3f} "
                f"/ {stray / max(1, strangers):.3f}"
            )
        print(f"| {cut} | " + " | ".join(cells) + " |")


def background_table(runs: list[tuple[Embedded, list[Answer]]], ms: MatchSet, sizes: list[int], seed: int) -> None:
    """How many background rows the correction needs: levels from a smaller sample against the
    full library's (every library and unrelated query's results), and the query's statistics
    (what the prior stands in for)."""
    print("\n### The background's size: levels that agree with the whole library's; the queries' statistics\n")
    print(
        "| extractor | "
        + " | ".join(f"{n} rows" for n in sizes)
        + " | cosine mean to the library, median (p5-p95) | spread, median (p5-p95) |"
    )
    print("|---|" + "---|" * (len(sizes) + 2))
    rng = np.random.default_rng(seed)
    for e, answers in runs:
        full = Background(e.library, e.extractor)
        cuts = cuts_for(e.extractor)
        picked = [a for a in answers if a.kind != "copy"]
        queries = [_query_vector(e, ms, a) for a in picked]
        want = [
            levels(corrected(q, a.cosines, full), cuts, np.zeros(len(a.cosines), dtype=bool))
            for q, a in zip(queries, picked)
        ]
        cells = []
        for n in sizes:
            agree = total = 0
            for q, a, w in zip(queries, picked, want):
                rows = e.library[rng.choice(len(e.library), size=min(n, len(e.library)), replace=False)]
                got = levels(
                    corrected(q, a.cosines, Background(rows, e.extractor)), cuts, np.zeros(len(a.cosines), dtype=bool)
                )
                agree += sum(x == y for x, y in zip(got, w))
                total += len(w)
            cells.append(f"{agree / max(1, total):.3f}")
        stats = [match_levels.query_stats(q, full) for q in queries]
        means, spreads = np.array([s.mean for s in stats]), np.array([s.spread for s in stats])
        print(f"| {e.label} | " + " | ".join(cells) + f" | {_spread(means)} | {_spread(spreads)} |")


def _spread(values: np.ndarray) -> str:
    p5, p50, p95 = np.percentile(values, [5, 50, 95])
    return f"{p50:.3f} ({p5:.3f}-{p95:.3f})"


def _query_vector(e: Embedded, ms: MatchSet, a: Answer) -> np.ndarray:
    return e.library[a.index] if a.kind == "library" else e.strangers[a.index]


def answer_all(ms: MatchSet, args: argparse.Namespace) -> list[tuple[Embedded, list[Answer]]]:
    prints = Prints(ms)
    rng = np.random.default_rng(args.seed + 1)
    runs = []
    for e in embed_all(ms, args):
        sample = rng.choice(len(ms.library), size=min(match_levels.BACKGROUND_SIZE, len(ms.library)), replace=False)
        background = Background(e.library[np.sort(sample)], e.extractor)
        runs.append((e, answer(e, ms, prints, background)))
        print(f"\n{e.label}: {e.seconds * 1000:.1f} ms a picture to embed; background {len(sample)} rows")
    return runs


def save(path: str, ms: MatchSet, runs: list[tuple[Embedded, list[Answer]]]) -> None:
    """The set's labels and every run's answers, for ``--load`` (tables again without embedding)."""
    labels = MatchSet([], ms.category, ms.made, ms.photo, [], ms.copy_of, ms.copy_kind, [], ms.stranger_kind)
    with open(path, "wb") as out:
        pickle.dump((labels, len(ms.library), len(ms.copies), len(ms.strangers), runs), out)


def load_set(path: str) -> MatchSet:
    with open(path, "rb") as f:
        labels: MatchSet
        labels, n_library, n_copies, n_strangers, _ = pickle.load(f)
    blank = Image.new("RGB", (1, 1))  # the pictures are not kept: only their count is read
    labels.library, labels.copies, labels.strangers = [blank] * n_library, [blank] * n_copies, [blank] * n_strangers
    return labels


def load(path: str) -> list[tuple[Embedded, list[Answer]]]:
    with open(path, "rb") as f:
        runs: list[tuple[Embedded, list[Answer]]] = pickle.load(f)[-1]
    return runs


def service_check(ms: MatchSet, runs: list[tuple[Embedded, list[Answer]]], queries: int) -> None:
    """The same library in a real daemon (efficientnet fp32; the service and HTTP server in this
    process, as tests/helpers.py builds them): ``queries`` copies and the unrelated queries,
    uploaded to ``POST /search``; each result's ``match`` against this bench's level for it."""
    import io
    import tempfile

    from helpers import live_server, server_config

    e, answers = next((e, a) for e, a in runs if e.label == "efficientnet fp32")
    wanted = [a for a in answers if a.kind == "copy"][:queries] + [a for a in answers if a.kind == "stranger"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "library").mkdir()
        for k, picture in enumerate(ms.library):
            picture.save(root / "library" / f"{k}.png")  # lossless: the daemon embeds the same pixels
        config = server_config(
            root,
            server={"allowed_roots": [str(root)]},
            **{"extractors.efficientnet": {"precision": "fp32", "engine": "torch"}},
        )
        with live_server(config) as live:
            status, job = live.get("/add", image=str(root / "library"))
            assert status == 202, job
            live.wait_job(job["job"], timeout=3600)
            tally = _ServiceTally()
            for a in wanted:
                buffer = io.BytesIO()
                (ms.copies if a.kind == "copy" else ms.strangers)[a.index].save(buffer, format="PNG")
                status, body = live.post("/search", buffer.getvalue(), "image/png", limit=LIMIT)
                assert status == 200, body
                got = [(int(Path(r["image"]).stem), str(r["match"])) for r in body["results"]]
                tally.add(ms, a, got, levels(a.scores["z-score (shipped)"], cuts_for(e.extractor), a.same))
    tally.print(len(ms.library))


@dataclass
class _ServiceTally:
    """What the daemon answered (it lists a picture query's ``same`` results of its first 20 first)."""

    copies: int = 0
    first: int = 0  # the bench's own order (by cosine): the original first and same
    first_daemon: int = 0  # the daemon's first result is the original, as same
    first_daemon_no_band: int = 0  # the same with band shots left out of its results
    strangers: int = 0
    strangers_no_same: int = 0
    agree: int = 0
    total: int = 0

    def add(self, ms: MatchSet, a: Answer, got: list[tuple[int, str]], ours_levels: list[str]) -> None:
        ours = dict(zip((int(p) for p in a.positions), ours_levels, strict=True))
        for position, level in got:
            if position in ours:
                self.agree += ours[position] == level
                self.total += 1
        if a.kind != "copy":
            self.strangers += 1
            self.strangers_no_same += all(level != "same" for _, level in got)
            return
        self.copies += 1
        self.first += int(a.positions[0]) == a.target and ours[int(a.positions[0])] == "same"
        self.first_daemon += bool(got) and got[0] == (a.target, "same")
        kept = [(p, level) for p, level in got if not ms.made[p].startswith("band:")]
        self.first_daemon_no_band += bool(kept) and kept[0] == (a.target, "same")

    def print(self, files: int) -> None:
        print(f"\n### Through a real daemon (efficientnet fp32, {files} files, POST /search uploads)\n")
        print("| what | this bench (by cosine) | the daemon (same first) |")
        print("|---|---|---|")
        print(
            f"| copies: the original first as same, every shot in ({self.copies} queries) "
            f"| {_share(self.first, self.copies)} | {_share(self.first_daemon, self.copies)} |"
        )
        print(f"| copies: the same, band shots left out | | {_share(self.first_daemon_no_band, self.copies)} |")
        print(
            f"| unrelated: no same result ({self.strangers} queries) | "
            f"| {_share(self.strangers_no_same, self.strangers)} |"
        )
        print(f"| results in both top {LIMIT}s with the same level | {_share(self.agree, self.total)} | |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=1000, help="at most this many scenes")
    parser.add_argument(
        "--per-kind", type=int, default=20, help="unrelated pictures of each kind, library and queries each"
    )
    parser.add_argument("--copy-kinds", type=int, default=0, help="only the first N copy kinds (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precisions", default="fp32,bf16", help="EfficientNet-Lite0 (real weights)")
    parser.add_argument("--random", default="", help="also these with random weights: clip,resnet (mechanics only)")
    parser.add_argument("--sweep", default="2,2.5,3,3.5,4,4.5,5,5.5,6")
    parser.add_argument(
        "--backgrounds", default="16,32,64,128,256", help="background sizes compared with the whole library"
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--service", type=int, default=0, help="also N copy queries through a real daemon (0: none)")
    parser.add_argument("--save", default="", help="keep the answers in this file (pickle)")
    parser.add_argument("--load", default="", help="the answers of an earlier --save: only the tables")
    args = parser.parse_args()
    print(f"# bench_match on {cpu_line()}")
    t0 = time.monotonic()
    ms = build_set(args) if not args.load else load_set(args.load)
    made = time.monotonic() - t0
    scenes = len({c for c in ms.category if c.startswith("scene:")})
    print(
        f"\n{scenes} scenes; library {len(ms.library)} pictures ({len(UNRELATED_KINDS)} unrelated kinds x {args.per_kind}); "
        f"queries: {len(ms.copies)} copies, {len(ms.library)} library pictures, {len(ms.strangers)} unrelated; "
        f"made and printed in {made:.0f} s"
    )
    runs = answer_all(ms, args) if not args.load else load(args.load)
    if args.save:
        save(args.save, ms, runs)
    compare_table(runs, ms)
    sweep_table(runs, ms, [float(c) for c in args.sweep.split(",")])
    levels_table(runs, ms)
    background_table(runs, ms, [int(n) for n in args.backgrounds.split(",")], args.seed + 2)
    if args.service:
        service_check(build_set(args) if args.load else ms, runs, args.service)


if __name__ == "__main__":
    main()
