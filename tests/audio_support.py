"""Test audio made by hand (no encoder is installed): WAV through the `wave` module, MPEG-1 Layer III and FLAC
by writing valid headers and frames; and an uploader with a signing key the test resolver knows."""

from __future__ import annotations

import io
import math
import struct
import wave
from typing import Any

from bench.synth import make_did
from indexer.settings import Settings
from tests.api_support import Keypair, StubResolver, service_jwt

UPLOAD = "fm.plyr.uploadAudio"
UPLOADER = make_did(41)


def wav_bytes(seconds: float, *, rate: int = 8000, tone: float = 440.0, channels: int = 1) -> bytes:
    frames = int(seconds * rate)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        samples = (int(8000 * math.sin(2 * math.pi * tone * i / rate)) for i in range(frames))
        w.writeframes(b"".join(struct.pack("<h", s) * channels for s in samples))
    return buf.getvalue()


def wav_header(data_bytes: int, *, rate: int = 44100, channels: int = 2) -> bytes:
    """The 44-byte header of a 16-bit PCM WAV whose data chunk holds `data_bytes` bytes."""
    block = channels * 2
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * block, block, 16)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


def mp3_bytes(frames: int) -> bytes:
    """MPEG-1 Layer III, 128 kbit/s, 44.1 kHz, no padding: 417-byte frames of 1152 samples (silence)."""
    header = bytes([0xFF, 0xFB, 0x90, 0x00])
    return (header + bytes(417 - 4)) * frames


def flac_bytes(seconds: int, *, rate: int = 44100) -> bytes:
    """A FLAC stream header: `fLaC` and a STREAMINFO block announcing `seconds` of 16-bit stereo."""
    total = seconds * rate
    info = struct.pack(">HH", 4096, 4096) + (0).to_bytes(3, "big") + (0).to_bytes(3, "big")
    packed = (rate << 44) | ((2 - 1) << 41) | ((16 - 1) << 36) | total
    info += packed.to_bytes(8, "big") + bytes(16)
    return b"fLaC" + bytes([0x80]) + len(info).to_bytes(3, "big") + info


class Uploader:
    def __init__(self, did: str = UPLOADER) -> None:
        self.did = did
        self.key = Keypair()
        self.resolver = StubResolver()
        self.resolver.keys[did] = self.key.did_key

    def token(self, **kw: Any) -> str:
        kw.setdefault("lxm", UPLOAD)
        return service_jwt(self.key, iss=self.did, **kw)

    def headers(self, content_type: str = "audio/wav", **kw: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(**kw)}", "Content-Type": content_type}


def settings_with(storage: Any, **kw: Any) -> Settings:
    return Settings(public_host="api.plyr.test", storage=storage, **kw)
