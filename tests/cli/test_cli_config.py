"""``imgsearchd config check`` (every error at once, warnings) and ``config show`` (the source
and the default of each setting; TOML for a person, JSON when piped)."""

from __future__ import annotations

import json
import sys
import tomllib

import pytest

from helpers import cli_here, run_cli, write_config


class Terminal:
    """Stands for a terminal: ``sys.stdout.isatty()`` says True while it is in place."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(sys.stdout, "isatty", lambda: True)


def test_config_check_names_the_key_and_the_file(tmp_path):
    """One real process: what a start would refuse exits 2 naming the key and the file."""
    bad = write_config(tmp_path / "bad.toml", {"index": {"trees": 0}})
    result = run_cli("config", "check", str(bad))
    assert result.returncode == 2
    assert str(bad) in result.stderr and "index.trees" in result.stderr
    good = write_config(tmp_path / "good.toml", {"server": {"port": 9123}})
    ok = run_cli("config", "check", str(good))
    assert ok.returncode == 0 and json.loads(ok.stdout) == {
        "file": str(good),
        "ok": True,
        "errors": [],
        "warnings": [],
    }


def test_config_check_reports_every_error_at_once(tmp_path, capsys):
    bad = write_config(
        tmp_path / "bad.toml",
        {"server": {"port": "eighty", "colour": "red"}, "index": {"trees": 0}, "extractors.clip": {"batch_size": -1}},
    )
    with open(bad, "a", encoding="utf-8") as f:
        f.write("\n[bogus]\nx = 1\n")
    result = cli_here(capsys, "config", "check", str(bad), "--json")
    assert result.returncode == 2
    errors = json.loads(result.stdout)["errors"]
    keys = ("server.port must be int", "unknown key server.colour", "index.trees", "clip.batch_size", "[bogus]")
    assert len(errors) == len(keys) and all(key in error for key, error in zip(keys, errors)), errors
    assert all(error.startswith(f"{bad}: ") for error in errors)
    lines = result.stderr.splitlines()
    assert len(lines) == len(keys) and all(line.startswith("imgsearchd: configuration error: ") for line in lines)


def test_config_check_warns_of_a_watched_folder_that_does_not_exist(tmp_path, capsys, monkeypatch):
    there = tmp_path / "photos"
    there.mkdir()
    config = write_config(
        tmp_path / "c.toml",
        {
            "watch": {"directories": [str(there), str(tmp_path / "gone"), "relative/dir", str(there / "cat.jpg")]},
            "server": {"allowed_roots": ["/no/such"]},
        },
    )
    (there / "cat.jpg").write_bytes(b"not a folder")
    monkeypatch.chdir(tmp_path)
    Terminal(monkeypatch)
    result = cli_here(capsys, "config", "check", str(config))
    assert result.returncode == 0, result.stderr  # warnings do not stop a start
    assert result.stdout == f"{config}: ok (4 warnings)\n"
    warnings = result.stderr.splitlines()
    assert warnings[0].startswith(f"imgsearchd: warning: watch.directories: {tmp_path / 'gone'} does not exist")
    # a relative folder says from where it is taken; a file is not promised to be watched
    assert (
        f"relative/dir does not exist (a relative path: from the folder the daemon starts in; here {tmp_path / 'relative/dir'})"
        in warnings[1]
    )
    assert f"{there / 'cat.jpg'} is a file, not a folder" in warnings[2] and "appears" not in warnings[2]
    assert warnings[3].startswith("imgsearchd: warning: server.allowed_roots: /no/such does not exist")
    assert str(config) in warnings[0] and str(there) + " " not in result.stderr


def test_the_daemon_refuses_a_bad_file_with_every_error(tmp_path, capsys):
    bad = write_config(tmp_path / "bad.toml", {"server": {"port": "eighty"}, "log": {"level": "loud"}})
    result = cli_here(capsys, "serve", "--config", str(bad))
    assert result.returncode == 2
    assert "server.port must be int" in result.stderr and "log.level must be" in result.stderr


def test_config_show_says_where_each_setting_came_from_and_its_default(tmp_path, capsys):
    config = write_config(tmp_path / "c.toml", {"server": {"port": 9123}, "extractors.clip": {"batch_size": 4}})
    result = cli_here(capsys, "config", "show", "--config", str(config), "--data-dir", "/srv/x")
    assert result.returncode == 0, result.stderr  # piped: JSON, as every command
    settings = json.loads(result.stdout)["settings"]
    assert settings["server.port"] == {"value": 9123, "default": 8080, "source": f"file {config}"}
    assert settings["extractors.clip.batch_size"] == {"value": 4, "default": 32, "source": f"file {config}"}
    assert settings["index.data_dir"] == {"value": "/srv/x", "default": "data", "source": "command line"}
    assert settings["server.host"] == {"value": "127.0.0.1", "default": "127.0.0.1", "source": "default"}
    assert settings["index.extractors"] == {"value": ["clip"], "default": ["clip"], "source": "default"}
    changed = cli_here(capsys, "config", "show", "--config", str(config), "--changed", "--json")
    assert set(json.loads(changed.stdout)["settings"]) == {"server.port", "extractors.clip.batch_size"}


def test_config_show_gives_the_previews_mode_a_boolean_of_before_means(tmp_path, capsys):
    config = write_config(tmp_path / "c.toml", {"images": {"previews": True}})
    settings = json.loads(cli_here(capsys, "config", "show", "--config", str(config)).stdout)["settings"]
    assert settings["images.previews"] == {"value": "faithful", "default": "faithful", "source": f"file {config}"}


def test_config_show_on_a_terminal_marks_what_differs_and_reads_back_as_toml(tmp_path, capsys, monkeypatch):
    config = write_config(
        tmp_path / "c.toml",
        {"server": {"port": 9123, "token": "hunter2"}, "watch": {"settle_seconds": 3, "poll_seconds": 4.0}},
    )
    Terminal(monkeypatch)
    text = cli_here(capsys, "config", "show", "--config", str(config)).stdout
    assert "hunter2" not in text
    lines = text.splitlines()
    assert lines[:2] == [f"# file: {config}", "# 4 settings differ from the defaults (marked *)"]
    by_key = {line.split(" = ")[0]: line for line in lines[2:]}
    assert by_key["server.port"].endswith(f"# * file {config}, default 8080")
    assert by_key["server.token"].startswith('server.token = "***"') and "* file" in by_key["server.token"]
    assert by_key["server.host"].endswith("# default") and "*" not in by_key["server.host"]
    # A float setting (held as a float) shows as it was written: 32 as the default, 3 in the file, 4.0 too
    for written in ("server.max_upload_mb = 32 ", "watch.settle_seconds = 3 ", "watch.poll_seconds = 4.0 "):
        assert written in text, text
    assert "watch.rescan_seconds = 3600 " in text and "images.max_megapixels = 178 " in text
    read_back = tomllib.loads(text)
    assert read_back["server"]["port"] == 9123 and read_back["extractors"]["clip"]["batch_size"] == 32


def test_the_packaged_default_config_holds_the_built_in_defaults():
    """The shipped file (used when no other is found) says what the schema does, key for key."""
    from imgsearchd.config import PACKAGED_PATH, SCHEMA, validate

    raw = tomllib.loads(PACKAGED_PATH.read_text(encoding="utf-8"))
    defaults = {f"{section}.{key}": s.default for section, keys in SCHEMA.items() for key, s in keys.items()}
    assert dict(validate(raw, str(PACKAGED_PATH)).items()) == defaults
    listed = {f"{top}.{name}" if top == "extractors" else top for top, t in raw.items() for name in t}
    assert {s for s in listed if s in SCHEMA} == set(SCHEMA)  # every section is in the file
