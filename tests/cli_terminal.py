"""The CLI's tests' shared means: a real pseudo-terminal as stdout, and a proxy that must be bypassed."""

from __future__ import annotations

import os
import pty
import subprocess

from helpers import cli_command

# Port 9 (discard) on loopback: nothing listens, so a request sent to this "proxy" fails.
PROXY_ENV = {"http_proxy": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", "no_proxy": "", "NO_PROXY": ""}


def on_terminal(*args: str) -> tuple[int, list[str], str]:
    """Run ``imgsearchd ARGS`` with a real pseudo-terminal as stdout: (exit status, lines, stderr)."""
    leader, follower = pty.openpty()
    env = {**os.environ, **PROXY_ENV}
    env.pop("IMGSEARCHD_CONFIG", None)
    proc = subprocess.run(cli_command(*args), stdout=follower, stderr=subprocess.PIPE, env=env, timeout=120, text=True)
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    return proc.returncode, out.decode().replace("\r\n", "\n").strip().splitlines(), proc.stderr
