"""The sender job: claims due messages from the outbox, decides whether each may go now,
sends it by its channel and records the outcome (central.messages).

Whether a message may go is decided when it is due, not when it was queued, since a
consent or an opt-out may have changed meanwhile:
- advertising (birthday offer, win-back, cross-offer) only with consent to advertising
  given before now (38-FZ art. 18); without it the message is skipped, with the reason;
- a service message (a return, points activated) is skipped if the customer opted out;
- nothing to a customer who withdrew consent to processing, or whose data was erased;
- in quiet hours of the customer's home store (its zone in the newest rule set, else the
  store the message is about, else the programme's zone) the message is deferred to the
  end of the quiet hours: late, never dropped.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo

from central import message_templates, messages, personal_data, rulesets
from central.clock import iso
from central.db import Connection
from central.message_channels import Channels, MaybeSent, NotSent, Outgoing, Rejected
from central.messages import Message
from central.repricing import RuleSets
from protocol.rules.place import place_of, programme_zone

log = logging.getLogger(__name__)

BATCH = 20


def quiet_until(local: datetime, start: time, end: time) -> datetime | None:
    """When the quiet hours around `local` (an aware time on the store's clock) end, or None
    if it is not in them. `start` after `end` spans midnight (21:00-09:00); equal: none."""
    if start == end:
        return None
    t = local.time().replace(tzinfo=None)
    day = local.date()
    if start < end:
        quiet = start <= t < end
        end_day = day
    else:
        quiet = t >= start or t < end
        end_day = day + timedelta(days=1) if t >= start else day
    if not quiet:
        return None
    assert local.tzinfo is not None
    return datetime.combine(end_day, end, tzinfo=local.tzinfo)


@dataclass(frozen=True)
class _Verdict:
    go: bool
    skip: str = ""
    defer_until: datetime | None = None


class Sender:
    """Sends what is due; one per process, its step run by central.followers."""

    def __init__(self, channels: Channels, batch: int = BATCH) -> None:
        self.channels = channels
        self.batch = batch
        self._rulesets: RuleSets | None = None  # compiled once, not per batch
        self.sent = 0  # by this sender, since it started

    async def step(self, conn: Connection, now: datetime) -> bool:
        """Claim and send one batch; True if there may be more due at once."""
        claimed = messages.claim_due(conn, now, self.batch)
        if not claimed:
            return False
        if self._rulesets is None or self._rulesets.conn is not conn:
            self._rulesets = RuleSets(conn)
        zones = _Zones(conn, self._rulesets)
        # One at a time: the database connection is used between the awaits, and a batch
        # is small; a slow gateway delays only this job.
        for m in claimed:
            await self.deliver(conn, m, now, zones)
        return len(claimed) == self.batch

    async def deliver(self, conn: Connection, m: Message, now: datetime,
                      zones: _Zones | None = None) -> None:
        who = messages.contacts(conn, m.customer_id)
        if who is None:
            messages.skip(conn, m, "the customer's personal data was erased")
            return
        verdict = _judge(conn, m, who, now, zones or _Zones(conn, RuleSets(conn)))
        if verdict.skip:
            messages.skip(conn, m, verdict.skip)
            return
        if verdict.defer_until is not None and m.channel != "receipt":
            # (a receipt line is read when the customer is in the store, never at night)
            messages.defer(conn, m, verdict.defer_until, "quiet hours")
            return
        to = messages.address(who, m.channel)
        if not to:
            messages.skip(conn, m, f"the customer has no {m.channel} address any more")
            return
        name = conn.execute("SELECT name FROM customers WHERE id = ?",
                            (m.customer_id,)).fetchone()["name"]
        text = message_templates.render(conn, m.kind, who.language,
                                        {**m.params, "name": name})
        if m.channel == "receipt":  # the central's own channel: tills pull the line
            messages.queue_receipt_line(conn, m, text.body, now)
            if messages.mark_sent(conn, m, now, "receipt"):
                self.sent += 1
            return
        channel = self.channels.get(m.channel)
        if channel is None:
            messages.retry_later(conn, m, now, f"no {m.channel} channel is configured")
            return
        try:
            provider_id = await channel.send(Outgoing(m.key, to, text.subject, text.body))
        except Rejected as e:
            messages.fail(conn, m, str(e))
        except MaybeSent as e:
            messages.retry_later(conn, m, now, str(e), uncertain=True)
        except NotSent as e:
            messages.retry_later(conn, m, now, str(e))
        except asyncio.CancelledError:
            raise  # the claim's lease runs out; the next sender counts the resend
        except Exception as e:  # a channel's bug must not stop the others' messages
            log.exception("sending %s failed", m.key)
            messages.retry_later(conn, m, now, f"{type(e).__name__}", uncertain=True)
        else:
            if messages.mark_sent(conn, m, now, provider_id):
                self.sent += 1


def _judge(conn: Connection, m: Message, who: messages.Contacts, now: datetime,
           zones: _Zones) -> _Verdict:
    consent = personal_data.consents(conn, m.customer_id)
    processing = consent.get("processing")
    if processing is not None and not processing["granted"]:
        return _Verdict(False, skip="consent to processing withdrawn")
    if m.purpose == "advertising":
        ads = consent.get("advertising")
        if ads is None or not ads["granted"] or ads["at"] > iso(now):
            return _Verdict(False, skip="no consent to advertising")
    elif who.service_opt_out:
        return _Verdict(False, skip="the customer opted out of service messages")
    s = messages.settings(conn)
    zone = zones.of(who.home_store or m.store)
    until = quiet_until(now.astimezone(zone), s.quiet_from, s.quiet_to)
    if until is not None:
        return _Verdict(False, defer_until=until.astimezone(UTC))
    return _Verdict(True)


class _Zones:
    """Stores' zones in the newest rule set, read once per batch."""

    def __init__(self, conn: Connection, compiled: RuleSets) -> None:
        version = rulesets.current_version(conn)
        self.ruleset = compiled.get(version) if version is not None else None

    def of(self, store: str | None) -> tzinfo:
        if self.ruleset is None:
            return UTC
        place = place_of(self.ruleset, store).time_zone if store else None
        return place or programme_zone(self.ruleset) or UTC
