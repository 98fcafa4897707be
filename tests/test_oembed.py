"""oEmbed (`/oembed`) and the embeddable players (`/embed/track|list/<did>/<rkey>`) over HTTP, on data folded by
the real writer: each URL form, sizes, errors as oEmbed defines them, the player's HTML and its framing
headers, hidden subjects."""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import quote

from litestar.testing import AsyncTestClient

from bench.synth import (
    BASE_US,
    account,
    commit,
    identity,
    list_record,
    make_cid,
    make_did,
    make_tid,
    track_record,
    uri,
)
from indexer.atproto.lexicon import Validator
from indexer.settings import Settings
from tests.api_support import app
from tests.helpers import LIST, TRACK, ingest

ORIGIN = "https://plyr.example"
SETTINGS = Settings(public_url=ORIGIN)
ALICE, BOB = make_did(1), make_did(2)
T1, T2, GATED, ALBUM, MIX = (make_tid(BASE_US + n) for n in range(1, 6))
COVER = "https://img.example.com/cover.jpg"
TRACK_1 = track_record("Night <Drive>", artist="Alice & Co", imageUrl=COVER)
TRACK_2 = track_record("Second", micros=BASE_US + 2)
TRACK_GATED = track_record("Backstage", micros=BASE_US + 3, supportGate={"type": "any"})
T1_URI, T2_URI, GATED_URI = uri(ALICE, TRACK, T1), uri(BOB, TRACK, T2), uri(ALICE, TRACK, GATED)
ALBUM_URI, MIX_URI = uri(ALICE, LIST, ALBUM), uri(BOB, LIST, MIX)


def _album() -> dict[str, Any]:
    record = list_record([(T1_URI, make_cid(TRACK_1)), (T2_URI, make_cid(TRACK_2))], name="Dawn")
    record["listType"] = "album"
    return record


async def _seed(db_url: str, validator: Validator) -> None:
    await ingest(
        db_url,
        validator,
        [
            identity(ALICE, "alice.test", seq=1, micros=BASE_US),
            identity(BOB, "bob.test", seq=2, micros=BASE_US),
            commit(ALICE, TRACK, T1, T1, TRACK_1),
            commit(BOB, TRACK, T2, T2, TRACK_2),
            commit(ALICE, TRACK, GATED, GATED, TRACK_GATED),
            commit(ALICE, LIST, ALBUM, ALBUM, _album()),
            commit(BOB, LIST, MIX, MIX, list_record([(T1_URI, make_cid(TRACK_1))], name="mix")),
        ],
    )


async def _oembed(client: AsyncTestClient[Any], url: str, **params: Any) -> Any:
    return await client.get("/oembed", params={"url": url, **params})


URL_FORMS = [
    (T1_URI, f"/embed/track/{ALICE}/{T1}"),
    ("at://alice.test/fm.plyr.track/" + T1, f"/embed/track/{ALICE}/{T1}"),
    (f"{ORIGIN}/embed/track/{ALICE}/{T1}", f"/embed/track/{ALICE}/{T1}"),
    (f"https://plyr.fm/at/{ALICE}/fm.plyr.track/{T1}", f"/embed/track/{ALICE}/{T1}"),
    (f"https://plyr.fm/at://{ALICE}/fm.plyr.track/{T1}", f"/embed/track/{ALICE}/{T1}"),
    (f"https://plyr.fm/at:/{ALICE}/fm.plyr.track/{T1}", f"/embed/track/{ALICE}/{T1}"),
    (ALBUM_URI, f"/embed/list/{ALICE}/{ALBUM}"),
    (f"{ORIGIN}/listen#/list/{quote(ALBUM_URI, safe='')}", f"/embed/list/{ALICE}/{ALBUM}"),
    (f"{ORIGIN}/embed/list/{BOB}/{MIX}", f"/embed/list/{BOB}/{MIX}"),
    (f"https://plyr.fm/at/{quote(MIX_URI.removeprefix('at://'), safe='/')}", f"/embed/list/{BOB}/{MIX}"),
]


async def test_oembed_url_forms(db_url: str, validator: Validator) -> None:
    await _seed(db_url, validator)
    async with AsyncTestClient(app=app(db_url, settings=SETTINGS)) as client:
        for url, embed in URL_FORMS:
            resp = await _oembed(client, url)
            assert resp.status_code == 200, (url, resp.text)
            assert resp.headers["content-type"].startswith("application/json")
            body = resp.json()
            assert (body["version"], body["type"], body["provider_url"]) == ("1.0", "rich", ORIGIN)
            src = re.search(r'<iframe src="([^"]+)"', body["html"])
            assert src is not None
            assert html.unescape(src.group(1)) == ORIGIN + embed, url
            assert f'width="{body["width"]}" height="{body["height"]}"' in body["html"]


async def test_oembed_track_and_album_fields(db_url: str, validator: Validator) -> None:
    await _seed(db_url, validator)
    async with AsyncTestClient(app=app(db_url, settings=SETTINGS)) as client:
        track = (await _oembed(client, T1_URI, format="json")).json()
        album = (await _oembed(client, ALBUM_URI)).json()
        small = (await _oembed(client, T1_URI, maxwidth=300, maxheight=120)).json()
    assert track["title"] == "Night <Drive>"
    assert track["author_name"] == "Alice & Co"
    assert track["author_url"] == f"{ORIGIN}/listen#/artist/{quote(ALICE, safe='')}"
    assert track["thumbnail_url"] == COVER
    # Hostile text is escaped inside the html attribute.
    assert 'title="Night &lt;Drive&gt;"' in track["html"]
    assert (track["width"], track["height"]) == (480, 150)
    assert album["title"] == "Dawn"
    assert album["author_name"] == "alice.test"
    assert "thumbnail_url" not in album
    assert (album["width"], album["height"]) == (480, 400)
    assert (small["width"], small["height"]) == (300, 120)


ERRORS: list[tuple[dict[str, str], int]] = [
    ({"url": T1_URI, "format": "xml"}, 501),
    ({"url": T1_URI, "format": "yaml"}, 501),
    ({}, 400),
    ({"url": T1_URI, "maxwidth": "0"}, 400),
    ({"url": T1_URI, "maxwidth": "wide"}, 400),
    ({"url": T1_URI, "maxwidth": "50"}, 404),
    ({"url": uri(ALICE, TRACK, make_tid(BASE_US + 99))}, 404),
    ({"url": uri(ALICE, "fm.plyr.like", T1)}, 404),
    ({"url": "https://plyr.fm/track/42"}, 404),
    ({"url": "https://elsewhere.example/embed/track/" + ALICE + "/" + T1}, 404),
    ({"url": f"{ORIGIN}/embed/track/not-a-did/{T1}"}, 404),
    ({"url": "javascript:alert(1)"}, 404),
    ({"url": "x" * 9000}, 400),
]


async def test_oembed_errors(db_url: str, validator: Validator) -> None:
    await _seed(db_url, validator)
    async with AsyncTestClient(app=app(db_url, settings=SETTINGS)) as client:
        for params, status in ERRORS:
            resp = await client.get("/oembed", params=params)
            assert resp.status_code == status, (params, resp.text)
            assert set(resp.json()) == {"error", "message"}


async def test_embed_track_page(db_url: str, validator: Validator) -> None:
    await _seed(db_url, validator)
    async with AsyncTestClient(app=app(db_url, settings=SETTINGS)) as client:
        resp = await client.get(f"/embed/track/{ALICE}/{T1}")
        gated = await client.get(f"/embed/track/{ALICE}/{GATED}")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    csp = resp.headers["content-security-policy"]
    assert "frame-ancestors *" in csp and "default-src 'none'" in csp and "script-src" not in csp
    assert "x-frame-options" not in resp.headers
    page = resp.text
    assert "<script" not in page
    assert f'<audio controls preload="none" src="{ORIGIN}/audio/{ALICE}/{T1}">' in page
    assert "Night &lt;Drive&gt;" in page and "<Drive>" not in page
    oembed_link = f'type="application/json+oembed" href="{html.escape(ORIGIN + "/oembed?format=json&url=")}'
    assert oembed_link in page
    # A supporter-gated track has no player for an anonymous page.
    assert gated.status_code == 200
    assert "<audio" not in gated.text and "supporters" in gated.text


async def test_embed_list_page_and_hidden_subjects(db_url: str, validator: Validator) -> None:
    await _seed(db_url, validator)
    async with AsyncTestClient(app=app(db_url, settings=SETTINGS)) as client:
        album = await client.get(f"/embed/list/{ALICE}/{ALBUM}")
        missing = await client.get(f"/embed/list/{ALICE}/{make_tid(BASE_US + 99)}")
        malformed = await client.get(f"/embed/track/nobody/{T1}")
    assert album.status_code == 200
    assert "frame-ancestors *" in album.headers["content-security-policy"]
    assert "Album by alice.test" in album.text
    assert album.text.count("<audio ") == 2
    assert album.text.index(f"/audio/{ALICE}/{T1}") < album.text.index(f"/audio/{BOB}/{T2}")
    for resp in (missing, malformed):
        assert resp.status_code == 404
        assert "<audio" not in resp.text

    # BOB leaves: his track leaves the album's page, his list and track are gone.
    await ingest(db_url, validator, [account(BOB, False, "deactivated", seq=3, micros=BASE_US + 10)])
    async with AsyncTestClient(app=app(db_url, settings=SETTINGS)) as client:
        album = await client.get(f"/embed/list/{ALICE}/{ALBUM}")
        mix = await client.get(f"/embed/list/{BOB}/{MIX}")
        track = await client.get(f"/embed/track/{BOB}/{T2}")
        oembed = await _oembed(client, T2_URI)
    assert album.text.count("<audio ") == 1
    assert (mix.status_code, track.status_code, oembed.status_code) == (404, 404, 404)
