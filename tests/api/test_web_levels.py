"""The page's match levels and a model change (issue 30) in a real headless Chromium against real
daemons (EfficientNet with its real ImageNet weights, real photos).

Search: each result card shows its level in words; results below ``similar`` are folded behind
"Show N weaker matches" (N the API's own count), shown in place by a click; the viewer and the
grid's arrow keys go over the shown cards; More results adds pages and keeps folding; a search
with nothing close says so and offers the weaker ones; a phone. Status: during a real model
change (a new ``preprocess``, the re-embedding paced by ``Service.change_overrides``) the view
shows the old and the new model and done of total as ``/stats`` says them. Screenshots land in
the module's temporary folder (``pytest -s`` prints where); docs/page-levels.png is one of them.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from match_set import UNRELATED_KINDS, noise, unrelated
from page_browser import (
    errors_in_console,
    js,
    open_page,
    wait_indexed,
    wait_js,
)

from duplicate_set import SIMILAR_KINDS, scenes, second_shot, window
from helpers import Live, live_server, server_config, skimage_photos, wait_for

pytestmark = pytest.mark.browser

WORDS = {"same": "Same picture", "similar": "Similar", "related": "Related", "weak": "Weak"}
CLOSE = ("same", "similar")
SHOTS = 4  # second shots of each scene: the query's similar pictures


def make_library(folder: Path, shots: int = SHOTS, unrelated_each: int = 2) -> int:
    """Real photos cut into scenes, each scene's original and ``shots`` second shots (moved,
    zoomed), and a few unrelated pictures (drawings, text, charts...): how many were written."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(30)
    names = list(skimage_photos())
    count = 0
    for n, scene in enumerate(scenes(skimage_photos().values())):
        name = names[n] if n < len(names) else f"scene{n}"
        window(scene).save(folder / f"{name}.jpg", quality=90)
        if n == 0:  # two edited copies of the first scene: `same` results besides the query itself
            picture = window(scene)
            picture.save(folder / f"{name}-q60.jpg", quality=60)
            picture.resize((picture.width // 2, picture.height // 2)).save(folder / f"{name}-half.jpg", quality=90)
            count += 2
        for i, kind in enumerate(SIMILAR_KINDS[:shots]):
            second_shot(scene, kind, rng)[0].save(folder / f"{name}-shot{i}.jpg", quality=90)
        count += 1 + shots
    for kind in [k for k in UNRELATED_KINDS if k != "noise"]:  # noise is the query that matches nothing
        for i in range(unrelated_each):
            unrelated(kind, rng).convert("RGB").save(folder / f"{kind}{i}.png")
            count += 1
    return count


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A daemon watching the library, every picture indexed."""
    root = tmp_path_factory.mktemp("web-levels")
    count = make_library(root / "photos")
    (root / "queries").mkdir()
    noise(np.random.default_rng(7)).save(root / "queries" / "static.png")  # like nothing in the library
    config = server_config(root, watch={"directories": [str(root / "photos")]}, server={"allowed_roots": [str(root)]})
    with live_server(config) as live:
        live.root = root
        wait_indexed(live, count)
        yield live


def cards(driver: Any) -> list[dict[str, Any]]:
    """Every result card in order: its name, its level's words, whether it is shown (not folded)."""
    return js(
        driver,
        """return Array.from(document.querySelectorAll('#results .card')).map(c => ({
               name: c.querySelector('.name').textContent, shown: !c.hidden && c.offsetHeight > 0,
               level: c.querySelector('.level') ? c.querySelector('.level').textContent : null}))""",
    )


def shown_names(driver: Any) -> list[str]:
    return [c["name"] for c in cards(driver) if c["shown"]]


def weaker_button(driver: Any) -> str | None:
    """The "Show N weaker matches" button's words, None when it is hidden."""
    return js(driver, "const b = document.querySelector('#show-weaker'); return b.hidden ? null : b.textContent")


def no_close_line(driver: Any) -> bool:
    return js(driver, "const p = document.querySelector('#no-close'); return !p.hidden && p.offsetHeight > 0")


def focused(driver: Any) -> str:
    return js(driver, "return document.activeElement.getAttribute('aria-label') || ''")


def answer(live: Live, query: Path, limit: int, offset: int = 0) -> list[dict[str, Any]]:
    """The API's results for a search by ``query``'s path: what the page must show."""
    status, body = live.get("/search", image=str(query), limit=str(limit), offset=str(offset))
    assert status == 200, body
    return body["results"]


def name_of(result: dict[str, Any]) -> str:
    return Path(result["image"]).name


def weaker_words(n: int) -> str:
    return f"Show {n} weaker {'match' if n == 1 else 'matches'}"


def search(driver: Any, live: Live, query: Path, limit: int) -> None:
    open_page(driver, f"{live.base}/?poll=200#search?{urllib.parse.urlencode({'image': str(query), 'limit': limit})}")
    wait_js(driver, "return document.querySelectorAll('#results .card').length > 0", "the results")


def test_each_card_shows_its_level_and_the_weaker_ones_are_folded(browser, site, shots):
    from selenium.webdriver.common.keys import Keys

    query = site.root / "photos" / "chelsea.jpg"
    results = answer(site, query, 24)
    close = [name_of(r) for r in results if r["match"] in CLOSE]
    weaker = [name_of(r) for r in results if r["match"] not in CLOSE]
    assert len(close) >= 3 and weaker, [(name_of(r), r["match"]) for r in results]  # the library gives both
    search(browser, site, query, 24)
    assert [c["name"] for c in cards(browser)] == [name_of(r) for r in results]
    assert [c["level"] for c in cards(browser)] == [WORDS[r["match"]] for r in results]
    assert shown_names(browser) == close and not no_close_line(browser)
    assert weaker_button(browser) == weaker_words(len(weaker))
    browser.save_screenshot(str(shots / "levels.png"))
    # the viewer goes over the shown cards only
    js(browser, "document.querySelector('#results .card:not([hidden]) .thumb').click()")
    wait_js(browser, "return document.querySelector('#viewer').open", "the viewer")
    assert js(browser, "return document.querySelector('#viewer-count').textContent") == f"1 of {len(close)}"
    browser.switch_to.active_element.send_keys(Keys.ARROW_RIGHT)
    wait_js(browser, f"return document.querySelector('#viewer-title').textContent === {close[1]!r}", "the next")
    browser.switch_to.active_element.send_keys(Keys.ESCAPE)
    wait_for(lambda: focused(browser) == f"View {close[1]}", 5, "the focus back on the card shown last")
    # the grid's keys too: End is the last shown card, not a folded one
    browser.switch_to.active_element.send_keys(Keys.END)
    assert focused(browser) == f"View {close[-1]}"
    browser.switch_to.active_element.send_keys(Keys.HOME, Keys.ARROW_RIGHT)
    assert focused(browser) == f"View {close[1]}"
    # the button shows the weaker ones in place, in the API's order; the focus on the first of them
    js(browser, "document.querySelector('#show-weaker').click()")
    assert shown_names(browser) == [name_of(r) for r in results]
    assert weaker_button(browser) is None
    first_weaker = next(name_of(r) for r in results if r["match"] not in CLOSE)
    assert focused(browser) == f"View {first_weaker}"
    js(browser, "document.querySelector('#results .card:not([hidden]) .thumb').click()")
    wait_js(browser, "return document.querySelector('#viewer').open", "the viewer")
    assert js(browser, "return document.querySelector('#viewer-count').textContent") == f"1 of {len(results)}"
    browser.switch_to.active_element.send_keys(Keys.ESCAPE)
    assert errors_in_console(browser) == []


def test_more_results_adds_pages_and_keeps_folding(browser, site):
    query = site.root / "photos" / "coffee.jpg"
    first, second = answer(site, query, 12), answer(site, query, 12, offset=12)
    both = first + second
    search(browser, site, query, 12)
    assert shown_names(browser) == [name_of(r) for r in first if r["match"] in CLOSE]
    wait_js(browser, "return !document.querySelector('#more-results').hidden", "the More results button")
    js(browser, "document.querySelector('#more-results').click()")
    wait_js(browser, f"return document.querySelectorAll('#results .card').length === {len(both)}", "page two")
    assert [c["name"] for c in cards(browser)] == [name_of(r) for r in both]
    assert shown_names(browser) == [name_of(r) for r in both if r["match"] in CLOSE]
    assert weaker_button(browser) == weaker_words(sum(r["match"] not in CLOSE for r in both))
    assert errors_in_console(browser) == []


def test_a_search_with_nothing_close_says_so_and_offers_the_weaker_ones(browser, site, shots):
    """An upload of random pixels (the library holds none): every result weaker than similar."""
    from selenium.webdriver.common.by import By

    query = site.root / "queries" / "static.png"
    status, body = site.post("/search", query.read_bytes(), "application/octet-stream", limit="12")
    assert status == 200, body
    results = body["results"]
    assert results and not [r for r in results if r["match"] in CLOSE], [(name_of(r), r["match"]) for r in results]
    open_page(browser, f"{site.base}/?poll=200#search?limit=12")
    browser.find_element(By.ID, "file").send_keys(str(query))
    wait_js(browser, f"return document.querySelectorAll('#results .card').length === {len(results)}", "the results")
    wait_for(lambda: no_close_line(browser), 10, "the line saying nothing is close")
    assert shown_names(browser) == [] and weaker_button(browser) == weaker_words(len(results))
    browser.save_screenshot(str(shots / "no-close.png"))
    js(browser, "document.querySelector('#show-weaker').click()")
    assert shown_names(browser) == [name_of(r) for r in results]
    assert [c["level"] for c in cards(browser)] == [WORDS[r["match"]] for r in results]
    assert errors_in_console(browser) == []


def test_levels_and_the_fold_on_a_phone_and_in_the_dark(browser, site, shots):
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True}
    )
    browser.execute_cdp_cmd(
        "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]}
    )
    try:
        search(browser, site, site.root / "photos" / "chelsea.jpg", 12)
        assert js(browser, "return window.innerWidth") == 390
        assert js(browser, "return document.documentElement.scrollWidth") <= 390
        # each label inside its card, on one line, its text and background apart (dark too)
        boxes = js(
            browser,
            """return Array.from(document.querySelectorAll('#results .card:not([hidden])')).map(c => {
                   const l = c.querySelector('.level').getBoundingClientRect(), t = c.getBoundingClientRect();
                   const s = getComputedStyle(c.querySelector('.level'));
                   return {inside: l.left >= t.left && l.right <= t.right, line: l.height < 30,
                           colours: [s.color, s.backgroundColor]}; })""",
        )
        assert boxes and all(b["inside"] and b["line"] for b in boxes), boxes
        assert all(b["colours"][0] != b["colours"][1] for b in boxes), boxes
        button = js(browser, "return document.querySelector('#show-weaker').getBoundingClientRect().right")
        assert 0 < button <= 390
        browser.save_screenshot(str(shots / "levels-phone-dark.png"))
    finally:
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    assert errors_in_console(browser) == []


# -- the Status view during a model change ----------------------------------------------------------


@pytest.fixture(scope="module")
def changing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A library indexed with ``preprocess = "squash"``, then the daemon started again with
    ``letterbox`` (a new model id): the old model serves while the new one re-embeds, slowly."""
    root = tmp_path_factory.mktemp("web-change")
    count = make_library(root / "photos", shots=1, unrelated_each=1)
    sections: dict[str, Any] = {"watch": {"directories": [str(root / "photos")]}}
    efficientnet = {"device": "cpu", "batch_size": 4, "precision": "fp32", "engine": "torch"}
    config = server_config(root, **sections, **{"extractors.efficientnet": {**efficientnet, "preprocess": "squash"}})
    with live_server(config) as before:
        wait_indexed(before, count)
    config = server_config(root, **sections, **{"extractors.efficientnet": {**efficientnet, "preprocess": "letterbox"}})
    with live_server(config, load=False) as live:
        live.service.change_overrides = {"pace": 3.0}  # seconds between batches of 4: the change lasts ~25 s
        live.service.load()
        yield live


def change_of(live: Live) -> dict[str, Any] | None:
    status, stats = live.get("/stats")
    assert status == 200, stats
    change: dict[str, Any] | None = stats["extractors"]["efficientnet"].get("change")
    return change


def test_the_status_view_shows_a_model_change_as_stats_does(browser, changing, shots):
    change = wait_for(lambda: change_of(changing), 60, "a model change in /stats")
    assert change is not None and change["state"] == "embedding" and change["from"] != change["to"], change
    open_page(browser, f"{changing.base}/?poll=200#status")
    part = "document.querySelector('.model-change[data-extractor=\"efficientnet\"]')"
    wait_js(browser, f"return {part} !== null", "the model change in the Status view")

    def same_as_stats() -> bool:
        text = js(browser, f"const p = {part}; return p ? p.innerText : ''")
        now = change_of(changing)
        assert now is not None, "the change ended before the page showed it"
        agree = f"{now['done']} of {now['total']} different pictures" in text
        return agree and f"{now['from']} → {now['to']}" in text and f"Searches use {now['from']}" in text

    wait_for(same_as_stats, 20, "the Status view's done of total to be /stats'")
    value = js(browser, f"return Number({part}.querySelector('[role=progressbar]').getAttribute('aria-valuenow'))")
    now = change_of(changing)
    assert now is not None and 0 <= value <= 100
    browser.save_screenshot(str(shots / "status-change.png"))
    assert errors_in_console(browser) == []


def test_a_failed_change_says_why_and_that_the_old_model_serves(browser, changing, shots):
    """The daemon's own /stats with its change turned into a failed one (as api/models/stats.py
    describes it), drawn by the Status view's code in the page."""
    open_page(browser, f"{changing.base}/?poll=60000#status")  # no poll redraws it meanwhile
    status, stats = changing.get("/stats")
    change = stats["extractors"]["efficientnet"].get("change")
    assert status == 200 and change is not None, "runs while the change of the test before goes on"
    change.update(state="failed", error="the weights file /models/new.pth is missing", rate=None, eta_seconds=None)
    js(browser, "import('/ui/status.js').then(s => s.renderStatus(arguments[0]))", stats)
    part = "const p = document.querySelector('.model-change.failed'); return p ? p.innerText : ''"
    text = wait_js(browser, part, "the failed change in the Status view")
    assert "the weights file /models/new.pth is missing" in text and f"{change['from']} goes on serving" in text
    assert f"from {change['from']} to {change['to']}." in text and "embedded" not in text, text
    assert text.count("goes on serving") == 1, text
    change["to"] = None  # the configured model did not load: its id is not known
    js(browser, "import('/ui/status.js').then(s => s.renderStatus(arguments[0]))", stats)
    wait_for(lambda: "to the configured model." in js(browser, part), 10, "the failed change without a new id")
    assert "null" not in js(browser, part) and "→" not in js(browser, part)
    browser.save_screenshot(str(shots / "status-change-failed.png"))
    assert errors_in_console(browser) == []
