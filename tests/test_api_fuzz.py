"""Property-based fuzzing of the three APIs over real HTTP (issue 9, part 3): the head-office
and sync APIs of a running central, and a till's POS API. Each example takes a valid request
and puts one hostile value in one field (integers past 64 bits, floats, booleans, lone
surrogates, control characters, long text, Unicode digits, deep nesting, wrong shapes).

Whatever comes in: no server error, and a refusal as invalid (400, 422) names the field
it is about. Seeded (derandomize), 200 examples an endpoint."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.card_lookup import TypedLimit
from agent.pos_api import TILL
from central.app import make_app
from central.clock import utcnow
from central.web_common import SECRETS
from protocol.batches import BATCH_VERSION
from protocol.journal import genesis_hash
from protocol.request_auth import sign_request
from protocol.signing import sign
from tests.api_servers import Answer, ServerThread
from tests.pos_rig import Rig
from tests.till_double import TestTill

EXAMPLES = 200
FUZZ = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])

# -- hostile values -----------------------------------------------------------------------

def _nested(depth: int) -> Any:
    value: Any = 1
    for i in range(depth):
        value = [value] if i % 2 else {"a": value}
    return value


SURROGATE = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
WEIRD_TEXT = st.one_of(
    st.text(max_size=30),
    st.text(alphabet=st.one_of(st.characters(), SURROGATE), min_size=1, max_size=30),
    st.text(alphabet=st.characters(max_codepoint=0x1F), min_size=1, max_size=5),
    st.integers(min_value=201, max_value=5000).map(lambda n: "x" * n),
    st.sampled_from(["", " ", "٢٩٩٠٠٠٠٠٠٠٠١٢", "２９９０", "²", "1_000", "-1", "0x10",
                     "2026-13-45", "2026-02-30", "9" * 40, "NaN", "null"]),
)
HOSTILE = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**63, 2**64, -(2**63) - 1, 10**12, 10**9 + 1, -1, 0, 1]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    WEIRD_TEXT,
    st.lists(st.one_of(st.integers(), st.text(max_size=5)), max_size=4),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.integers(min_value=33, max_value=300).map(_nested),
)


def put(doc: dict, path: tuple[Any, ...], value: Any) -> dict:
    """A deep copy of `doc` with `value` at `path`."""
    doc = json.loads(json.dumps(doc))
    target = doc
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return doc


def never_valid(value: Any, depth: int = 0, controls: bool = False) -> bool:
    """A value no field takes: a lone surrogate or control character (but in an item's
    name, which the printer's text layer cleans), an integer past 2^53, a float, nesting
    past 32 levels, text past 1000 characters."""
    if depth > 32:
        return True
    if isinstance(value, str):
        return (len(value) > 1000 or any(0xD800 <= ord(c) <= 0xDFFF for c in value)
                or (not controls
                    and any(ord(c) < 0x20 and c not in "\t\n\r" for c in value)))
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, int):
        return abs(value) > 2**53
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(never_valid(k, depth + 1) or never_valid(v, depth + 1)
                   for k, v in value.items())
    if isinstance(value, list):
        return any(never_valid(v, depth + 1) for v in value)
    return False


UNKNOWN = ("extra", "__proto__")


def judged(answer: Answer, path: tuple[Any, ...], value: Any) -> None:
    """No server error; a value no field takes is refused (but in a field the endpoint
    does not know, which is ignored); a refusal as invalid names the field, or the field
    holding it (a map keyed by line numbers, a split whose parts do not add up); a body
    too deep to parse says so instead: it is refused before there is any field to name."""
    assert answer.status < 500, (path, value, answer.status, answer.body[:300])
    item_name = path[0] == "lines" and path[-1] == "name"
    if never_valid(value, controls=item_name) and path[0] not in UNKNOWN:
        assert 400 <= answer.status < 500, (path, value, answer.status, answer.body[:300])
    if answer.status in (400, 422):
        error = answer.error
        named = [p for p in path if isinstance(p, str)]
        assert any(n in error for n in named) or "deeper" in error, (path, value, error)


# -- the central ----------------------------------------------------------------------------

class Central:
    """A running central, one enrolled till, one customer, one sale to return."""

    def __init__(self, tmp: Path) -> None:
        async def build():
            return make_app(tmp / "central", utcnow, reprice_every=None)

        self.server = ServerThread(build).start()
        assert self.server.app is not None
        self.admin = {"Authorization": f"Bearer {self.server.app[SECRETS].admin_token}"}
        token = self.office("POST", "/api/v1/enrolment-tokens", {"store": "s1"}).json()["token"]
        self.till = TestTill()
        answer = self.server.send_json("POST", "/sync/v1/enroll", self.till.enrolment(token))
        assert answer.status == 200, answer.body
        self.till.till_id = answer.json()["till_id"]
        answer = self.office("POST", "/api/v1/customers",
                             {"card_number": "2990000000012", "welcome_bonus": 100})
        assert answer.status == 201, answer.body
        self.customer = answer.json()["id"]
        sale = self.till.sale(self.customer)
        self.receipt_id = sale.receipt_id
        assert self.batch([sale.encoded_body()], self.till.epoch).status == 200

    def office(self, method: str, path: str, body: Any = None) -> Answer:
        if body is None:
            return self.server.request(method, path, headers=self.admin)
        return self.server.send_json(method, path, body, self.admin)

    def signed(self, method: str, path: str, body: Any = None) -> Answer:
        raw = b"" if body is None else json.dumps(body).encode()
        headers = sign_request(self.till.key, self.till.till_id, method, path, raw,
                               int(utcnow().timestamp()))
        if body is not None:
            headers["Content-Type"] = "application/json"
        return self.server.request(method, path, raw if body is not None else None, headers)

    def batch(self, entries: list[bytes], epoch: str) -> Answer:
        body = msgpack.packb({"v": BATCH_VERSION, "till": self.till.till_id, "epoch": epoch,
                              "sent_at": "2026-11-23T10:00:00+00:00", "entries": entries},
                             use_bin_type=True)
        data = msgpack.packb({"body": body, "sig": sign(self.till.key, body)},
                             use_bin_type=True)
        return self.server.request("POST", "/sync/v1/batches", data,
                                   {"Content-Type": "application/msgpack"})


@pytest.fixture(scope="module")
def central(tmp_path_factory) -> Iterator[Central]:
    c = Central(tmp_path_factory.mktemp("fuzz-central"))
    yield c
    c.server.stop()


def fields_of(doc: dict, prefix: tuple = ()) -> list[tuple]:
    """Every path into `doc` (maps and lists), the places a hostile value can go."""
    paths = []
    for k, v in (doc.items() if isinstance(doc, dict) else enumerate(doc)):
        paths.append((*prefix, k))
        if isinstance(v, dict | list) and v:
            paths.extend(fields_of(v, (*prefix, k)))
    return paths


def new_field(doc: dict) -> st.SearchStrategy[tuple]:
    """An existing path, or a field the endpoint does not know, at the top."""
    return st.one_of(st.sampled_from(fields_of(doc)), st.sampled_from([(u,) for u in UNKNOWN]))


CUSTOMER = {"card_number": "2990000000029", "name": "Anna", "phone": "+79990000001",
            "tier": "silver", "segments": ["sports"], "birthday": "1990-05-17",
            "welcome_bonus": 10}
CAMPAIGN = {"id": "fuzz", "name": "Fuzz", "priority": 5, "lines": {"categories": ["sports"]},
            "when": {"weekdays": ["mon"], "channels": ["till"]},
            "effect": {"type": "percent", "percent": 5}, "budget": {"total": 1000},
            "status": "live", "from": "2026-11-30T00:00:00+03:00"}
SAMPLE = {"receipt": {"lines": [{"sku": "a", "qty": 1000, "price": 100, "amount": 100,
                                 "category": "sports"}], "store": "s1"},
          "customer": {"id": "c1", "balance": 10, "segments": ["x"], "allowances": {"a": 1}},
          "at": "2026-11-23T10:00:00+03:00", "redeem": 0}
OFFICE = [
    ("POST", "/api/v1/campaigns", CAMPAIGN),
    ("PATCH", "/api/v1/campaigns/{campaign}", {"version": 1, "name": "n", "priority": 3,
                                               "effect": {"type": "percent", "percent": 4}}),
    ("POST", "/api/v1/campaigns/{campaign}/schedule",
     {"version": 1, "from": "2026-11-30T00:00:00+03:00", "to": "2026-12-30T00:00:00+03:00"}),
    ("POST", "/api/v1/campaigns/{campaign}/dry-run",
     {"change": {"effect": {"type": "percent", "percent": 7}}, "receipts": [SAMPLE]}),
    ("POST", "/api/v1/campaigns/dry-run", {"campaign": {k: v for k, v in CAMPAIGN.items()
                                                        if k not in ("status", "from")},
                                           "receipts": [SAMPLE]}),
    ("POST", "/api/v1/customers", CUSTOMER),
    ("PATCH", "/api/v1/customers/{customer}", {k: v for k, v in CUSTOMER.items()
                                              if k not in ("card_number", "welcome_bonus")}),
    ("POST", "/api/v1/customers/{customer}/adjustments",
     {"points": 5, "actor": "a", "reason": "r"}),
    ("POST", "/api/v1/customers/lookup", {"card_number": "2990000000012"}),
    ("POST", "/api/v1/customers/{customer}/offers", {"offer": "coffee"}),
    ("POST", "/api/v1/customers/{customer}/cards", {"card_number": "2990000000036"}),
    ("POST", "/api/v1/enrolment-tokens", {"store": "s1", "ttl_hours": 2}),
    ("PUT", "/api/v1/offline-caps", {"actor": "a", "redeem_per_receipt": 1000}),
    ("POST", "/api/v1/tills/{till}/release", {"actor": "a"}),
    ("POST", "/api/v1/customers/{customer}/consents",
     {"kind": "advertising", "granted": True, "source": "app", "actor": "a"}),
    ("POST", "/api/v1/staff", {"name": "Anna", "role": "support", "days": 30}),
    ("PUT", "/api/v1/adjustment-policy", {"approval_above": 100}),
    ("PUT", "/api/v1/fraud-rules", {"card-many-stores": {"minutes": 5, "hold": True},
                                    "cashier-unusual": {"factor_percent": 250}}),
    ("PUT", "/api/v1/product-costs", {"costs": [{"sku": "a", "cost": 100}]}),
    # Last: it takes the customer's card away from the lookups above.
    ("POST", "/api/v1/customers/{customer}/erase", {"actor": "dpo", "reason": "asked"}),
]


@pytest.mark.parametrize(("method", "path", "base"), OFFICE, ids=[f"{m} {p}" for m, p, _ in
                                                                  OFFICE])
def test_head_office_api(central: Central, method: str, path: str, base: dict) -> None:
    url = path.format(customer=central.customer, till=central.till.till_id, campaign="base")

    @FUZZ
    @given(where=new_field(base), value=HOSTILE)
    def one(where: tuple, value: Any) -> None:
        judged(central.office(method, url, put(base, where, value)), where, value)

    one()


def test_head_office_ruleset(central: Central) -> None:
    doc = central.office("GET", "/api/v1/ruleset").json()["doc"]
    base = {"doc": doc, "actor": "marketing"}
    # The central numbers versions itself: the doc's own "version" is not read.
    paths = [p for p in fields_of(base) if len(p) <= 4 and p != ("doc", "version")]

    @FUZZ
    @given(where=st.sampled_from(paths), value=HOSTILE)
    def one(where: tuple, value: Any) -> None:
        judged(central.office("PUT", "/api/v1/ruleset", put(base, where, value)), where, value)

    one()


QUERIES = [("/api/v1/alerts", ("limit", "before", "acked", "kind")),
           ("/api/v1/audit", ("limit", "before", "since", "until", "actor", "subject")),
           ("/api/v1/approvals", ("limit", "status", "after")),
           ("/api/v1/campaigns", ("limit", "cursor", "status", "kind", "store", "channel", "q",
                                  "active_at")),
           ("/api/v1/fraud-hits", ("limit", "before", "rule", "verdict")),
           ("/api/v1/product-costs", ("after", "limit")),
           ("/api/v1/campaigns/base/roi?to=2026-11-30", ("from",)),
           ("/api/v1/campaigns/base/roi?from=2026-11-01", ("to",)),
           ("/sync/v1/customers", ("since",)),
           ("/sync/v1/position", ("epoch", "from", "to"))]


@pytest.mark.parametrize(("path", "names"), QUERIES, ids=[p for p, _ in QUERIES])
def test_query_strings(central: Central, path: str, names: tuple[str, ...]) -> None:
    from urllib.parse import quote

    @FUZZ
    @given(name=st.sampled_from(names), value=WEIRD_TEXT | st.integers().map(str))
    def one(name: str, value: str) -> None:
        qs = (f"{path}{'&' if '?' in path else '?'}{name}="
              f"{quote(value.encode('utf-8', 'surrogatepass'))}")
        if name != "epoch" and path == "/sync/v1/position":
            qs += "&epoch=e"
        answer = (central.office("GET", qs) if path.startswith("/api/")
                  else central.signed("GET", qs))
        judged(answer, (name,), value)

    one()


def test_sync_enrolment(central: Central) -> None:
    base = TestTill().enrolment("not-a-token") | {"name": "till 2"}

    @FUZZ
    @given(where=new_field(base), value=HOSTILE)
    def one(where: tuple, value: Any) -> None:
        judged(central.server.send_json("POST", "/sync/v1/enroll", put(base, where, value)),
               where, value)

    one()


def test_sync_return_reserve(central: Central) -> None:
    base = {"receipt_id": central.receipt_id, "lines": {"0": 1000}}

    @FUZZ
    @given(where=st.one_of(new_field(base), st.just(("lines", "١")), st.just(("lines", "99"))),
           value=HOSTILE)
    def one(where: tuple, value: Any) -> None:
        answer = central.signed("POST", "/sync/v1/returns/reserve", put(base, where, value))
        judged(answer, where, value)
        if answer.status == 200:  # a lease taken: give it back for the next example
            central.signed("POST", "/sync/v1/returns/release", {"lease": answer.json()["lease"]})

    one()


@pytest.mark.parametrize(("path", "base"), [
    ("/sync/v1/reports", {"kind": "typed-card-limit", "count": 1, "misses": 0}),
    ("/sync/v1/presence/sms/check", {"challenge": "0" * 32, "code": "123456"}),
    ("/sync/v1/cards/relink", {"challenge": "0" * 32, "token": "ct_" + "0" * 32,
                               "key_version": 1, "last4": "0019"}),
])
def test_sync_reports_sms_checks_and_card_relinks(central: Central, path: str, base: dict) -> None:
    @FUZZ
    @given(where=new_field(base), value=HOSTILE)
    def one(where: tuple, value: Any) -> None:
        judged(central.signed("POST", path, put(base, where, value)), where, value)

    one()


ENTRY_FIELDS = ("seq", "epoch", "prev_hash", "kind", "receipt_id", "at", "store",
                "customer_id", "ruleset_version", "total", "fiscal_doc", "earned",
                "redeemed", "clawback", "refund", "original_receipt_id", "lots", "detail",
                "cashier", "presence", "hash", "unknown")
def packable(value: Any) -> bool:
    try:
        msgpack.packb(value, use_bin_type=True)
    except (OverflowError, TypeError, ValueError):
        return False  # beyond what msgpack can carry: no till could send it
    return True


MSGPACK_HOSTILE = st.one_of(
    HOSTILE,
    st.binary(max_size=20),
    st.lists(st.dictionaries(st.sampled_from(["points", "activates", "expires", "x"]),
                             st.one_of(st.integers(-(2**63), 2**64 - 1),
                                       st.text(max_size=30)),
                             max_size=4), max_size=3),
    st.dictionaries(st.sampled_from(["lines", "lease", "settlement", "customer", "return",
                                     "method", "tokens", "step", "code", "challenge"]),
                    st.one_of(st.none(), st.integers(), st.text(max_size=5),
                              st.dictionaries(st.text(max_size=3), st.integers(), max_size=3),
                              st.lists(st.integers(), max_size=3)),
                    max_size=3),
).filter(packable)


def test_sync_batches(central: Central) -> None:
    """Each example in an epoch of its own, so an accepted entry leaves no chain to follow."""

    @FUZZ
    @given(kind=st.sampled_from(["sale", "return"]), name=st.sampled_from(ENTRY_FIELDS),
           value=MSGPACK_HOSTILE)
    def one(kind: str, name: str, value: Any) -> None:
        epoch = uuid.uuid4().hex
        entry = {"seq": 1, "epoch": epoch, "prev_hash": genesis_hash(epoch), "kind": kind,
                 "receipt_id": uuid.uuid4().hex, "at": datetime.now(UTC).isoformat(),
                 "store": "s1", "customer_id": central.customer, "ruleset_version": 1,
                 "total": 100, "fiscal_doc": 1, "earned": 0, "redeemed": 0, "clawback": 0,
                 "refund": 0,
                 "original_receipt_id": central.receipt_id if kind == "return" else None,
                 "lots": [], "detail": {"lines": {"0": 1}} if kind == "return" else {}}
        entry[name] = value
        raw = msgpack.packb(dict(sorted(entry.items())), use_bin_type=True)
        judged(central.batch([raw], epoch), (name,), value)

    one()


# -- the POS API ----------------------------------------------------------------------------

class Pos:
    def __init__(self, tmp: Path) -> None:
        self.rig: Rig | None = None

        async def build():
            self.rig = Rig(tmp)
            self.rig.add_customer("c1", "2990000000012", available=10_000)
            app = self.rig.app()
            # Typed card numbers are limited per minute (429): lifted here, so that every
            # example reaches the checks behind the limit.
            app[TILL].typed_limit = TypedLimit(per_minute=1_000_000)
            return app

        self.server = ServerThread(build).start()
        assert self.rig is not None
        self.headers = {**self.rig.auth, "Host": f"127.0.0.1:{self.server.port}"}

    def post(self, path: str, body: Any) -> Answer:
        return self.server.send_json("POST", path, body, self.headers)


@pytest.fixture(scope="module")
def pos(tmp_path_factory) -> Iterator[Pos]:
    p = Pos(tmp_path_factory.mktemp("fuzz-pos"))
    yield p
    assert p.rig is not None
    p.server.call(_close(p.rig))  # its connection belongs to the server's thread
    p.server.stop()


async def _close(rig: Rig) -> None:
    rig.db.close()


LINE = {"sku": "S1", "name": "Socks", "qty": 1000, "price": 45000, "category": "sports",
        "brand": "b", "flags": ["x"], "vat": "22"}
RECEIPT = {"lines": [LINE], "customer_id": "c1", "redeem": 0,
           "payments": {"cash": 40000, "cards": [{"amount": 5000, "rrn": "1", "approval_code":
                                                  "A", "terminal_id": "T"}]}}
POS = [
    ("/pos/v1/price", {"lines": [LINE], "customer_id": "c1"}, ""),
    ("/pos/v1/receipts", {**RECEIPT, "payments": None}, ""),
    # The split must add up to what the lines come to: fuzzed with the lines left alone.
    ("/pos/v1/receipts", RECEIPT, "payments"),
    ("/pos/v1/identify", {"card_number": "2990000000012"}, ""),
    ("/pos/v1/returns", {"receipt_id": "r1", "lines": [{"line": 0, "qty": 1000}]}, ""),
    # A wrong code is refused naming the code; past the tries, 429 (agent.presence).
    ("/pos/v1/presence/code", {"customer_id": "c1", "code": "000000"}, "code"),
    ("/pos/v1/presence/code", {"customer_id": "c1", "code": "000000"}, "customer_id"),
]


@pytest.mark.parametrize(("path", "base", "only"), POS,
                         ids=[f"{p} {o}".strip() for p, _, o in POS])
def test_pos_api(pos: Pos, path: str, base: dict, only: str) -> None:
    paths = [p for p in fields_of(base) if p[0] == only] if only else None

    @FUZZ
    @given(where=st.sampled_from(paths) if paths else new_field(base), value=HOSTILE)
    def one(where: tuple, value: Any) -> None:
        judged(pos.post(path, put(base, where, value)), where, value)

    one()
    assert pos.rig is not None
    pending = pos.server.request("GET", "/pos/v1/pending", headers=pos.headers).json()
    assert pending["pending"] == []  # nothing refused was left half-done
