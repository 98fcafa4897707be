"""appview/memo.py: values stay fresh for their slot's TTL, a slot keeps at most `size` keys, and lookups are
single-flight per key without holding up other keys; a failed computation stores nothing."""

from __future__ import annotations

import asyncio
import functools

import pytest

from appview.memo import Memo, Slot


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_fresh_for_the_ttl_then_computed_again() -> None:
    clock = Clock()
    memo = Memo(clock)
    slot = Slot[None, int]("totals", ttl=10.0)
    calls = 0

    async def compute() -> int:
        nonlocal calls
        calls += 1
        return calls

    assert await memo.get(slot, None, compute) == 1
    clock.now = 9.9
    assert await memo.get(slot, None, compute) == 1
    clock.now = 10.0
    assert await memo.get(slot, None, compute) == 2
    assert calls == 2


async def test_slots_and_keys_are_separate() -> None:
    memo = Memo(Clock())
    a = Slot[str, str]("a", ttl=60.0, size=4)
    b = Slot[str, str]("b", ttl=60.0, size=4)

    async def value(text: str) -> str:
        return text

    assert await memo.get(a, "k", lambda: value("a:k")) == "a:k"
    assert await memo.get(a, "j", lambda: value("a:j")) == "a:j"
    assert await memo.get(b, "k", lambda: value("b:k")) == "b:k"
    assert await memo.get(a, "k", lambda: value("other")) == "a:k"


async def test_size_drops_the_oldest_key() -> None:
    memo = Memo(Clock())
    slot = Slot[int, int]("ranking", ttl=60.0, size=2)
    calls: list[int] = []

    async def compute(key: int) -> int:
        calls.append(key)
        return key

    for key in (1, 2, 3, 3, 2, 1):
        await memo.get(slot, key, functools.partial(compute, key))
    assert calls == [1, 2, 3, 1]


async def test_single_flight_per_key() -> None:
    memo = Memo(Clock())
    slot = Slot[str, str]("slow", ttl=60.0, size=8)
    release = asyncio.Event()
    calls: list[str] = []

    async def compute(key: str) -> str:
        calls.append(key)
        if key == "slow":
            await release.wait()
        return key.upper()

    waiting = [asyncio.create_task(memo.get(slot, "slow", lambda: compute("slow"))) for _ in range(5)]
    await asyncio.sleep(0)
    # Another key is not held up by the computation in flight.
    assert await asyncio.wait_for(memo.get(slot, "fast", lambda: compute("fast")), 1.0) == "FAST"
    release.set()
    assert await asyncio.gather(*waiting) == ["SLOW"] * 5
    assert calls == ["slow", "fast"]
    assert not memo.of(slot)._flights


async def test_a_failure_stores_nothing_and_the_next_waiter_computes() -> None:
    memo = Memo(Clock())
    slot = Slot[None, int]("flaky", ttl=60.0)
    started = asyncio.Event()
    release = asyncio.Event()
    attempts = 0

    async def compute() -> int:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            started.set()
            await release.wait()
            raise RuntimeError("database unavailable")
        return 42

    first = asyncio.create_task(memo.get(slot, None, compute))
    await started.wait()
    second = asyncio.create_task(memo.get(slot, None, compute))
    await asyncio.sleep(0)
    release.set()
    with pytest.raises(RuntimeError):
        await first
    assert await second == 42
    assert await memo.get(slot, None, compute) == 42
    assert attempts == 2


async def test_a_cancelled_computation_lets_the_next_waiter_compute() -> None:
    memo = Memo(Clock())
    slot = Slot[None, str]("cancelled", ttl=60.0)
    started = asyncio.Event()

    async def hang() -> str:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def answer() -> str:
        return "ok"

    first = asyncio.create_task(memo.get(slot, None, hang))
    await started.wait()
    second = asyncio.create_task(memo.get(slot, None, answer))
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await second == "ok"
