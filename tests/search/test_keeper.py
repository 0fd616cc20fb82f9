"""keeper: each rule, their order, the folders that win first, and the reason in words."""

from __future__ import annotations

import pytest

from imgsearchd.config import KEEP_RULES
from imgsearchd.media.sizes import human_size
from imgsearchd.search.keeper import MemberFacts, choose

BIG = MemberFacts("/p/b/IMG_1.jpg", 3_000_000, 4032, 3024)
SMALL = MemberFacts("/p/a/IMG_1.jpg", 1_000_000, 3024, 2268)


def test_most_pixels_wins_by_default_and_says_so() -> None:
    assert choose([SMALL, BIG], KEEP_RULES, ()) == (1, "most pixels: 4032x3024 (next 3024x2268)")


@pytest.mark.parametrize(
    ("paths", "kept", "reason"),
    [
        (("/p/x.png", "/p/x.dng"), 1, "RAW (DNG) over PNG"),
        (("/p/x.webp", "/p/x.jpg"), 1, "JPEG over WebP"),
        (("/p/x.jpeg", "/p/x.heic"), 1, "HEIC over JPEG"),
        (("/p/x.tif", "/p/x.png"), 0, "TIFF over PNG"),
        (("/p/x.gif", "/p/x.webp"), 1, "WebP over GIF"),
    ],
)
def test_the_format_decides_at_equal_pixels(paths: tuple[str, str], kept: int, reason: str) -> None:
    members = [MemberFacts(p, 1000, 100, 100) for p in paths]
    assert choose(members, KEEP_RULES, ()) == (kept, reason)


def test_then_metadata_then_bytes_then_the_oldest_then_the_path() -> None:
    plain = MemberFacts("/p/a.jpg", 900, 10, 10)
    rich = MemberFacts("/p/b.jpg", 800, 10, 10, metadata=("capture time", "camera"))
    assert choose([plain, rich], KEEP_RULES, ()) == (1, "most metadata: capture time, camera (next none)")
    bigger = MemberFacts("/p/b.jpg", 2_500_000, 10, 10)
    assert choose([plain, bigger], KEEP_RULES, ()) == (1, "largest file: 2.4 MB (next 900 B)")  # 1024-based
    old = MemberFacts("/p/b.jpg", 900, 10, 10, 1.5e9, "2017-07-14T04:40:00")
    new = MemberFacts("/p/a.jpg", 900, 10, 10, 1.6e9, "2020-09-13T14:26:40")
    assert choose([new, old], KEEP_RULES, ()) == (1, "oldest: taken 2017-07-14 (next 2020-09-13)")
    undated = MemberFacts("/p/a.jpg", 900, 10, 10)
    # an unknown date never decides: the path does ("/p/a.jpg" < "/p/b.jpg")
    assert choose([old, undated], KEEP_RULES, ()) == (1, "first by name")
    assert choose([MemberFacts("/p/bb/x.jpg", 9), MemberFacts("/p/x.jpg", 9)], KEEP_RULES, ()) == (1, "shortest path")
    assert choose([MemberFacts("/p/b.jpg", 9), MemberFacts("/p/a.jpg", 9)], KEEP_RULES, ()) == (1, "first by name")


def test_same_day_shows_the_time() -> None:
    morning = MemberFacts("/p/b.jpg", 9, taken_at=1.0, taken="2019-05-01T08:00:00")
    noon = MemberFacts("/p/a.jpg", 9, taken_at=2.0, taken="2019-05-01T12:00:00")
    assert choose([noon, morning], KEEP_RULES, ()) == (
        1,
        "oldest: taken 2019-05-01 08:00:00 (next 2019-05-01 12:00:00)",
    )


def test_prefer_folders_come_first_in_their_order() -> None:
    best = ("/p/best", "/p/b")
    assert choose([BIG, SMALL], KEEP_RULES, ("/p/a",)) == (1, "in /p/a (duplicates.prefer)")
    assert choose([SMALL, BIG], KEEP_RULES, best) == (1, "in /p/b (duplicates.prefer)")
    in_best = MemberFacts("/p/best/IMG_1.jpg", 10, 10, 10)
    assert choose([BIG, in_best], KEEP_RULES, best) == (1, "in /p/best (duplicates.prefer)")
    assert choose([BIG, MemberFacts("/p/bestest/x.jpg", 1)], KEEP_RULES, ("/p/best",))[0] == 0  # a folder, not a prefix


def test_keep_in_wins_before_every_rule() -> None:
    assert choose([BIG, SMALL], KEEP_RULES, ("/p/b",), keep_in="/p/a") == (1, "in /p/a (keep_in)")
    assert choose([BIG, SMALL], KEEP_RULES, (), keep_in="/elsewhere")[0] == 0  # no member there: the rules decide


def test_a_folder_that_set_others_aside_is_named_before_the_rule_that_chose_in_it() -> None:
    """Review item 2: the runner-up inside the folder is not the one keep_in beat."""
    outside = MemberFacts("/p/first/a.jpg", 50_000, 600, 400)
    bigger = MemberFacts("/p/second/a.jpg", 43_008, 600, 400)
    smaller = MemberFacts("/p/second/b.jpg", 41_165, 600, 400)
    members = [outside, smaller, bigger]
    assert choose(members, KEEP_RULES, (), keep_in="/p/second") == (
        2,
        "in /p/second (keep_in), then largest file: 42 KB (next 40 KB)",
    )
    assert choose(members, KEEP_RULES, ("/p/second",)) == (
        2,
        "in /p/second (duplicates.prefer), then largest file: 42 KB (next 40 KB)",
    )
    # every member in the folder: it set nobody aside, so it is not the reason
    assert choose([smaller, bigger], KEEP_RULES, (), keep_in="/p/second") == (1, "largest file: 42 KB (next 40 KB)")


def test_a_regular_file_is_kept_over_a_symbolic_link_before_every_rule() -> None:
    """Review item 1: keeping a link and trashing its target leaves the link dangling."""
    link = MemberFacts("/p/sub/best/x.jpg", 100, 600, 400, link=True)
    plain = MemberFacts("/p/elsewhere/x.jpg", 10, 300, 200)
    assert choose([link, plain], KEEP_RULES, ("/p/sub",), keep_in="/p/sub") == (1, "a file, not a symbolic link")
    other = MemberFacts("/p/x.jpg", 10, 300, 200, link=True)
    assert choose([link, other], KEEP_RULES, ()) == (0, "most pixels: 600x400 (next 300x200)")  # links only: the rules
    three = [link, plain, MemberFacts("/p/sub/y.jpg", 10, 300, 200)]
    assert choose(three, KEEP_RULES, (), keep_in="/p/sub") == (
        2,
        "a file, not a symbolic link, then in /p/sub (keep_in)",
    )


@pytest.mark.parametrize("rule", ["pixels", "taken", "metadata"])
def test_an_unknown_value_never_decides(rule: str) -> None:
    """Review item 5: "most pixels: 600x400 (next unknown size)" for a byte-identical group."""
    known = MemberFacts("/p/bb/x.jpg", 9, 600, 400, 1.5e9, "2017-07-14T04:40:00", ("camera",))
    unknown = MemberFacts("/p/x.jpg", 9, metadata=None)
    assert choose([known, unknown], (rule, "path"), ()) == (1, "shortest path")
    assert choose([unknown, known], (rule,), ()) == (0, "no rule tells them apart: the first listed")


def test_sizes_read_as_the_cli_and_the_page_show_them() -> None:
    """Review item 8: one unit system (1024-based, ``media.sizes``) in the keeper's reason, the
    cards and the CLI; the reason said "43.0 kB" (decimal) beside a card's "42 KB"."""
    big, small = MemberFacts("/p/big.jpg", 43_008, 10, 10), MemberFacts("/p/small.jpg", 41_000, 10, 10)
    assert choose([small, big], ("bytes",), ()) == (
        1,
        f"largest file: {human_size(43_008)} (next {human_size(41_000)})",
    )
    assert human_size(43_008) == "42 KB" and human_size(41_000) == "40 KB"


def test_the_rules_order_is_the_setting() -> None:
    small_raw = MemberFacts("/p/small.dng", 10, 100, 100)
    big_jpeg = MemberFacts("/p/big.jpg", 10, 200, 200)
    assert choose([small_raw, big_jpeg], KEEP_RULES, ())[0] == 1
    assert choose([small_raw, big_jpeg], ("format", "pixels"), ()) == (0, "RAW (DNG) over JPEG")
    twins = [MemberFacts("/p/b.jpg", 10), MemberFacts("/p/a.jpg", 10)]
    assert choose(twins, ("bytes",), ()) == (0, "no rule tells them apart: the first listed")


def test_the_runner_up_is_the_next_best_not_the_next_listed() -> None:
    members = [
        MemberFacts("/p/1.jpg", 1, 10, 10),
        MemberFacts("/p/2.jpg", 1, 40, 30),
        MemberFacts("/p/3.jpg", 1, 30, 30),
    ]
    assert choose(members, KEEP_RULES, ()) == (1, "most pixels: 40x30 (next 30x30)")
