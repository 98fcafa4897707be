"""Lexicon string formats and the identifier syntaxes they name (`indexer.atproto.syntax`). Most cases come
from the atproto specs and the atproto interop test vectors (https://github.com/bluesky-social/atproto-interop-tests,
CC0); tests/test_syntax_interop.py runs the vector files themselves against every source."""

from __future__ import annotations

import datetime
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer.atproto.lexicon import FORMATS, is_language, is_uri
from indexer.atproto.syntax import (
    is_at_identifier,
    is_at_uri,
    is_base32_cid,
    is_cid,
    is_datetime,
    is_did,
    is_handle,
    is_nsid,
    is_record_key,
    is_tid,
)

Check = Callable[[str], bool]

VALID: dict[Check, list[str]] = {
    is_datetime: [
        "1985-04-12T23:20:50.123Z",
        "1985-04-12T23:20:50.000Z",
        "2000-01-01T00:00:00.000Z",
        "1985-04-12T23:20:50.123456Z",
        "1985-04-12T23:20:50.1235678912345Z",
        "1985-04-12T23:20:50Z",
        "1985-04-12T23:20:50.0Z",
        "1985-04-12T23:20:50.123+00:00",
        "1985-04-12T23:20:50.123-07:00",
        "1985-04-12T23:20:50.123+01:45",
        "0985-04-12T23:20:50.123-07:00",
        "0000-01-01T00:00:00.000Z",
        "0000-01-01T01:00:00+01:00",
        "3001-12-31T23:00:00.000Z",
        "2024-02-29T12:00:00Z",  # leap year
        "2000-02-29T12:00:00Z",  # divisible by 400
        "2025-11-20T18:04:11.512Z",
    ],
    is_uri: [
        "https://example.com",
        "https://example.com/path?q=blah&yes=true#frag.123",
        "dns:example.com",
        "at://handle.example.com/nsid/rkey",
        "did:key:zQ3shZc2QzApp2oymGvQbzP8eKheVshBHbU4ZYjeXqwSKEn6N",
        "content-type:text/plan",
        "microsoft.windows.camera:thing",
        "go://?Mercedes%20Benz",
        "HTTPS://EXAMPLE.COM/",
        "https://example.com/" + "x" * 5000,
        "https://example.com/caf\u00e9.mp3",
    ],
    is_at_uri: [
        "at://did:plc:asdf123",
        "at://user.bsky.social",
        "at://did:plc:asdf123/com.atproto.feed.post",
        "at://did:plc:asdf123/com.atproto.feed.post/record",
        "at://did:plc:asdf123/com.atproto.feed.post/" + "o" * 512,
        "at://did:abc:123/io.nsid.someFunc/record-key",
        "at://did:abc:123/io.nsid.someFunc/self.",
        "at://did:abc:123/io.nsid.someFunc/lang:",
        "at://did:abc:123/io.nsid.someFunc/~",
        "at://did:abc:123/io.nsid.someFunc/...",
        "at://did:plc:z72i7hdynmk6r22z27h6tvur/fm.plyr.track/3lbyvyjw5fk2n",
        "at://did:plc:asdf123/com.atproto.feed.post/abc#/path",
        # a long handle authority goes through the component-by-component path
        "at://" + "a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 61 + "/a.b.c/" + "x" * 400,
    ],
    is_did: [
        "did:method:val",
        "did:method:VAL",
        "did:method:val-two",
        "did:method:val_two",
        "did:method:val.two",
        "did:method:val:two",
        "did:method:val%BB",
        "did:m:v",
        "did:method::::val",
        "did:method:-",
        "did:plc:7iza6de2dwap2sbkpav7c6c6",
        "did:web:example.com",
        "did:web:localhost%3A1234",
        "did:key:zQ3shZc2QzApp2oymGvQbzP8eKheVshBHbU4ZYjeXqwSKEn6N",
        "did:method:" + "v" * 2037,
    ],
    is_handle: [
        "A.ISI.EDU",
        "XX.LCS.MIT.EDU",
        "john.test",
        "a234567890123456789.test",
        "john-john.test",
        "jo.hn",
        "a.co",
        "j0.h0",
        "john.t",
        "laptop.local",
        "xn--ls8h.test",
        "xn--bcher-kva.tld",
        "expyuzz4wqqyqhjn.onion",
        "12345.test",
        "8.cn",
        "4chan.org",
        "short." + "o" * 63 + ".test",
        "shoooort" + ".loooooooooooooooooooooooooong" * 8 + ".test",
    ],
    is_nsid: [
        "com.example.fooBar",
        "com.example.fooBarV2",
        "net.users.bob.ping",
        "a.b.c",
        "m.xn--masekowski-d0b.pl",
        "one.two.three.four-and.FiVe",
        "one.2.three",
        "a-0.b-1.c",
        "cn.8.lex.stuff",
        "a.0.c",
        "com.example.f00",
        "org.4chan.lex.getThing",
        "fm.plyr.actor.profile",
        "com." + "o" * 63 + ".foo",
        "com.example." + "o" * 63,
    ],
    is_cid: [
        "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
        "bafyreiclp443lavogvhj3d2ob2cxbfuscni2k5jk7bebjzg7khl3esabwq",
        "bafkreibme22gw2h7y2h7tg2fhqotaqjucnbc24deqo72b6mkl2egezxhvy",
        "zdj7WWeQ43G6JJvLWQWZpyHuAMq6uYWRjkBXFad11vE2LHhQ7",
        "mBcDxtdWx0aWhhc2g+",
        "f017012202c5f688262e0ece8569aa6f94d60aad55ca8d9d83734e4a7430d0cff6588ec2b",
    ],
    is_base32_cid: [
        "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
        "bafyreiclp443lavogvhj3d2ob2cxbfuscni2k5jk7bebjzg7khl3esabwq",
        "bafkreibme22gw2h7y2h7tg2fhqotaqjucnbc24deqo72b6mkl2egezxhvy",
        "b" * 256,
    ],
    is_tid: ["3jzfcijpj2z2a", "7777777777777", "3zzzzzzzzzzzz", "2222222222222", "3lbyvyjw5fk2n"],
    is_record_key: [
        "self",
        "example.com",
        "~1.2-3_",
        "dHJ1ZQ",
        "_",
        "literal:self",
        "pre:fix",
        ":",
        "-",
        "...",
        "self.",
        "o" * 512,
    ],
    is_language: [
        "ja",
        "ban",
        "pt-BR",
        "hy-Latn-IT-arevela",
        "en-GB",
        "zh-Hant",
        "sgn-BE-NL",
        "es-419",
        "en-GB-boont-r-extended-sequence-x-private",
        "zh-hakka",
        "i-default",
        "de-CH-1901",
        "qaa-Qaaa-QM-x-southern",
        "X-fr-CH",
        "de-X-foo",
        "sl-rozaj-biske",
        "en-u-co-phonebk-t-en-US",
    ],
    is_at_identifier: ["did:plc:7iza6de2dwap2sbkpav7c6c6", "john.test", "XX.LCS.MIT.EDU", "did:method:val"],
}

INVALID: dict[Check, list[str]] = {
    is_datetime: [
        "1985-04-12T23:20:50.123z",  # lower-case z
        "1985-04-12t23:20:50.123Z",  # lower-case t
        "01985-04-12T23:20:50.123Z",
        "985-04-12T23:20:50.123Z",
        "1985-04-12T23:20:50.Z",
        "1985-04-32T23;20:50.123Z",
        "1985\u201404-12T23:20:50.123Z",  # em dash
        " 1985-04-12T23:20:50.123Z",
        "1985-04-12T23:20:50.123Z ",
        "1985-04-12T23:20:50.123Z\n",
        "1985-4-12T23:20:50.123Z",
        "1985-04-12T23:20:5.123Z",
        "1985-04-12T023:20:50.123Z",
        "1985-04-12T23:20:50.123-00:00",  # negative zero offset: RFC 3339 but not ISO 8601
        "1985-04-12_23:20:50.123Z",
        "1985-04-12 23:20:50.123Z",
        "1985-04-274T23:20:50.123Z",
        "1985-04-12T23:20:50.123",  # no timezone
        "1985-04-12T23:20:50",
        "1985-04-12",
        "1985-04-12T23:20Z",  # no seconds
        "+001985-04-12T23:20:50.123Z",
        "23:20:50.123Z",
        "1985-04-12T23:20:50.123+00",
        "1985-04-12T23:20:50.123+0000",
        "1985-04-12T23:20:50.123+",
        "-000001-12-31T23:00:00.000Z",
        "1985-00-12T23:20:50.123Z",
        "1985-04-00T23:20:50.123Z",
        "1985-13-12T23:20:50.123Z",
        "1985-04-12T25:20:50.123Z",
        "1985-04-12T23:99:50.123Z",
        "1985-04-12T23:20:61.123Z",
        "1985-04-31T23:20:50Z",  # April has 30 days
        "2023-02-29T12:00:00Z",  # not a leap year
        "1900-02-29T12:00:00Z",  # divisible by 100, not by 400
        "0000-01-01T00:00:00+01:00",  # normalizes to a negative year
        "1985-04-12T23:20:50." + "1" * 50 + "Z",  # over 64 chars
        "",
    ],
    is_uri: [
        "example.com",
        "://example.com",
        "//example.com",
        "http:",
        ".http://example.com",
        "-http://example.com",
        "12345",
        "127.0.0.1",
        "https://example.com/path gap",
        "  https://example.com/path",
        "https://example.com/trailing-whitespace  ",
        "https://example.com/tab\there",
        "https://example.com/" + "x" * 8200,
        "https://example.com/\ud800",
        "",
    ],
    is_at_uri: [
        "a://did:plc:asdf123",
        "at//did:plc:asdf123",
        "at:/did:plc:asdf123",
        "AT://did:plc:asdf123",
        "http://did:plc:asdf123",
        "at:///did:plc:asdf123",
        "at://did:plc:asdf123 ",
        " at://did:plc:asdf123",
        "at://name",
        "at://name.0",
        "at://diD:plc:asdf123",
        "at://did:plc:asdf123/com.atproto.feed.p@st",
        "at://did:plc:asdf123/com.atproto.feed_post",
        "at://did:plc:asdf123/-com.atproto.feed.post",
        "at://did:plc:asdf@123/com.atproto.feed.post",
        "at://user.bsky.123",
        "at://bsky",
        "at://did:plc:",
        "at://user.bsky.social//",
        "at://did:plc:asdf123/com.atproto.feed.post/asdf123/more/more",
        "at://did:plc:asdf123/short/stuff",
        "at://did:plc:asdf123/12345",
        "at://did:plc:asdf123/",
        "at://did:plc:asdf123/com.atproto.feed.post/",
        "at://did:plc:asdf123#",
        "at://did:plc:asdf123#/asdf#/asdf",
        "at://did:plc:asdf123/com.atproto.feed.post/%23",
        "at://did:plc:asdf123/com.atproto.feed.post/$",
        "at://did:plc:asdf123/com.atproto.feed.post/.",
        "at://did:plc:asdf123/com.atproto.feed.post/..",
        "at://did:plc:asdf123/com.atproto.feed.post/" + "o" * 513,
        "at://did:plc:asdf123/com.atproto.feed.post/" + "o" * 8200,
        "at://" + "a" * 64 + ".test/a.b.c",
        "",
    ],
    is_did: [
        "did",
        "didmethodval",
        "method:did:val",
        "did:method:",
        "didmethod:val",
        "did:methodval)",
        ":did:method:val",
        "did:method:val:",
        "did:method:val%",
        "DID:method:val",
        "did:METHOD:val",
        "did:m123:val",
        "did:method:val/two",
        "did:method:val?two",
        "did:method:val#two",
        "did:method:" + "v" * 2038,
        "did:plc:7iza6de2dwap2sbkpav7c6c6\n",
        "",
    ],
    is_handle: [
        "did:thing.test",
        "did:thing",
        "john-.test",
        "john.0",
        "john.-",
        "xn--bcher-.tld",
        "john..test",
        "jo_hn.test",
        "-john.test",
        ".john.test",
        "jo!hn.test",
        "john\U0001f4a9.test",
        "b\u00fccher.test",
        "john .test",
        "john.test.",
        "john",
        "org",
        "cn.8",
        "thing.0aa",
        "127.0.0.1",
        "fe80::7325:8a97:c100:94b",
        "short." + "o" * 64 + ".test",
        "shoooort" + ".loooooooooooooooooooooooooong" * 9 + ".test",
        "",
    ],
    is_nsid: [
        "com." + "o" * 64 + ".foo",
        "com.example." + "o" * 64,
        "com" + ".middle" * 50 + ".foo",
        "com.example.foo.*",
        "com.example.foo.blah*",
        "com.exa\U0001f4a9ple.thing",
        "a-0.b-1.c-3",
        "1.0.0.127.record",
        "0two.example.foo",
        "example.com",
        "com.example",
        "a.",
        ".one.two.three",
        "one.two.three ",
        "one.two..three",
        "com.atproto.feed.p_st",
        "com.example-.foo",
        "com.example.fooBar.2",
        "",
    ],
    is_cid: [
        "example.com",
        "https://example.com",
        "cid:bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
        ".",
        "12345",
        " bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
        "bafybe igdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
        "QmbWqxBEKC3P8tqsKc98xmWNzrzDtRLMiMPL8wBuTGsMnR",  # CIDv0
        "noop",
        "b" * 257,
        "",
    ],
    is_base32_cid: [
        "zdj7WWeQ43G6JJvLWQWZpyHuAMq6uYWRjkBXFad11vE2LHhQ7",  # valid CID, base58btc
        "mBcDxtdWx0aWhhc2g+",  # valid CID, base64
        "f017012202c5f688262e0ece8569aa6f94d60aad55ca8d9d83734e4a7430d0cff6588ec2b",  # valid CID, base16
        "BAFYREICLP443LAVOGVHJ3D2OB2CXBFUSCNI2K5JK7BEBJZG7KHL3ESABWQ",  # base32upper
        "bafyreiclp443lavogvhj3d2ob2cxbfuscni2k5jk7bebjzg7khl3esab01",  # 0 and 1 are not base32
        "bafyrei",
        "b" * 257,
        "bafyreiclp443lavogvhj3d2ob2cxbfuscni2k5jk7bebjzg7khl3esabwq\n",
        "",
    ],
    is_tid: [
        "3jzfcijpj2z21",
        "0000000000000",
        "3JZFCIJPJ2Z2A",
        "3jzfcijpj2z2aa",
        "3jzfcijpj2z2",
        "222",
        "3jzf-cij-pj2z-2a",
        "zzzzzzzzzzzzz",  # high bit set
        "kjzfcijpj2z2a",
        "3jzfcijpj2z2a\n",
        "",
    ],
    is_record_key: [
        "alpha/beta",
        ".",
        "..",
        "#extra",
        "@handle",
        "any space",
        "any+space",
        "number[3]",
        '"quote"',
        "dHJ1ZQ==",
        "o" * 513,
        "",
    ],
    is_language: [
        "jaja",
        ".",
        "123",
        "JA",
        "j",
        "ja-",
        "a-DE",
        "de-DE-1901-1901",  # repeated variant
        "en-rozaj-ROZAJ",
        "en-a-foo-a-bar",  # repeated extension singleton
        "en-u-co-phonebk-U-ca-buddhist",
        "",
    ],
    is_at_identifier: [
        "email@example.com",
        "@handle",
        "blah",
        "did:method:",
        "DID:method:val",
        "john..test",
        "",
    ],
}


def _cases(table: dict[Check, list[str]]) -> list[tuple[Check, str]]:
    return [(check, value) for check, values in table.items() for value in values]


def _id(case: object) -> str:
    return case.__name__ if callable(case) else repr(case)[:40]


@pytest.mark.parametrize(("check", "value"), _cases(VALID), ids=_id)
def test_valid(check: Check, value: str) -> None:
    assert check(value) is True


@pytest.mark.parametrize(("check", "value"), _cases(INVALID), ids=_id)
def test_invalid(check: Check, value: str) -> None:
    assert check(value) is False


def test_format_table_names_every_spec_format() -> None:
    assert set(FORMATS) == {
        "at-identifier",
        "at-uri",
        "cid",
        "datetime",
        "did",
        "handle",
        "language",
        "nsid",
        "record-key",
        "tid",
        "uri",
    }


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=600))
def test_formats_never_raise_on_any_string(value: str) -> None:
    for check in FORMATS.values():
        assert check(value) in (True, False)


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(codec="ascii"), max_size=80))
def test_tid_matches_spec_definition(value: str) -> None:
    alphabet = "234567abcdefghijklmnopqrstuvwxyz"
    expected = len(value) == 13 and all(c in alphabet for c in value) and alphabet.index(value[0]) < 16
    assert is_tid(value) is expected


@settings(max_examples=300, deadline=None)
@given(
    st.datetimes(timezones=st.timezones()).filter(lambda dt: 1 <= dt.year <= 9999),
    st.sampled_from(["seconds", "milliseconds", "microseconds"]),
)
def test_isoformat_datetimes_are_accepted(dt: datetime.datetime, timespec: str) -> None:
    offset = dt.utcoffset()
    # Some historical zones have sub-minute offsets, which Python renders as +hh:mm:ss: no spec allows that.
    if offset is None or offset.seconds % 60:
        return
    text = dt.isoformat(timespec=timespec)
    assert is_datetime(text), text
    assert is_datetime(text.replace("+00:00", "Z")), text
