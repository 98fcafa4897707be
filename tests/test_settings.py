"""Configuration is strict: one object, every variable parsed once, a wrong value named with its variable."""

from __future__ import annotations

import re
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


@pytest.mark.parametrize(
    ("env", "origin", "did"),
    [
        ({}, "http://localhost", "did:web:localhost"),
        ({"PLYR_APPVIEW_PUBLIC_HOST": "api.plyr.fm"}, "https://api.plyr.fm", "did:web:api.plyr.fm"),
        ({"PLYR_APPVIEW_PUBLIC_HOST": "localhost:8080"}, "http://localhost:8080", "did:web:localhost%3A8080"),
        ({"PLYR_APPVIEW_PUBLIC_HOST": "127.0.0.1:9"}, "http://127.0.0.1:9", "did:web:127.0.0.1%3A9"),
        ({"PLYR_APPVIEW_PUBLIC_URL": "http://localhost:8080"}, "http://localhost:8080", "did:web:localhost%3A8080"),
        ({"PLYR_APPVIEW_PUBLIC_URL": "https://API.plyr.fm:443/"}, "https://api.plyr.fm", "did:web:api.plyr.fm"),
        (
            {"PLYR_APPVIEW_PUBLIC_URL": "https://api.plyr.fm:8443"},
            "https://api.plyr.fm:8443",
            "did:web:api.plyr.fm%3A8443",
        ),
        (
            {"PLYR_APPVIEW_PUBLIC_URL": "http://localhost:8080", "PLYR_APPVIEW_PUBLIC_HOST": "LOCALHOST:8080"},
            "http://localhost:8080",
            "did:web:localhost%3A8080",
        ),
    ],
)
def test_public_url_gives_the_did_endpoint_and_links(env: dict[str, str], origin: str, did: str) -> None:
    from indexer.audio.refs import audio_url, own_sha256

    s = Settings.from_env(env)
    assert (s.public_origin, s.service_endpoint, s.did) == (origin, origin, did)
    sha = "ab" * 32
    url = audio_url(s.public_origin, sha)
    assert url == f"{origin}/audio-files/{sha}"
    assert own_sha256(url, s.public_origin) == sha
    # Another scheme or port is somebody else's origin.
    other_scheme = url.replace("http://", "https://") if origin.startswith("http:") else url.replace("https:", "http:")
    assert own_sha256(other_scheme, s.public_origin) is None
    assert own_sha256(url.replace(s.public_host, f"{s.public_host.split(':')[0]}:1"), s.public_origin) is None


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"PLYR_APPVIEW_PUBLIC_URL": "ftp://api.plyr.fm"}, "PLYR_APPVIEW_PUBLIC_URL='ftp://api.plyr.fm' must be http"),
        ({"PLYR_APPVIEW_PUBLIC_URL": "api.plyr.fm"}, "PLYR_APPVIEW_PUBLIC_URL='api.plyr.fm' must be http"),
        ({"PLYR_APPVIEW_PUBLIC_URL": "https://api.plyr.fm/x"}, "no path, query or fragment"),
        ({"PLYR_APPVIEW_PUBLIC_URL": "https://api.plyr.fm?x=1"}, "no path, query or fragment"),
        ({"PLYR_APPVIEW_PUBLIC_URL": "https://api.plyr.fm#x"}, "no path, query or fragment"),
        ({"PLYR_APPVIEW_PUBLIC_URL": "https://u:p@api.plyr.fm"}, "must not carry credentials"),
        ({"PLYR_APPVIEW_PUBLIC_URL": "https://api.plyr.fm:99999"}, "PLYR_APPVIEW_PUBLIC_URL="),
        (
            {"PLYR_APPVIEW_PUBLIC_URL": "http://localhost:8080", "PLYR_APPVIEW_PUBLIC_HOST": "localhost"},
            "name different hosts",
        ),
        ({"PLYR_APPVIEW_PUBLIC_HOST": "api.plyr.fm/x"}, "PLYR_APPVIEW_PUBLIC_HOST="),
        ({"PLYR_APPVIEW_PUBLIC_HOST": "api.plyr.fm:port"}, "PLYR_APPVIEW_PUBLIC_HOST="),
    ],
)
def test_a_wrong_public_url_is_refused(env: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(says)):
        Settings.from_env(env)
