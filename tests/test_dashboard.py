"""The head-office dashboard (/dashboard) in a headless Chromium, against a central running as
a real aiohttp server, with a small store whose receipts went through signed sync batches.

Every number the page shows is compared with one worked out by hand below; the charts are
our own SVG, counted by their bars and points."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent import journal
from central import (
    alerts,
    campaign_budgets,
    campaign_figures,
    customers,
    dashboard,
    fraud_hits,
    kpi_counts,
    rulesets,
    staff,
)
from central.clock import utcnow
from central.db import Connection, transaction
from central.roles import ROLES
from protocol import rules
from protocol.journal import JournalEntry, new_receipt_id
from protocol.rules import default_ruleset_doc
from tests.campaign_sales import line
from tests.sync_fixtures import LocalTill, enrol, live_central

__all__ = ["live_central"]

SPORTS = {"id": "sports", "name": "Sports <b>10%</b>", "lines": {"categories": ["sports"]},
          "effect": {"type": "percent", "percent": 10}, "budget": {"total": 1000},
          "status": "live"}
HOSTILE = '<img src=x onerror="window.pwned=1">'


def utc(day: int, hour: int = 9) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=UTC)  # 12:00 in Moscow


def token_for(central, role: str, name: str) -> str:
    _, tok = staff.add(central.db, central.secrets.staff_token_key, name, role, "test",
                       utcnow())
    return tok


def sell(till: LocalTill, conn: Connection, lines: tuple[rules.ReceiptLine, ...],
         customer: rules.Customer | None, at: datetime, redeem: int = 0) -> JournalEntry:
    """A sale priced by the rules engine with the newest rule set, journalled as checkout
    journals it (paid money, earned lots, the settlement in the detail), sent signed."""
    current = rulesets.current(conn)
    s = rules.settle(rules.compile_ruleset(current.doc), rules.Receipt(lines, store="msk"),
                     customer, at, redeem=redeem)
    lots = [{"points": s.earned, "activates": at.isoformat(),
             "expires": "9999-12-31T00:00:00+00:00"}] if s.earned else []
    with till.db.atomic():
        return journal.append(till.db, JournalEntry(
            seq=0, epoch="", prev_hash="", kind="sale", receipt_id=new_receipt_id(at),
            at=at.isoformat(timespec="seconds"), store="msk",
            customer_id=customer.id if customer else None,
            ruleset_version=current.version, total=s.paid_money, fiscal_doc=0,
            earned=s.earned, redeemed=s.redeemed, lots=lots,
            detail={"settlement": s.to_dict(),
                    "lines": [{"sku": ln.sku, "name": ln.sku, "qty": ln.qty,
                               "price": ln.price, "category": ln.category}
                              for ln in lines]}))


async def small_store(central, tmp_path: Path) -> tuple[LocalTill, dict[str, str]]:
    """One Moscow store (UTC+3, region "central"), 1-5 November 2026:

    2 Nov  Ann  sports 100.00 -> pays 100.00, earns 5 base + 10 sports = 15
           Bob  food    80.00 -> pays  80.00, earns 4 (5 % of 80.00)
           anon food    50.00
    3 Nov  Ann  food    40.00, redeems 10 points (10.00) -> pays 30.00, earns 1 (5 % of 30.00)
           anon 30.00, anon 20.00
    4 Nov  Bob  sports 100.00 -> earns 15; anon brings back 10.00 of the 30.00 receipt
    """
    doc = default_ruleset_doc()
    doc["stores"] = {"msk": {"time_zone": "Europe/Moscow", "region": "central"}}
    rulesets.publish(central.db, doc, "test", utcnow())
    resp = await central.post("/api/v1/campaigns", headers=central.admin, json=SPORTS)
    assert resp.status == 201, await resp.text()
    keys = central.secrets.card_keys
    ann = customers.create(central.db, keys, utcnow(), card_number="2990000000019",
                           name=HOSTILE)["id"]
    bob = customers.create(central.db, keys, utcnow(), card_number="2990000000026",
                           name="Bob")["id"]
    customers.adjust(central.db, ann, 100, "test", "welcome", utcnow())
    till = LocalTill(await enrol(central, "msk"), tmp_path / "msk.db")
    sports = (line("ball", "sports", 100_00),)
    sell(till, central.db, sports, rules.Customer(id=ann), utc(2))
    sell(till, central.db, (line("milk", "food", 50_00), line("bread", "food", 30_00)),
         rules.Customer(id=bob), utc(2, 10))
    sell(till, central.db, (line("milk", "food", 50_00),), None, utc(2, 11))
    assert await till.sync.push() == 3  # the first signed batch
    sell(till, central.db, (line("milk", "food", 40_00),), rules.Customer(id=ann, balance=100),
         utc(3), redeem=10)
    thirty = sell(till, central.db, (line("tea", "food", 30_00),), None, utc(3, 10))
    sell(till, central.db, (line("jam", "food", 20_00),), None, utc(3, 11))
    assert await till.sync.push() == 6  # the second (the highest sequence held)
    sell(till, central.db, sports, rules.Customer(id=bob), utc(4))
    till.take_back(thirty, at=utc(4, 10), total=10_00)
    assert await till.sync.push() == 8  # the third
    # The followers, by hand (the test central runs none): KPIs, campaign figures, budgets.
    while kpi_counts.count_pending(central.db):
        pass
    while campaign_figures.count_pending(central.db):
        pass
    while campaign_budgets.account_pending(central.db):
        pass
    kpi_counts.snapshot_points(central.db, utcnow())
    alerts.raise_alert(central.db, utcnow(), "till-silent", "till msk-1 silent <i>2 h</i>",
                       till_id="msk-1")
    with transaction(central.db):
        fraud_hits.record(central.db, utcnow(), "card-many-stores", "dedup-1", f"card:{bob}",
                          "one card in 2 stores in 5 minutes",
                          {"stores": ["msk", "<script>window.pwned=2</script>"]},
                          customer_id=bob)
    return till, {"ann": ann, "bob": bob}


async def open_dashboard(page, central) -> None:
    await page.goto(str(central.server.make_url("/dashboard")))


async def sign_in(page, central, token: str) -> None:
    await open_dashboard(page, central)
    await page.fill("#token", token)
    await page.click("#sign-in-button")
    await page.wait_for_selector("body[data-state='signed-in']")


async def show_period(page, start: str, end: str, by: str = "day", **where: str) -> None:
    await page.fill("#from", start)
    await page.fill("#to", end)
    await page.select_option("#by", by)
    for name in ("store", "region"):
        await page.fill(f"#{name}", where.get(name, ""))
    await page.click("#show")
    await page.wait_for_function(
        "([s, e]) => document.getElementById('kpis').dataset.loaded === 'true'"
        " && document.getElementById('kpi-period').textContent.startsWith(s + ' to ' + e)",
        arg=[start, end])


async def figure(page, path: str) -> str:
    return (await page.text_content(f"[data-figure='{path}']")).strip()


async def count(page, selector: str) -> int:
    return await page.locator(selector).count()


async def values(page, chart: str, series: str, shape: str) -> list[str]:
    sel = f"[data-chart='{chart}'] [data-series='{series}'] {shape}"
    return await page.eval_on_selector_all(
        sel, "els => els.map(e => e.dataset.label.slice(5) + '=' + e.dataset.value)")


async def test_the_dashboard_shows_the_store_figures_worked_out_by_hand(
        live_central, tmp_path, browser_page):
    page = browser_page
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    till, people = await small_store(live_central, tmp_path)
    try:
        await page.set_viewport_size({"width": 1280, "height": 900})
        await sign_in(page, live_central, live_central.secrets.admin_token)
        assert await page.text_content("#who-role") == "admin"
        await show_period(page, "2026-11-01", "2026-11-05")

        # Members: 4 sales, 100.00 + 80.00 + 30.00 + 100.00 = 310.00;
        # others: 3 sales, 50.00 + 30.00 + 20.00 = 100.00, and one return of 10.00.
        assert await figure(page, "receipts.members.sales") == "4"
        assert await figure(page, "receipts.others.sales") == "3"
        assert await figure(page, "receipts.members.revenue") == "310.00 ₽"
        assert await figure(page, "receipts.others.revenue") == "100.00 ₽"
        assert await figure(page, "receipts.others.returns") == "1"
        assert await figure(page, "receipts.others.returned") == "10.00 ₽"
        # Participation: 4 of 7 receipts = 57.142...%, 310 of 410 = 75.609...% (cut, not
        # rounded, as the API's basis points are).
        assert await figure(page, "participation.receipts_bp") == "57.14 %"
        assert await figure(page, "participation.revenue_bp") == "75.60 %"
        # Average receipt: 310.00 / 4 = 77.50; 100.00 / 3 = 33.333...
        assert await figure(page, "average_receipt.members_kopecks") == "77.50 ₽"
        assert await figure(page, "average_receipt.others_kopecks") == "33.33 ₽"
        # Points on the receipts: 15 + 4 + 1 + 15 issued, 10 redeemed.
        assert await figure(page, "points_flow.earned") == "35 pts"
        assert await figure(page, "points_flow.redeemed") == "10 pts"
        assert await figure(page, "points_flow.clawback") == "0 pts"
        # Ann and Bob bought: 4 receipts / 2 members.
        assert await figure(page, "members.buying") == "2"
        assert await figure(page, "frequency.receipts_per_member_milli") == "2.00"
        # Outstanding: 100 welcome + 35 earned - 10 redeemed = 125 points at 1.00 each;
        # nothing expired, so no breakage.
        assert await figure(page, "liability.outstanding") == "125 pts"
        assert await figure(page, "liability.kopecks") == "125.00 ₽"
        assert await figure(page, "liability.breakage_bp") == "0.00 %"

        # Both first bought in November: one cohort of two, both buying in it.
        assert await page.text_content("tr[data-cohort='2026-11'] [data-field='size']") == "2"
        assert await page.text_content("tr[data-cohort='2026-11'] [data-month='2026-11']") == (
            "2026-11: 2 (100.00 %)")
        # Each figure with its definition beside it, as the KPI report words it.
        card = page.locator("[data-card='participation'] .definition")
        assert "basis points" in await card.text_content()
        assert await count(page, "#kpi-cards .card") == await count(
            page, "#kpi-cards .card .definition")

        # The charts: five days, two series each.
        assert await values(page, "receipts", "members", "rect.bar") == [
            "11-01=0", "11-02=2", "11-03=1", "11-04=1", "11-05=0"]
        assert await values(page, "receipts", "non-members", "rect.bar") == [
            "11-01=0", "11-02=1", "11-03=2", "11-04=0", "11-05=0"]
        assert await values(page, "points", "issued", "rect.bar") == [
            "11-01=0", "11-02=19", "11-03=1", "11-04=15", "11-05=0"]
        assert await values(page, "points", "redeemed", "rect.bar") == [
            "11-01=0", "11-02=0", "11-03=10", "11-04=0", "11-05=0"]
        # A day without receipts has no share and no average: no point, a gap in the line.
        # 2 Nov 2 of 3 receipts, 3 Nov 1 of 3, 4 Nov 1 of 1.
        assert await values(page, "participation", "of receipts", "circle.point") == [
            "11-02=6666", "11-03=3333", "11-04=10000"]
        assert await values(page, "average-receipt", "members", "circle.point") == [
            "11-02=9000", "11-03=3000", "11-04=10000"]
        assert await values(page, "average-receipt", "non-members", "circle.point") == [
            "11-02=5000", "11-03=2500"]
        assert await count(page, "[data-chart] svg") == 4
        assert await count(page, "[data-chart='receipts'] rect.bar") == 10
        bar = page.locator("[data-chart='receipts'] [data-series='members'] rect.bar").nth(1)
        assert float(await bar.get_attribute("height")) > 0

        # By month: November is one bucket with the period's figures.
        await show_period(page, "2026-11-01", "2026-11-30", by="month")
        assert await values(page, "receipts", "members", "rect.bar") == ["11=4"]
        assert await figure(page, "receipts.members.sales") == "4"

        # The campaign and what it gave: Ann's and Bob's balls, 10 points each.
        await page.wait_for_selector("#campaigns[data-loaded='true']")
        row = page.locator("tr[data-campaign='sports']")
        assert await row.locator("[data-field='receipts']").text_content() == "2"
        assert await row.locator("[data-field='points']").text_content() == "20 pts"
        assert await row.locator("[data-field='discount']").text_content() == "0.00 ₽"
        assert await row.locator("[data-field='budget']").text_content() == (
            "980 of 1 000 pts")
        assert await row.locator("[data-field='roi']").text_content() == (
            "ROI: not available (no cost feed)")
        assert await row.locator(".name").text_content() == "Sports <b>10%</b>"  # as text

        # Alerts (the fraud hit raised one too) and the fraud hit with its evidence.
        await page.wait_for_selector("#alerts[data-loaded='true']")
        messages = await page.eval_on_selector_all(
            "#alert-table tbody tr td:nth-child(5)", "els => els.map(e => e.textContent)")
        assert "till msk-1 silent <i>2 h</i>" in messages
        assert any(m.startswith("fraud hit") for m in messages)
        await page.wait_for_selector("#fraud[data-loaded='true']")
        evidence = await page.text_content("#fraud-table td.evidence")
        assert "<script>window.pwned=2</script>" in evidence

        # The customer lookup by card number: the hostile name stays text.
        await page.fill("#lookup-card", "2990000000019")
        await page.click("#lookup-button")
        await page.wait_for_selector("#customer:not([hidden])")
        assert await page.text_content("#customer [data-field='name']") == HOSTILE
        assert await page.text_content("#customer [data-field='points available']") == (
            "90 pts")  # 100 welcome - 10 redeemed; what was earned is still pending
        assert await page.input_value("#lookup-card") == ""
        await page.fill("#lookup-id", "nobody")
        await page.click("#lookup-button")
        await page.wait_for_selector("#lookup-error:not([hidden])")
        assert await page.text_content("#lookup-error") == "No such customer."
        assert await page.evaluate("window.pwned") is None
        assert await count(page, "main img, main script, main b, main i") == 0

        await page.fill("#lookup-card", "")
        await page.fill("#lookup-id", people["ann"])
        await page.click("#lookup-button")
        await page.wait_for_selector("#customer:not([hidden])")
        shot = tmp_path / "dashboard.png"
        await show_period(page, "2026-11-01", "2026-11-05")
        await page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        shutil.copy(shot, "/tmp/dashboard.png")
        # Nothing the policy blocked, no script error; only the 404 of "nobody" above.
        assert [p for p in problems if "404" not in p] == [], problems
    finally:
        await till.close()

    # Each lookup was recorded in the audit log under the admin's account.
    resp = await live_central.get("/api/v1/audit", params={"action": "customer.lookup"},
                                  headers=live_central.admin)
    body = await resp.json()
    assert [r["actor"] for r in body["records"]] == ["admin-token"], body


async def test_without_a_token_the_page_asks_for_one_and_refuses_a_wrong_one(
        live_central, browser_page):
    page = browser_page
    await open_dashboard(page, live_central)
    await page.wait_for_selector("body[data-state='signed-out']")
    assert await page.is_visible("#sign-in-form")
    assert not await page.is_visible("#board")
    await page.fill("#token", "st_0000000000:wrong")
    await page.click("#sign-in-button")
    await page.wait_for_selector("#sign-in-error:not([hidden])")
    assert "refused" in await page.text_content("#sign-in-error")
    assert not await page.is_visible("#board")
    assert await page.evaluate("sessionStorage.length") == 0
    assert "wrong" not in page.url  # the token went nowhere near the address bar
    await page.click("#sign-in-button")  # empty: the form itself asks for one
    assert await page.evaluate("document.getElementById('token').validity.valueMissing")

    # A right one signs in; the tab keeps it across a reload; signing out forgets it.
    tok = token_for(live_central, "analyst", "Ivan")
    await page.fill("#token", tok)
    await page.click("#sign-in-button")
    await page.wait_for_selector("body[data-state='signed-in']")
    assert tok not in page.url
    await page.reload()
    await page.wait_for_selector("body[data-state='signed-in']")
    assert await page.text_content("#who-name") == "Ivan"
    await page.click("#sign-out")
    assert await page.evaluate("sessionStorage.length") == 0
    assert await page.is_visible("#sign-in-form") and not await page.is_visible("#board")


async def test_the_policy_refuses_html_from_script_and_a_revoked_token_signs_out(
        live_central, browser_page):
    page = browser_page
    account, tok = staff.add(live_central.db, live_central.secrets.staff_token_key, "Ivan",
                             "analyst", "test", utcnow())
    await sign_in(page, live_central, tok)
    # Trusted Types: a string given to innerHTML throws, so data can never become markup.
    said = await page.evaluate("""() => {
        try { document.body.innerHTML = '<b>x</b>'; return 'assigned'; }
        catch (e) { return e.name; } }""")
    assert said == "TypeError"
    staff.revoke(live_central.db, account.id, "test", utcnow())
    # The next request signs the page out: ours, or one of the sections still loading
    # after sign-in (which may get there first and hide the button).
    await page.evaluate("""() => { if (document.body.dataset.state !== 'signed-out')
        document.getElementById('show').click(); }""")
    await page.wait_for_selector("body[data-state='signed-out']")
    assert "sign in again" in await page.text_content("#sign-in-error")
    assert await page.evaluate("sessionStorage.length") == 0


async def test_alerts_page_on_to_older_ones(live_central, browser_page):
    page = browser_page
    for i in range(25):
        alerts.raise_alert(live_central.db, utcnow(), "test", f"alert number {i}")
    await sign_in(page, live_central, live_central.secrets.admin_token)
    await page.wait_for_selector("#alerts[data-loaded='true']")
    assert await count(page, "#alert-table tbody tr") == 20  # newest first: 24 down to 5
    assert await page.text_content("#alert-table tbody tr td:nth-child(5)") == (
        "alert number 24")
    await page.click("#alerts-more")
    await page.wait_for_function(
        "() => document.querySelectorAll('#alert-table tbody tr').length === 25")
    assert await page.text_content("#alert-table tbody tr:last-child td:nth-child(5)") == (
        "alert number 0")
    assert not await page.is_visible("#alerts-more")
    # No fraud hits yet: the section says so.
    await page.wait_for_selector("#fraud[data-loaded='true']")
    assert await page.text_content("#fraud-table tbody") == "None."


async def test_an_analyst_sees_the_kpis_but_not_the_customer_lookup(
        live_central, tmp_path, browser_page):
    page = browser_page
    till, _ = await small_store(live_central, tmp_path)
    try:
        await sign_in(page, live_central, token_for(live_central, "analyst", "Ivan"))
        await show_period(page, "2026-11-01", "2026-11-05")
        assert await figure(page, "participation.receipts_bp") == "57.14 %"
        assert await count(page, "[data-chart='receipts'] rect.bar") == 10
        await page.wait_for_selector("#campaigns[data-loaded='true']")
        assert await page.is_visible("tr[data-campaign='sports']")
        for hidden in ("#customers", "#alerts", "#fraud"):
            assert not await page.is_visible(hidden), hidden
        assert not await page.is_visible("#lookup-card")
        # A support person is the other way round: the lookup, no KPIs.
        await page.click("#sign-out")
        await sign_in(page, live_central, token_for(live_central, "support", "Olga"))
        assert await page.is_visible("#lookup-card")
        assert not await page.is_visible("#kpis")
    finally:
        await till.close()


async def test_the_period_refused_by_the_api_says_which_field(live_central, browser_page):
    page = browser_page
    await sign_in(page, live_central, live_central.secrets.admin_token)
    await page.fill("#from", "2026-11-01")
    await page.fill("#to", "2026-11-05")
    await page.fill("#region", "atlantis")
    await page.click("#show")
    await page.wait_for_selector("#period-error:not([hidden])")
    assert "'region'" in await page.text_content("#period-error")
    await page.fill("#region", "")
    await page.fill("#to", "2027-02-01")
    await page.click("#show")  # more days than a day chart holds: the page says so itself
    await page.wait_for_function(
        "() => document.getElementById('period-error').textContent.includes('by month')")


async def test_the_page_is_static_and_locked_down(live_central):
    resp = await live_central.get("/dashboard")
    assert resp.status == 200 and resp.content_type == "text/html"
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "unsafe" not in csp
    assert "require-trusted-types-for 'script'" in csp and "form-action 'none'" in csp
    assert resp.headers["X-Frame-Options"] == "DENY"
    html = await resp.text()
    # No inline script, nothing fetched from elsewhere (works with no internet).
    assert re.findall(r"<script(?![^>]*\bsrc=)", html) == []
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    for name, kind in dashboard.FILES.items():
        resp = await live_central.get(f"/dashboard/{name}")
        assert resp.status == 200 and resp.content_type == kind
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        text = (await resp.text()).replace("http://www.w3.org/2000/svg", "")  # a name
        assert "http://" not in text and "https://" not in text
    script = await (await live_central.get("/dashboard/dashboard.js")).text()
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script
    for path in ("/dashboard/index.html", "/dashboard/..%2Fdashboard.py",
                 "/dashboard/nothing.js"):
        assert (await live_central.get(path)).status == 404, path
    # The token never rides in a URL: the page reads it only from its own storage.
    assert "location.search" not in script and "location.hash" not in script


@pytest.mark.parametrize("role", ROLES)
async def test_the_sections_a_role_sees_are_those_its_routes_admit(live_central, role):
    tok = token_for(live_central, role, f"{role} person")
    resp = await live_central.get("/api/v1/dashboard",
                                  headers={"Authorization": f"Bearer {tok}"})
    assert resp.status == 200
    body = await resp.json()
    assert body["account"]["role"] == role and "token" not in str(body)
    expected = {
        "admin": {"kpis", "campaigns", "alerts", "fraud_hits", "customers"},
        "marketing": {"kpis", "campaigns"},
        "analyst": {"kpis", "campaigns"},
        "support": {"campaigns", "customers"},
        "security": {"kpis", "campaigns", "alerts", "fraud_hits", "customers"},
        "auditor": {"kpis", "campaigns", "alerts", "fraud_hits"},
    }[role]
    assert {k for k, v in body["sections"].items() if v} == expected
    assert set(body["sections"]) == set(dashboard.SECTIONS)


async def test_sections_without_a_valid_token_are_refused(live_central):
    assert (await live_central.get("/api/v1/dashboard")).status == 401
    resp = await live_central.get("/api/v1/dashboard",
                                  headers={"Authorization": "Bearer nope"})
    assert resp.status == 401


def test_a_section_whose_route_is_gone_is_shown_to_nobody():
    from aiohttp import web

    from central import api_kpis

    app = web.Application()
    app.router.add_routes(dashboard.routes)
    app.router.add_routes(api_kpis.routes)  # none of the others the sections read
    assert {r: [k for k, v in dashboard.readable(app, r).items() if v] for r in ROLES} == {
        "admin": ["kpis"], "marketing": ["kpis"], "analyst": ["kpis"], "support": [],
        "security": ["kpis"], "auditor": ["kpis"]}
