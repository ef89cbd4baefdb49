"""Changes to campaigns, checked as the rule set checks them, and their publication.

A change that alters what tills price with (anything about a live campaign, or a status
that makes one live or stops it) publishes a new rule-set version built from the live
campaigns plus the rest of the newest document, through central.rulesets.publish: the
same checks, budgets, signature and delivery as PUT /api/v1/ruleset. A draft is edited
without publishing anything.

Each change runs in the caller's transaction under the publish lock (central.campaigns),
so the version read, the row written and the document built from the table are one
consistent step: two staff editing at once are ordered, and the later one's stale version
is refused with 409 instead of building from a table without the other's change.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from central import campaigns, rulesets
from central.campaigns import DRAFT, ENDED, LIVE, PAUSED, Campaign
from central.db import Connection, transaction
from central.errors import Refused
from protocol import bounds
from protocol.rules import RuleSetError, compile_ruleset
from protocol.rules.compiler import CAMPAIGN

# An id travels in URLs and in every till's rule set: plain characters, short.
ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
MAX_RULE_BYTES = 64 * 1024
EDITABLE = CAMPAIGN - {"id"}


@contextmanager
def editing(conn: Connection) -> Iterator[Connection]:
    """A transaction (a savepoint inside one) holding the publish lock."""
    with transaction(conn):
        conn.dialect.lock(conn, campaigns.PUBLISH_LOCK)
        yield conn


def rest_of_programme(conn: Connection) -> dict[str, Any]:
    """The newest rule set without its campaigns and version: what campaigns are priced in."""
    doc = rulesets.current(conn).doc
    return {k: v for k, v in doc.items() if k not in ("campaigns", "version")}


def build(conn: Connection) -> dict[str, Any]:
    """The next rule set: the rest of the programme, and the live campaigns with their dates."""
    return {**rest_of_programme(conn), "version": 1,
            "campaigns": [c.priced() for c in campaigns.live(conn)]}


def publish(conn: Connection, actor: str, now: datetime) -> int:
    """A new rule-set version from the table (under the publish lock, in a transaction)."""
    doc = build(conn)
    try:
        return rulesets.publish(conn, doc, actor, now)
    except RuleSetError as e:
        ids = [c["id"] for c in doc["campaigns"]]
        raise Refused(422, "the rule set would be refused: " + "; ".join(
            f"{_named(path, ids)}: {problem}" for path, problem in e.errors[:20])) from None


def _named(path: str, ids: list[str]) -> str:
    """'campaigns[12].effect.of' as 'campaign 'x2' effect.of' (indexes mean nothing here)."""
    m = re.match(r"campaigns\[(\d+)\]\.?(.*)", path)
    if m is None or int(m[1]) >= len(ids):
        return path or "<document>"
    return f"campaign {ids[int(m[1])]!r} {m[2]}".rstrip()


# -- checks where values enter -------------------------------------------------------------


def check_rule(conn: Connection, rule: Mapping[str, Any], starts_at: str | None,
               ends_at: str | None) -> None:
    """Refuse (400, naming the field) a campaign the rule set would refuse: compiled by the
    rules engine in the rest of the newest programme, with the campaign a multiplier
    multiplies, and with its dates."""
    for key, value in rule.items():  # each named as the body names it
        bounds.text(key, "campaign", max_len=bounds.MAX_TEXT)
        bounds.check_tree(value, key)
    if len(json.dumps(rule)) > MAX_RULE_BYTES:
        raise Refused(400, f"field 'campaign' is larger than {MAX_RULE_BYTES} bytes")
    when = rule.get("when")
    if when is not None and not isinstance(when, Mapping):
        raise Refused(400, "field 'when' must be an object of conditions")
    if isinstance(when, Mapping):
        for key in ("from", "to"):
            if key in when:
                raise Refused(400, f"field 'when.{key}': a campaign's dates are its own"
                                   f" '{key}' (POST .../schedule), not part of its rule")
    others = []
    effect = rule.get("effect")
    if isinstance(effect, Mapping) and isinstance(effect.get("of"), str) \
            and effect["of"] != rule.get("id"):
        multiplied = campaigns.get(conn, effect["of"])
        if multiplied is not None:
            others.append(multiplied.priced())
    doc = {**rest_of_programme(conn), "version": 1,
           "campaigns": [campaigns.dated(rule, starts_at, ends_at), *others]}
    try:
        compile_ruleset(doc)
    except RuleSetError as e:
        mine = [(p, problem) for p, problem in e.errors if re.match(r"campaigns\[0\]", p)]
        shown = mine or e.errors
        raise Refused(400, "; ".join(
            f"field {_field(p)!r} {problem}" for p, problem in shown[:20])) from None


def _field(path: str) -> str:
    field = re.sub(r"^campaigns\[0\]\.?", "", path)
    return {"when.from": "from", "when.to": "to"}.get(field, field) or "campaign"


def check_id(value: object) -> str:
    if not isinstance(value, str) or not ID.fullmatch(value):
        raise Refused(400, "field 'id' must be 1 to 64 letters, digits, '.', '_', ':' or '-',"
                           " starting with a letter or digit")
    return value


def moment(body: Mapping[str, Any], name: str) -> str | None:
    """An ISO 8601 date-time with its UTC offset in a body, as given (the rule set carries
    it so; tills read it in any offset)."""
    text = body.get(name)
    if text is None:
        return None
    if not isinstance(text, str) or len(text) > 40:
        raise Refused(400, f"field {name!r} must be an ISO 8601 date-time string")
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise Refused(400, f"field {name!r} must be an ISO 8601 date-time") from None
    if at.tzinfo is None or at.utcoffset() is None:
        raise Refused(400, f"field {name!r} must carry a UTC offset, e.g. {text}+03:00")
    return text


def merged(current: Mapping[str, Any], patch: Mapping[str, Any],
           named: str = "") -> dict[str, Any]:
    """A rule with the fields a PATCH gives replaced (null removes one); `named` prefixes
    the field in a refusal (where the fields sit in the body)."""
    out = dict(current)
    for key, value in patch.items():
        if key not in EDITABLE:
            raise Refused(400, f"field {named + key!r} cannot be edited (editable: "
                               f"{', '.join(sorted(EDITABLE))}; dates and status have"
                               " their own requests)")
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


# -- the changes -----------------------------------------------------------------------------


def _published(conn: Connection, c: Campaign, actor: str, now: datetime) -> Campaign:
    version = publish(conn, actor, now)
    campaigns.mark_published(conn, c.id, version)
    found = campaigns.get(conn, c.id)
    assert found is not None
    return found


def create(conn: Connection, rule: Mapping[str, Any], status: str, starts_at: str | None,
           ends_at: str | None, actor: str, now: datetime) -> Campaign:
    check_id(rule.get("id"))
    if status not in (DRAFT, LIVE):
        raise Refused(400, "field 'status' must be draft or live (a new campaign)")
    with editing(conn):
        check_rule(conn, rule, starts_at, ends_at)
        made = campaigns.insert(conn, rule, status, starts_at, ends_at, actor, now)
        return _published(conn, made, actor, now) if status == LIVE else made


def read_for_change(conn: Connection, campaign_id: str, version: int) -> Campaign:
    found = campaigns.get(conn, campaign_id)
    if found is None:
        raise Refused(404, f"no campaign {campaign_id!r}")
    if found.version != version:
        raise Refused(409, f"campaign {campaign_id!r} is at version {found.version}, not"
                           f" {version}: someone changed it since; read it again")
    if found.status == ENDED:
        raise Refused(409, f"campaign {campaign_id!r} has ended: make a new one")
    return found


def edit(conn: Connection, campaign_id: str, version: int, patch: Mapping[str, Any],
         actor: str, now: datetime) -> tuple[Campaign, Campaign]:
    """(before, after) of an edit of the rule; published if the campaign is live."""
    with editing(conn):
        before = read_for_change(conn, campaign_id, version)
        if "id" in patch and patch["id"] != campaign_id:
            raise Refused(400, "field 'id' cannot change")
        rule = merged(before.rule, {k: v for k, v in patch.items() if k != "id"})
        check_rule(conn, rule, before.starts_at, before.ends_at)
        after = campaigns.update(conn, before, actor, now, rule=rule)
        if after.status == LIVE:
            after = _published(conn, after, actor, now)
        return before, after


# action -> the statuses it applies to, the status it leaves
ACTIONS = {
    "schedule": ((DRAFT, LIVE, PAUSED), LIVE),
    "pause": ((LIVE,), PAUSED),
    "resume": ((PAUSED,), LIVE),
    "end": ((DRAFT, LIVE, PAUSED), ENDED),
}


def change_status(conn: Connection, campaign_id: str, version: int, action: str, actor: str,
                  now: datetime, starts_at: str | None = None,
                  ends_at: str | None = None) -> tuple[Campaign, Campaign]:
    """(before, after) of schedule (dates, live from then), pause, resume or end.
    Published whenever the campaign was or becomes live."""
    sources, target = ACTIONS[action]
    with editing(conn):
        before = read_for_change(conn, campaign_id, version)
        if before.status not in sources:
            raise Refused(409, f"campaign {campaign_id!r} is {before.status}: it cannot be"
                               f" {action}d (only when {' or '.join(sources)})")
        if action == "schedule":
            check_rule(conn, before.rule, starts_at, ends_at)
            after = campaigns.update(conn, before, actor, now, status=target,
                                     starts_at=starts_at, ends_at=ends_at)
        else:
            after = campaigns.update(conn, before, actor, now, status=target)
        if LIVE in (before.status, after.status):
            after = _published(conn, after, actor, now)
        return before, after


def summary(c: Campaign | None) -> dict[str, Any] | None:
    """What the audit log keeps of a campaign: enough to see what changed."""
    if c is None:
        return None
    return {"version": c.version, "status": c.status, "from": c.starts_at, "to": c.ends_at,
            "rule": c.rule, "published_in": c.published_in}
