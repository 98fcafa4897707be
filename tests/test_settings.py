"""Configuration is strict: one object, every variable parsed once, a wrong value named with its variable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from indexer.settings import DEFAULT_JETSTREAM_URLS, ConfigError, Settings


def test_defaults() -> None:
    s = Settings.from_env({})
    assert s.database_url is None and s.data_dir == Path(".plyr-appview")
    assert s.jetstream_urls == DEFAULT_JETSTREAM_URLS
    assert s.resolve_identities and s.verify_signatures and not s.allow_private_hosts
    assert (s.host, s.port, s.log_level) == ("127.0.0.1", 8080, "INFO")
    assert s.storage.audio_dir == Path(".plyr-appview") / "audio"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", True),
        ("true", True),
        ("YES", True),
        (" on ", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("off", False),
        ("", True),
    ],
)
def test_booleans_take_only_the_documented_spellings(value: str, expected: bool) -> None:
    assert Settings.from_env({"PLYR_APPVIEW_VERIFY_SIGNATURES": value}).verify_signatures is expected


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("PLYR_APPVIEW_ALLOW_PRIVATE_HOSTS", "maybe", "is not a boolean"),
        ("PLYR_APPVIEW_RESOLVE_IDENTITIES", "2", "is not a boolean"),
        ("PLYR_APPVIEW_PORT", "abc", "is not a whole number"),
        ("PLYR_APPVIEW_PORT", "70000", "above the maximum"),
        ("PLYR_APPVIEW_PORT", "0", "below the minimum"),
        ("PLYR_APPVIEW_BATCH_SIZE", "1.5", "is not a whole number"),
        ("PLYR_APPVIEW_BATCH_SECONDS", "soon", "is not a number"),
        ("PLYR_APPVIEW_BATCH_SECONDS", "nan", "is not a finite number"),
        ("PLYR_APPVIEW_RECONCILE_MINUTES", "-1", "below the minimum"),
        ("PLYR_APPVIEW_LOG_LEVEL", "LOUD", "is not one of"),
        ("PLC_URL", "plc.directory", "URL with a host"),
        ("PLYR_APPVIEW_AUDIO_URL_TTL", "1h", "is not a whole number"),
    ],
)
def test_a_wrong_value_names_its_variable(name: str, value: str, says: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({name: value})
    assert str(raised.value).startswith(f"{name}={value!r}") and says in str(raised.value)


def test_flags_override_the_environment_and_move_the_audio_directory() -> None:
    env = {"DATABASE_URL": "postgresql://env/db", "PLYR_APPVIEW_DATA_DIR": "/env"}
    s = Settings.from_env(env, overrides={"database_url": "postgresql://flag/db", "data_dir": Path("/flag")})
    assert s.database_url == "postgresql://flag/db" and s.data_dir == Path("/flag")
    assert s.storage.audio_dir == Path("/flag/audio")
    # An explicit audio directory stays where it was put.
    explicit = Settings.from_env({**env, "PLYR_APPVIEW_AUDIO_DIR": "/music"}, overrides={"data_dir": Path("/flag")})
    assert explicit.storage.audio_dir == Path("/music")


def test_the_command_line_refuses_a_bad_value_in_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "appview.cli", "status"],
        env={"PATH": "/usr/bin:/bin", "PLYR_APPVIEW_PORT": "abc"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "error: PLYR_APPVIEW_PORT='abc' is not a whole number; unset it for 8080"
