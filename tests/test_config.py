"""config: defaults, the search order, strict validation and command-line overrides."""

from __future__ import annotations

import pytest

from imgsearchd import config as cfg
from imgsearchd.config import ConfigError, load_config

from helpers import REPO, write_config


def test_shipped_config_is_valid_and_matches_defaults():
    loaded = load_config(REPO / "config" / "imgsearchd.toml")
    assert dict(loaded.items()) == dict(cfg.validate({}, "<defaults>").items()) == dict(cfg.Config().items())
    assert loaded.index.extractors == ("clip",)
    assert loaded.index.fallback_extractor == "efficientnet"
    assert loaded.server == cfg.ServerSettings(
        host="127.0.0.1",
        port=8080,
        allowed_roots=(),
        allowed_hosts=(),
        max_upload_mb=32,
        token="",
        wrong_tokens_per_minute=10,
    )


def test_explicit_path_wins_over_environment(tmp_path, monkeypatch):
    a = write_config(tmp_path / "a.toml", {"server": {"port": 9001}})
    b = write_config(tmp_path / "b.toml", {"server": {"port": 9002}})
    monkeypatch.setenv(cfg.ENV_VAR, str(b))
    assert load_config(a).server.port == 9001
    assert load_config().server.port == 9002


def test_search_order_user_then_system_then_local(tmp_path, monkeypatch):
    monkeypatch.delenv(cfg.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    system = write_config(tmp_path / "etc.toml", {"server": {"port": 9003}})
    monkeypatch.setattr(cfg, "SYSTEM_PATH", system)
    assert cfg.find_config_file() == system
    (tmp_path / "xdg" / "imgsearchd").mkdir(parents=True)
    user = write_config(tmp_path / "xdg" / "imgsearchd" / "imgsearchd.toml", {"server": {"port": 9005}})
    assert cfg.find_config_file() == user  # the desktop user service's, before the system's
    assert load_config().server.port == 9005
    user.unlink()
    monkeypatch.setattr(cfg, "SYSTEM_PATH", tmp_path / "absent.toml")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config").mkdir()
    local = write_config(tmp_path / "config" / "imgsearchd.toml", {"server": {"port": 9004}})
    assert cfg.find_config_file().resolve() == local.resolve()


def test_missing_explicit_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    "sections,needle",
    [
        ({"server": {"prot": 1}}, "unknown key server.prot"),
        ({"sever": {"port": 1}}, "unknown section [sever]"),
        ({"server": {"port": "8080"}}, "server.port must be int"),
        ({"server": {"port": 70000}}, "server.port must be a port number"),
        ({"index": {"extractors": ["clip", "vgg"]}}, "unknown extractor 'vgg'"),
        ({"index": {"extractors": []}}, "index.extractors must name at least one"),
        ({"index": {"fallback_extractor": "vgg"}}, "index.fallback_extractor"),
        ({"index": {"trees": 0}}, "index.trees must be greater than 0"),
        ({"index": {"trees": True}}, "index.trees must be int"),
        ({"index": {"search_k": 0}}, "index.search_k must be -1"),
        ({"watch": {"recursive": 1}}, "watch.recursive must be bool"),
        ({"watch": {"extensions": ["jpg"]}}, "'jpg' is not an extension"),
        ({"watch": {"directories": [1]}}, "watch.directories must be a list of str"),
        ({"extractors.clip": {"device": "tpu"}}, "extractors.clip.device must be one of"),
        ({"extractors.vgg": {"batch_size": 1}}, "unknown section [extractors.vgg]"),
        ({"extractors.clip": {"batch_size": -1}}, "extractors.clip.batch_size must be greater than 0"),
        ({"extractors.clip": {"similar_threshold": 1.5}}, "extractors.clip.similar_threshold must be a cosine"),
        (
            {"duplicates": {"keep_rules": ["pixels", "colour"]}},
            "duplicates.keep_rules unknown rule 'colour'; known: prefer",
        ),
        ({"duplicates": {"keep_rules": ["pixels", "pixels"]}}, "duplicates.keep_rules names a rule twice"),
        ({"duplicates": {"keep_rules": "pixels"}}, "duplicates.keep_rules must be list"),
        ({"duplicates": {"prefer": ["photos/best"]}}, "duplicates.prefer holds 'photos/best', not an absolute folder"),
        ({"duplicates": {"prefer": [1]}}, "duplicates.prefer must be a list of str"),
    ],
)
def test_bad_settings_name_the_key_and_the_file(tmp_path, sections, needle):
    path = write_config(tmp_path / "bad.toml", sections)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert needle in str(caught.value)
    assert str(path) in str(caught.value)


def test_every_error_is_reported_at_once(tmp_path):
    """One start (or ``config check``) lists them all, in the file's order, then the command line's:
    fixing a file one error per start took as many starts as it had errors."""
    path = write_config(
        tmp_path / "bad.toml",
        {
            "server": {"prot": 1, "port": "8080"},
            "sever": {"port": 1},
            "watch": {"directories": [1], "recursive": 1},
            "extractors.clip": {"batch_size": -1},
        },
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, {"index.extractors": ["vgg"]})
    needles = [
        "unknown key server.prot",
        "server.port must be int",
        "unknown section [sever]",
        "watch.directories must be a list of str",
        "watch.recursive must be bool",
        "extractors.clip.batch_size must be greater than 0",
        "command line: index.extractors",
    ]
    assert len(caught.value.errors) == len(needles), caught.value.errors
    for needle, error in zip(needles, caught.value.errors):
        assert needle in error
    assert all(e.startswith(f"{path}: ") for e in caught.value.errors[:-1])
    assert str(caught.value) == "\n".join(caught.value.errors)
    extractors = tmp_path / "x.toml"
    extractors.write_text("extractors = 1\n")
    with pytest.raises(ConfigError, match=r"\[extractors\] must be a table"):
        load_config(extractors)


def test_invalid_toml_names_the_file(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[server\nport = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)


def test_command_line_overrides_the_file(tmp_path):
    path = write_config(tmp_path / "c.toml", {"server": {"port": 9005}, "index": {"data_dir": "x"}})
    loaded = load_config(
        path, {"server.port": 9006, "index.data_dir": str(tmp_path / "d"), "index.extractors": ["efficientnet"]}
    )
    assert loaded.server.port == 9006
    assert loaded.data_dir == tmp_path / "d"
    assert loaded.index.extractors == ("efficientnet",)
    with pytest.raises(ConfigError, match="command line"):
        load_config(path, {"server.port": 0})


def test_sections_are_typed_and_generate_the_schema():
    """One frozen class per section: attributes named as the keys, each with a type, default, check, help."""
    config = load_config(REPO / "config" / "imgsearchd.toml")
    assert config.extractor("clip") is config.extractors.clip
    assert (
        config.extractor("clip").batch_size == 32
        and config.extractors.efficientnet.duplicate_threshold == cfg.DUPLICATE_THRESHOLDS["efficientnet"]
    )
    assert config.thumbnails.size == 256 and config.log.level == "info" and config.images.max_file_mb == 100
    with pytest.raises(AttributeError):
        config.server.port = 1  # type: ignore[misc]  # frozen: a reload makes a new Config
    assert set(cfg.SCHEMA) == {*cfg.SECTIONS} and list(cfg.SCHEMA["server"])[:2] == ["host", "port"]
    port = cfg.SCHEMA["server"]["port"]
    assert (port.kinds, port.default, port.help, port.restart) == ((int,), 8080, "the TCP port to listen on", True)
    assert port.check is not None and port.check(0) and port.check(8080) is None
    assert cfg.SCHEMA["server"]["max_upload_mb"].kinds == (int, float)
    assert cfg.SCHEMA["watch"]["extensions"].kinds == (list,) and cfg.SCHEMA["watch"]["extensions"].item_kind is str
    assert all(s.help for keys in cfg.SCHEMA.values() for s in keys.values())


def test_previews_booleans_of_before_read_as_their_mode_and_other_choices_refuse_a_bool(tmp_path):
    """``[images] previews = true`` (before its modes) is held as "faithful" and false as "off", so
    ``config show`` and a reload see the mode; its check is its own: ``_one_of`` takes no bool."""
    for written, mode in [(True, "faithful"), (False, "off"), ("fast", "fast")]:
        assert load_config(write_config(tmp_path / "p.toml", {"images": {"previews": written}})).images.previews == mode
    assert cfg.ImageSettings(previews=True).previews == "faithful"
    assert cfg._one_of("webp", "jpeg")(True) == 'must be "webp" or "jpeg"'
    assert cfg._previews(True) is None and cfg._previews("fastest") == 'must be "faithful", "fast" or "off"'


def test_a_float_setting_holds_a_float_and_refuses_a_bool(tmp_path):
    """An int in the file, on the command line or as a default becomes a float where the type says
    float; ints stay ints, and a bool is no number (TOML's true is an int in Python)."""
    path = write_config(tmp_path / "c.toml", {"server": {"max_upload_mb": 16}, "watch": {"settle_seconds": 3}})
    loaded = load_config(path, {"images.max_file_mb": 50})
    for value, expected in [
        (loaded.server.max_upload_mb, 16.0),
        (loaded.watch.settle_seconds, 3.0),
        (loaded.images.max_file_mb, 50.0),
        (cfg.Config().server.max_upload_mb, 32.0),  # the default is written 32
        (cfg.Config().index.search_budget_ms, 10.0),
    ]:
        assert type(value) is float and value == expected
    assert type(loaded.server.port) is int and type(loaded.index.trees) in (int, str)
    with pytest.raises(ConfigError, match=r"server\.max_upload_mb must be int or float, not bool True"):
        load_config(write_config(tmp_path / "b.toml", {"server": {"max_upload_mb": True}}))


def test_extractor_settings_are_checked_as_the_file_is():
    """``extractor_settings`` and ``extractors.create`` with a mapping run the file's checks."""
    from imgsearchd.extractors import create
    from imgsearchd.extractors.registry import extractor_settings

    built = extractor_settings("efficientnet", {"batch_size": 4, "duplicate_threshold": 1})
    assert built.batch_size == 4 and type(built.duplicate_threshold) is float
    bad: list[tuple[dict[str, object], str]] = [
        ({"precision": "fp64"}, "extractor settings: extractors.efficientnet.precision must be one of"),
        ({"batch_size": 0}, "extractors.efficientnet.batch_size must be greater than 0"),
        ({"batch_size": True}, "extractors.efficientnet.batch_size must be int, not bool"),
        ({"batch_sizes": 4}, "unknown key extractors.efficientnet.batch_sizes"),
    ]
    for values, needle in bad:
        with pytest.raises(ConfigError) as caught:
            extractor_settings("efficientnet", values)
        assert needle in str(caught.value)
    with pytest.raises(ConfigError, match=r"extractors\.clip\.precision must be one of"):
        create("clip", {"device": "cpu", "precision": "fp64"})  # refused before any model loads
    with pytest.raises(ConfigError, match=r"in the benchmark: extractors\.resnet\.device"):
        extractor_settings("resnet", {"device": "tpu"}, where="in the benchmark")


def test_duplicates_settings_and_their_defaults(tmp_path):
    config = load_config(
        write_config(
            tmp_path / "d.toml",
            {
                "duplicates": {"keep_rules": ["taken", "path"], "prefer": ["~/best", "/photos/keep"]},
                "extractors.efficientnet": {"similar_threshold": 0.8},
            },
        )
    )
    assert config.duplicates.keep_rules == ("taken", "path") and config.duplicates.prefer == ("~/best", "/photos/keep")
    assert config.extractor("efficientnet").similar_threshold == 0.8
    defaults = cfg.Config()
    assert defaults.duplicates.keep_rules == cfg.KEEP_RULES and defaults.duplicates.prefer == ()
    for name in cfg.KNOWN_EXTRACTORS:
        assert defaults.extractor(name).similar_threshold == cfg.SIMILAR_THRESHOLDS[name]
        assert defaults.extractor(name).duplicate_threshold == cfg.DUPLICATE_THRESHOLDS[name]


def test_a_reload_applies_the_duplicates_settings_and_cosines(tmp_path):
    """The models load once, so a reload keeps an [extractors.*] section as it was, but not its
    cosines, read per /duplicates request; nor [duplicates]."""
    old = load_config(write_config(tmp_path / "a.toml", {}))
    new = load_config(
        write_config(
            tmp_path / "b.toml",
            {
                "duplicates": {"prefer": ["/photos/best"]},
                "extractors.efficientnet": {"duplicate_threshold": 0.7, "similar_threshold": 0.8},
            },
        )
    )
    assert new.keep_restart_only(old) == []
    assert new.duplicates.prefer == ("/photos/best",)
    assert (new.extractor("efficientnet").duplicate_threshold, new.extractor("efficientnet").similar_threshold) == (
        0.7,
        0.8,
    )
    both = load_config(
        write_config(tmp_path / "c.toml", {"extractors.efficientnet": {"batch_size": 4, "similar_threshold": 0.8}})
    )
    assert both.keep_restart_only(old) == ["[extractors.efficientnet]"]
    assert both.extractor("efficientnet").batch_size == 32 and both.extractor("efficientnet").similar_threshold == 0.8


def test_a_reload_keeps_what_only_a_restart_changes(tmp_path):
    old = load_config(write_config(tmp_path / "a.toml", {"server": {"port": 9001}}))
    new = load_config(
        write_config(
            tmp_path / "b.toml",
            {
                "server": {"port": 9002, "token": "t" * 32},
                "extractors.clip": {"batch_size": 4},
                "log": {"level": "debug"},
            },
        )
    )
    assert new.keep_restart_only(old) == ["server.port", "[extractors.clip]"]
    assert (new.server.port, new.server.token, new.extractor("clip").batch_size) == (9001, "t" * 32, 32)
    assert new.log.level == "debug"  # changes live


def test_relative_paths_are_taken_from_the_working_folder(tmp_path, monkeypatch):
    path = write_config(tmp_path / "c.toml", {"index": {"data_dir": "state"}, "watch": {"directories": ["pics"]}})
    monkeypatch.chdir(tmp_path)
    loaded = load_config(path)
    assert loaded.data_dir == tmp_path / "state"
    assert loaded.watch_dirs == [tmp_path / "pics"]
