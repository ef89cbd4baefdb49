"""Campaigns one at a time: the table head office edits, from which rule sets are built.

Each campaign is a row: its rule (the rule set's campaign object without its dates), its
schedule (`starts_at`, `ends_at`, UTC) and status, and a version every change bumps. An
edit names the version it read; a stale one is refused with 409, never written over
another's. The rule set tills price with is built from the live rows plus the rest of the
newest document (central.campaign_publish), each rule with its own dates put back into
`when`: a campaign scheduled for Monday and another made live today are two rows, and
publishing one neither carries nor drops the other.

The newest rule set and this table agree: a document published whole (PUT
/api/v1/ruleset, the default at first start) is adopted here in its transaction (`adopt`):
its campaigns become live rows and the live rows it lacks end. Drafts and paused rows are
in no rule set, so it leaves them alone.

Listing reads indexed columns (status and dates, kind, folded name, the stores, regions and
channels a campaign names), never the documents.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from central.clock import iso, parse_iso
from central.db import Connection, IntegrityError, Row, transaction
from central.errors import Refused

DRAFT, LIVE, PAUSED, ENDED = "draft", "live", "paused", "ended"
STATUSES = (DRAFT, LIVE, PAUSED, ENDED)
# Listing filters read from status and dates against a moment: live and not begun yet,
# live and running now.
SCHEDULED, ACTIVE = "scheduled", "active"
STATUS_FILTERS = (*STATUSES, SCHEDULED, ACTIVE)
# A publish lock for everything that writes the campaigns or a rule-set version: one at a
# time builds from the table and numbers the version (central.rulesets.publish takes it).
PUBLISH_LOCK = "ruleset-publish"
MAX_PAGE = 200
DEFAULT_PAGE = 50
COLUMNS = ("id, name, kind, status, starts_at, ends_at, rule, version, created_at, updated_at,"
           " updated_by, published_in")


@dataclass(frozen=True)
class Campaign:
    id: str
    name: str
    kind: str
    status: str
    starts_at: str | None  # ISO 8601 with its offset, as given; None: from publication
    ends_at: str | None  # None: until ended
    rule: dict[str, Any]  # the rule set's campaign object, without when.from / when.to
    version: int
    created_at: str
    updated_at: str
    updated_by: str
    published_in: int | None  # the rule-set version that last carried a change of it

    @classmethod
    def from_row(cls, row: Row) -> Campaign:
        return cls(row["id"], row["name"], row["kind"], row["status"], row["starts_at"],
                   row["ends_at"], json.loads(row["rule"]), row["version"], row["created_at"],
                   row["updated_at"], row["updated_by"], row["published_in"])

    def state(self, now: datetime) -> str:
        """The status as a till sees it at `now`: a live campaign is scheduled before its
        start, finished after its end, else active."""
        if self.status != LIVE:
            return self.status
        if self.starts_at is not None and now < parse_iso(self.starts_at):
            return SCHEDULED
        if self.ends_at is not None and now >= parse_iso(self.ends_at):
            return "finished"
        return ACTIVE

    def priced(self) -> dict[str, Any]:
        """The rule as the rule set carries it: with the campaign's own dates in `when`."""
        return dated(self.rule, self.starts_at, self.ends_at)

    def to_dict(self, now: datetime) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "kind": self.kind, "status": self.status,
            "state": self.state(now), "from": self.starts_at, "to": self.ends_at,
            "version": self.version, "rule": self.rule, "created_at": self.created_at,
            "updated_at": self.updated_at, "updated_by": self.updated_by,
            "published_in": self.published_in,
        }


def dated(rule: Mapping[str, Any], starts_at: str | None, ends_at: str | None) -> dict[str, Any]:
    when = dict(rule.get("when") or {})
    if starts_at is not None:
        when["from"] = starts_at
    if ends_at is not None:
        when["to"] = ends_at
    out = {k: v for k, v in rule.items() if k != "when"}
    if when:
        out["when"] = when
    return out


def undated(rule: Mapping[str, Any]) -> tuple[dict[str, Any], str | None, str | None]:
    """A rule-set campaign split into its rule and its dates, as this table keeps it. The
    document is valid already (its dates carry offsets)."""
    when = dict(rule.get("when") or {})
    starts, ends = when.pop("from", None), when.pop("to", None)
    out = {k: v for k, v in rule.items() if k != "when"}
    if when:
        out["when"] = when
    return out, starts, ends


def utc(text: str | None) -> str | None:
    """A date as the filters compare them: UTC, iso(). The text as given is what the rule
    set carries, so a publish from the table sends a campaign's bytes unchanged."""
    return None if text is None else iso(parse_iso(text))


def normal(rule: Mapping[str, Any]) -> dict[str, Any]:
    """A rule as it comes back from a rule set: without an empty `when` (a publish leaves
    it out), so adopting what was published finds it unchanged."""
    return {k: v for k, v in rule.items() if not (k == "when" and v == {})}


def fold(text: str) -> str:
    """Text as people type it when they search: case-folded beyond ASCII, ё as е."""
    return text.casefold().replace("ё", "е")


def _text(rule: Mapping[str, Any]) -> str:
    return json.dumps(rule, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _kind(rule: Mapping[str, Any]) -> str:
    effect = rule.get("effect")
    return str(effect.get("type", "")) if isinstance(effect, Mapping) else ""


def _name(rule: Mapping[str, Any]) -> str:
    name = rule.get("name")
    return name if isinstance(name, str) and name else str(rule["id"])


# -- reading -------------------------------------------------------------------------------


def get(conn: Connection, campaign_id: str) -> Campaign | None:
    row = conn.execute(f"SELECT {COLUMNS} FROM campaigns WHERE id = ?",
                       (campaign_id,)).fetchone()
    return Campaign.from_row(row) if row else None


def live(conn: Connection) -> list[Campaign]:
    """Every live campaign, by id: what the next rule set carries."""
    return [Campaign.from_row(r) for r in conn.execute(
        f"SELECT {COLUMNS} FROM campaigns WHERE status = ? ORDER BY id", (LIVE,))]


@dataclass(frozen=True)
class Filters:
    status: str | None = None  # one of STATUS_FILTERS
    kind: str | None = None  # the effect's type
    store: str | None = None  # campaigns that may apply there (naming it, its region, or none)
    channel: str | None = None
    text: str | None = None  # in the name or the id, folded
    active_at: datetime | None = None  # live and within its dates at that moment


def listing(conn: Connection, filters: Filters, now: datetime, cursor: str | None = None,
            limit: int = DEFAULT_PAGE) -> tuple[list[Campaign], str | None]:
    """A page of campaigns by id after `cursor`, and the cursor of the next page (None at
    the end). Every filter is a condition on an indexed column or a lookup in
    campaign_places; a page stops after `limit` matches in id order."""
    where: list[str] = []
    args: list[Any] = []
    if filters.status in (SCHEDULED, ACTIVE):
        _running(where, args, filters.status, iso(now))
    elif filters.status is not None:
        where.append("c.status = ?")
        args.append(filters.status)
    if filters.active_at is not None:
        _running(where, args, ACTIVE, iso(filters.active_at))
    if filters.kind is not None:
        where.append("c.kind = ?")
        args.append(filters.kind)
    if filters.store is not None:
        # Naming no place, naming the store, or naming its region (as the newest rule set
        # places it).
        where.append(
            "(c.all_stores = 1 OR EXISTS (SELECT 1 FROM campaign_places p"
            " WHERE p.campaign_id = c.id AND p.kind = 'store' AND p.value = ?)"
            " OR EXISTS (SELECT 1 FROM campaign_places p JOIN campaign_store_regions s"
            " ON s.region = p.value WHERE p.campaign_id = c.id AND p.kind = 'region'"
            " AND s.store = ?))")
        args.extend((filters.store, filters.store))
    if filters.channel is not None:
        where.append("(c.all_channels = 1 OR EXISTS (SELECT 1 FROM campaign_places p"
                     " WHERE p.campaign_id = c.id AND p.kind = 'channel' AND p.value = ?))")
        args.append(filters.channel)
    if filters.text is not None:
        where.append("c.search LIKE ? ESCAPE '!'")
        args.append("%" + _like(fold(filters.text)) + "%")
    if cursor is not None:
        where.append("c.id > ?")
        args.append(cursor)
    sql = (f"SELECT {', '.join('c.' + c.strip() for c in COLUMNS.split(','))}"
           f" FROM campaigns c {'WHERE ' + ' AND '.join(where) if where else ''}"
           " ORDER BY c.id LIMIT ?")
    rows = [Campaign.from_row(r) for r in conn.execute(sql, (*args, limit + 1))]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more else None)


def _running(where: list[str], args: list[Any], which: str, at: str) -> None:
    if which == SCHEDULED:
        where.append("c.status = 'live' AND c.starts_utc > ?")
        args.append(at)
    else:
        where.append("c.status = 'live' AND (c.starts_utc IS NULL OR c.starts_utc <= ?)"
                     " AND (c.ends_utc IS NULL OR c.ends_utc > ?)")
        args.extend((at, at))


def _like(text: str) -> str:
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")


# -- writing -------------------------------------------------------------------------------


def _place_rows(campaign_id: str, rule: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    when = rule.get("when") or {}
    return [(kind, value, campaign_id)
            for kind, key in (("store", "stores"), ("region", "regions"), ("channel", "channels"))
            for value in sorted(set(when.get(key) or ()))]


def _everywhere(rule: Mapping[str, Any]) -> tuple[int, int]:
    """(names no store nor region, names no channel): it may apply at any of them."""
    when = rule.get("when") or {}
    return (int(not when.get("stores") and not when.get("regions")),
            int(not when.get("channels")))


def _row(rule: Mapping[str, Any], status: str, starts_at: str | None, ends_at: str | None,
         actor: str, now: datetime) -> tuple[Any, ...]:
    rule = normal(rule)
    cid = str(rule["id"])
    return (cid, _name(rule), fold(f"{cid}\n{_name(rule)}"), _kind(rule), status, starts_at,
            ends_at, utc(starts_at), utc(ends_at), _text(rule), *_everywhere(rule), iso(now),
            iso(now), actor)


INSERT = ("INSERT INTO campaigns (id, name, search, kind, status, starts_at, ends_at,"
          " starts_utc, ends_utc, rule, all_stores, all_channels, version, created_at,"
          " updated_at, updated_by, published_in)"
          " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?)")
INSERT_PLACE = "INSERT INTO campaign_places (kind, value, campaign_id) VALUES (?, ?, ?)"


def _places(conn: Connection, campaign_id: str, rule: Mapping[str, Any]) -> None:
    """Record the stores, regions and channels a rule names, instead of those it named."""
    conn.execute("DELETE FROM campaign_places WHERE campaign_id = ?", (campaign_id,))
    if rows := _place_rows(campaign_id, rule):
        conn.executemany(INSERT_PLACE, rows)


def insert(conn: Connection, rule: Mapping[str, Any], status: str, starts_at: str | None,
           ends_at: str | None, actor: str, now: datetime) -> Campaign:
    """A new campaign (its rule already checked); 409 if the id is taken."""
    cid = str(rule["id"])
    try:
        with transaction(conn):
            conn.execute(INSERT, (*_row(rule, status, starts_at, ends_at, actor, now), None))
            _places(conn, cid, rule)
    except IntegrityError:
        raise Refused(409, f"field 'id': campaign {cid!r} exists already") from None
    found = get(conn, cid)
    assert found is not None
    return found


_KEEP: Any = object()


def update(conn: Connection, current: Campaign, actor: str, now: datetime, *,
           rule: Mapping[str, Any] | None = None, status: str | None = None,
           starts_at: str | None = _KEEP, ends_at: str | None = _KEEP) -> Campaign:
    """Write a change over `current` as read: 409 if somebody changed it since."""
    rule = current.rule if rule is None else normal(rule)
    starts_at = current.starts_at if starts_at is _KEEP else starts_at
    ends_at = current.ends_at if ends_at is _KEEP else ends_at
    with transaction(conn):
        changed = conn.execute(
            "UPDATE campaigns SET name = ?, search = ?, kind = ?, status = ?, starts_at = ?,"
            " ends_at = ?, starts_utc = ?, ends_utc = ?, rule = ?, version = version + 1,"
            " updated_at = ?, updated_by = ? WHERE id = ? AND version = ?",
            (_name(rule), fold(f"{current.id}\n{_name(rule)}"), _kind(rule),
             status or current.status, starts_at, ends_at, utc(starts_at), utc(ends_at),
             _text(rule), iso(now), actor, current.id, current.version)).rowcount
        if changed != 1:
            raise Refused(409, f"campaign {current.id!r} was changed by someone else since"
                               f" version {current.version}: read it again and redo the change")
        _places(conn, current.id, rule)
        conn.execute("UPDATE campaigns SET all_stores = ?, all_channels = ? WHERE id = ?",
                     (*_everywhere(rule), current.id))
    found = get(conn, current.id)
    assert found is not None
    return found


def mark_published(conn: Connection, campaign_id: str, ruleset_version: int) -> None:
    conn.execute("UPDATE campaigns SET published_in = ? WHERE id = ?",
                 (ruleset_version, campaign_id))


def adopt(conn: Connection, doc: Mapping[str, Any], ruleset_version: int, actor: str,
          now: datetime) -> int:
    """Bring the table in line with a rule set published whole (inside its transaction; the
    document is valid): its campaigns live as it says, live rows it lacks ended. Rows that
    already say the same are not touched, so their versions (and edits in flight against
    them) stand. Returns how many rows changed."""
    _store_regions(conn, doc)
    known = {r["id"]: r for r in conn.execute(
        "SELECT id, status, starts_at, ends_at, rule FROM campaigns")}
    changed = 0
    seen: set[str] = set()
    new: list[tuple[Any, ...]] = []
    places: list[tuple[str, str, str]] = []
    for raw in doc.get("campaigns") or ():
        rule, starts_at, ends_at = undated(raw)
        cid = str(rule["id"])
        seen.add(cid)
        row = known.get(cid)
        if row is None:
            # New ones in two statements, not 10,000 (a whole programme imported at once).
            new.append((*_row(rule, LIVE, starts_at, ends_at, actor, now), ruleset_version))
            places.extend(_place_rows(cid, rule))
            continue
        if (row["status"], row["starts_at"], row["ends_at"], row["rule"]) != (
                LIVE, starts_at, ends_at, _text(rule)):
            found = get(conn, cid)
            assert found is not None
            update(conn, found, actor, now, rule=rule, status=LIVE, starts_at=starts_at,
                   ends_at=ends_at)
        else:
            continue
        mark_published(conn, cid, ruleset_version)
        changed += 1
    if new:
        conn.executemany(INSERT, new)
        conn.executemany(INSERT_PLACE, places)
        changed += len(new)
    for cid, row in known.items():
        if row["status"] == LIVE and cid not in seen:
            found = get(conn, cid)
            assert found is not None
            update(conn, found, actor, now, status=ENDED)
            mark_published(conn, cid, ruleset_version)
            changed += 1
    return changed


def _store_regions(conn: Connection, doc: Mapping[str, Any]) -> None:
    """Keep the rule set's regions of stores, for listing by store (the document itself is
    never read for a listing)."""
    stores = doc.get("stores") or {}
    wanted = {s: p["region"] for s, p in stores.items()
              if isinstance(p, Mapping) and isinstance(p.get("region"), str)}
    have = dict(conn.execute("SELECT store, region FROM campaign_store_regions").fetchall())
    if have != wanted:
        conn.execute("DELETE FROM campaign_store_regions")
        conn.executemany("INSERT INTO campaign_store_regions (store, region) VALUES (?, ?)",
                         sorted(wanted.items()))


def adopted(conn: Connection) -> bool:
    """Whether the table has ever been filled (a database from before it: not yet)."""
    return conn.execute("SELECT 1 FROM campaigns LIMIT 1").fetchone() is not None
