"""The Host and cross-site checks (issue 10, item 7), and malformed requests as JSON 4xx (item 12),
through the real server on a loopback port."""

from __future__ import annotations

import http.client
import json
import socket
import uuid

import pytest

from imgsearchd.api import origin, page
from imgsearchd.config import ConfigError, load_config

from helpers import live_server, server_config, write_config


@pytest.fixture(scope="module")
def server(tmp_path_factory, photos):
    root = tmp_path_factory.mktemp("guard")
    (root / "photos").mkdir()
    for name in ("coffee", "chelsea"):
        photos[name].convert("RGB").save(root / "photos" / f"{name}.jpg")
    # Reverse-proxy names as a user configures them (test_allowed_hosts_name_reverse_proxy_names);
    # every other test here holds with or without them.
    hosts = ["photos.example", "other.example:8443"]
    with live_server(server_config(root, server={"allowed_roots": [str(root)], "allowed_hosts": hosts})) as live:
        live.root = root
        live.paths = {name: root / "photos" / f"{name}.jpg" for name in ("coffee", "chelsea")}
        assert live.get("/add", image=str(live.paths["chelsea"]))[0] == 200
        yield live


def port_of(live) -> int:
    return int(live.base.rsplit(":", 1)[1])


def raw_exchange(live, data: bytes, timeout: float = 10) -> bytes:
    """Send bytes on a fresh connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port_of(live)), timeout=timeout) as conn:
        conn.sendall(data)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def head_and_json(answer: bytes) -> tuple[int, dict[str, str], dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, json.loads(body)


# -- item 7: Host ---------------------------------------------------------------------------------


def test_a_foreign_host_is_refused_on_every_route(server):
    port = port_of(server)
    for path in ("/health", "/stats", f"/search?image={server.paths['chelsea']}", "/openapi.json", "/nope"):
        status, body, headers = server.request("GET", path, headers={"Host": f"rebind.example:{port}"})
        assert status == 403, (path, body)
        assert "rebind.example" in body["error"] and "server.allowed_hosts" in body["error"]
        assert headers["Content-Type"] == "application/json"


def test_loopback_names_and_the_bound_address_are_accepted(server):
    port = port_of(server)
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "LOCALHOST", "localhost.", "127.0.0.1"):
        status, body, _ = server.request("GET", "/health", headers={"Host": host})
        assert status == 200, (host, body)


def test_allowed_hosts_name_reverse_proxy_names(server):
    assert server.service.config.server.allowed_hosts == ("photos.example", "other.example:8443")
    for host, want in [
        ("photos.example", 200),
        ("Photos.Example:8080", 200),  # a name alone allows any port
        ("other.example:8443", 200),
        ("other.example:9000", 403),  # name:port allows that port only
        ("other.example", 403),
        ("evil.example", 403),
    ]:
        assert server.request("GET", "/health", headers={"Host": host})[0] == want, host


def test_host_rules_for_a_wildcard_bind():
    allowed = origin.host_allowed
    assert allowed("192.168.1.20:8080", "0.0.0.0", []) and allowed("[fe80::1]:8080", "::", [])
    assert allowed(f"{socket.gethostname()}:8080", "0.0.0.0", [])
    assert not allowed("rebind.example:8080", "0.0.0.0", [])
    assert not allowed("192.168.1.20:8080", "127.0.0.1", [])  # bound to loopback: no other address
    assert allowed("anything.example", "127.0.0.1", ["*"])
    assert origin.split_host("[::1]:8080") == ("::1", 8080) and origin.split_host("Host.Example.") == (
        "host.example",
        None,
    )


def test_allowed_hosts_is_validated_with_the_file_and_key(tmp_path):
    good = write_config(tmp_path / "good.toml", {"server": {"allowed_hosts": ["photos.example", "[::1]:8443", "*"]}})
    assert load_config(good).server.allowed_hosts == ("photos.example", "[::1]:8443", "*")
    for bad in (["https://photos.example"], ["photos.example/api"], ["two words"], [3]):
        path = write_config(tmp_path / "bad.toml", {"server": {"allowed_hosts": bad}})
        with pytest.raises(ConfigError) as caught:
            load_config(path)
        assert str(path) in str(caught.value) and "server.allowed_hosts" in str(caught.value)


# -- item 7: cross-site requests with side effects --------------------------------------------------


def test_cross_site_side_effects_are_refused_and_change_nothing(server):
    coffee = str(server.paths["coffee"])
    port = port_of(server)
    for headers in (
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},  # another port on localhost is the same site
        {"Origin": "http://evil.example"},
        {"Origin": f"http://localhost:{port + 1}"},
        {"Origin": "null"},
    ):
        for method, path in (("GET", "/add"), ("GET", "/remove"), ("POST", "/rebuild")):
            status, body, _ = server.request(method, path, {"image": coffee}, headers=headers)
            assert status == 403 and "refused" in body["error"], (headers, path, body)
    assert server.service.catalog.get(coffee) is None


def test_same_origin_and_scripts_keep_working(server):
    coffee = str(server.paths["coffee"])
    port = port_of(server)
    same = {"Sec-Fetch-Site": "same-origin", "Origin": f"http://127.0.0.1:{port}"}
    assert server.request("GET", "/add", {"image": coffee}, headers=same)[0] == 200
    assert server.request("GET", "/remove", {"image": coffee}, headers={"Sec-Fetch-Site": "none"})[0] == 200
    assert server.get("/add", image=coffee)[0] == 200  # no browser headers: a script
    assert server.get("/remove", image=coffee)[0] == 200


@pytest.mark.parametrize(
    "marks",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},  # another port of localhost is the same site
        {"Origin": "http://evil.example"},
        {"Referer": "http://evil.example/page.html"},
    ],
)
def test_cross_site_reads_get_one_refusal_whatever_the_file(server, marks):
    """Issue 26 W7: the status or the delay of a cross-site read told another site which files
    and folders exist (200/404/403/202), and each cost an embedding; D8: a text/plain POST
    needs no preflight. Now every answer but the page is the same 403, decided before any file."""
    here, missing = str(server.paths["chelsea"]), str(server.root / "photos" / "nope.jpg")
    answers = []
    for route, params in [
        ("/search", {"image": here}),
        ("/search", {"image": missing}),
        ("/duplicates", {"folder": str(server.root / "photos")}),
        ("/duplicates", {"folder": str(server.root / "nope")}),
        ("/thumbnail", {"image": here}),
        ("/stats", {}),
    ]:
        status, body, headers = server.request("GET", route, params=params, headers=marks)
        assert status == 403, (route, params, body)
        answers.append((route, body))
    assert answers[0] == answers[1] and answers[2] == answers[3], answers  # nothing told apart
    data = server.paths["chelsea"].read_bytes()
    status, body, headers = server.request(
        "POST", "/search", body=data, headers={**marks, "Content-Type": "text/plain"}
    )
    assert status == 403 and "refused" in body["error"], body
    assert not [h for h in headers if h.lower().startswith("access-control-")]
    status, _ = plain_get(server, "/", {**marks, "Sec-Fetch-Mode": "navigate"})
    assert status == 200  # a link from another site may open the page itself


def test_the_page_modules_load_as_a_browser_asks_for_them(server):
    """Issue 27: index.html loads app.js as a module script, which imports the others. A module
    is fetched in CORS mode (Sec-Fetch-Mode: cors, Sec-Fetch-Dest: script, an Origin at worst),
    and runs only if it comes as JavaScript (strict MIME check, nosniff); same-origin, so no
    CORS header is needed nor sent."""
    port = port_of(server)
    module = {
        "Sec-Fetch-Site": "same-origin",
        "Sec-Fetch-Mode": "cors",
        "Sec-Fetch-Dest": "script",
        "Origin": f"http://127.0.0.1:{port}",
        "Referer": f"http://127.0.0.1:{port}/",
    }
    names = [name for name in page.assets() if name.endswith(".js")]
    assert "app.js" in names and len(names) > 1, names
    for name in names:
        status, headers = plain_get(server, f"/ui/{name}", module)
        assert status == 200, (name, status)
        assert headers["content-type"] == "text/javascript; charset=utf-8", (name, headers)
        assert headers["x-content-type-options"] == "nosniff"
        policy = headers["content-security-policy"]
        assert "script-src 'self';" in policy and "unsafe" not in policy, policy  # no inline code, no eval
        assert not [h for h in headers if h.startswith("access-control-")], headers
    status, headers = plain_get(server, "/ui/app.js", {**module, "Origin": "http://evil.example"})
    assert status == 200  # the page's code holds no data: another site may load it, as it may link to /


def plain_get(live, route: str, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    """GET without reading the body as JSON (the page is HTML): (status, headers, lower-case names)."""
    conn = http.client.HTTPConnection("127.0.0.1", port_of(live), timeout=30)
    try:
        conn.request("GET", route, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()


def test_every_answer_says_nosniff_and_no_framing(server):
    """Issue 26 W3/W4: JSON answers echo their input, so none may be sniffed into HTML; and
    X-Frame-Options for browsers older than CSP frame-ancestors."""
    for route, extra, expected in [
        ("/stats", {}, 200),
        ("/", {}, 200),
        ("/nope", {}, 404),
        ("/search?image=relative%3Cscript%3E.jpg", {}, 400),
        ("/stats", {"Origin": "http://evil.example"}, 403),
    ]:
        status, headers = plain_get(server, route, extra)
        assert status == expected, (route, status)
        assert headers.get("x-content-type-options") == "nosniff", (route, status, headers)
        assert headers.get("x-frame-options") == "DENY", (route, status, headers)


# -- item 12: malformed requests are JSON 4xx, never 500 ----------------------------------------------


def multipart_raw(filename: bytes, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        f"--{boundary}\r\n".encode()
        + b'Content-Disposition: form-data; name="image"; filename="'
        + filename
        + b'"\r\nContent-Type: image/jpeg\r\n\r\n'
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def test_a_non_utf8_multipart_filename_is_400_and_utf8_works(server):
    data = server.paths["chelsea"].read_bytes()
    body, content_type = multipart_raw("café.jpg".encode("latin-1"), data)
    status, answer = server.post("/search", body, content_type, limit=1)
    assert status == 400 and "not UTF-8" in answer["error"], answer
    body, content_type = multipart_raw("café.jpg".encode(), data)
    status, answer = server.post("/search", body, content_type, limit=1)
    assert status == 200 and answer["results"][0]["image"] == str(server.paths["chelsea"]), answer


@pytest.mark.parametrize(
    "body,needle",
    [
        ({"text": "a cat", "extractor": ["efficientnet"]}, "extractor must be a string"),
        ({"text": "a cat", "extractor": {"name": "efficientnet"}}, "extractor must be a string"),
        ({"text": ["a cat"]}, "text must be a string"),
        ({"image_base64": 3}, "image_base64 must be a string"),
        ({"text": "a cat", "limit": [1]}, "limit"),
        ({"text": "a cat", "max_distance": {"x": 1}}, "max_distance"),
    ],
)
def test_json_fields_of_the_wrong_type_are_400(server, body, needle):
    status, answer = server.post("/search", json.dumps(body).encode(), "application/json")
    assert status == 400 and needle in answer["error"], answer


def test_deeply_nested_json_is_400(server):
    for body in (b"[" * 100_000 + b"]" * 100_000, b'{"text": "x", "a": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"):
        status, answer = server.post("/search", body, "application/json")
        assert status == 400 and "nested too deeply" in answer["error"], answer


def test_malformed_multipart_is_400_json(server):
    for body, content_type in [
        (
            b'--abc\r\nContent-Disposition: form-data; name="image"\r\n\r\nunterminated',
            "multipart/form-data; boundary=abc",
        ),
        (b"garbage", "multipart/form-data"),  # no boundary at all
    ]:
        status, answer = server.post("/search", body, content_type)
        assert status == 400 and "multipart" in answer["error"], answer


def test_a_valid_chunked_upload_is_searched(server):
    data = server.paths["chelsea"].read_bytes()
    conn = http.client.HTTPConnection("127.0.0.1", port_of(server), timeout=60)
    try:
        chunks = (data[i : i + 4096] for i in range(0, len(data), 4096))
        conn.request(
            "POST", "/search?limit=1", body=chunks, headers={"Content-Type": "image/jpeg"}, encode_chunked=True
        )
        response = conn.getresponse()
        answer = json.loads(response.read())
    finally:
        conn.close()
    assert response.status == 200 and answer["results"][0]["image"] == str(server.paths["chelsea"]), answer


def test_broken_chunking_and_request_lines_are_400_json(server):
    port = port_of(server)
    for request in (
        f"POST /search HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        "BLAH\r\n\r\n",
        f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nBad Header Name: x\r\n\r\n",
    ):
        status, headers, body = head_and_json(raw_exchange(server, request.encode()))
        assert status == 400 and headers["content-type"] == "application/json" and body["error"], request
        # the server layer's answers carry what the app's do (issue 26 W3/W4)
        assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY", headers


def test_a_crash_outside_the_routes_is_a_json_500(server, monkeypatch):
    def explode(*_args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(origin, "check", explode)
    status, body, headers = server.request("GET", "/health")
    assert status == 500 and "internal error" in body["error"] and headers["Content-Type"] == "application/json"
