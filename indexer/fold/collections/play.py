"""`fm.teal.feed.play` and the legacy `fm.teal.alpha.feed.play`: teal.fm plays (scrobbles), projected into
`plays`; each play of an active author that names one of our tracks counts toward its `play_count`.

A play is linked to a track by its origin: `originUri` (`fm.teal.feed.play`, and what plyr.fm writes in either
collection) or else the legacy `originUrl`, read by the SQL function `plyr_track_uri` (migration 0012). The forms
it accepts, and nothing else (a play is never matched to a track by title or artist):

- an http(s) URL whose path ends in `/track/<did>/<rkey>` (a query or fragment may follow), on any host, e.g.
  `https://plyr.fm/track/did:plc:abc/3lb2...` or this AppView's `/embed/track/did:plc:abc/3lb2...`;
- otherwise an at:// URI of an `fm.plyr.track` (`at://<did>/fm.plyr.track/<rkey>`), alone or anywhere inside a
  URL, e.g. `https://example.com/player?uri=at://did:plc:abc/fm.plyr.track/3lb2...`;
- either of these percent-encoded (`%3A` for `:`, `%2F` for `/`), as in a query parameter.

The DID must be a DID (a handle would need a lookup) and the key a TID, as `fm.plyr.track` keys are. A play
whose origin is anything else (plyr.fm's own `https://plyr.fm/track/<number>` names a row of its database, not
a record) is kept with no track: counted as unlinkable in `getStats`, never guessed. The two collections' record
keys may meet, so rows are keyed by collection too.
"""

from __future__ import annotations

from indexer.fold.collections.projection import SORT_AT, Collection, counted, delete, flip, live, uri

NSID = "fm.teal.feed.play"
ALPHA_NSID = "fm.teal.alpha.feed.play"


def origin(item: str) -> str:
    """The origin URI of the play-shaped JSON `item` (a play record, a status's `item`): `originUri`, else the
    legacy `originUrl`; only a string counts (the alpha lexicon does not describe `originUri`, so it is not
    checked there)."""
    return (
        f"coalesce(CASE WHEN jsonb_typeof({item}->'originUri') = 'string' THEN {item}->>'originUri' END,"
        f" CASE WHEN jsonb_typeof({item}->'originUrl') = 'string' THEN {item}->>'originUrl' END)"
    )


def _collection(nsid: str) -> Collection:
    return Collection(
        nsid=nsid,
        project=(
            counted(delete("plays", nsid, by_collection=True), "plays", "-", subject="track_uri"),
            counted(
                f"""
        INSERT INTO plays AS t (did, collection, rkey, uri, cid, event_id, author_active, track_uri, played_at,
                                indexed_at, sort_at)
        SELECT r.did, r.collection, r.rkey, {uri(nsid)}, e.cid, e.id, a.active,
               plyr_track_uri({origin("e.record")}), e.created_at, e.received_at, {SORT_AT}
        {live(nsid)}
        """,
                "plays",
                subject="track_uri",
            ),
        ),
        flip=counted(flip("plays"), "plays", "flip", subject="track_uri"),
        counted=True,
        # When playback began; capped by the arrival like any creation time (SORT_AT).
        created_field="playedTime",
    )


COLLECTION = _collection(NSID)
ALPHA_COLLECTION = _collection(ALPHA_NSID)
