"""The status and listener pages in a real headless Chromium, against an AppView on a loopback port over an
index seeded through the real fold: load both pages, search, open an artist, open a playlist, play a track
(a generated WAV behind `/audio/<did>/<rkey>`), and check screenshots and the DOM."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec
import pytest
import uvicorn

from appview import api_doc
from bench.synth import (
    BASE_US,
    commit,
    identity,
    list_record,
    make_cid,
    make_did,
    make_tid,
    profile_record,
    track_record,
    uri,
)
from indexer.atproto.lexicon import Validator
from indexer.events import Malformed
from indexer.settings import Settings
from tests.api_support import StubResolver, app
from tests.audio_support import wav_bytes
from tests.browser import HEIGHT, WIDTH, Page, chromium, chromium_binary, distinct_colours, near, pixel
from tests.helpers import LIST, PROFILE, TRACK, ingest

BINARY = chromium_binary()
pytestmark = pytest.mark.skipif(
    BINARY is None, reason="no chromium on PATH (Debian: apt-get install chromium; or set PLYR_CHROMIUM)"
)

ALICE, BOB = make_did(101), make_did(102)
HOSTILE_TITLE = '<img src=x onerror="window.__pwned=1">Bad Title'


class AudioCdn:
    """A loopback origin serving one WAV (with byte ranges, as media elements ask for them)."""

    def __init__(self) -> None:
        self.wav = wav_bytes(6.0)
        self.gets: list[str] = []
        cdn = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, body: bool) -> None:
                if self.path != "/cdn/tone.wav":
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data, status = cdn.wav, 200
                extra = {}
                rng = self.headers.get("Range", "")
                if rng.startswith("bytes="):
                    first, _, last = rng[6:].partition("-")
                    start, end = int(first or 0), int(last) if last else len(cdn.wav) - 1
                    data, status = cdn.wav[start : end + 1], 206
                    extra["Content-Range"] = f"bytes {start}-{start + len(data) - 1}/{len(cdn.wav)}"
                self.send_response(status)
                self.send_header("Content-Type", "audio/wav")
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(len(data)))
                for k, v in extra.items():
                    self.send_header(k, v)
                self.end_headers()
                if body:
                    cdn.gets.append(self.path)
                    self.wfile.write(data)

            def do_HEAD(self) -> None:
                self._send(body=False)

            def do_GET(self) -> None:
                self._send(body=True)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def cdn() -> Iterator[AudioCdn]:
    c = AudioCdn()
    c.thread.start()
    try:
        yield c
    finally:
        c.server.shutdown()
        c.server.server_close()


@pytest.fixture
async def appview(db_url: str, cdn: AudioCdn) -> AsyncIterator[str]:
    """The AppView on a loopback port; its base URL."""
    settings = Settings(public_host="api.plyr.test", trusted_audio_origins=(cdn.origin,))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app(db_url, StubResolver(), settings), log_config=None, access_log=False))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.05)
        assert server.started, "the AppView did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving
        sock.close()


def tid(n: int) -> str:
    return make_tid(BASE_US + n * 1_000_000)


async def seed(db_url: str, validator: Validator, cdn: AudioCdn) -> dict[str, str]:
    tracks = {
        "river": (ALICE, tid(1), track_record("Midnight River", artist="Alice Waves", album="Tides",
                                              audioUrl=f"{cdn.origin}/cdn/tone.wav", fileType="wav",
                                              micros=BASE_US + 1_000_000)),
        "echo": (ALICE, tid(2), track_record("Golden Echo", artist="Alice Waves", micros=BASE_US + 2_000_000)),
        "neon": (BOB, tid(3), track_record("Neon Thunder", artist="Bob Static", micros=BASE_US + 3_000_000)),
        "bad": (BOB, tid(4), track_record(HOSTILE_TITLE, artist="Bob Static", micros=BASE_US + 4_000_000)),
    }
    events: list[Any] = [
        identity(ALICE, "alice.plyr.test", seq=1, micros=BASE_US),
        identity(BOB, "bob.plyr.test", seq=2, micros=BASE_US),
        commit(ALICE, PROFILE, "self", tid(0), profile_record("Ambient tides & <b>loops</b>")),
    ]
    events += [commit(did, TRACK, rkey, rkey, rec) for did, rkey, rec in tracks.values()]
    playlist = list_record(
        [(uri(ALICE, TRACK, tracks[k][1]), make_cid(tracks[k][2])) for k in ("echo", "river")],
        name="Night Drive",
        micros=BASE_US + 5_000_000,
    )
    events.append(commit(ALICE, LIST, tid(5), tid(5), playlist))
    now_us = int(time.time() * 1_000_000)
    # A source position, so the status page has a live source to show.
    events = [msgspec.structs.replace(e, source="jetstream", cursor=now_us - 2_000_000 + i, time_us=now_us - 2_000_000)
              for i, e in enumerate(events)]
    await ingest(
        db_url,
        validator,
        events,
        [Malformed(reason="bad_json", detail="<script>alert(1)</script>", source="jetstream", raw="{oops")],
    )
    return {k: uri(did, TRACK, rkey) for k, (did, rkey, _) in tracks.items()}


# Colours of listen.css: the header and player bars, the outline of the playing track.
BAR = (0x20, 0x23, 0x2A)
PLAYING = (0xEF, 0x47, 0x6F)


async def check_screenshot(page: Page, path: Path, min_colours: int = 12) -> bytes:
    data = await page.screenshot(path)
    width, height, colours = await asyncio.to_thread(distinct_colours, data)
    assert (width, height) == (WIDTH, HEIGHT)
    assert colours >= min_colours, f"{path.name} looks blank: {colours} colours"
    return data


async def check_listener_chrome(data: bytes) -> None:
    """The header (top) and the player bar (bottom) are on screen."""
    top = await asyncio.to_thread(pixel, data, 3, 3)
    bottom = await asyncio.to_thread(pixel, data, 3, HEIGHT - 3)
    assert near(top, BAR) and near(bottom, BAR), (top, bottom)


async def texts(page: Page, selector: str) -> list[str]:
    return list(
        await page.eval(f"[...document.querySelectorAll({json.dumps(selector)})].map(e => e.textContent.trim())")
    )


async def test_status_and_listener_pages_in_chromium(
    db_url: str, validator: Validator, cdn: AudioCdn, appview: str, tmp_path: Path
) -> None:
    assert BINARY is not None
    uris = await seed(db_url, validator, cdn)
    async with chromium(BINARY, tmp_path / "profile") as page:
        # The operator page.
        await page.goto(f"{appview}/status")
        assert await page.eval("document.title") == "plyr-appview status"
        assert "jetstream" in " ".join(await texts(page, "table.sources td"))
        assert "bad_json" in " ".join(await texts(page, "table.rejections td"))
        assert await page.eval("document.querySelectorAll('script').length") == 0, "hostile example became markup"
        assert "<script>alert(1)</script>" in " ".join(await texts(page, "table.rejections code"))
        await check_screenshot(page, tmp_path / "status.png")

        # The listener page: the latest tracks, newest first, hostile text shown as text.
        await page.send("Network.enable")
        await page.goto(f"{appview}/listen")
        await page.wait_for("document.querySelectorAll('#view .track').length === 4")
        titles = await texts(page, "#view .track .title")
        assert titles == [HOSTILE_TITLE, "Neon Thunder", "Golden Echo", "Midnight River"]
        assert await page.eval("window.__pwned === undefined && document.querySelectorAll('#view img').length === 0")
        await check_listener_chrome(await check_screenshot(page, tmp_path / "latest.png"))

        # Search, typed and submitted like a person would.
        await page.type_text("#q", "neon")
        await page.press_enter()
        await page.wait_for("document.querySelector('#view').dataset.loaded === '/search?q=neon'")
        assert await texts(page, "#view .track .title") == ["Neon Thunder"]
        await check_screenshot(page, tmp_path / "search.png")

        # An artist page, opened from a search result.
        await page.eval("document.querySelector('#q').value = ''")
        await page.type_text("#q", "midnight")
        await page.press_enter()
        await page.wait_for("document.querySelector('#view').dataset.loaded === '/search?q=midnight'")
        await page.click("#view .track .artist-link")
        await page.wait_for("(document.querySelector('#view').dataset.loaded || '').startsWith('/artist/')")
        assert await page.eval("document.querySelector('#artist-name').textContent") == "alice.plyr.test"
        assert "Ambient tides & <b>loops</b>" in await texts(page, ".profile .bio")
        assert await texts(page, "#view .track .title") == ["Golden Echo", "Midnight River"]
        assert await texts(page, ".list-link") == ["Night Drive"]
        await check_screenshot(page, tmp_path / "artist.png")

        # The playlist, in record order.
        await page.click(".list-link")
        await page.wait_for("(document.querySelector('#view').dataset.loaded || '').startsWith('/list/')")
        assert await page.eval("document.querySelector('#list-name').textContent") == "Night Drive"
        assert await texts(page, "#view .track .title") == ["Golden Echo", "Midnight River"]

        # Play: the <audio> element plays the WAV through /audio/<did>/<rkey> and its clock advances.
        await page.click(f'#view .track[data-uri="{uris["river"]}"] button.play')
        src = await page.wait_for("document.querySelector('#player').currentSrc")
        assert src == f"{appview}/audio/{ALICE.replace(':', '%3A')}/{tid(1)}"
        first = await page.wait_for(
            "(() => { const p = document.querySelector('#player');"
            " return !p.paused && !p.error && p.currentTime > 0.3 && p.currentTime; })()"
        )
        await asyncio.sleep(0.6)
        later = await page.eval("document.querySelector('#player').currentTime")
        assert later > first, (first, later)
        assert await page.eval("document.querySelector('#player').error") is None
        assert "/cdn/tone.wav" in cdn.gets
        assert await page.eval("document.querySelector('#now-playing').textContent") == "Midnight River — Alice Waves"
        assert await page.eval("document.querySelector('#message').hidden")
        shot = await check_screenshot(page, tmp_path / "playing.png")
        await check_listener_chrome(shot)
        # The playing row is outlined: its left edge, half-way down, has the outline colour.
        x, y = await page.eval(
            "(() => { const r = document.querySelector('.track.playing').getBoundingClientRect();"
            " return [Math.round(r.left), Math.round(r.top + r.height / 2)]; })()"
        )
        edge = [await asyncio.to_thread(pixel, shot, x + dx, y) for dx in (-2, -1, 0, 1)]
        assert any(near(colour, PLAYING) for colour in edge), edge

        # Everything the page asked of the AppView is public: its own files, query lexicon methods, /audio.
        asked = {
            urlsplit(e["params"]["request"]["url"]).path
            for e in page.events
            if e.get("method") == "Network.requestWillBeSent" and e["params"]["request"]["url"].startswith(appview)
        }
        methods = {p.removeprefix("/xrpc/") for p in asked if p.startswith("/xrpc/")}
        assert methods == {
            "fm.plyr.getLatestTracks",
            "fm.plyr.searchTracks",
            "fm.plyr.getActorProfile",
            "fm.plyr.getActorLists",
            "fm.plyr.getActorTracks",
            "fm.plyr.getList",
        }
        assert methods <= {nsid for nsid, main in api_doc.methods() if main["type"] == "query"}
        others = {p for p in asked if not p.startswith("/xrpc/")}
        assert {p for p in others if not p.startswith("/audio/")} == {
            "/listen", "/static/listen.js", "/static/listen.css"
        }, others

        # Unknown artist: an XRPC error, shown as a message, not a broken page.
        await page.goto(f"{appview}/listen#/artist/did%3Aplc%3Anobody")
        await page.wait_for("document.querySelector('#view').dataset.loaded === '/artist/did%3Aplc%3Anobody'")
        assert "NotFound" in await page.eval("document.querySelector('#message').textContent")
