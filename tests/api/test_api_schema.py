"""The API against its own /openapi.json, fuzzed by schemathesis on a live server.

Every answer must be documented and match its schema, with the documented content type and
no 500. The daemon's allowed root is an empty temporary folder, so the paths schemathesis
makes up for /add and /remove cannot reach a real file. ``positive_data_acceptance`` is left
out: the schema cannot say "a file inside the allowed roots" or "an extractor that is
running", so a schema-valid request may rightly be refused with 400.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from helpers import live_server, server_config

EXAMPLES = 25  # per operation and phase: about 500 requests, 10 s on 2 cores


def schemathesis_command() -> list[str]:
    found = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert found, "schemathesis is a test dependency: pip install -e '.[test]'"
    return [found]


def test_every_answer_matches_the_openapi_document(tmp_path):
    root = tmp_path / "empty-root"
    root.mkdir()
    config = server_config(
        tmp_path, server={"allowed_roots": [str(root)], "token": "fuzz-token", "wrong_tokens_per_minute": 10**6}
    )
    with live_server(config) as live:
        result = subprocess.run(
            [
                *schemathesis_command(),
                "run",
                f"{live.base}/openapi.json",
                "--checks=all",
                "--exclude-checks=positive_data_acceptance",
                "--phases=examples,coverage,fuzzing",
                f"--max-examples={EXAMPLES}",
                "--header=Authorization: Bearer fuzz-token",
                "--seed=1",
                "--workers=1",
                "--generation-database=none",
                "--request-timeout=30",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert not list(root.iterdir())
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    # 20 (/folders: 4, /duplicates/resolve, /duplicates/undo, /duplicates/resolutions), and the page's 5 (page.py)
    assert "Tested: 25" in result.stdout, result.stdout[-3000:]
    generated = re.search(r"(\d+) generated", result.stdout)
    assert generated and int(generated.group(1)) >= 200, result.stdout[-3000:]
