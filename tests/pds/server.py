"""A real PDS (`@atproto/pds`) with a PLC directory (`@did-plc/server`, in-memory), on loopback ports, started
from tests/pds/run.js. The npm packages are installed by tests/pds/install.sh into the data dir."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import libipld
from websockets.asyncio.client import connect

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def node_modules() -> Path:
    data_dir = Path(os.environ.get("PLYR_APPVIEW_DATA_DIR") or ".plyr-appview")
    if not data_dir.is_absolute():
        data_dir = ROOT / data_dir
    return data_dir / "pds-node" / "node_modules"


@functools.cache
def unavailable() -> str | None:
    """Why the PDS cannot be started here, or None. The first call installs the npm packages when node and npm
    are present (once per machine, cached under the data dir), so `uv run pytest` alone runs these tests;
    PLYR_TEST_NO_PDS_INSTALL=1 turns that off."""
    if shutil.which("node") is None:
        return "node is not installed"
    modules = node_modules()

    def missing() -> bool:
        return not (modules / "@atproto" / "pds").is_dir() or not (modules / "@did-plc" / "server").is_dir()

    if missing() and shutil.which("npm") is not None and not os.environ.get("PLYR_TEST_NO_PDS_INSTALL"):
        print("installing the local PDS's npm packages (once; a few minutes)...", file=sys.stderr, flush=True)
        subprocess.run(["bash", str(Path(__file__).with_name("install.sh"))], check=False, timeout=900)
    if missing():
        return f"npm packages not installed in {modules} (run tests/pds/install.sh)"
    return None


@dataclass
class Account:
    did: str
    handle: str
    jwt: str


@dataclass
class Pds:
    url: str
    plc_url: str
    client: httpx.AsyncClient
    accounts: list[Account] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    async def create_account(self, name: str, *, recovery_key: str | None = None) -> Account:
        """`recovery_key` (a did:key) joins the PDS's key among the DID's PLC rotation keys (see plc.py)."""
        handle = f"{name}.test"
        body: dict[str, Any] = {"handle": handle, "email": f"{name}@example.com", "password": f"{name}-password"}
        if recovery_key is not None:
            body["recoveryKey"] = recovery_key
        resp = await self.client.post(f"{self.url}/xrpc/com.atproto.server.createAccount", json=body)
        resp.raise_for_status()
        body = resp.json()
        account = Account(did=body["did"], handle=handle, jwt=body["accessJwt"])
        self.accounts.append(account)
        return account

    async def call(self, account: Account, method: str, body: dict[str, Any]) -> dict[str, Any]:
        resp = await self.client.post(
            f"{self.url}/xrpc/{method}", json=body, headers={"authorization": f"Bearer {account.jwt}"}
        )
        if resp.status_code != 200:
            raise AssertionError(f"{method}: {resp.status_code} {resp.text}")
        out: dict[str, Any] = resp.json()
        return out

    async def create(self, account: Account, collection: str, record: dict[str, Any]) -> dict[str, Any]:
        return await self.call(
            account,
            "com.atproto.repo.createRecord",
            {"repo": account.did, "collection": collection, "record": {"$type": collection, **record}},
        )

    async def put(self, account: Account, collection: str, rkey: str, record: dict[str, Any]) -> dict[str, Any]:
        return await self.call(
            account,
            "com.atproto.repo.putRecord",
            {"repo": account.did, "collection": collection, "rkey": rkey, "record": {"$type": collection, **record}},
        )

    async def delete(self, account: Account, collection: str, rkey: str) -> dict[str, Any]:
        return await self.call(
            account, "com.atproto.repo.deleteRecord", {"repo": account.did, "collection": collection, "rkey": rkey}
        )

    async def frames(self, cursor: int = 0, idle: float = 1.5) -> list[bytes]:
        """Every firehose frame after `cursor`, read until the stream has been quiet for `idle` seconds."""
        out: list[bytes] = []
        async with connect(f"ws://127.0.0.1:{self.port}/xrpc/com.atproto.sync.subscribeRepos?cursor={cursor}") as ws:
            while True:
                try:
                    msg = await asyncio.wait_for(ws.recv(decode=False), idle)
                except TimeoutError:
                    return out
                out.append(msg if isinstance(msg, bytes) else msg.encode())


def frame_seq(frame: bytes) -> int | None:
    _, body = libipld.decode_dag_cbor_multi(frame)
    seq = body.get("seq")
    return seq if isinstance(seq, int) else None


@contextlib.asynccontextmanager
async def running_pds(startup_timeout: float = 90.0) -> AsyncIterator[Pds]:
    """Start a fresh PDS + PLC (new data dir), yield it, and stop both."""
    with tempfile.TemporaryDirectory(prefix="plyr-pds-") as data_dir:
        env = {**os.environ, "NODE_PATH": str(node_modules()), "NODE_ENV": "development"}
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(HERE / "run.js"),
            data_dir,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            assert proc.stdout is not None
            try:
                line = await asyncio.wait_for(proc.stdout.readline(), startup_timeout)
            except TimeoutError:
                line = b""
            if not line:
                err = b""
                if proc.stderr is not None:
                    with contextlib.suppress(TimeoutError):
                        err = await asyncio.wait_for(proc.stderr.read(), 5)
                raise RuntimeError(f"PDS did not start: {err.decode(errors='replace')[-2000:]}")
            urls = json.loads(line)
            async with httpx.AsyncClient(timeout=30) as client:
                yield Pds(url=urls["pds"], plc_url=urls["plc"], client=client)
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 20)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
