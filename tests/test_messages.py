"""The outbox and its sender (central.messages, central.message_sender) against a real SMTP
server and a fake HTTP gateway, on SQLite and PostgreSQL: a key is queued once, every
message is sent once through an outage and with two senders at once, a dead sender's
message is sent again and counted, consent and quiet hours are honoured."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from central import messages, personal_data, rulesets
from central.message_channels import Channels, HttpGatewayChannel, Outgoing, SmtpChannel
from central.message_sender import Sender, quiet_until
from central.messages import Draft
from protocol.rules import default_ruleset_doc
from tests.message_rigs import (
    FakeGateway,
    SmtpServer,
    another_connection,
    new_customer,
)


def draft(customer: str, about: str, kind: str = "activated",
          purpose: str = "service") -> Draft:
    return Draft(f"{kind}:{customer}:{about}", kind, customer, purpose,
                 {"points": 10, "day": about})


async def drain(sender: Sender, conn, clock) -> None:
    while await sender.step(conn, clock()):
        pass


async def gateway_at(aiohttp_server, gateway: FakeGateway) -> HttpGatewayChannel:
    server = await aiohttp_server(gateway.app())
    return HttpGatewayChannel(str(server.make_url("/send")), timeout_s=5)


async def test_a_real_smtp_server_receives_the_welcome_email(central, clock):
    smtp = SmtpServer()
    port = await smtp.start()
    try:
        cid = new_customer(central.db, central.secrets.card_keys, clock(), name="Анна")
        messages.set_contacts(central.db, cid, {"email": "anna@example.org",
                                                "language": "ru"}, "form at store 1",
                              "test", clock())
        assert messages.enqueue(central.db, Draft(f"welcome:{cid}:joined", "welcome", cid,
                                                  "service"), clock())
        sender = Sender(Channels(email=SmtpChannel("127.0.0.1", port, "club@shop.example")))
        await drain(sender, central.db, clock)
        assert len(smtp.mails) == 1
        mail = smtp.mails[0]
        assert smtp.envelopes == [("club@shop.example", ["anna@example.org"])]
        assert mail["Subject"] == "Добро пожаловать"
        assert mail.get_content().strip() == "Анна, добро пожаловать в программу!"
        assert mail["Message-ID"] == f"<welcome.{cid}.joined@tillpoint>"
        assert messages.counts(central.db)["sent"] == 1
    finally:
        await smtp.stop()


async def test_a_key_is_queued_once(central, clock):
    cid = new_customer(central.db, central.secrets.card_keys, clock(), phone="+79001234567")
    assert messages.enqueue(central.db, draft(cid, "2026-11-23"), clock())
    assert not messages.enqueue(central.db, draft(cid, "2026-11-23"), clock())
    # A customer with no address is reached on their next receipt; an erased one not at all.
    mute = new_customer(central.db, central.secrets.card_keys, clock())
    assert messages.enqueue(central.db, draft(mute, "2026-11-23"), clock())
    assert messages.listing(central.db, {"customer_id": mute}, None, 1)[0]["channel"] \
        == "receipt"
    gone = new_customer(central.db, central.secrets.card_keys, clock())
    personal_data.erase(central.db, gone, "t", "request", clock())
    assert not messages.enqueue(central.db, draft(gone, "2026-11-23"), clock())
    assert messages.counts(central.db)["pending"] == 2


async def test_a_gateway_down_for_a_while_then_up_receives_every_message_once(
        central, clock, aiohttp_server):
    gateway = FakeGateway(down=True)
    sender = Sender(Channels(sms=await gateway_at(aiohttp_server, gateway)), batch=4)
    keys = central.secrets.card_keys
    for n in range(6):
        cid = new_customer(central.db, keys, clock(), phone=f"+7900100000{n}")
        messages.enqueue(central.db, draft(cid, "d"), clock())
    waits = []
    for _ in range(4):  # four rounds of the outage: each waits twice as long as the last
        await drain(sender, central.db, clock)
        due = {r[0] for r in central.db.execute("SELECT due_at FROM messages")}
        assert len(due) == 1 and messages.counts(central.db)["pending"] == 6
        waits.append(datetime.fromisoformat(due.pop()) - clock())
        await drain(sender, central.db, clock)  # nothing is due before then
        assert gateway.refused_while_down == 6 * len(waits)
        clock.now += waits[-1]
    assert waits == [timedelta(seconds=30 * 2 ** i) for i in range(4)]
    gateway.down = False
    await drain(sender, central.db, clock)
    assert len(gateway.received) == 6 and set(gateway.keys().values()) == {1}
    assert messages.counts(central.db) == {"pending": 0, "sending": 0, "sent": 6,
                                           "skipped": 0, "failed": 0,
                                           "possible_duplicates": 0}


async def test_an_unreachable_gateway_loses_nothing(central, clock, aiohttp_server):
    cid = new_customer(central.db, central.secrets.card_keys, clock(), phone="+79001112233")
    messages.enqueue(central.db, draft(cid, "d"), clock())
    nowhere = Sender(Channels(sms=HttpGatewayChannel("http://127.0.0.1:9/send",
                                                      timeout_s=2)))
    await drain(nowhere, central.db, clock)
    [row] = central.db.execute("SELECT status, failures, note FROM messages").fetchall()
    assert (row["status"], row["failures"]) == ("pending", 1)
    assert "cannot be reached" in row["note"]
    # No channel configured at all: it waits as well.
    clock.advance(minutes=1)
    await drain(Sender(Channels()), central.db, clock)
    assert messages.counts(central.db)["pending"] == 1
    gateway = FakeGateway()
    clock.advance(hours=1)
    await drain(Sender(Channels(sms=await gateway_at(aiohttp_server, gateway))),
                central.db, clock)
    assert gateway.keys() == {f"activated:{cid}:d": 1}


async def test_a_message_the_gateway_refuses_fails_and_is_not_retried(central, clock,
                                                                    aiohttp_server):
    gateway = FakeGateway(refuse={"+79001112233"})
    sender = Sender(Channels(sms=await gateway_at(aiohttp_server, gateway)))
    cid = new_customer(central.db, central.secrets.card_keys, clock(), phone="+79001112233")
    messages.enqueue(central.db, draft(cid, "d"), clock())
    await drain(sender, central.db, clock)
    clock.advance(days=1)
    await drain(sender, central.db, clock)
    assert messages.counts(central.db)["failed"] == 1 and gateway.received == []


async def test_two_senders_at_once_send_each_message_once(central, clock, aiohttp_server,
                                                         tmp_path, database):
    gateway = FakeGateway(delay=0.01)
    channel = await gateway_at(aiohttp_server, gateway)
    other = another_connection(central, tmp_path, database)
    try:
        keys = central.secrets.card_keys
        for n in range(24):
            cid = new_customer(central.db, keys, clock(), phone=f"+790020000{n:02d}")
            messages.enqueue(central.db, draft(cid, "d"), clock())
        a, b = Sender(Channels(sms=channel), batch=3), Sender(Channels(sms=channel), batch=3)
        await asyncio.gather(drain(a, central.db, clock), drain(b, other, clock))
        assert len(gateway.received) == 24 and set(gateway.keys().values()) == {1}
        assert messages.counts(central.db)["sent"] == 24
        # Both took part: the claims interleaved rather than one sender doing all.
        assert a.sent > 0 and b.sent > 0 and a.sent + b.sent == 24
    finally:
        other.close()


async def test_claims_racing_in_threads_take_each_message_once(central, clock, tmp_path,
                                                               database):
    keys = central.secrets.card_keys
    for n in range(60):
        cid = new_customer(central.db, keys, clock(), phone=f"+790030000{n:02d}")
        messages.enqueue(central.db, draft(cid, "d"), clock())
    taken: list[list[int]] = [[], []]
    start = threading.Barrier(2)

    def claimer(i: int) -> None:
        conn = another_connection(central, tmp_path, database)
        try:
            start.wait()
            while batch := messages.claim_due(conn, clock(), limit=5):
                taken[i].extend(m.id for m in batch)
        finally:
            conn.close()

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(taken[0] + taken[1]) == sorted(
        r[0] for r in central.db.execute("SELECT id FROM messages"))


async def test_a_sender_that_died_after_sending_is_taken_over_and_the_resend_counted(
        central, clock, aiohttp_server):
    gateway = FakeGateway()
    channel = await gateway_at(aiohttp_server, gateway)
    cid = new_customer(central.db, central.secrets.card_keys, clock(), phone="+79004445566")
    messages.enqueue(central.db, draft(cid, "d"), clock())
    # The first sender claims and sends, and dies before recording it.
    [m] = messages.claim_due(central.db, clock())
    await channel.send(Outgoing(m.key, "+79004445566", "", "text"))
    sender = Sender(Channels(sms=channel))
    await drain(sender, central.db, clock)
    assert len(gateway.received) == 1  # its lease still holds: nobody else takes it
    clock.now += messages.LEASE + timedelta(seconds=1)
    await drain(sender, central.db, clock)
    assert gateway.keys() == {m.key: 2}
    counts = messages.counts(central.db)
    assert counts["sent"] == 1 and counts["possible_duplicates"] == 1
    # The dead sender's late word changes nothing: the message is no longer its.
    assert not messages.mark_sent(central.db, m, clock())


async def test_advertising_goes_only_with_prior_consent(central, clock, aiohttp_server):
    gateway = FakeGateway()
    sender = Sender(Channels(sms=await gateway_at(aiohttp_server, gateway)))
    keys = central.secrets.card_keys
    never = new_customer(central.db, keys, clock(), phone="+79005550001")
    withdrew = new_customer(central.db, keys, clock(), phone="+79005550002")
    agreed = new_customer(central.db, keys, clock(), phone="+79005550003")
    personal_data.record_consent(central.db, withdrew, "advertising", True, "app", "t", clock())
    personal_data.record_consent(central.db, withdrew, "advertising", False, "app", "t",
                                 clock())
    personal_data.record_consent(central.db, agreed, "advertising", True, "form", "t", clock())
    for cid in (never, withdrew, agreed):
        messages.enqueue(central.db, draft(cid, "2026", "birthday", "advertising"), clock())
    await drain(sender, central.db, clock)
    assert [b["to"] for b in gateway.received] == ["+79005550003"]
    notes = {r["customer_id"]: (r["status"], r["note"]) for r in central.db.execute(
        "SELECT customer_id, status, note FROM messages")}
    assert notes[never] == notes[withdrew] == ("skipped", "no consent to advertising")


async def test_service_messages_honour_an_opt_out(central, clock, aiohttp_server):
    gateway = FakeGateway()
    sender = Sender(Channels(sms=await gateway_at(aiohttp_server, gateway)))
    cid = new_customer(central.db, central.secrets.card_keys, clock(), phone="+79006660001")
    messages.set_contacts(central.db, cid, {"service_opt_out": True}, "call centre", "t",
                          clock())
    messages.enqueue(central.db, draft(cid, "d"), clock())
    await drain(sender, central.db, clock)
    assert gateway.received == []
    assert messages.listing(central.db, {"customer_id": cid}, None, 10)[0]["note"] \
        == "the customer opted out of service messages"


async def test_quiet_hours_of_the_home_store_defer_never_drop(central, clock, aiohttp_server):
    doc = default_ruleset_doc()
    doc["stores"] = {"vvo": {"time_zone": "Asia/Vladivostok"}}
    rulesets.publish(central.db, doc, "test", clock())
    gateway = FakeGateway()
    sender = Sender(Channels(sms=await gateway_at(aiohttp_server, gateway)))
    cid = new_customer(central.db, central.secrets.card_keys, clock(), phone="+79007770001")
    messages.set_contacts(central.db, cid, {"home_store": "vvo"}, "app", "t", clock())
    clock.now = datetime(2026, 11, 23, 12, 30, tzinfo=UTC)  # 22:30 in Vladivostok
    messages.enqueue(central.db, draft(cid, "d"), clock())
    await drain(sender, central.db, clock)
    assert gateway.received == []
    [row] = central.db.execute("SELECT status, due_at, failures FROM messages").fetchall()
    # 09:00 the next morning there is 23:00 UTC.
    assert (row["status"], row["due_at"], row["failures"]) == (
        "pending", "2026-11-23T23:00:00+00:00", 0)
    clock.now = datetime(2026, 11, 23, 23, 0, tzinfo=UTC)
    await drain(sender, central.db, clock)
    assert len(gateway.received) == 1


async def test_an_erased_customer_gets_nothing(central, clock, aiohttp_server):
    gateway = FakeGateway()
    sender = Sender(Channels(sms=await gateway_at(aiohttp_server, gateway)))
    cid = new_customer(central.db, central.secrets.card_keys, clock(), phone="+79008880001")
    messages.enqueue(central.db, draft(cid, "d"), clock())
    personal_data.erase(central.db, cid, "t", "request", clock())
    await drain(sender, central.db, clock)
    assert gateway.received == [] and messages.counts(central.db)["skipped"] == 1


def test_erasure_forgets_how_the_customer_is_reached_at_once(central, clock):
    """Not when the triggers next look: the e-mail and push token go in erasure's own
    transaction, and what waited is skipped before any sender could take it."""
    cid = new_customer(central.db, central.secrets.card_keys, clock(), phone="+79008880002")
    messages.set_contacts(central.db, cid, {"email": "ann@example.org", "push_token": "tok-1"},
                          "support", "t", clock())
    messages.enqueue(central.db, draft(cid, "e"), clock())
    personal_data.erase(central.db, cid, "t", "request", clock())
    assert central.db.execute("SELECT COUNT(*) FROM message_contacts WHERE customer_id = ?",
                              (cid,)).fetchone()[0] == 0
    assert central.db.execute("SELECT status FROM messages WHERE customer_id = ?",
                              (cid,)).fetchone()[0] == "skipped"


def test_backoff_doubles_up_to_an_hour():
    assert [messages.backoff(n).total_seconds() for n in (1, 2, 3, 8, 50)] == [
        30, 60, 120, 3600, 3600]


TIMES = st.times().map(lambda t: t.replace(second=0, microsecond=0))


@given(st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)),
       TIMES, TIMES)
def test_quiet_hours_end_at_the_first_moment_that_is_not_quiet(local, start, end):
    local = local.replace(tzinfo=UTC)

    def quiet(at: datetime) -> bool:
        return quiet_until(at, start, end) is not None

    until = quiet_until(local, start, end)
    if until is None:
        return
    assert until > local and not quiet(until)
    assert until - local <= timedelta(days=1)
    assert quiet(until - timedelta(minutes=1)) or until - local < timedelta(minutes=1)

