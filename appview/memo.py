"""Short-lived memos of results that cost a scan (network totals, the top-tracks ranking, the status page), so
a replica computes each at most once per interval whatever the request rate.

A `Slot` declares one kind of memoised value (its type, how long it stays fresh, how many keys are kept); the
app's `Memo` (on its context) holds the values of every slot. Lookups are single-flight per key: while one
request computes a value, the others asking for the same key wait for it instead of computing it too, and
requests for other keys are not held up. A computation that fails (or is cancelled) stores nothing; the next
waiter computes afresh. Values are per process: replicas do not share them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar, cast

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Slot(Generic[K, V]):
    """One kind of memoised value: fresh for `ttl` seconds, at most `size` keys (the oldest key goes first)."""

    __slots__ = ("name", "size", "ttl")

    def __init__(self, name: str, *, ttl: float, size: int = 1) -> None:
        self.name = name
        self.ttl = ttl
        self.size = size

    def __repr__(self) -> str:
        return f"Slot({self.name!r}, ttl={self.ttl}, size={self.size})"


class _Flight:
    """The lock of one key while anyone is asking for it, and how many are."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class TtlMemo(Generic[K, V]):
    """The values of one slot."""

    def __init__(self, slot: Slot[K, V], clock: Callable[[], float]) -> None:
        self.slot = slot
        self._clock = clock
        # key -> (computed at, value), oldest first.
        self._values: dict[K, tuple[float, V]] = {}
        # Only keys being asked for right now have a lock: the map stays as small as the concurrency.
        self._flights: dict[K, _Flight] = {}

    def _fresh(self, key: K) -> tuple[float, V] | None:
        hit = self._values.get(key)
        return hit if hit is not None and self._clock() - hit[0] < self.slot.ttl else None

    async def get(self, key: K, compute: Callable[[], Awaitable[V]]) -> V:
        hit = self._fresh(key)
        if hit is not None:
            return hit[1]
        flight = self._flights.get(key)
        if flight is None:
            flight = self._flights[key] = _Flight()
        flight.users += 1
        try:
            async with flight.lock:
                hit = self._fresh(key)
                if hit is not None:
                    return hit[1]
                value = await compute()
                self._store(key, value)
                return value
        finally:
            flight.users -= 1
            if flight.users == 0:
                del self._flights[key]

    def _store(self, key: K, value: V) -> None:
        self._values.pop(key, None)
        while len(self._values) >= self.slot.size:
            del self._values[next(iter(self._values))]
        self._values[key] = (self._clock(), value)


class Memo:
    """Every slot's values, for one app."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._memos: dict[Slot[Any, Any], TtlMemo[Any, Any]] = {}

    def of(self, slot: Slot[K, V]) -> TtlMemo[K, V]:
        memo = self._memos.get(slot)
        if memo is None:
            memo = self._memos[slot] = TtlMemo(slot, self._clock)
        return cast("TtlMemo[K, V]", memo)

    async def get(self, slot: Slot[K, V], key: K, compute: Callable[[], Awaitable[V]]) -> V:
        """The value of `key` in `slot`, computed by `compute` if there is no fresh one."""
        return await self.of(slot).get(key, compute)
