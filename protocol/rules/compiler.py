"""compile_ruleset: the head-office document, validated, turned into a RuleSet with indexes.

The document format is described in protocol/rules/README.md; defaults.py has examples.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from protocol.rules import model as m
from protocol.rules import place
from protocol.rules.arith import ROUNDING_MODES
from protocol.rules.errors import RuleSetError
from protocol.rules.index import CampaignIndex
from protocol.rules.schema import Reader, join

CHANNELS = ("till", "web", "app")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
PERIODS = ("month", "quarter", "year")
BUDGET_PERIODS = ("day", "week", "month", "year", "campaign")
EFFECT_TYPES = (
    "percent", "per_amount", "per_unit", "per_receipt", "multiplier", "discount",
    "next_purchase_offer",
)
MAX_DAYS = 36_600

TOP = frozenset({"version", "valid_from", "programme", "tiers", "redemption", "campaigns", "meta",
                 "stores", "holdout_salt"})
PROGRAMME = frozenset({
    "units", "default_unit", "rounding", "return_window_days", "return_windows", "lifetime",
    "excluded", "earn_on_redeemed", "time_zone", "after_return_window",
})
# What a return after the line's return window (warranty, defects) does to earned points.
AFTER_WINDOW = ("take_back", "keep")
RETURN_WINDOW = frozenset({"match", "channels", "tiers", "days"})
UNIT = frozenset({"decimals", "worth", "name"})
WORTH = frozenset({"steps", "kopecks"})
LIFETIME = frozenset({"days", "period"})
EXCLUDED = frozenset({"skus", "categories", "brands", "flags"})
SELECTOR = frozenset({
    "skus", "categories", "brands", "flags", "not_skus", "not_categories", "not_brands",
    "not_flags",
})
TIERS = frozenset({"window", "window_days", "levels"})
LEVEL = frozenset({"id", "min_spend", "name"})
REDEMPTION = frozenset({"unit", "max_receipt_share", "lines", "min_balance", "min_redeem"})
REDEMPTION_LINE = frozenset({"match", "max_line_share"})
CAMPAIGN = frozenset({
    "id", "name", "priority", "group", "stop", "members_only", "when", "lines", "effect",
    "budget", "lifetime_days", "description", "holdout",
})
WHEN = frozenset({
    "from", "to", "weekdays", "hours", "stores", "regions", "channels", "segments",
    "segments_all", "not_segments", "tiers", "birthday_within_days", "first_purchase",
    "nth_purchase", "every_nth_purchase", "offers", "basket", "requires",
})
HOURS = frozenset({"from", "to"})
BASKET = frozenset({"min_amount", "min_qty"})
BUDGET = frozenset({"total", "per_customer", "period"})
EFFECT = frozenset({
    "type", "percent", "by_tier", "unit", "points", "per", "factor", "of", "amount",
    "amount_per_unit", "offer", "valid_days",
})


def compile_ruleset(doc: Mapping[str, Any]) -> m.RuleSet:
    """Validate the document and build the rule set; RuleSetError lists every mistake."""
    return _compile(doc, None, None)[0]


@dataclass(frozen=True)
class CompiledCampaigns:
    """The campaigns of a compiled rule set by their encoded form (the bytes the central
    signed), with the programme and tiers they were compiled under.

    A campaign compiles the same from the same bytes under the same programme and tiers
    (its place in the list only names it in errors, and a rule set that compiled has
    none), so the next version reuses what it shares with this one: compiling campaigns is
    nine tenths of the work, and a new version mostly changes a few of them."""

    programme: m.Programme
    tiers: m.Tiers | None
    by_encoding: Mapping[bytes, m.Campaign]


def compile_encoded(doc: Mapping[str, Any], decode: Callable[[bytes], Any],
                    known: CompiledCampaigns | None = None,
                    ) -> tuple[m.RuleSet, CompiledCampaigns]:
    """compile_ruleset() of a document whose campaigns are still encoded (each one's bytes,
    protocol.wire.unpack_in_steps(encoded=...)): those in `known` are taken from there, the
    others decoded with `decode` and compiled. Also returns this rule set's campaigns, for
    the next version."""
    return _compile(doc, decode, known)


def _compile(doc: Mapping[str, Any], decode: Callable[[bytes], Any] | None,
             known: CompiledCampaigns | None) -> tuple[m.RuleSet, CompiledCampaigns]:
    r = Reader()
    if not isinstance(doc, Mapping):
        r.obj(doc, "", TOP)
        raise RuleSetError(r.errors)
    d = r.obj(doc, "", TOP)
    version = r.int_(d, "version", "", lo=1)
    valid_from = r.moment(d, "valid_from", "")
    tiers = _tiers(r, d["tiers"], "tiers") if "tiers" in d else None
    programme = _programme(r, d.get("programme", MISSING_OBJ), "programme", tiers)
    redemption = _redemption(r, d.get("redemption", MISSING_OBJ), "redemption", programme)
    reusable: Mapping[bytes, m.Campaign] = (
        known.by_encoding if known is not None and known.programme == programme
        and known.tiers == tiers else {})
    by_encoding: dict[bytes, m.Campaign] = {}
    campaigns: list[m.Campaign] = []
    paths: dict[str, str] = {}
    for i, c in enumerate(r.items(d, "campaigns", "")):
        path = join("campaigns", i)
        if decode is not None and isinstance(c, bytes):
            camp = reusable.get(c)
            if camp is None:
                camp = _campaign(r, decode(c), path, programme, tiers)
            if camp is not None:
                by_encoding[c] = camp
        else:
            camp = _campaign(r, c, path, programme, tiers)
        if camp is None:
            continue
        if camp.id in paths:
            r.error(join(path, "id"),
                    f"duplicate campaign id {camp.id!r} (first at {paths[camp.id]})")
            continue
        paths[camp.id] = path
        campaigns.append(camp)
    campaigns = _resolve_multipliers(r, campaigns, paths)
    _one_unit(r, programme, redemption, campaigns, paths)
    stores = place.read_stores(r, d["stores"], "stores", CHANNELS) if "stores" in d else {}
    salt = r.str_(d, "holdout_salt", "", default="")
    if r.errors:
        raise RuleSetError(r.errors)
    campaigns.sort(key=lambda c: (-c.priority, c.id))
    return m.RuleSet(
        version=version, valid_from=valid_from, programme=programme, tiers=tiers,
        redemption=redemption, campaigns=tuple(campaigns),
        by_id={c.id: i for i, c in enumerate(campaigns)},
        index=CampaignIndex(campaigns), stores=stores, holdout_salt=salt,
    ), CompiledCampaigns(programme, tiers, by_encoding)


class _Missing(dict):  # a required section that is absent: reported once, read as empty
    pass


MISSING_OBJ = _Missing()


def _section(r: Reader, value: object, path: str, allowed: frozenset[str]) -> Mapping[str, Any]:
    if value is MISSING_OBJ:
        r.error(path, "is required")
        return {}
    return r.obj(value, path, allowed)


def _programme(r: Reader, value: object, path: str, tiers: m.Tiers | None) -> m.Programme:
    d = _section(r, value, path, PROGRAMME)
    if not isinstance(value, Mapping) or value is MISSING_OBJ:
        # absent or not an object: already reported; a unit-less programme keeps the rest quiet
        return m.Programme({}, "", "down", 14, None, None, m.Exclusion(), False)
    units: dict[str, m.Unit] = {}
    raw_units = d.get("units")
    upath = join(path, "units")
    if not isinstance(raw_units, Mapping) or not raw_units:
        r.error(upath, "must be an object with at least one unit, e.g. {\"points\": {...}}")
    else:
        for uid, u in raw_units.items():
            p = join(upath, str(uid))
            ud = r.obj(u, p, UNIT)
            decimals = r.int_(ud, "decimals", p, default=0, hi=4)
            wd = r.obj(ud.get("worth", {}), join(p, "worth"), WORTH)
            steps = r.int_(wd, "steps", join(p, "worth"), lo=1)
            kopecks = r.int_(wd, "kopecks", join(p, "worth"), lo=1)
            units[str(uid)] = m.Unit(str(uid), decimals, max(steps, 1), max(kopecks, 1))
    default_unit = r.str_(d, "default_unit", path, default=next(iter(units), ""))
    if units and default_unit not in units:
        r.error(join(path, "default_unit"), f"unknown unit {default_unit!r}")
    rounding = r.str_(d, "rounding", path, default="down", choices=ROUNDING_MODES)
    window = r.int_(d, "return_window_days", path, default=14, hi=MAX_DAYS)
    lifetime_days: int | None = None
    lifetime_period: str | None = None
    if "lifetime" in d:
        lp = join(path, "lifetime")
        ld = r.obj(d["lifetime"], lp, LIFETIME)
        if ("days" in ld) == ("period" in ld):
            r.error(lp, "give exactly one of days (after activation) or period"
                        " (month, quarter, year)")
        lifetime_days = r.int_(ld, "days", lp, default=None, lo=1, hi=MAX_DAYS)
        lifetime_period = r.str_(ld, "period", lp, default=None, choices=PERIODS)
    ed = r.obj(d.get("excluded", {}), join(path, "excluded"), EXCLUDED)
    ep = join(path, "excluded")
    excluded = m.Exclusion(
        r.strs(ed, "skus", ep), r.strs(ed, "categories", ep), r.strs(ed, "brands", ep),
        r.strs(ed, "flags", ep),
    )
    windows = []
    for i, item in enumerate(r.items(d, "return_windows", path)):
        p = join(join(path, "return_windows"), i)
        wd = r.obj(item, p, RETURN_WINDOW)
        channels = r.strs(wd, "channels", p)
        for ch in sorted(channels - set(CHANNELS)):
            r.error(join(p, "channels"), f"unknown channel {ch!r} (use {', '.join(CHANNELS)})")
        tier_ids = r.strs(wd, "tiers", p)
        _check_tiers(r, tier_ids, join(p, "tiers"), tiers)
        windows.append(m.ReturnWindow(
            _selector(r, wd.get("match", {}), join(p, "match")), channels, tier_ids,
            r.int_(wd, "days", p, hi=MAX_DAYS)))
    return m.Programme(
        units=units, default_unit=default_unit, rounding=rounding, return_window_days=window,
        lifetime_days=lifetime_days, lifetime_period=lifetime_period, excluded=excluded,
        earn_on_redeemed=r.bool_(d, "earn_on_redeemed", path, False),
        return_windows=tuple(windows),
        time_zone=place.read_zone(r, d, "time_zone", path),
        after_return_window=r.str_(d, "after_return_window", path, "take_back",
                                   choices=AFTER_WINDOW),
    )


def _tiers(r: Reader, value: object, path: str) -> m.Tiers:
    d = r.obj(value, path, TIERS)
    window = r.str_(d, "window", path, default="calendar_month",
                    choices=("calendar_month", "rolling"))
    days = r.int_(d, "window_days", path, default=0, hi=MAX_DAYS)
    if window == "rolling" and days < 1:
        r.error(join(path, "window_days"), "a rolling window needs window_days of at least 1")
    levels: list[m.Tier] = []
    seen: set[str] = set()
    raw = r.items(d, "levels", path)
    if not raw:
        r.error(join(path, "levels"), "needs at least one level")
    for i, lv in enumerate(raw):
        p = join(join(path, "levels"), i)
        ld = r.obj(lv, p, LEVEL)
        tid = r.str_(ld, "id", p)
        spend = r.int_(ld, "min_spend", p)
        if tid in seen:
            r.error(join(p, "id"), f"duplicate tier {tid!r}")
        seen.add(tid)
        if levels and spend <= levels[-1].min_spend:
            r.error(join(p, "min_spend"),
                    f"must be greater than the level before ({levels[-1].min_spend})")
        levels.append(m.Tier(tid, spend))
    if levels and levels[0].min_spend != 0:
        r.error(join(join(path, "levels"), 0) + ".min_spend", "the first level must start at 0")
    return m.Tiers(window, days, tuple(levels))


def _selector(r: Reader, value: object, path: str) -> m.Selector:
    d = r.obj(value, path, SELECTOR)
    return m.Selector(**{k: r.strs(d, k, path) for k in SELECTOR})


def _redemption(r: Reader, value: object, path: str, prog: m.Programme) -> m.Redemption:
    d = _section(r, value, path, REDEMPTION)
    unit = r.str_(d, "unit", path, default=prog.default_unit)
    if prog.units and unit not in prog.units:
        r.error(join(path, "unit"), f"unknown unit {unit!r}")
    share = r.scaled(d, "max_receipt_share", path, 2, 0, m.BP, "a share in percent", required=False)
    if "max_receipt_share" not in d:
        share = m.BP
    rules: list[m.RedemptionRule] = []
    if "lines" not in d:
        rules.append(m.RedemptionRule(m.Selector(), m.BP))
    for i, item in enumerate(r.items(d, "lines", path)):
        p = join(join(path, "lines"), i)
        ld = r.obj(item, p, REDEMPTION_LINE)
        sel = _selector(r, ld.get("match", {}), join(p, "match"))
        bp = r.scaled(ld, "max_line_share", p, 2, 0, m.BP, "a share in percent")
        rules.append(m.RedemptionRule(sel, bp))
    return m.Redemption(
        unit=unit, receipt_share_bp=share, rules=tuple(rules),
        min_balance=r.int_(d, "min_balance", path, default=0),
        min_redeem=r.int_(d, "min_redeem", path, default=0),
    )


def _hhmm(r: Reader, value: object, path: str) -> int:
    if isinstance(value, str) and len(value) == 5 and value[2] == ":":
        hh, mm = value[:2], value[3:]
        if hh.isdigit() and mm.isdigit() and (int(hh) < 24 or value == "24:00") and int(mm) < 60:
            return int(hh) * 60 + int(mm)
    r.error(path, f"must be a time \"HH:MM\" (00:00 to 24:00), got {value!r}")
    return 0


def _when(r: Reader, value: object, path: str, tiers: m.Tiers | None) -> m.Conditions:
    d = r.obj(value, path, WHEN)
    active_from = r.moment(d, "from", path)
    active_to = r.moment(d, "to", path)
    if active_from and active_to and active_to <= active_from:
        r.error(join(path, "to"), "must be after from")
    weekdays: set[int] = set()
    for day in sorted(r.strs(d, "weekdays", path)):
        if day not in WEEKDAYS:
            r.error(join(path, "weekdays"), f"unknown day {day!r} (use {', '.join(WEEKDAYS)})")
        else:
            weekdays.add(WEEKDAYS.index(day) + 1)
    hours: list[tuple[int, int]] = []
    for i, h in enumerate(r.items(d, "hours", path)):
        p = join(join(path, "hours"), i)
        hd = r.obj(h, p, HOURS)
        a = _hhmm(r, hd.get("from"), join(p, "from"))
        b = _hhmm(r, hd.get("to"), join(p, "to"))
        if a == b:
            r.error(p, "from and to are the same time: an empty window")
        hours.append((a, b))
    channels = r.strs(d, "channels", path)
    for ch in sorted(channels - set(CHANNELS)):
        r.error(join(path, "channels"), f"unknown channel {ch!r} (use {', '.join(CHANNELS)})")
    tier_ids = r.strs(d, "tiers", path)
    _check_tiers(r, tier_ids, join(path, "tiers"), tiers)
    basket = r.obj(d.get("basket", {}), join(path, "basket"), BASKET)
    bp = join(path, "basket")
    if "basket" in d and not basket:
        r.error(bp, "give min_amount (kopecks) or min_qty (thousandths)")
    requires = tuple(
        _selector(r, s, join(join(path, "requires"), i))
        for i, s in enumerate(r.items(d, "requires", path))
    )
    for i, s in enumerate(requires):
        if s.is_any:
            r.error(join(join(path, "requires"), i), "an empty selector requires nothing")
    return m.Conditions(
        active_from=active_from, active_to=active_to, weekdays=frozenset(weekdays),
        hours=tuple(hours), stores=r.strs(d, "stores", path), regions=r.strs(d, "regions", path),
        channels=channels, segments=r.strs(d, "segments", path),
        segments_all=r.strs(d, "segments_all", path),
        not_segments=r.strs(d, "not_segments", path), tiers=tier_ids,
        birthday_within_days=r.int_(d, "birthday_within_days", path, default=None, hi=183),
        first_purchase=r.bool_(d, "first_purchase", path, False),
        nth_purchase=r.int_(d, "nth_purchase", path, default=None, lo=1),
        every_nth_purchase=r.int_(d, "every_nth_purchase", path, default=None, lo=2),
        offers=r.strs(d, "offers", path),
        min_amount=r.int_(basket, "min_amount", bp, default=None, lo=1),
        min_qty=r.int_(basket, "min_qty", bp, default=None, lo=1),
        requires=requires,
    )


def _check_tiers(r: Reader, ids: frozenset[str], path: str, tiers: m.Tiers | None) -> None:
    if not ids:
        return
    known = {t.id for t in tiers.levels} if tiers else set()
    for tid in sorted(ids - known):
        r.error(path, f"unknown tier {tid!r}" + ("" if tiers else " (the rule set has no tiers)"))


def _effect(
    r: Reader, value: object, path: str, prog: m.Programme, tiers: m.Tiers | None,
) -> m.Effect:
    d = r.obj(value, path, EFFECT)
    kind = r.str_(d, "type", path, choices=EFFECT_TYPES)
    unit = r.str_(d, "unit", path, default=prog.default_unit)
    if prog.units and unit not in prog.units:
        r.error(join(path, "unit"), f"unknown unit {unit!r}")

    def only(*allowed: str) -> None:
        for key in sorted((set(d) & EFFECT) - {"type", *allowed}):
            r.error(join(path, key), f"does not apply to a {kind} effect")

    if kind == "percent":
        only("percent", "by_tier", "unit")
        bp = r.scaled(d, "percent", path, 2, 0, m.BP, "percent")
        by_tier: dict[str, int] = {}
        raw_bt = d.get("by_tier", {})
        tier_keys = frozenset(raw_bt if isinstance(raw_bt, Mapping) else ())
        bt = r.obj(raw_bt, join(path, "by_tier"), tier_keys)
        for tid in bt:
            by_tier[tid] = r.scaled(bt, tid, join(path, "by_tier"), 2, 0, m.BP, "percent")
        _check_tiers(r, frozenset(by_tier), join(path, "by_tier"), tiers)
        return m.Effect(m.PERCENT, unit=unit, bp=bp, by_tier=by_tier)
    if kind == "per_amount":
        only("points", "per", "unit")
        return m.Effect(
            m.PER_AMOUNT, unit=unit, points=r.int_(d, "points", path, lo=1),
            per=r.int_(d, "per", path, lo=1),
        )
    if kind in ("per_unit", "per_receipt"):
        only("points", "unit")
        return m.Effect(kind, unit=unit, points=r.int_(d, "points", path, lo=1))
    if kind == "multiplier":
        only("factor", "of")
        factor = r.scaled(d, "factor", path, 2, 101, 10_000, "factor")
        return m.Effect(m.MULTIPLIER, factor=factor, of=r.str_(d, "of", path, default="base"))
    if kind == "discount":
        only("percent", "amount", "amount_per_unit")
        given = [k for k in ("percent", "amount", "amount_per_unit") if k in d]
        if len(given) != 1:
            r.error(path, "a discount gives exactly one of percent (of each line), amount"
                          " (kopecks per receipt) or amount_per_unit (kopecks per unit)")
            return m.Effect(m.DISCOUNT_PERCENT)
        if "percent" in d:
            bp = r.scaled(d, "percent", path, 2, 1, m.BP, "percent")
            return m.Effect(m.DISCOUNT_PERCENT, bp=bp)
        if "amount" in d:
            return m.Effect(m.DISCOUNT_AMOUNT, amount=r.int_(d, "amount", path, lo=1))
        return m.Effect(m.DISCOUNT_PER_UNIT, amount=r.int_(d, "amount_per_unit", path, lo=1))
    if kind == "next_purchase_offer":
        only("offer", "valid_days")
        return m.Effect(
            m.GRANT_OFFER, offer=r.str_(d, "offer", path),
            valid_days=r.int_(d, "valid_days", path, default=30, lo=1, hi=MAX_DAYS),
        )
    return m.Effect(m.PERCENT, unit=unit)  # unknown type: already reported


def _campaign(
    r: Reader, value: object, path: str, prog: m.Programme, tiers: m.Tiers | None,
) -> m.Campaign | None:
    d = r.obj(value, path, CAMPAIGN)
    if not isinstance(value, Mapping):  # already reported
        return None
    cid = r.str_(d, "id", path)
    if "effect" in d:
        effect = _effect(r, d["effect"], join(path, "effect"), prog, tiers)
    else:
        r.error(join(path, "effect"), "is required")
        effect = m.Effect(m.PERCENT)
    members_only = r.bool_(d, "members_only", path, True)
    when = _when(r, d.get("when", {}), join(path, "when"), tiers)
    if not members_only and effect.kind not in m.DISCOUNT_KINDS:
        r.error(join(path, "members_only"),
                "only discounts can go to non-members: points need an account")
    if not members_only and when.needs_member:
        r.error(join(path, "members_only"),
                "the conditions need a member (segments, tiers, offers, purchase count)")
    budget = None
    if "budget" in d:
        bp = join(path, "budget")
        bd = r.obj(d["budget"], bp, BUDGET)
        budget = m.Budget(
            total=r.int_(bd, "total", bp, default=None, lo=1),
            per_customer=r.int_(bd, "per_customer", bp, default=None, lo=1),
            period=r.str_(bd, "period", bp, default="campaign", choices=BUDGET_PERIODS),
        )
        if budget.total is None and budget.per_customer is None:
            r.error(bp, "give total or per_customer")
    return m.Campaign(
        id=cid, name=r.str_(d, "name", path, default=cid), priority=r.int_(d, "priority", path,
        default=0, lo=-1_000_000, hi=1_000_000), group=r.str_(d, "group", path, default=""),
        stop=r.bool_(d, "stop", path, False), members_only=members_only, when=when,
        lines=_selector(r, d.get("lines", {}), join(path, "lines")), effect=effect,
        budget=budget,
        lifetime_days=r.int_(d, "lifetime_days", path, default=None, lo=1, hi=MAX_DAYS),
        # a control group of 100 % would be a campaign nobody gets; 0 is no holdout
        holdout_bp=r.scaled(d, "holdout", path, 2, 1, m.BP - 1,
                            "a holdout share in percent", required=False),
    )


def _one_unit(r: Reader, prog: m.Programme, redemption: m.Redemption,
              campaigns: list[m.Campaign], paths: dict[str, str]) -> None:
    """The ledger and the customer's balance keep one unit, the programme's default. A rule
    set pricing any other is refused here, naming the campaign, rather than priced at the
    till and silently dropped on the way to the ledger."""
    unit = prog.default_unit
    if not prog.units or unit not in prog.units:
        return  # already reported
    why = (f"the ledger and customers' balances keep only the default unit {unit!r}; "
           "a second unit is refused until they keep it too")
    for uid in prog.units:
        if uid != unit:
            r.error(join(join("programme", "units"), uid), f"second unit {uid!r}: {why}")
    if redemption.unit != unit and redemption.unit in prog.units:
        r.error("redemption.unit", f"spends {redemption.unit!r}: {why}")
    for c in campaigns:
        if c.effect.kind in m.ACCRUAL_KINDS and c.effect.unit != unit \
                and c.effect.unit in prog.units:
            r.error(join(join(paths[c.id], "effect"), "unit"),
                    f"campaign {c.id!r} ({c.name}) earns {c.effect.unit!r}: {why}")


def _resolve_multipliers(
    r: Reader, campaigns: list[m.Campaign], paths: dict[str, str],
) -> list[m.Campaign]:
    """A multiplier earns in the unit of the campaign it multiplies; check that one exists."""
    by_id = {c.id: c for c in campaigns}
    out = []
    for c in campaigns:
        if c.effect.kind == m.MULTIPLIER:
            p = join(join(paths[c.id], "effect"), "of")
            ref = by_id.get(c.effect.of)
            if ref is None:
                r.error(p, f"no campaign with id {c.effect.of!r} to multiply")
            elif ref.id == c.id:
                r.error(p, "a multiplier cannot multiply itself")
            elif ref.effect.kind not in m.MULTIPLIABLE_KINDS:
                r.error(p, f"campaign {ref.id!r} gives {ref.effect.kind} points, which cannot be "
                           "multiplied (only percent, per_amount, per_unit)")
            else:
                effect = m.Effect(m.MULTIPLIER, unit=ref.effect.unit, factor=c.effect.factor,
                                  of=ref.id)
                c = m.Campaign(**{**{f: getattr(c, f) for f in c.__dataclass_fields__},
                                  "effect": effect})
        out.append(c)
    return out
