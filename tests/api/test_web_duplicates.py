"""The duplicates review (issue 29) in a real headless Chromium against one real daemon:
the tabs by tier with their counts, a big group that wraps, Keep and Trash with the keyboard,
the compare view, a group's Apply, "resolve all" behind its confirmation, the undo bar, a phone.

One daemon for the module (EfficientNet, real weights) over real photos: the skimage photos,
byte copies (an identical group of 16), Pillow-edited copies (resized and re-encoded,
brightened) and a second shot of a scene (the window moved by 15%). Its Trash is
``$XDG_DATA_HOME/Trash`` on the test's own file system, as a user's home trash would be. The
tests run in order, each on the state the one before left. Screenshots land in the module's
temporary folder (``pytest -s`` prints where); docs/page-duplicates.png and
docs/page-compare.png are chosen from them.
"""

from __future__ import annotations

import shutil
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import ImageEnhance

from page_browser import (
    errors_in_console,
    js,
    open_page,
    wait_indexed,
    wait_js,
)

from helpers import Live, live_server, server_config, skimage_photos, wait_for

pytestmark = pytest.mark.browser

COPIES = 15  # byte copies of one photo: with it, a group of 16


def save_photos(photos: Path) -> dict[str, Path]:
    """The photos and their duplicates; the paths by name."""
    (photos / "backup").mkdir(parents=True)
    paths: dict[str, Path] = {}
    pictures = skimage_photos()
    for name, photo in pictures.items():
        if name != "astronaut":
            paths[name] = photos / f"{name}.jpg"
            photo.convert("RGB").save(paths[name], "JPEG", quality=90)
    for i in range(1, COPIES + 1):
        paths[f"chelsea-{i:02}"] = photos / "backup" / f"chelsea-{i:02}.jpg"
        shutil.copyfile(paths["chelsea"], paths[f"chelsea-{i:02}"])
    coffee = pictures["coffee"].convert("RGB")
    paths["coffee-small"] = photos / "coffee-small.jpg"
    coffee.resize((coffee.width * 2 // 3, coffee.height * 2 // 3)).save(paths["coffee-small"], "JPEG", quality=70)
    paths["coffee-bright"] = photos / "coffee-bright.jpg"
    ImageEnhance.Brightness(coffee).enhance(1.15).save(paths["coffee-bright"], "JPEG", quality=85)
    # a scene shot twice: the second window 15% to the right
    astronaut = pictures["astronaut"].convert("RGB")
    paths["shot-1"] = photos / "astronaut-shot-1.jpg"
    astronaut.crop((0, 40, 420, 460)).save(paths["shot-1"], "JPEG", quality=90)
    paths["shot-2"] = photos / "astronaut-shot-2.jpg"
    astronaut.crop((63, 40, 483, 460)).save(paths["shot-2"], "JPEG", quality=90)
    return paths


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """The daemon over the photos, everything indexed; its Trash under the test's folder."""
    tmp = tmp_path_factory.mktemp("web-dup")
    paths = save_photos(tmp / "photos")
    config = server_config(tmp, watch={"directories": [str(tmp / "photos")]}, server={"allowed_roots": [str(tmp)]})
    with pytest.MonkeyPatch.context() as env:
        env.setenv("XDG_DATA_HOME", str(tmp / "xdg"))
        with live_server(config) as live:
            live.paths = paths
            live.root = tmp
            wait_indexed(live, len(paths))
            yield live


def wait_pictures(browser: Any, selector: str, what: str) -> None:
    """Every picture under ``selector`` (``#dup-groups img``) loaded, within 30 s."""
    script = f"return Array.from(document.querySelectorAll('{selector}')).every(i => i.complete && i.naturalWidth > 0)"
    wait_for(lambda: js(browser, script), 30, what)


def duplicates(live: Live, kind: str) -> dict[str, Any]:
    """The API's answer for a tier, once computed (the page shows the same)."""

    def ready() -> dict[str, Any]:
        status, body = live.get("/duplicates", kind=kind, limit=100)
        assert status in (200, 202), body
        return body if status == 200 and not body["stale"] else {}  # {}: not yet

    return wait_for(ready, 120, f"the {kind} groups")


def trash(live: Live) -> Path:
    return live.root / "xdg" / "Trash"


def groups_shown(driver: Any) -> list[dict[str, Any]]:
    """The groups on the page: each card's name, its mark, and the keeper's reason."""
    return js(
        driver,
        """return Array.from(document.querySelectorAll('#dup-groups .group')).map(g => ({
               kind: g.dataset.kind, reason: g.querySelector('.keep-reason').textContent,
               summary: g.querySelector('.group-summary').textContent,
               cards: Array.from(g.querySelectorAll('.card')).map(c => ({
                   name: c.querySelector('.name').textContent, image: c.dataset.image,
                   mark: c.classList.contains('trash') ? 'trash' : c.classList.contains('keep') ? 'keep' : ''}))}))""",
    )


def choose_tab(driver: Any, kind: str) -> None:
    js(driver, f"document.querySelector('#dup-tab-{kind}').click()")
    wait_js(
        driver,
        f"""return document.querySelector('#dup-tab-{kind}').getAttribute('aria-selected') === 'true'
               && !document.querySelector('#dup-message').classList.contains('busy')
               && Array.from(document.querySelectorAll('#dup-groups .group')).every(g => g.dataset.kind === '{kind}')""",
        f"the {kind} tab",
        timeout=60,
    )


def group_with(driver: Any, name: str) -> dict[str, Any]:
    found = [g for g in groups_shown(driver) if name in [c["name"] for c in g["cards"]]]
    assert len(found) == 1, (name, groups_shown(driver))
    return found[0]


def send(driver: Any, *keys: str) -> None:
    driver.switch_to.active_element.send_keys(*keys)


def focus_card(driver: Any, name: str) -> None:
    js(
        driver,
        "Array.from(document.querySelectorAll('#dup-groups .card')).find(c => c.querySelector('.name').textContent === arguments[0]).querySelector('.thumb').focus()",
        name,
    )


def focused_name(driver: Any) -> str:
    name: str = js(driver, "return document.activeElement.closest('.card')?.querySelector('.name').textContent || ''")
    return name


def fmt_bytes(n: int) -> str:
    """Bytes as the page writes them (format.js fmtBytes)."""
    units, size, i = ["B", "KB", "MB", "GB"], float(n), 0
    while size >= 1024 and i < len(units) - 1:
        size, i = size / 1024, i + 1
    return f"{size:.{1 if size < 10 else 0}f} {units[i]}" if i else f"{n} B"


def searched(live: Live, path: Path) -> list[str]:
    """The paths a search with ``path``'s picture returns (its copies first)."""
    status, body = live.get("/search", image=str(path), limit=50)
    assert status == 200, body
    return [r["image"] for r in body["results"]]


# -- the tiers ---------------------------------------------------------------------------------


def test_the_tabs_show_the_tiers_and_a_big_group_wraps_whole(browser, site, shots):
    api = duplicates(site, "identical")
    open_page(browser, site.base + "/#duplicates")
    wait_js(browser, "return document.querySelectorAll('#dup-groups .group').length > 0", "groups", timeout=60)
    counts = js(
        browser,
        "return Object.fromEntries(Array.from(document.querySelectorAll('#dup-tabs [role=tab]')).map(t => [t.dataset.kind, t.querySelector('.count').textContent]))",
    )
    assert counts == {tier: str(n) for tier, n in api["tiers"].items()}
    assert api["tiers"]["identical"] >= 1 and api["tiers"]["copies"] >= 1
    choose_tab(browser, "identical")
    big = group_with(browser, "chelsea.jpg")
    assert len(big["cards"]) == COPIES + 1
    [answer] = [g for g in api["groups"] if g["files"] == COPIES + 1]
    assert big["reason"] == f"Keep {Path(answer['keep']).name}: {answer['keep_reason']}"
    assert [c["mark"] for c in big["cards"] if c["image"] == answer["keep"]] == ["keep"]
    assert sorted(c["mark"] for c in big["cards"]) == ["keep"] + ["trash"] * COPIES
    assert big["summary"] == f"1 kept, {COPIES} files to the Trash"
    # every picture inside its group (no sideways scroll), over several rows
    layout = js(
        browser,
        """const g = Array.from(document.querySelectorAll('#dup-groups .group')).find(g => g.querySelectorAll('.card').length === arguments[0]);
           const box = g.getBoundingClientRect(); const list = g.querySelector('.members');
           const cards = Array.from(g.querySelectorAll('.card')).map(c => c.getBoundingClientRect());
           return {inside: cards.every(r => r.left >= box.left && r.right <= box.right + 0.5 && r.width > 100),
                   rows: new Set(cards.map(r => Math.round(r.top))).size, scrolls: list.scrollWidth > list.clientWidth}""",
        COPIES + 1,
    )
    assert layout["inside"] and not layout["scrolls"] and layout["rows"] >= 2, layout
    wait_pictures(browser, "#dup-groups img", "the thumbnails")
    # a taller window for the picture of it: the form, the tabs and the big group's first two rows
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 1040, "deviceScaleFactor": 1, "mobile": False}
    )
    try:
        js(browser, "document.activeElement.blur()")
        browser.save_screenshot(str(shots / "duplicates.png"))
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    # the edited copies are one group of their own tab, and no picture is in two tabs
    choose_tab(browser, "copies")
    copies = group_with(browser, "coffee.jpg")
    assert sorted(c["name"] for c in copies["cards"]) == ["coffee-bright.jpg", "coffee-small.jpg", "coffee.jpg"]
    assert not any(c["name"].startswith("chelsea") for g in groups_shown(browser) for c in g["cards"])
    # the second shot of a scene is a similar shot, not a copy
    choose_tab(browser, "similar")
    shots_shown = group_with(browser, "astronaut-shot-1.jpg")
    assert sorted(c["name"] for c in shots_shown["cards"]) == ["astronaut-shot-1.jpg", "astronaut-shot-2.jpg"]
    assert errors_in_console(browser) == []


def test_the_keyboard_marks_and_compares(browser, site, shots):
    from selenium.webdriver.common.keys import Keys

    open_page(browser, site.base + "/#duplicates")
    choose_tab(browser, "copies")
    group = group_with(browser, "coffee.jpg")
    keeper = next(c for c in group["cards"] if c["mark"] == "keep")
    other = next(c for c in group["cards"] if c["mark"] == "trash")
    focus_card(browser, group["cards"][0]["name"])
    send(browser, Keys.ARROW_RIGHT)
    assert focused_name(browser) == group["cards"][1]["name"]
    second = group["cards"][1]["name"]
    send(browser, "k")
    assert {c["name"]: c["mark"] for c in group_with(browser, "coffee.jpg")["cards"]}[second] == "keep"
    label = js(browser, "return document.activeElement.getAttribute('aria-label')")
    assert label == f"View {second}, marked Keep"  # said, not only seen
    assert len(group["cards"]) == 3 and group_with(browser, "coffee.jpg")["summary"] == "2 kept, 1 file to the Trash"
    send(browser, "t")
    assert {c["name"]: c["mark"] for c in group_with(browser, "coffee.jpg")["cards"]}[second] == "trash"
    send(browser, "k", Keys.DELETE)
    assert {c["name"]: c["mark"] for c in group_with(browser, "coffee.jpg")["cards"]}[second] == "trash"
    # c: the compare view, the keeper on the left, this one on the right, with their details
    focus_card(browser, other["name"])
    send(browser, "c")
    wait_js(browser, "return document.querySelector('#compare').open", "the compare view")
    sides = js(
        browser,
        """return Array.from(document.querySelectorAll('#compare-sides .compare-side')).map(s => ({
               name: s.querySelector('.name').textContent,
               facts: Object.fromEntries(Array.from(s.querySelectorAll('dt')).map(dt => [dt.textContent, dt.nextElementSibling.textContent])),
               differs: Array.from(s.querySelectorAll('.differs dt')).map(dt => dt.textContent)}))""",
    )
    assert [s["name"] for s in sides] == [keeper["name"], other["name"]]
    api = {Path(m["image"]).name: m for g in duplicates(site, "all")["groups"] for m in g["members"]}
    for side in sides:
        member = api[side["name"]]
        assert side["facts"]["pixels"] == f"{member['width']} × {member['height']}"
        assert side["facts"]["format"] == "JPEG"
        assert side["facts"]["folder"] == str(site.root / "photos")
        assert side["facts"]["bytes"] == fmt_bytes(member["size"])
        assert side["facts"]["cosine to centre"] == f"{member['score']:.3f}"
        framing = member["framing"]
        assert side["facts"]["framing to centre"] == ("not checked" if framing is None else f"{framing:.3f}")
        taken = "file date" if member["taken_from"] == "mtime" else "taken"
        assert set(side["facts"]) == {
            "pixels",
            "bytes",
            "format",
            taken,
            "camera",
            "folder",
            "cosine to centre",
            "framing to centre",
            "same bytes",
        }
    assert "pixels" in sides[0]["differs"] or "bytes" in sides[0]["differs"]
    wait_pictures(browser, "#compare-sides img", "both pictures")
    browser.save_screenshot(str(shots / "compare.png"))
    # k in the compare view keeps the right-hand picture, and the group's card follows
    send(browser, "k")
    wait_js(
        browser,
        "return document.querySelector('#compare-sides [data-side=right] .mark-keep').getAttribute('aria-pressed') === 'true'",
        "kept",
    )
    send(browser, Keys.ESCAPE)
    wait_js(browser, "return !document.querySelector('#compare').open", "the compare view to close")
    wait_for(lambda: focused_name(browser) == other["name"], 5, "the focus back on the card compared")
    assert {c["name"]: c["mark"] for c in group_with(browser, "coffee.jpg")["cards"]}[other["name"]] == "keep"
    send(browser, "t")
    # Enter opens the viewer on the picture
    send(browser, Keys.ENTER)
    wait_js(browser, "return document.querySelector('#viewer').open", "the viewer")
    assert js(browser, "return document.querySelector('#viewer-title').textContent") == other["name"]
    send(browser, Keys.ESCAPE)
    wait_js(browser, "return !document.querySelector('#viewer').open", "the viewer to close")
    assert errors_in_console(browser) == []


def test_a_groups_apply_trashes_what_is_marked_and_undo_puts_it_back(browser, site, shots):
    open_page(browser, site.base + "/#duplicates")
    choose_tab(browser, "copies")
    group = group_with(browser, "coffee.jpg")
    trashed = [c for c in group["cards"] if c["mark"] == "trash"]
    kept = next(c for c in group["cards"] if c["mark"] == "keep")
    apply = "Array.from(document.querySelectorAll('#dup-groups .group')).find(g => g.textContent.includes('coffee.jpg')).querySelector('.apply').click()"
    # every picture marked Trash: refused, in words, and nothing moves
    focus_card(browser, kept["name"])
    send(browser, "t")
    js(browser, apply)
    said = "return Array.from(document.querySelectorAll('#dup-groups [data-group-message]')).map(m => m.textContent).join('')"
    assert js(browser, said) == "Mark at least one picture Keep: a group is never trashed whole."
    assert all(Path(c["image"]).exists() for c in group["cards"])
    send(browser, "k")
    # keep one of the copies too: only the other goes
    focus_card(browser, trashed[0]["name"])
    send(browser, "k")
    going = trashed[1]
    js(browser, apply)
    wait_js(
        browser,
        "return !document.querySelector('#undo-bar').hidden && !document.querySelector('#undo-button').hidden",
        "the undo bar",
    )
    assert js(browser, "return document.querySelector('#undo-text').textContent") == "1 file moved to the Trash"
    path = Path(going["image"])
    assert not path.exists()
    assert (trash(site) / "files" / path.name).exists()
    info = (trash(site) / "info" / f"{path.name}.trashinfo").read_text()
    assert f"Path={urllib.parse.quote(str(path))}\n" in info, info
    assert Path(kept["image"]).exists() and Path(trashed[0]["image"]).exists()
    js(browser, "document.querySelector('#undo-button').click()")
    wait_js(browser, "return document.querySelector('#undo-text').textContent.includes('put back')", "the undo")
    assert js(browser, "return document.querySelector('#undo-text').textContent") == "1 file put back."
    assert path.exists() and not (trash(site) / "files" / path.name).exists()
    assert errors_in_console(browser) == []


def test_resolve_all_confirms_with_the_counts_then_undo_brings_every_file_back(browser, site, shots):
    api = duplicates(site, "identical")
    going = [Path(m["image"]) for g in api["groups"] for m in g["members"] if m["image"] != g["keep"]]
    keepers = [Path(g["keep"]) for g in api["groups"]]
    assert len(going) >= COPIES
    open_page(browser, site.base + "/#duplicates")
    choose_tab(browser, "identical")
    js(browser, "document.querySelector('#dup-resolve-all').click()")
    wait_js(browser, "return !document.querySelector('#dup-confirm').hidden", "the confirmation", timeout=60)
    text = js(browser, "return document.querySelector('#dup-confirm-text').textContent")
    assert text == f"{len(going)} files go to the Trash ({trash(site)}), {len(keepers)} kept.", text
    assert js(browser, "return document.activeElement.id") == "dup-confirm-cancel"  # the safe choice first
    assert all(p.exists() for p in going)  # a dry run: nothing moved yet
    browser.save_screenshot(str(shots / "confirm.png"))
    js(browser, "document.querySelector('#dup-confirm-go').click()")
    wait_js(
        browser,
        "return !document.querySelector('#undo-button').hidden && !document.querySelector('#undo-bar').hidden",
        "the undo bar",
        timeout=60,
    )
    assert (
        js(browser, "return document.querySelector('#undo-text').textContent")
        == f"{len(going)} files moved to the Trash"
    )
    assert not any(p.exists() for p in going) and all(p.exists() for p in keepers)
    assert all(
        (trash(site) / "files" / p.name).exists() and (trash(site) / "info" / f"{p.name}.trashinfo").exists()
        for p in going
    )
    assert not set(map(str, going)) & set(searched(site, keepers[0]))
    wait_js(
        browser,
        "return document.querySelector('#dup-tab-identical .count').textContent === '0'",
        "no identical group left",
        timeout=60,
    )
    browser.save_screenshot(str(shots / "undo-bar.png"))
    js(browser, "document.querySelector('#undo-button').click()")
    wait_js(
        browser, "return document.querySelector('#undo-text').textContent.includes('put back')", "the undo", timeout=60
    )
    assert js(browser, "return document.querySelector('#undo-text').textContent") == f"{len(going)} files put back."
    assert all(p.exists() for p in going) and not any((trash(site) / "files" / p.name).exists() for p in going)
    wait_for(lambda: set(map(str, going)) <= set(searched(site, keepers[0])), 30, "the files found again")
    wait_js(
        browser,
        f"return document.querySelector('#dup-tab-identical .count').textContent === '{len(keepers)}'",
        "the groups back",
        timeout=60,
    )
    assert errors_in_console(browser) == []


def test_on_a_phone_the_groups_and_the_compare_view_fit(browser, site, shots):
    from selenium.webdriver.common.keys import Keys

    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True}
    )
    try:
        open_page(browser, site.base + "/#duplicates")
        choose_tab(browser, "identical")
        wait_js(
            browser, f"return document.querySelectorAll('#dup-groups .card').length >= {COPIES + 1}", "the big group"
        )
        assert js(browser, "return document.documentElement.scrollWidth") <= 390
        browser.save_screenshot(str(shots / "phone-duplicates.png"))
        choose_tab(browser, "copies")
        focus_card(browser, "coffee.jpg")
        send(browser, "c")
        wait_js(browser, "return document.querySelector('#compare').open", "the compare view")
        width = js(browser, "return document.querySelector('#compare-sides').scrollWidth")
        assert width <= 390, width
        browser.save_screenshot(str(shots / "phone-compare.png"))
        send(browser, Keys.ESCAPE)
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    assert errors_in_console(browser) == []


# -- resolving similar shots, the layout -----------------------------------------------------------


def test_resolve_all_on_the_similar_tab_says_they_are_different_pictures(browser, site, shots):
    api = duplicates(site, "similar")
    going = [Path(m["image"]) for g in api["groups"] for m in g["members"] if m["image"] != g["keep"]]
    assert going, api
    open_page(browser, site.base + "/#duplicates")
    choose_tab(browser, "similar")
    js(browser, "document.querySelector('#dup-resolve-all').click()")
    wait_js(browser, "return !document.querySelector('#dup-confirm').hidden", "the confirmation", timeout=60)
    warning = js(browser, "return document.querySelector('#dup-confirm-warning')?.textContent || ''")
    shot = (
        "is a similar shot: a different picture, not a copy"
        if len(going) == 1
        else "are similar shots: different pictures, not copies"
    )
    assert warning.startswith(f"{len(going)} of these {shot}."), warning
    browser.save_screenshot(str(shots / "confirm-similar.png"))
    js(browser, "document.querySelector('#dup-confirm-cancel').click()")
    assert all(p.exists() for p in going)
    # the identical tab's confirmation carries no such warning
    choose_tab(browser, "identical")
    js(browser, "document.querySelector('#dup-resolve-all').click()")
    wait_js(browser, "return !document.querySelector('#dup-confirm').hidden", "the confirmation", timeout=60)
    assert js(browser, "return document.querySelector('#dup-confirm-warning')") is None
    js(browser, "document.querySelector('#dup-confirm-cancel').click()")
    assert errors_in_console(browser) == []


def test_the_plan_and_the_undo_bar_agree_with_their_count(browser, site, shots):
    """The sentences of resolve.js for one file and for two: "1 file goes", "2 files go"."""
    open_page(browser, site.base + "/#duplicates")
    said = browser.execute_async_script(
        """const done = arguments[arguments.length - 1];
           const file = (n, state) => ({image: `/p/o${n}.jpg`, keep: '/p/k.jpg', state, reason: null,
                                        to: `/home/u/.local/share/Trash/files/o${n}.jpg`});
           const outcome = (n, state) => ({error: null, answers: [{undo: state === 'done' ? 1 : null, action: 'trash',
               dry_run: state !== 'done', to: null, done: 0, skipped: 0,
               files: Array.from({length: n}, (_, i) => file(i, state))}]});
           import('/ui/resolve.js').then(m => {
               const groups = [{keep: '/p/k.jpg', others: []}];
               const plans = [1, 2].map(n => m.planWords(outcome(n, 'planned'), groups));
               m.showDone(outcome(1, 'done'), () => {});
               const bar = document.querySelector('#undo-text').textContent;
               document.querySelector('#undo-bar').hidden = true;
               done({plans, bar, shots: [1, 2].map(n => m.shotsWarning(n))});
           });""",
    )
    trash_ = "/home/u/.local/share/Trash"
    assert said["plans"] == [
        f"1 file goes to the Trash ({trash_}), 1 kept.",
        f"2 files go to the Trash ({trash_}), 1 kept.",
    ]
    assert said["bar"] == "1 file moved to the Trash"
    assert said["shots"][0].startswith("1 of these is a similar shot: a different picture, not a copy.")
    assert said["shots"][1].startswith("2 of these are similar shots: different pictures, not copies.")
    assert errors_in_console(browser) == []


def card_widths(driver: Any) -> dict[str, Any]:
    """The cards' widths on the tab shown, and the card texts cut short (an ellipsis or hidden);
    a name and a folder are shortened by design (their title has them whole)."""
    return js(
        driver,
        """const cards = Array.from(document.querySelectorAll('#dup-groups .card'));
           return {widths: cards.map(c => Math.round(c.getBoundingClientRect().width)),
                   cut: cards.flatMap(c => Array.from(c.querySelectorAll('.meta span:not(.folder):not(.name)')))
                             .filter(s => s.scrollWidth > s.clientWidth + 1).map(s => s.textContent)}""",
    )


def test_the_tabs_fit_a_phone_and_every_tab_s_cards_are_alike_on_a_wide_screen(browser, site, shots):
    def metrics(width: int, height: int, mobile: bool) -> None:
        browser.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
        )

    try:
        metrics(390, 844, True)
        open_page(browser, site.base + "/#duplicates")
        choose_tab(browser, "similar")
        # counts as a large library has them: the three tabs still share one row
        js(browser, "for (const c of document.querySelectorAll('#dup-tabs .count')) c.textContent = '12,345'")
        tops = js(
            browser,
            "return Array.from(document.querySelectorAll('#dup-tabs [role=tab]')).map(t => Math.round(t.getBoundingClientRect().top))",
        )
        assert len(set(tops)) == 1, tops
        assert js(browser, "return document.documentElement.scrollWidth") <= 390
        browser.save_screenshot(str(shots / "phone-tabs.png"))
        metrics(1280, 1040, False)
        open_page(browser, site.base + "/#duplicates")
        widths = {}
        for tier in ("identical", "copies", "similar"):
            choose_tab(browser, tier)
            wait_pictures(browser, "#dup-groups img", "the thumbnails")
            shown = card_widths(browser)
            assert shown["cut"] == [], (tier, shown)
            widths[tier] = set(shown["widths"])
            browser.save_screenshot(str(shots / f"wide-{tier}.png"))
        assert len(set().union(*widths.values())) == 1, widths  # one card width on every tab
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    assert errors_in_console(browser) == []
