"""An in-process till for sync tests: the agent's own store and sync client, real HTTP to a
central test server, journal entries written the way checkout writes them."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlite_utils
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent import journal
from agent.central_client import CentralClient
from agent.identity import TillIdentity
from agent.store import open_store
from agent.sync import SyncClient
from central.app import make_app
from central.clock import utcnow
from central.web_common import DB, SECRETS
from protocol import enrolment
from protocol.journal import JournalEntry, new_receipt_id
from protocol.signing import parse_public_key, public_key_hex


@pytest.fixture
async def live_central(aiohttp_client, tmp_path: Path, database: Path | str):
    """A central test server on the real clock: tills sign requests with the real time."""
    return await start_live_central(aiohttp_client, tmp_path, database)


async def start_live_central(aiohttp_client, tmp_path: Path, database: Path | str):
    """`live_central` on a database of the test's choosing (a server it started itself)."""
    app = make_app(tmp_path / "central", utcnow, reprice_every=None,
                   database=database if isinstance(database, str) else None)
    client = await aiohttp_client(app)
    client.db = app[DB]
    client.secrets = app[SECRETS]
    client.admin = {"Authorization": f"Bearer {app[SECRETS].admin_token}"}
    return client


async def enrol(central, store: str = "s1") -> TillIdentity:
    """Enrol a new key at the `central` test client; the identity a till would keep."""
    resp = await central.post("/api/v1/enrolment-tokens", json={"store": store},
                              headers=central.admin)
    token = (await resp.json())["token"]
    key = Ed25519PrivateKey.generate()
    resp = await central.post("/sync/v1/enroll",
                              json={"token": token, "public_key": public_key_hex(key),
                                    "proof": enrolment.prove(key, token)})
    body = await resp.json()
    assert "card_keys" in body  # on the loopback
    return TillIdentity(
        till_id=body["till_id"], store=body["store"],
        central_url=str(central.server.make_url("")).rstrip("/"), key=key,
        central_key=parse_public_key(body["central_public_key"]),
        card_keys_path=Path("/nonexistent/card-keys"))


class LocalTill:
    """A till's store and sync client in this process; close() it."""

    def __init__(self, ident: TillIdentity, path: Path, **sync_kw) -> None:
        self.ident = ident
        self.path = path
        self.db: sqlite_utils.Database = open_store(path)
        self.client = CentralClient(ident, timeout_s=10)
        self.sync = SyncClient(self.db, self.client, **sync_kw)

    def sell(self, customer_id: str | None = None, *, redeemed: int = 0, earned: int = 0,
             at: datetime | None = None, total: int = 10000,
             ruleset_version: int = 1) -> JournalEntry:
        at = at or datetime.now(UTC)
        lots = [{"points": earned, "activates": at.isoformat(),
                 "expires": "9999-12-31T00:00:00+00:00"}] if earned else []
        with self.db.atomic():
            return journal.append(self.db, JournalEntry(
                seq=0, epoch="", prev_hash="", kind="sale", receipt_id=new_receipt_id(at),
                at=at.isoformat(timespec="seconds"), store=self.ident.store,
                customer_id=customer_id, ruleset_version=ruleset_version, total=total,
                fiscal_doc=0, earned=earned, redeemed=redeemed, lots=lots))

    def take_back(self, sale: JournalEntry, *, at: datetime, total: int) -> JournalEntry:
        """A return of goods (no points) from `sale`, journalled as checkout does."""
        with self.db.atomic():
            return journal.append(self.db, JournalEntry(
                seq=0, epoch="", prev_hash="", kind="return", receipt_id=new_receipt_id(at),
                at=at.isoformat(timespec="seconds"), store=self.ident.store,
                customer_id=sale.customer_id, ruleset_version=sale.ruleset_version,
                total=total, fiscal_doc=0, original_receipt_id=sale.receipt_id))

    def backup(self, to: Path) -> None:
        """A copy of the database as a backup tool would take it."""
        dst = sqlite3.connect(to)
        self.db.conn.backup(dst)
        dst.close()

    async def close(self) -> None:
        await self.client.close()
        self.db.close()


def new_path(tmp_path: Path) -> Path:
    return tmp_path / f"agent-{uuid.uuid4().hex[:6]}.db"
