"""What queues messages (central.message_triggers), on SQLite and PostgreSQL: returns
followed through the ingest sequence from real syncs, welcomes and tier changes from the
customers' change marks, activations, expiring points, birthdays and win-backs from the
clock; each reason queued once however often it is looked at."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from central import customers, ledger, message_triggers, messages
from central.clock import utcnow
from tests.message_rigs import new_customer
from tests.sync_fixtures import LocalTill, enrol, live_central

__all__ = ["live_central"]


def queued(conn, kind: str | None = None) -> list[dict]:
    rows = messages.listing(conn, {"kind": kind} if kind else {}, None, 100)
    return sorted(rows, key=lambda r: r["key"])


def follow_all(conn, now) -> None:
    while message_triggers.follow_customers(conn, now):
        pass


async def test_a_customer_created_with_contact_details_is_welcomed_once(central, clock):
    keys = central.secrets.card_keys
    ann = new_customer(central.db, keys, clock(), name="Ann", phone="+79001230001")
    mute = new_customer(central.db, keys, clock(), name="Bob")
    follow_all(central.db, clock())
    assert [m["key"] for m in queued(central.db)] == [f"welcome:{ann}:joined"]
    # Bob becomes reachable: welcomed then; Ann's change brings no second welcome.
    messages.set_contacts(central.db, mute, {"email": "bob@example.org"}, "app", "t", clock())
    customers.update(central.db, ann, {"name": "Anna"})
    follow_all(central.db, clock())
    assert [(m["key"], m["channel"]) for m in queued(central.db)] == sorted([
        (f"welcome:{ann}:joined", "sms"), (f"welcome:{mute}:joined", "email")])
    assert queued(central.db)[0]["purpose"] == "service"


async def test_a_tier_change_is_told_once_with_both_tiers(central, clock):
    cid = new_customer(central.db, central.secrets.card_keys, clock(), phone="+79001230002",
                       tier="silver")
    follow_all(central.db, clock())
    customers.update(central.db, cid, {"tier": "gold"})
    follow_all(central.db, clock())
    follow_all(central.db, clock())
    [tier] = queued(central.db, "tier")
    assert tier["params"] == {"old_tier": "silver", "tier": "gold"}


async def test_a_members_return_is_told_with_what_it_did_to_the_points(live_central,
                                                                      tmp_path):
    central = live_central
    till = LocalTill(await enrol(central, "s1"), tmp_path / "till.db")
    try:
        cid = customers.create(central.db, central.secrets.card_keys, utcnow(),
                               card_number="2990000000019", phone="+79001230003")["id"]
        now = datetime.now(UTC)
        sale = till.sell(cid, earned=100, total=10000, at=now - timedelta(minutes=5))
        till.sell(None, total=500, at=now - timedelta(minutes=4))
        back = till.take_back(sale, at=now - timedelta(minutes=1), total=10000)
        assert await till.sync.push() == 3
        while message_triggers.follow_receipts(central.db, utcnow()):
            pass
        [msg] = queued(central.db, "return")
        receipt = central.db.execute(
            "SELECT clawback, refund FROM receipts WHERE receipt_id = ?",
            (back.receipt_id,)).fetchone()
        assert msg["key"] == f"return:{cid}:{back.receipt_id}"
        assert msg["params"] == {"receipt": back.receipt_id, "store": "s1",
                                 "clawback": receipt["clawback"], "refund": receipt["refund"]}
        assert msg["store"] == "s1"
        assert message_triggers.follow_receipts(central.db, utcnow()) == 0
    finally:
        await till.close()


async def test_points_activated_are_told_per_customer_and_day(central, clock):
    cid = new_customer(central.db, central.secrets.card_keys, clock(), phone="+79001230004")
    assert message_triggers.follow_activations(central.db, clock())  # first run: from now
    src = ledger.Source(reason="test")
    for points in (30, 50):
        ledger.earn(central.db, cid, points, clock() + timedelta(hours=1),
                    clock() + timedelta(days=365), clock(), src)
    clock.advance(hours=1, minutes=5)
    ledger.mature_due(central.db, clock())
    message_triggers.follow_activations(central.db, clock())
    assert queued(central.db, "activated") == []  # within the settling time yet
    clock.advance(minutes=10)
    message_triggers.follow_activations(central.db, clock())
    message_triggers.follow_activations(central.db, clock())
    [msg] = queued(central.db, "activated")
    assert msg["params"] == {"points": 80, "day": "2026-11-23"}


async def test_points_expiring_in_n_days_are_told_once_per_day(central, clock):
    keys = central.secrets.card_keys
    cid = new_customer(central.db, keys, clock(), phone="+79001230005")
    src = ledger.Source(reason="test")
    in_7 = clock() + timedelta(days=7)
    for points, expires in ((20, in_7), (15, in_7 + timedelta(hours=1)),
                            (99, clock() + timedelta(days=8))):
        ledger.earn(central.db, cid, points, clock(), expires, clock(), src)
    message_triggers.follow_expiring(central.db, clock())
    message_triggers.follow_expiring(central.db, clock())
    [msg] = queued(central.db, "expiring")
    assert msg["key"] == f"expiring:{cid}:2026-11-30"
    assert msg["params"] == {"points": 35, "day": "2026-11-30", "days": 7}
    clock.advance(days=1)
    message_triggers.follow_expiring(central.db, clock())
    assert [m["params"]["points"] for m in queued(central.db, "expiring")] == [35, 99]


async def test_birthdays_and_idle_members_are_queued_as_advertising(central, clock):
    keys = central.secrets.card_keys
    born = new_customer(central.db, keys, clock(), phone="+79001230006",
                        birthday="1990-11-23")
    other = new_customer(central.db, keys, clock(), phone="+79001230007",
                         birthday="1990-11-24")
    idle = new_customer(central.db, keys, clock(), phone="+79001230008")
    last = (clock().date() - timedelta(days=60)).isoformat()
    central.db.execute("INSERT INTO kpi_members (customer_id, first_day, last_day, revenue)"
                       " VALUES (?, ?, ?, 100)", (idle, last, last))
    message_triggers.follow_days(central.db, clock())
    message_triggers.follow_days(central.db, clock())  # once a day
    got = {(m["kind"], m["customer_id"], m["purpose"]) for m in queued(central.db)}
    assert got == {("birthday", born, "advertising"), ("winback", idle, "advertising")}
    assert other not in {m["customer_id"] for m in queued(central.db)}


async def test_two_centrals_running_the_jobs_welcome_each_customer_once(
        aiohttp_client, aiohttp_server, tmp_path, clock, database):
    """The jobs as central.followers runs them, in two centrals on one database: the
    triggers queue each welcome once and the senders send each once."""
    import asyncio

    from central.app import make_app
    from central.message_channels import Channels
    from central.web_common import DB, SECRETS
    from tests.message_rigs import FakeGateway
    from tests.test_messages import gateway_at

    gateway = FakeGateway(delay=0.005)
    channels = Channels(sms=await gateway_at(aiohttp_server, gateway))
    url = database if isinstance(database, str) else None
    apps = [make_app(tmp_path / "central", clock, reprice_every=0.02, database=url,
                     channels=channels) for _ in range(2)]
    clients = [await aiohttp_client(app) for app in apps]
    conn = apps[0][DB]
    ids = [new_customer(conn, apps[0][SECRETS].card_keys, clock(), phone=f"+7900444{n:04d}")
           for n in range(12)]
    deadline = asyncio.get_running_loop().time() + 30
    # Recorded sent after the gateway took it: waiting for the record waits for both.
    while messages.counts(conn)["sent"] < len(ids):
        assert asyncio.get_running_loop().time() < deadline, messages.counts(conn)
        await asyncio.sleep(0.05)
    assert gateway.keys() == {f"welcome:{cid}:joined": 1 for cid in ids}
    for c in clients:
        await c.close()


async def test_a_cross_offer_earned_is_told_once_as_advertising(central, clock):
    from central.offer_grants import OfferChanges

    cid = new_customer(central.db, central.secrets.card_keys, clock(), phone="+79001230009")
    follow_all(central.db, clock())
    until = (clock() + timedelta(days=14)).isoformat()
    for _ in range(2):  # granted, then the customer changes again: still one message
        changes = OfferChanges()
        changes.follow(cid, {"offers_granted": [{"offer": "perfume-next",
                                                 "expires_at": until}]})
        changes.apply(central.db)
        ledger.touch(central.db, cid)
        follow_all(central.db, clock())
    [msg] = queued(central.db, "crossoffer")
    assert msg["purpose"] == "advertising"
    assert msg["params"] == {"offer": "perfume-next", "until": until[:10]}


async def test_an_erased_customer_is_forgotten_by_the_messages(central, clock):
    from central import personal_data

    cid = new_customer(central.db, central.secrets.card_keys, clock(), phone="+79001230010")
    messages.set_contacts(central.db, cid, {"email": "gone@example.org"}, "app", "t", clock())
    follow_all(central.db, clock())
    assert [m["status"] for m in queued(central.db)] == ["pending"]
    personal_data.erase(central.db, cid, "t", "request", clock())
    follow_all(central.db, clock())
    assert central.db.execute("SELECT COUNT(*) FROM message_contacts").fetchone()[0] == 0
    assert [(m["status"], m["note"]) for m in queued(central.db)] == [
        ("skipped", "the customer's personal data was erased")]
