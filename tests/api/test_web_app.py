"""The page as a photo app (issue 28) in a real headless Chromium against one real daemon:
the "starting" and "cannot reach" line, Add folder with completion, the viewer, the arrow keys
in the grid, every search in the address, More results, friendly errors, the phone layout.

One daemon for the module (efficientnet, and CLIP's architecture with random weights for the
text search: offline), started before its models load, so the first test sees the page wait.
The tests run in order, each on the state the one before left. Screenshots land in the module's
temporary folder (``pytest -s`` prints where); docs/page-*.png are chosen from them.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from page_browser import (
    errors_in_console,
    js,
    message,
    open_page,
    results,
    wait_js,
)

from helpers import Live, live_server, server_config, skimage_photos, wait_for
from image_factory import truncated_jpeg

pytestmark = pytest.mark.browser

CROPS = 8  # more pictures than the smallest page (12): "More results" has a next page


def crops(folder: Path, count: int, start: int = 0) -> list[Path]:
    """``count`` distinct pictures cut from the photos."""
    photos = [p.convert("RGB") for p in skimage_photos().values()]
    made = []
    for i in range(start, start + count):
        photo = photos[i % len(photos)]
        x, y = (i * 17) % 90, (i * 29) % 90
        path = folder / f"crop-{i:02}.jpg"
        photo.crop((x, y, x + photo.width // 2, y + photo.height // 2)).resize((200, 160)).save(path, quality=85)
        made.append(path)
    return made


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """The daemon, still loading its models; ``site`` loads them."""
    tmp = tmp_path_factory.mktemp("web-app")
    photos = tmp / "photos"
    photos.mkdir()
    for name, photo in skimage_photos().items():
        photo.convert("RGB").save(photos / f"{name}.jpg", "JPEG", quality=90)
    crops(photos, CROPS)
    (tmp / "more" / "trip").mkdir(parents=True)
    (tmp / "more" / "work").mkdir()
    crops(tmp / "more" / "trip", 3, start=40)
    clip = {
        "model": "ViT-B-32",
        "pretrained": "none",
        "device": "cpu",
        "batch_size": 8,
        "precision": "fp32",
        "engine": "torch",
    }
    config = server_config(
        tmp,
        index={"extractors": ["efficientnet", "clip"]},
        watch={"directories": [str(photos)]},
        server={"allowed_roots": [str(tmp)]},
        **{"extractors.clip": clip},
    )
    with live_server(config, load=False) as live:
        live.root = tmp
        yield live


@pytest.fixture
def site(served: Live) -> Live:
    """The daemon with its models loaded and its folder indexed."""
    if not served.service.ready:
        served.service.load()
    wait_indexed_all(served, photo_count(served))
    return served


def photo_count(live: Live) -> int:
    """The pictures of the watched folder."""
    return len(list((live.root / "photos").iterdir()))


def wait_indexed_all(live: Live, count: int) -> None:
    def settled() -> bool:
        status, stats = live.get("/stats")
        return status == 200 and stats["images"] is not None and stats["images"] >= count and stats["pending"] == 0

    wait_for(settled, 180, f"{count} images indexed")


def banner(driver: Any) -> str | None:
    """The line under the menu: its text, None when hidden."""
    return js(driver, "const b = document.querySelector('#connection'); return b.hidden ? null : b.textContent")


def names(driver: Any) -> list[str]:
    return [r["name"] for r in results(driver)]


def too_wide(driver: Any, width: int = 390) -> list[str]:
    """What reaches past a phone's right edge (the innermost such elements), for a failure's message."""
    return js(
        driver,
        """const w = arguments[0];
           const wide = Array.from(document.querySelectorAll('body *')).filter(e => {
               const r = e.getBoundingClientRect(); return r.width > 0 && r.right > w + 0.5; });
           return wide.filter(e => !wide.some(o => o !== e && e.contains(o)))
               .map(e => `${e.tagName.toLowerCase()}${e.id ? '#' + e.id : ''}.${e.className} ` +
                         `${Math.round(e.getBoundingClientRect().right)}: ${e.textContent.slice(0, 60)}`)""",
        width,
    )


def search_address(live: Live, **params: str) -> str:
    return f"{live.base}/?poll=200#search?{urllib.parse.urlencode(params)}"


def wait_results(driver: Any, what: str, count: int | None = None) -> list[str]:
    """The result cards' names once there are some (``count`` of them); a timeout says what the page said."""
    wanted = "> 0" if count is None else f"=== {count}"
    try:
        wait_js(driver, f"return document.querySelectorAll('#results .card').length {wanted}", what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the page says: {message(driver)!r}") from None
    return names(driver)


# -- the daemon away and back ------------------------------------------------------------------


def test_the_page_says_starting_then_cannot_reach_and_both_go_by_themselves(browser, served, shots):
    # a bookmarked search, opened while the daemon loads its models: it waits, then runs
    open_page(browser, search_address(served, image=str(served.root / "photos" / "chelsea.jpg")))
    text = wait_js(browser, "const b = document.querySelector('#connection'); return !b.hidden && b.textContent", "s")
    assert text.startswith("Starting: loading models"), text
    wait_for(lambda: message(browser).startswith("Starting: loading models"), 30, "the search to wait")
    browser.save_screenshot(str(shots / "starting.png"))
    served.service.load()
    wait_for(lambda: banner(browser) is None, 30, "the starting line to go")
    # the search ran by itself (its answer: what is indexed so far, maybe nothing yet)
    wait_for(lambda: "like chelsea.jpg" in message(browser), 30, f"the search to run (it says {message(browser)!r})")
    browser.get_log("browser")  # the 503s while starting are the point
    # the network gone: the page says so, asks again less often, and says nothing once it is back
    browser.set_network_conditions(offline=True, latency=0, download_throughput=0, upload_throughput=0)
    try:
        wait_for(lambda: (banner(browser) or "").startswith("Cannot reach the daemon"), 30, "the cannot-reach line")
        # said once: the status view (asked at once when shown) keeps its words to itself
        js(browser, "location.hash = '#status'")
        wait_js(browser, "return !document.querySelector('[data-panel=status]').hidden", "the status view")
        wait_js(browser, "return document.querySelector('#status-body').children.length > 0", "the status body", 10)
        said = js(browser, "return document.body.innerText.match(/cannot reach the daemon/gi).length")
        assert said == 1, js(browser, "return document.body.innerText")
    finally:
        browser.delete_network_conditions()
    wait_for(lambda: banner(browser) is None, 30, "the cannot-reach line to go")
    browser.get_log("browser")  # the failed requests' errors belong to the offline spell


# -- folders -------------------------------------------------------------------------------------


def test_add_folder_with_completion_then_its_pictures_are_found(browser, site, shots):
    from selenium.webdriver.common.by import By

    open_page(browser, f"{site.base}/?poll=200#folders")
    photos = str(site.root / "photos")
    wait_js(browser, f"return document.querySelector('#folders-list').innerText.includes({photos!r})", "the list")
    assert "settings" in js(browser, "return document.querySelector('#folders-list').innerText")
    browser.find_element(By.ID, "add-folder").click()  # the button named "Add folder"
    assert browser.find_element(By.ID, "add-folder").text == "Add folder"
    box = browser.find_element(By.ID, "add-path")
    assert js(browser, "return document.activeElement.id") == "add-path"
    box.send_keys(f"{site.root}/mo")  # typing offers the sub-folders of what was typed
    offered = wait_js(
        browser,
        f"""const d = document.querySelector('#add-choices');
            return d.dataset.for === {f"{site.root}/mo"!r} && Array.from(d.options).map(o => o.value)""",
        "completion of /mo",
    )
    assert offered == [str(site.root / "more")]
    box.clear()
    box.send_keys(offered[0] + "/")
    offered = wait_js(
        browser,
        f"""const d = document.querySelector('#add-choices');
            return d.dataset.for === {offered[0] + "/"!r} && Array.from(d.options).map(o => o.value)""",
        "completion of more/",
    )
    assert offered == [str(site.root / "more" / "trip"), str(site.root / "more" / "work")]
    box.send_keys("trip\n")
    folder = str(site.root / "more" / "trip")
    wait_js(browser, "return document.querySelector('#add-message').textContent.startsWith('Watching')", "added")
    row = f"document.querySelector('[data-folder=\"{folder}\"]')"
    wait_js(browser, f"return {row} && {row}.innerText.includes('3 pictures')", "the folder's pictures counted", 90)
    assert "added" in js(browser, f"return {row}.innerText")
    browser.save_screenshot(str(shots / "folders.png"))
    # its pictures are searchable
    open_page(browser, search_address(site, image=str(site.root / "more" / "trip" / "crop-40.jpg")))
    assert wait_results(browser, "the added folder's picture")[0] == "crop-40.jpg"
    # removing it asks first, says the files stay, and they do
    open_page(browser, f"{site.base}/?poll=200#folders")
    wait_js(browser, f"return {row} && {row}.querySelector('button.stop')", "the Remove button")
    js(browser, f"{row}.querySelector('button.stop').click()")
    confirm = wait_js(browser, f"const c = {row}.querySelector('.confirm'); return c && c.innerText", "the question")
    assert "files on disk are not touched" in confirm
    assert js(browser, "return document.activeElement.textContent") == "Stop watching"
    js(browser, "document.activeElement.click()")
    wait_js(browser, f"return !{row}", "the folder to leave the list")
    assert "3 pictures left the search" in js(browser, "return document.querySelector('#folders-message').textContent")
    assert (site.root / "more" / "trip" / "crop-40.jpg").exists()
    assert errors_in_console(browser) == []


# -- the viewer and the grid ----------------------------------------------------------------------


def test_a_result_opens_the_viewer_arrows_move_escape_returns_to_the_card(browser, site, shots):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    open_page(browser, search_address(site, image=str(site.root / "photos" / "chelsea.jpg")))
    shown = wait_results(browser, "results")
    assert shown[0] == "chelsea.jpg"
    js(browser, "document.querySelector('#show-weaker').click()")  # every result (test_web_levels: the fold)
    # the grid is one Tab stop
    assert js(browser, "return document.querySelectorAll('#results [tabindex=\"0\"]').length") == 1
    assert js(browser, "return document.querySelectorAll('#results a:not([tabindex=\"-1\"])').length") == 0
    browser.find_element(By.CSS_SELECTOR, "#results .card .thumb").click()
    wait_js(browser, "return document.querySelector('#viewer').open", "the viewer")
    wait_js(
        browser, "return document.querySelector('#viewer-img').naturalWidth > 256", "the original, not the thumbnail"
    )
    facts = js(browser, "return document.querySelector('#viewer-details').innerText")
    assert str(site.root / "photos") in facts and "451 × 300" in facts and "file date" in facts, facts
    wait_js(browser, "return /\\d+(\\.\\d)? KB/.test(document.querySelector('#viewer-size').textContent)", "size")
    assert js(browser, "return document.querySelector('#viewer-count').textContent") == f"1 of {len(shown)}"
    assert js(browser, "return document.querySelector('#viewer-open').href").startswith(site.base + "/original?")
    browser.save_screenshot(str(shots / "viewer.png"))
    browser.switch_to.active_element.send_keys(Keys.ARROW_RIGHT)
    wait_js(browser, f"return document.querySelector('#viewer-title').textContent === {shown[1]!r}", "the next one")
    assert js(browser, "return document.querySelector('#viewer-count').textContent") == f"2 of {len(shown)}"
    browser.switch_to.active_element.send_keys(Keys.ARROW_RIGHT, Keys.ARROW_LEFT, Keys.ARROW_RIGHT)
    wait_js(browser, f"return document.querySelector('#viewer-title').textContent === {shown[2]!r}", "the third")
    browser.switch_to.active_element.send_keys(Keys.ESCAPE)
    wait_js(browser, "return !document.querySelector('#viewer').open", "the viewer to close")
    focused = "return document.activeElement.getAttribute('aria-label')"
    wait_for(lambda: js(browser, focused) == f"View {shown[2]}", 5, "the focus on the card of the picture last shown")
    # arrows move through the grid, a row at a time up and down; Enter opens the viewer
    columns = js(
        browser,
        """const t = Array.from(document.querySelectorAll('#results .thumb'));
           return t.filter(x => x.offsetTop === t[0].offsetTop).length""",
    )
    assert columns > 2
    browser.switch_to.active_element.send_keys(Keys.ARROW_DOWN)
    assert js(browser, "return document.activeElement.getAttribute('aria-label')") == f"View {shown[2 + columns]}"
    browser.switch_to.active_element.send_keys(Keys.ARROW_LEFT, Keys.ARROW_UP)
    assert js(browser, "return document.activeElement.getAttribute('aria-label')") == f"View {shown[1]}"
    assert js(browser, "return document.querySelectorAll('#results [tabindex=\"0\"]').length") == 1
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    wait_js(browser, f"return document.querySelector('#viewer-title').textContent === {shown[1]!r}", "Enter: viewer")
    # "+" inside the viewer adds the picture to the query (a combined query)
    js(browser, "document.querySelector('#viewer-plus').click()")
    wait_js(browser, "return document.querySelector('#search-message').textContent.includes('2 parts')", "combined")
    assert browser.current_url.count("image=") == 2  # the combined query in the address, both parts
    reload_gives_the_same(browser, "a combined query", "pictures for a query of 2 parts")
    assert js(browser, "return document.querySelectorAll('#parts .chip').length") == 2
    assert errors_in_console(browser) == []


# -- the address ---------------------------------------------------------------------------------


def wait_search(driver: Any, says: str) -> list[str]:
    """The results of the search whose message says ``says``, once they are shown."""
    wait_for(lambda: says in message(driver), 30, f"the message to say {says!r} (it says {message(driver)!r})")
    return wait_results(driver, says)


def reload_gives_the_same(driver: Any, what: str, says: str, says_after: str = "") -> list[str]:
    before = wait_search(driver, says)
    address = driver.current_url
    driver.refresh()
    wait_js(driver, "return !document.querySelector('#nav').hidden", "the page again")
    wait_search(driver, says_after or says)
    after = wait_results(driver, f"{what} after a reload", len(before))
    assert after == before and driver.current_url == address, what
    return after


def test_every_search_is_in_the_address(browser, site, shots):
    from selenium.webdriver.common.by import By

    photos = site.root / "photos"
    open_page(browser, f"{site.base}/?poll=200#search")
    # a path (from "more like this" in the viewer)
    open_page(browser, search_address(site, image=str(photos / "coffee.jpg")))
    by_path = reload_gives_the_same(browser, "a path search", "pictures like coffee.jpg")
    assert by_path[0] == "coffee.jpg"
    # a text, with a filter (the model)
    browser.get(search_address(site, text="a cat", extractor="clip", limit="12"))
    by_text = reload_gives_the_same(browser, "a text search", "pictures matching “a cat”")
    assert len(by_text) == 12
    assert js(browser, "return document.querySelector('#extractor').value") == "clip"
    # an upload: by its content hash
    query = site.root / "query-cat.jpg"
    with Image.open(photos / "chelsea.jpg") as cat:
        cat.crop((40, 20, 420, 300)).save(query, "JPEG", quality=85)
    browser.find_element(By.ID, "file").send_keys(str(query))
    wait_js(browser, "return location.hash.includes('hash=')", "the upload's hash in the address")
    by_hash = reload_gives_the_same(browser, "an upload", "like query-cat.jpg", "like the uploaded picture")
    assert by_hash[0] == "chelsea.jpg"
    # Back: the searches before, in turn (a viewer open on the way closes)
    js(browser, "document.querySelector('#results .thumb').click()")
    wait_js(browser, "return document.querySelector('#viewer').open", "the viewer")
    browser.back()
    wait_js(browser, "return !document.querySelector('#viewer').open", "Back to close the viewer")
    wait_js(browser, "return document.querySelector('#extractor').value === 'clip'", "the text search again")
    wait_for(lambda: names(browser) == by_text and "“a cat”" in message(browser), 30, "the text results again")
    browser.back()
    wait_for(lambda: names(browser) == by_path, 30, "the path results again")
    assert errors_in_console(browser) == []


def test_more_results_adds_the_next_page(browser, site, shots):
    open_page(browser, search_address(site, image=str(site.root / "photos" / "rocket.jpg"), limit="12"))
    first = wait_results(browser, "the first page", 12)
    wait_js(browser, "return !document.querySelector('#more-results').hidden", "the More results button")
    js(browser, "document.querySelector('#more-results').click()")
    wait_js(browser, "return document.querySelectorAll('#results .card').length > 12", "the second page")
    shown = names(browser)
    assert shown[:12] == first and len(shown) == photo_count(site) and len(set(shown)) == len(shown)
    assert message(browser).startswith(f"{photo_count(site)} pictures like rocket.jpg")
    assert js(browser, "return document.querySelector('#more-results').hidden")  # the last page came
    assert errors_in_console(browser) == []


# -- errors and a phone ---------------------------------------------------------------------------


def test_a_corrupt_upload_says_so_in_words_and_clears_the_old_results(browser, site, shots):
    from selenium.webdriver.common.by import By

    open_page(browser, f"{site.base}/?poll=200#search")
    browser.find_element(By.ID, "file").send_keys(str(site.root / "photos" / "coffee.jpg"))
    wait_js(browser, "return location.hash.includes('hash=')", "the upload's hash in the address")
    wait_results(browser, "results to clear")
    with Image.open(site.root / "photos" / "astronaut.jpg") as photo:
        broken = truncated_jpeg(site.root / "cut-short.jpg", photo.convert("RGB"))
    browser.find_element(By.ID, "file").send_keys(str(broken))
    wait_js(browser, "return document.querySelector('#search-message').className.includes('error')", "the error")
    assert message(browser) == "This file is not a picture we can read (it is cut short)."
    assert js(browser, "return document.querySelectorAll('#results .card').length") == 0
    # the address keeps no search whose results are not shown: a reload brings back nothing
    assert js(browser, "return location.hash") == "#search", browser.current_url
    browser.refresh()
    wait_js(browser, "return !document.querySelector('#nav').hidden", "the page again")
    wait_js(browser, "return document.querySelector('#search-message').textContent.includes('indexed')", "welcome")
    assert js(browser, "return document.querySelectorAll('#results .card').length") == 0
    browser.get_log("browser")  # the 415 is the point


def test_an_original_that_cannot_be_had_says_why_not_the_format(browser, site, shots):
    """/original answers 404 (the file is gone) or 403 (outside the roots): the viewer says so."""
    open_page(browser, f"{site.base}/?poll=200#search")
    note = "const n = document.querySelector('#viewer-note'); return !n.hidden && n.textContent"
    for path, says in ((str(site.root / "photos" / "gone.jpg"), "gone"), ("/etc/hostname", "cannot be opened")):
        js(
            browser,
            """const items = [{image: arguments[0]}];
               import('/ui/viewer.js').then(v => v.openViewer({items: () => items, more() {}, closed() {}}, 0))""",
            path,
        )
        text = wait_js(browser, note, f"the viewer's note on {path}")
        assert says in text and "format" not in text, text
        assert ("HTTP 404" if says == "gone" else "HTTP 403") in text, text
        js(browser, "document.querySelector('#viewer-close').click()")
        wait_js(browser, "return !document.querySelector('#viewer-img').hasAttribute('src')", "the viewer closed")
    browser.get_log("browser")  # the 404 and 403 are the point


def test_counts_are_worded_singular_or_plural():
    """No "1 pictures": every count of things in the page's words goes through plural()."""
    web = Path(__file__).resolve().parents[2] / "daemon" / "api" / "web"
    counted = re.compile(r"\$\{[^}]*\}\s+(pictures|files|groups|thumbnails|folders|parts|vectors)\b")
    found = [f"{p.name}: {m.group(0)}" for p in sorted(web.glob("*.js")) for m in counted.finditer(p.read_text())]
    assert found == []


def test_on_a_phone_the_form_folds_away_and_results_start_on_the_first_screen(browser, site, shots):
    from selenium.webdriver.common.by import By

    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True}
    )
    try:
        open_page(browser, f"{site.base}/?poll=200#search")
        wait_js(browser, "return document.querySelector('#search-message').textContent.includes('indexed')", "idle")
        form = js(browser, "return document.querySelector('#search-form').getBoundingClientRect().height")
        browser.find_element(By.ID, "file").send_keys(str(site.root / "photos" / "hubble.jpg"))
        wait_results(browser, "results on a phone")
        assert js(browser, "return window.innerWidth") == 390
        folded = js(browser, "return document.querySelector('#search-form').getBoundingClientRect().height")
        assert folded < form / 3, (folded, form)
        bottom = js(browser, "return document.querySelector('#results .card').getBoundingClientRect().bottom")
        assert 0 < bottom <= 844, bottom  # the first result is whole on the first screen
        assert js(browser, "return document.documentElement.scrollWidth <= window.innerWidth")
        note = js(browser, "return document.querySelector('#text-note').textContent")
        assert note.startswith("No text search: efficientnet reads pictures"), note  # its name, not its id
        js(browser, "document.querySelector('#show-weaker').click()")  # every result (test_web_levels: the fold)
        wait_for(lambda: all(r["loaded"] for r in results(browser)[:4]), 30, "the first thumbnails")
        browser.save_screenshot(str(shots / "phone.png"))
        # the bar opens the form again
        browser.find_element(By.ID, "unfold").click()
        assert js(browser, "return document.querySelector('#search-form').getBoundingClientRect().height") > folded * 3
        # the other views fit the screen too: Status, and Folders with Add folder open
        js(browser, "location.hash = '#status'")
        wait_js(browser, "return document.querySelectorAll('#status-body .model').length > 1", "the status view")
        assert js(browser, "return document.documentElement.scrollWidth") <= 390, too_wide(browser)
        browser.save_screenshot(str(shots / "phone-status.png"))
        js(browser, "location.hash = '#folders'")
        wait_js(browser, "return document.querySelectorAll('#folders-list .folder-row').length > 0", "the folders")
        browser.find_element(By.ID, "add-folder").click()
        wait_js(browser, "return !document.querySelector('#add-form').hidden", "the Add folder form")
        assert js(browser, "return document.documentElement.scrollWidth") <= 390, too_wide(browser)
        browser.save_screenshot(str(shots / "phone-folders.png"))
        browser.find_element(By.ID, "add-cancel").click()
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    assert errors_in_console(browser) == []
