"""Typed card numbers cannot be guessed at the till's speed: a limit per till (429 with
Retry-After), misses answered from the till's cache past a budget of central lookups, and
one alert at the central for the guessing, not one per miss."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.card_lookup import TypedLimit
from agent.devices.reader import CardPresented
from agent.pos_api import TILL
from tests.pos_rig import Rig, RigCardKeys
from tillpoint.processes import wait_for
from tillpoint.store_harness import ApiError, StoreHarness


def ean13(n: int) -> str:
    body = f"2990001{n:05d}"
    check = (10 - sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body)) % 10) % 10
    return body + str(check)


class Ticks:
    """Monotonic seconds that the test moves."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
async def rig(aiohttp_client: Callable, tmp_path: Path):
    r = Rig(tmp_path)
    app = r.app()
    r.ticks = Ticks()
    app[TILL].typed_limit = TypedLimit(clock=r.ticks)
    r.client = await aiohttp_client(app)
    r.till = app[TILL]
    yield r
    r.db.close()


async def typed(rig: Rig, number: str):
    return await rig.client.post("/pos/v1/identify", json={"card_number": number},
                                 headers=rig.auth)


async def test_ten_typed_numbers_a_minute_then_429_with_retry_after(rig: Rig):
    known = rig.add_customer("c-1", ean13(1))
    for n in range(2, 12):
        assert (await typed(rig, ean13(n))).status == 404
        rig.ticks.t += 1
    resp = await typed(rig, ean13(1))  # even a real card: the till's typing is held back
    assert resp.status == 429
    assert 1 <= int(resp.headers["Retry-After"]) <= 60
    assert "present the card at the reader" in (await resp.json())["error"]
    assert rig.till.guessing.refused_total == 1
    assert int(resp.headers["Retry-After"]) == 50  # the first of the ten leaves the minute
    rig.ticks.t += 45
    assert (await typed(rig, ean13(1))).status == 429
    rig.ticks.t += 5  # a minute after the ten: typing again
    resp = await typed(rig, ean13(1))
    assert resp.status == 200 and (await resp.json())["customer_id"] == known


async def test_misses_ask_the_central_only_within_a_budget(rig: Rig):
    for n in range(10):
        assert (await typed(rig, ean13(100 + n))).status == 404
    # six pulls a minute at most; the rest of the misses the till's cache answered
    assert rig.refreshes == 6 and rig.till.refresher.asked == 6
    assert rig.till.guessing.misses == 10


async def test_a_card_at_the_reader_is_not_held_back_by_typing(rig: Rig):
    rig.add_customer("c-9", ean13(9))
    for n in range(20):
        await typed(rig, ean13(200 + n))
    token = RigCardKeys().tokens(ean13(9))[0][1]
    rig.last_card.presented(CardPresented((token,), "loyalty", "0000", time.monotonic()))
    resp = await rig.client.post("/pos/v1/identify", json={}, headers=rig.auth)
    assert resp.status == 200 and (await resp.json())["customer_id"] == "c-9"


async def test_guessing_makes_one_alert_at_the_central_whose_count_grows(store: StoreHarness):
    till = store.tills[0]
    statuses = []
    for n in range(25):
        try:
            await store.pos(till, "POST", "/pos/v1/identify", {"card_number": ean13(300 + n)})
        except ApiError as e:
            statuses.append(e.status)
    assert statuses == [404] * 10 + [429] * 15

    async def alerts(count: int):
        page = await store.office("GET", f"/api/v1/alerts?kind=typed-card-limit"
                                         f"&till_id={till.till_id}")
        total = sum(a["count"] for a in page["alerts"])
        return page["alerts"] if total == count else None

    one = await wait_for(lambda: alerts(15), "the till's report to reach the central", 30)
    assert len(one) == 1 and one[0]["severity"] == "critical"
    for n in range(5):
        with pytest.raises(ApiError) as e:
            await store.pos(till, "POST", "/pos/v1/identify", {"card_number": ean13(400 + n)})
        assert e.value.status == 429
    again = await wait_for(lambda: alerts(20), "the second report", 30)
    assert [a["id"] for a in again] == [one[0]["id"]]  # the same alert, counted on
    status = await store.pos(till, "GET", "/pos/v1/status")
    assert status["identify"]["typed_refused"] == 20
    assert status["identify"]["central_lookups"] <= 6
