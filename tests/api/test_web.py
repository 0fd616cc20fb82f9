"""The web page (issue 13) in a real headless Chromium against a real daemon with real photos,
and the page's routes and token login over plain HTTP.

Chromium and its driver are Debian's ``chromium`` and ``chromium-driver`` (``.ci/run``
installs them); without them the browser tests skip, unless IMGSEARCHD_REQUIRE_BROWSER=1
(set by ``.ci/run``) makes that a failure. Screenshots of each view land in the module's
temporary folder (printed at the end of the run with ``-s``).
"""

from __future__ import annotations

import http.server
import re
import shutil
import subprocess
import sys
import threading
import time
import tomllib
import urllib.parse
import zipfile
from collections.abc import Iterator
from datetime import datetime, timedelta
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from imgsearchd.extractors import clip as clip_module
from page_browser import (
    errors_in_console,
    js,
    open_page,
    results,
    wait_indexed,
    wait_js,
)

from helpers import REPO, Live, live_server, server_config, skimage_photos, wait_for
from image_factory import text_as_jpeg

pytestmark = pytest.mark.browser

TOKEN = "page-token-5f1c"
BURST = 48  # files of the folder job whose progress the status view shows moving


# -- the daemons --------------------------------------------------------------------------


def save_photos(root: Path) -> dict[str, Path]:
    """The skimage photos as JPEGs, plus an exact copy and a smaller re-encode (duplicates)."""
    root.mkdir(parents=True)
    paths = {}
    for name, photo in skimage_photos().items():
        paths[name] = root / f"{name}.jpg"
        photo.convert("RGB").save(paths[name], "JPEG", quality=90)
    shutil.copyfile(paths["chelsea"], root / "chelsea-copy.jpg")
    text_as_jpeg(root / "broken.jpg")  # a failure for the status view to show with its reason
    with Image.open(paths["coffee"]) as coffee:
        coffee.resize((coffee.width // 2, coffee.height // 2)).save(root / "coffee-small.jpg", "JPEG", quality=80)
    return paths


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A daemon (no token) watching a folder of real photos; a second folder for a job. As a new
    offline user gets it: CLIP configured, its weights neither cached nor downloadable, so
    EfficientNet runs in its place (and the page says what to fetch)."""
    tmp = tmp_path_factory.mktemp("web")
    photos = tmp / "photos"
    paths = save_photos(photos)
    (tmp / "burst").mkdir()
    config = server_config(
        tmp,
        watch={"directories": [str(photos)]},
        server={"allowed_roots": [str(tmp)]},
        index={"extractors": ["clip"], "fallback_extractor": "efficientnet"},
        **{"extractors.clip": {"device": "cpu"}},
    )
    with pytest.MonkeyPatch.context() as offline:
        offline.setattr(clip_module, "host_reachable", lambda host, port=443, timeout=3.0: False)
        offline.setenv("HF_HUB_CACHE", str(tmp / "hf"))
        offline.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp / "hf"))
        with live_server(config) as live:
            live.paths = paths
            live.root = tmp
            wait_indexed(live, len(paths) + 2)
            yield live


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A daemon with ``server.token`` set (nothing indexed)."""
    tmp = tmp_path_factory.mktemp("web-token")
    config = server_config(tmp, server={"token": TOKEN})
    with live_server(config) as live:
        yield live


@pytest.fixture(scope="module")
def worded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A daemon with a text encoder (CLIP's architecture, random weights: offline) over three photos."""
    tmp = tmp_path_factory.mktemp("web-clip")
    photos = tmp / "photos"
    photos.mkdir()
    for name, photo in list(skimage_photos().items())[:3]:
        photo.convert("RGB").save(photos / f"{name}.jpg", "JPEG", quality=90)
    clip = {
        "model": "ViT-B-32",
        "pretrained": "none",
        "device": "cpu",
        "batch_size": 4,
        "precision": "fp32",
        "engine": "torch",
    }
    config = server_config(
        tmp, index={"extractors": ["clip"]}, watch={"directories": [str(photos)]}, **{"extractors.clip": clip}
    )
    with live_server(config) as live:
        wait_indexed(live, 3)
        yield live


# -- the browser ------------------------------------------------------------------------------


def imported_modules() -> set[str]:
    """The page's modules the browser loads: app.js and what the modules import (types.js holds
    JSDoc types only, for the type check: nothing imports it at run time)."""
    web = REPO / "daemon" / "api" / "web"
    found = {
        name
        for p in web.glob("*.js")
        for name in re.findall(r'^import .* from "\./([\w-]+\.js)";$', p.read_text(), re.M)
    }
    return {"app.js"} | found


def all_thumbnails_loaded(driver: Any) -> bool:
    js(driver, "const b = document.querySelector('#show-weaker'); if (!b.hidden) b.click()")  # every result shown
    js(driver, "document.querySelectorAll('#results img').forEach(i => i.scrollIntoView())")
    found = results(driver)
    return bool(found) and all(r["loaded"] for r in found)


# -- the page in the browser ---------------------------------------------------------------------


def test_the_page_loads_with_no_console_errors(browser, site, shots):
    open_page(browser, site.base + "/")
    message = wait_js(
        browser,
        "const m = document.querySelector('#search-message').textContent; return m.includes('indexed') && m",
        "the welcome",
    )
    assert f"{len(site.paths) + 2} pictures indexed" in message
    # efficientnet, standing in for clip, has no text encoder: the box is off, the page says why
    # and leads to the advice: which model, why, what to fetch from where, where to put it
    assert js(browser, "return document.querySelector('#text').disabled")
    note = js(browser, "return document.querySelector('#text-note').textContent")
    assert "efficientnet" in note and "clip did not load" in note and "cannot be reached" in note, note
    assert "lite0" not in note  # the model's name, not its internal id (that is in a tooltip)
    assert "index.extractors" not in note  # clip is there already: no advice to add it
    js(browser, "document.querySelector('#text-note a').click()")
    advice = wait_js(browser, "const a = document.querySelector('#fallback-advice'); return a && a.innerText", "advice")
    assert "open_clip_model.safetensors (605" in advice and "extractors.clip.pretrained" in advice, advice
    assert "efficientnet on purpose" in advice and "index.extractors" in advice, advice
    link = js(browser, "return document.querySelector('#fallback-advice a').href")
    assert link.startswith("https://huggingface.co/laion/CLIP-ViT-B-32-laion2B-s34B-b79K/"), link
    browser.save_screenshot(str(shots / "status-fallback.png"))
    # on a phone the advice (its heading, its long link) fits the screen
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True}
    )
    try:
        wait_js(browser, "return window.innerWidth < 500", "the phone's width")
        assert js(browser, "return document.documentElement.scrollWidth") <= 390
        browser.save_screenshot(str(shots / "status-fallback-phone.png"))
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    open_page(browser, site.base + "/#search")
    background = js(browser, "return getComputedStyle(document.body).backgroundColor")
    assert sum(int(v) for v in re.findall(r"\d+", background)[:3]) > 600, background  # light by default
    # app.js is a module that imports the others: each came, under the page's strict policy
    loaded = js(browser, "return performance.getEntriesByType('resource').map(e => new URL(e.name).pathname)")
    modules = imported_modules()
    assert len(modules) > 5 and {f"/ui/{name}" for name in modules} <= set(loaded), loaded
    browser.save_screenshot(str(shots / "search-empty.png"))
    assert errors_in_console(browser) == []


def test_a_picture_from_the_file_picker_shows_a_grid_of_loaded_thumbnails(browser, site, shots):
    from selenium.webdriver.common.by import By

    open_page(browser, site.base + "/#search")
    query = site.root / "query-cat.jpg"  # a crop of the cat, not itself indexed
    with Image.open(site.paths["chelsea"]) as cat:
        cat.crop((40, 20, 420, 300)).save(query, "JPEG", quality=85)
    browser.find_element(By.ID, "file").send_keys(str(query))
    wait_js(browser, "return document.querySelectorAll('#results .card').length > 0", "results")
    wait_for(lambda: all_thumbnails_loaded(browser), 30, "every thumbnail to load")
    found = results(browser)
    assert len(found) == len(site.paths) + 2
    assert {found[0]["name"], found[1]["name"]} == {"chelsea.jpg", "chelsea-copy.jpg"}, found[:3]
    assert all(0 < r["width"] <= 256 for r in found), "thumbnails, not originals"
    assert found[0]["folder"] == str(site.root / "photos")
    assert float(found[0]["score"]) > float(found[-1]["score"])
    chip = js(browser, "return document.querySelector('#parts .chip .label').textContent")
    assert chip == "query-cat.jpg"
    js(browser, "window.scrollTo(0, 0)")
    browser.save_screenshot(str(shots / "search-results.png"))
    # the original opens through the catalogue route
    href = js(browser, "return document.querySelector('#results .card a').href")
    assert href.startswith(site.base + "/original?image=")
    assert errors_in_console(browser) == []


def test_more_like_this_in_the_viewer_searches_with_the_result(browser, site, shots):
    cards = results(browser)
    assert cards, "runs after the file-picker test, on its results"
    target = next(i for i, r in enumerate(cards) if r["name"] == "coffee.jpg")
    js(browser, "document.querySelectorAll('#results .card .thumb')[arguments[0]].click()", target)
    wait_js(browser, "return document.querySelector('#viewer').open", "the viewer")
    assert js(browser, "return document.querySelector('#viewer-title').textContent") == "coffee.jpg"
    js(browser, "document.querySelector('#viewer-more').click()")
    wait_js(
        browser,
        "return document.querySelector('#search-message').textContent.includes('pictures like coffee.jpg')",
        "more like this",
    )
    assert not js(browser, "return document.querySelector('#viewer').open")
    wait_for(lambda: all_thumbnails_loaded(browser), 30, "every thumbnail to load")
    found = results(browser)
    assert found[0]["name"] == "coffee.jpg" and float(found[0]["score"]) > 0.999
    assert found[1]["name"] == "coffee-small.jpg", found[:3]
    # "−" on a result makes a combined query of two parts (POST /search with query=[...])
    js(browser, "document.querySelectorAll('#results .card')[2].querySelector('.actions button:last-child').click()")
    wait_js(
        browser, "return document.querySelector('#search-message').textContent.includes('2 parts')", "a combined query"
    )
    assert js(browser, "return document.querySelectorAll('#parts .chip').length") == 2
    assert js(browser, "return document.querySelectorAll('#parts .sign.minus').length") == 1
    js(browser, "window.scrollTo(0, 0)")
    browser.save_screenshot(str(shots / "more-like-this.png"))
    # a phone: two columns, nothing wider than the screen
    browser.set_window_size(390, 844)
    try:
        wait_js(browser, "return window.innerWidth < 500", "the narrow window")
        assert js(browser, "return document.documentElement.scrollWidth <= window.innerWidth")
        columns = js(browser, "return getComputedStyle(document.querySelector('#results')).gridTemplateColumns")
        assert len(columns.split()) == 2, columns
        browser.save_screenshot(str(shots / "search-phone.png"))
    finally:
        browser.set_window_size(1280, 900)
    assert errors_in_console(browser) == []


def test_the_date_fields_filter_the_search_and_cards_show_the_date(browser, site, shots):
    """On the query in hand: photos without an EXIF date count by their file date (today, "~")."""
    shown = len(results(browser))
    assert shown, "runs after the more-like-this test, on its results"
    dates = js(browser, "return Array.from(document.querySelectorAll('#results .taken')).map(e => e.textContent)")
    today = datetime.now().date()
    assert dates and set(dates) == {f"~{today.isoformat()}"}, dates

    def set_dates(after: str, before: str) -> None:
        js(
            browser,
            """for (const [id, value] of [['#taken-after', arguments[0]], ['#taken-before', arguments[1]]]) {
                   const box = document.querySelector(id); box.value = value;
                   box.dispatchEvent(new Event('change')); }""",
            after,
            before,
        )

    set_dates((today + timedelta(days=1)).isoformat(), "")
    wait_js(browser, "return document.querySelector('#search-message').textContent.startsWith('No pictures')", "none")
    assert "taken" in js(browser, "return document.querySelector('#search-message').textContent")
    set_dates(today.isoformat(), today.isoformat())
    wait_js(browser, f"return document.querySelectorAll('#results .card').length === {shown}", "all back")
    set_dates("", "")
    wait_js(browser, "return !document.querySelector('#search-message').textContent.includes('taken')", "no filter")
    assert errors_in_console(browser) == []


def test_the_duplicates_view_shows_groups_by_tier(browser, site, shots):
    open_page(browser, site.base + "/#duplicates")
    shown = """const g = Array.from(document.querySelectorAll('#dup-groups .group'));
               return g.length && g.every(x => x.dataset.kind === arguments[0])
                   && g.map(x => Array.from(x.querySelectorAll('.name')).map(n => n.textContent).sort())"""
    groups = wait_for(lambda: js(browser, shown, "identical"), 60, "the identical groups")
    assert groups == [["chelsea-copy.jpg", "chelsea.jpg"]]
    js(browser, "document.querySelector('#dup-tab-copies').click()")  # a resized re-encode: an edited copy
    groups = wait_for(lambda: js(browser, shown, "copies"), 60, "the copies")
    assert ["coffee-small.jpg", "coffee.jpg"] in groups
    wait_for(
        lambda: js(
            browser, "return Array.from(document.querySelectorAll('#dup-groups img')).every(i => i.naturalWidth > 0)"
        ),
        30,
        "duplicate thumbnails",
    )
    browser.save_screenshot(str(shots / "duplicates.png"))
    # dark, when the system says so
    browser.execute_cdp_cmd(
        "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]}
    )
    try:
        background = js(browser, "return getComputedStyle(document.body).backgroundColor")
        red, green, blue = (int(v) for v in re.findall(r"\d+", background)[:3])
        assert red + green + blue < 120, background
        browser.save_screenshot(str(shots / "duplicates-dark.png"))
    finally:
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
    assert errors_in_console(browser) == []


def burst_files(folder: Path, count: int) -> None:
    """``count`` distinct pictures (crops of the photos) for a folder job."""
    photos = [p.convert("RGB") for p in skimage_photos().values()]
    for i in range(count):
        photo = photos[i % len(photos)]
        x, y = (i * 7) % 60, (i * 13) % 60
        crop = photo.crop((x, y, x + photo.width // 2, y + photo.height // 2)).resize((224, 224))
        crop.save(folder / f"burst-{i:03}.jpg", "JPEG", quality=85)


def test_the_status_view_shows_a_job_moving_and_then_done(browser, site, shots):
    folder = site.root / "burst"
    burst_files(folder, BURST)
    open_page(browser, site.base + "/?poll=100#status")
    wait_js(browser, "return document.querySelectorAll('#status-body .tile').length > 0", "the status view")
    status, started = site.get("/add", image=str(folder))
    assert status == 202, started
    job = started["job"]
    seen: list[tuple[float, str]] = []
    screenshot_taken = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        shown = js(
            browser,
            """const li = document.querySelector(`li[data-job="${arguments[0]}"]`);
               return li && [Number(li.querySelector('[role=progressbar]').getAttribute('aria-valuenow')),
                             li.querySelector('.badge').textContent]""",
            job,
        )
        if shown:
            seen.append((shown[0], shown[1]))
            if 0 < shown[0] < 100 and not screenshot_taken:
                browser.save_screenshot(str(shots / "status-running.png"))
                screenshot_taken = True
            if shown[1] == "done":
                break
        time.sleep(0.03)
    assert seen and seen[-1] == (100, "done"), seen[-5:]
    between = sorted({value for value, _ in seen if 0 < value < 100})
    assert len(between) >= 2, f"the bar never moved between 0 and 100: {seen}"
    assert [v for v, _ in seen] == sorted(v for v, _ in seen), "progress went backwards"
    # the rest of the status: the watched folder, the model and its precision, the index
    body = js(browser, "return document.querySelector('#status-body').innerText")
    assert str(site.root / "photos") in body and "watching" in body
    assert "efficientnet" in body and "precision" in body and "recall@10" in body and "last build" in body
    assert "Failures (1)" in body and "broken.jpg" in body  # with its reason
    wait_js(browser, "return document.querySelector('.tiles').innerText.includes('waiting')", "tiles")
    height = js(browser, "return document.documentElement.scrollHeight")
    browser.set_window_size(1280, min(2400, height + 150))  # the whole view in one picture
    try:
        browser.save_screenshot(str(shots / "status-done.png"))
    finally:
        browser.set_window_size(1280, 900)
    assert errors_in_console(browser) == []


def test_with_a_text_encoder_the_text_box_searches(browser, worded):
    from selenium.webdriver.common.by import By

    open_page(browser, worded.base + "/#search")
    wait_js(browser, "return !document.querySelector('#text').disabled", "the text box")
    assert js(browser, "return document.querySelector('#text-note').hidden")
    browser.find_element(By.ID, "text").send_keys("a cat on a sofa\n")
    wait_js(browser, "return document.querySelectorAll('#results .card').length === 3", "text results")
    assert "“a cat on a sofa”" in js(browser, "return document.querySelector('#search-message').textContent")
    # a result added to the text: a combined query of a text and an image part
    js(browser, "document.querySelector('#results .card .actions button').click()")
    wait_js(browser, "return document.querySelector('#search-message').textContent.includes('2 parts')", "combined")
    assert js(browser, "return document.querySelectorAll('#parts .chip .quote').length") == 1
    assert errors_in_console(browser) == []


class _EvilPage(http.server.BaseHTTPRequestHandler):
    page = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(self.page)

    def log_message(self, *args: Any) -> None:
        pass


def test_another_site_cannot_remove_a_file_nor_embed_a_picture_through_the_browser(browser, site):
    target = site.paths["rocket"]
    port = site.base.rsplit(":", 1)[1]
    url = f"http://127.0.0.1:{port}/remove?image={urllib.parse.quote(str(target))}"
    picture = f"http://127.0.0.1:{port}/thumbnail?image={urllib.parse.quote(str(site.paths['chelsea']))}"
    _EvilPage.page = (
        "<!doctype html><title>evil</title><script>"
        f"fetch('{url}', {{mode: 'no-cors', credentials: 'include'}}).finally(() => {{"
        "  const img = new Image(); img.onerror = img.onload = () => {"
        "    const peek = new Image();"  # and can it see which pictures are catalogued?
        "    peek.onload = () => { document.title = 'sent, picture shown'; };"
        "    peek.onerror = () => { document.title = 'sent, picture refused'; };"
        f"    peek.src = '{picture}';"
        "  };"
        f"  img.src = '{url}&again=1';"
        "});</script>"
    ).encode()
    evil = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EvilPage)
    thread = threading.Thread(target=evil.serve_forever, daemon=True)
    thread.start()
    try:
        # "localhost" and "127.0.0.1" are different sites to the browser
        browser.get(f"http://localhost:{evil.server_address[1]}/")
        wait_for(lambda: browser.title.startswith("sent,"), 20, "the other site's requests to be answered")
        assert browser.title == "sent, picture refused"
    finally:
        evil.shutdown()
        evil.server_close()
        thread.join(5)
    browser.get_log("browser")  # the refused requests' errors belong to that page
    status, found = site.get("/search", image=str(target), limit=1)
    assert status == 200 and found["results"][0]["image"] == str(target), "the file was removed"
    # the same request from the daemon's own page works (so the refusal above is the check's)
    open_page(browser, site.base + "/#search")
    answer = js(
        browser,
        "return fetch(arguments[0]).then(r => r.status)",
        f"/remove?image={urllib.parse.quote(str(site.root / 'burst' / 'burst-000.jpg'))}",
    )
    assert answer == 200


def test_with_a_token_the_page_asks_for_it_once(browser, locked, shots):
    from selenium.webdriver.common.by import By

    browser.get(locked.base + "/")
    browser.delete_all_cookies()
    browser.get(locked.base + "/")
    wait_js(browser, "return !document.querySelector('#login-view').hidden", "the login form")
    assert js(browser, "return document.querySelector('#nav').hidden")
    browser.save_screenshot(str(shots / "login.png"))
    browser.find_element(By.ID, "token").send_keys("not-the-token\n")
    wait_js(browser, "return !document.querySelector('#login-error').hidden", "the wrong-token message")
    assert "not the token" in js(browser, "return document.querySelector('#login-error').textContent")
    browser.get_log("browser")  # the wrong token's 401
    field = browser.find_element(By.ID, "token")
    field.clear()
    field.send_keys(TOKEN + "\n")
    wait_js(browser, "return !document.querySelector('#nav').hidden", "the page after login")
    wait_js(
        browser, "return document.querySelector('#search-message').textContent.includes('Nothing is indexed')", "stats"
    )
    cookies = browser.get_cookies()
    assert len(cookies) == 1 and cookies[0]["httpOnly"] and cookies[0]["sameSite"] == "Strict"
    assert TOKEN not in cookies[0]["value"]
    assert js(browser, "return document.cookie") == ""  # HttpOnly: the page's scripts cannot read it
    # asked once: a new visit goes straight to the page
    browser.get(locked.base + "/#status")
    wait_js(browser, "return document.querySelectorAll('#status-body .tile').length > 0", "the status view")
    assert js(browser, "return document.querySelector('#login-view').hidden")
    # the skip link moves the focus, not the view
    js(browser, "document.querySelector('.skip').click()")
    assert js(browser, "return document.activeElement.id") == "main"
    assert js(browser, "return document.querySelector('[data-panel=status]').hidden") is False
    # signing out ends the session: the next visit asks again
    browser.find_element(By.ID, "logout").click()
    wait_js(browser, "return !document.querySelector('#login-view').hidden", "the login form after signing out")
    browser.get(locked.base + "/#status")
    wait_js(browser, "return !document.querySelector('#login-view').hidden", "the login form on the next visit")
    assert errors_in_console(browser) == []
    browser.delete_all_cookies()


# -- the routes over HTTP --------------------------------------------------------------------------


def test_the_page_files_are_served_with_a_strict_policy(site):
    status, body, headers = raw(site, "GET", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'<script type="module" src="/ui/app.js"></script>' in body  # one entry; it imports the rest
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    for name, kind in (("app.js", "text/javascript"), ("app.css", "text/css")):
        status, body, headers = raw(site, "GET", f"/ui/{name}")
        assert status == 200 and headers["Content-Type"].startswith(kind) and len(body) > 1000
        assert raw(site, "GET", f"/ui/{name}", {"If-None-Match": headers["ETag"]})[0] == 304
    for bad in ("/ui/nothing.js", "/ui/..%2fapp.py", "/ui/%2e%2e%2fpage.py"):
        status, body, headers = raw(site, "GET", bad)
        assert status == 404 and headers["Content-Type"] == "application/json", bad
    assert raw(site, "GET", "/", {"Host": "evil.example"})[0] == 403  # the Host check covers the page


def test_a_login_cookie_stands_in_for_the_bearer_header(locked):
    assert raw(locked, "GET", "/stats", bearer=False)[0] == 401
    assert raw(locked, "GET", "/", bearer=False)[0] == 200  # the page itself holds no data
    status, body, _ = raw(locked, "GET", "/login", bearer=False)
    assert status == 200 and b'"token_required": true' in body and b'"authorised": false' in body
    assert raw(locked, "POST", "/login", body=b'{"token": "wrong"}', bearer=False)[0] == 401
    status, _, headers = raw(locked, "POST", "/login", body=b'{"token": "%s"}' % TOKEN.encode(), bearer=False)
    assert status == 200
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
    session = {"Cookie": cookie.split(";")[0]}
    assert raw(locked, "GET", "/stats", session, bearer=False)[0] == 200
    assert b'"authorised": true' in raw(locked, "GET", "/login", session, bearer=False)[1]
    # a request the browser marks cross-site is refused before the cookie counts (origin.py)
    assert raw(locked, "GET", "/stats", {**session, "Sec-Fetch-Site": "cross-site"}, bearer=False)[0] == 403
    name = session["Cookie"].split("=")[0]
    assert name == f"imgsearchd_session_{locked.base.rsplit(':', 1)[1]}"  # one per port: daemons side by side
    assert raw(locked, "GET", "/stats", {"Cookie": f"{name}=forged"}, bearer=False)[0] == 401
    value = session["Cookie"].split("=", 1)[1]
    session_id, expires, mac = value.split(".")
    longer = f"{name}={session_id}.{int(expires) + 10**6}.{mac}"  # a longer life is not the daemon's to give
    assert raw(locked, "GET", "/stats", {"Cookie": longer}, bearer=False)[0] == 401
    assert raw(locked, "GET", "/stats")[0] == 200  # scripts keep the Bearer header
    # another site cannot log the browser in (login CSRF), nor out
    form = b'{"token": "%s"}' % TOKEN.encode()
    assert raw(locked, "POST", "/login", {"Sec-Fetch-Site": "cross-site"}, form, bearer=False)[0] == 403
    assert raw(locked, "POST", "/login", {"Origin": "http://evil.example"}, form, bearer=False)[0] == 403
    assert raw(locked, "POST", "/logout", {"Sec-Fetch-Site": "cross-site"}, bearer=False)[0] == 403
    status, _, headers = raw(locked, "POST", "/logout", session, bearer=False)
    assert status == 200 and "Max-Age=0" in headers["Set-Cookie"]
    assert raw(locked, "GET", "/stats", session, bearer=False)[0] == 401  # the session ended, not only its copy


def test_sessions_expire_and_wrong_tokens_are_throttled():
    from imgsearchd.api.errors import ApiError
    from imgsearchd.api.page import SESSION_SECONDS, Sessions, Throttle

    sessions, environ = Sessions(), {"HTTP_SEC_FETCH_SITE": "same-origin", "SERVER_PORT": "8080"}
    assert Sessions.name(environ) == "imgsearchd_session_8080"
    value = sessions.issue("t0ken", now=1000.0)
    assert sessions.authorises(environ, value, "t0ken", now=1000.0 + SESSION_SECONDS - 1)
    assert not sessions.authorises(environ, value, "t0ken", now=1000.0 + SESSION_SECONDS)  # expired
    fresh = sessions.issue("t0ken")
    assert sessions.authorises(environ, fresh, "t0ken") and not sessions.authorises(environ, fresh, "other")
    throttle = Throttle(limit=3, window=0.5)
    guesser = {"REMOTE_ADDR": "192.0.2.7"}
    for _ in range(3):
        with throttle.attempt(guesser):
            pass  # a wrong token
    with pytest.raises(ApiError) as refused, throttle.attempt(guesser):
        pass
    assert refused.value.status == 429 and refused.value.extra["retry_after"] >= 1
    assert "192.0.2.7" in refused.value.message
    for _ in range(5):  # another client is not locked out, and right tokens do not count
        with throttle.attempt({"REMOTE_ADDR": "192.0.2.8"}) as attempt:
            attempt.right = True
    time.sleep(0.6)
    with throttle.attempt(guesser):  # the window passed
        pass


def test_the_page_files_are_package_data(tmp_path):
    """A non-editable install carries every file of daemon/api/web: pyproject's package-data
    globs cover each, the daemon serves each, and the wheel setuptools builds holds each."""
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert "imgsearchd.api.web" in setuptools["packages"]
    assert setuptools["package-dir"] == {"imgsearchd": "daemon"}  # subpackages follow their folders
    globs = setuptools["package-data"]["imgsearchd.api.web"]
    web = REPO / "daemon" / "api" / "web"
    files = sorted(p.name for p in web.iterdir() if p.name != "__pycache__")
    assert {"index.html", "app.js", "app.css"} <= set(files), files
    uncovered = [f for f in files if not any(Path(f).match(g) for g in globs)]
    assert not uncovered, f"not package data (pyproject.toml, package-data): {uncovered}"
    from imgsearchd.api.page import assets

    assert sorted(assets()) == files  # every file is served, with a Content-Type for its kind
    assert imported_modules() <= set(files)
    html = (web / "index.html").read_text(encoding="utf-8")
    assert not re.search(r"(src|href)=\"(https?:)?//", html), "no CDN: the page works offline"
    tree = tmp_path / "src"  # what a checkout holds that the build reads
    tree.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, tree / name)
    for name in ("daemon", "config"):
        shutil.copytree(REPO / name, tree / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path / "dist"
    code = f"from setuptools import build_meta as b; print(b.build_wheel({str(dist)!r}))"
    build = subprocess.run([sys.executable, "-c", code], cwd=tree, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    with zipfile.ZipFile(dist / build.stdout.split()[-1]) as wheel:
        shipped = sorted(n.rsplit("/", 1)[1] for n in wheel.namelist() if n.startswith("imgsearchd/api/web/"))
    assert shipped == files


def raw(
    live: Live,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    bearer: bool = True,
) -> tuple[int, bytes, Message]:
    """A request without JSON decoding (the page's files are not JSON); (status, body, headers)."""
    import urllib.error
    import urllib.request

    req = urllib.request.Request(live.base + path, data=body, method=method)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        req.add_header(key, value)
    if bearer and live.token:
        req.add_header("Authorization", f"Bearer {live.token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers
