"""The login form names the file that holds the token (issue 28), never the token: GET /login's
``token_file``, and the form in a real headless Chromium (skipped without Debian's chromium,
as test_web's browser tests are)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from imgsearchd.api.auth import token_file
from imgsearchd.config import load_config
from page_browser import errors_in_console, js, start_browser, wait_js

from helpers import Live, live_server, server_config

TOKEN = "login-page-token-28"


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Live, Path]]:
    tmp = tmp_path_factory.mktemp("login-page")
    config = server_config(tmp, server={"token": TOKEN})
    with live_server(config, load=False) as live:  # the login needs no models
        yield live, config


def test_login_state_names_the_settings_file_and_not_the_token(locked):
    live, config = locked
    status, body, _ = live.request("GET", "/login", headers={"Authorization": ""})
    assert status == 200
    assert body == {"token_required": True, "authorised": False, "token_file": str(config)}
    assert TOKEN not in str(body)


def test_a_token_not_read_from_a_file_is_said_so(tmp_path):
    config_path = server_config(tmp_path)
    assert token_file(load_config(config_path)) == str(config_path)
    assert token_file(load_config(config_path, {"server.token": "given-elsewhere"})) is None


@pytest.mark.browser
def test_the_login_form_shows_the_file(locked):
    live, config = locked
    for browser in start_browser():
        browser.get(live.base + "/")
        wait_js(browser, "return !document.querySelector('#login-view').hidden", "the login form")
        shown: Any = wait_js(
            browser, "return document.querySelector('#login-file')?.textContent", "the token file on the form"
        )
        assert str(config) in shown and "server.token" in shown
        assert TOKEN not in js(browser, "return document.body.innerHTML")
        assert errors_in_console(browser) == []
