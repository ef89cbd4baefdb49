"""The customer's account page in headless Chromium (tests/browser.py), against a central
served by a real aiohttp server: sign in with the code the development sender wrote, see
the balance the test set up, activate an offer, and find it activated in the central."""

from __future__ import annotations

from datetime import timedelta

from central import customers, ledger, repricing
from central.app import make_app
from central.message_channels import Channels, LogChannel
from central.web_common import DB, SECRETS
from tests.test_account import ANNA, customer, publish_offers
from tests.test_central_sync_api import enrolled_till, send
from tests.test_till_takeover import pull, sale, sent_view


async def test_sign_in_see_the_balance_and_activate_an_offer(aiohttp_server, aiohttp_client,
                                                             browser_page, tmp_path, clock):
    sms, email = LogChannel("sms"), LogChannel("email")
    app = make_app(tmp_path / "central", clock, reprice_every=None,
                   channels=Channels(sms=sms, email=email))
    server = await aiohttp_server(app)
    central = await aiohttp_client(server)
    central.db, central.admin = app[DB], {"Authorization": f"Bearer {app[SECRETS].admin_token}"}

    till = await enrolled_till(central)
    cid = await customer(central, **ANNA)  # 100 welcome points
    now = clock()
    with central.db.transaction():
        ledger.earn(central.db, cid, 40, now - timedelta(days=300), now + timedelta(days=10),
                    now, ledger.Source(actor="test", reason="old lot"))
    settled = sale(till, central, sent_view(await pull(central, till, clock), cid))
    assert (await send(central, till.batch())).status == 200
    repricing.reprice_pending(central.db, clock())
    await publish_offers(central)  # after the sale, which the till priced by version 1

    page = browser_page
    # Script errors and policy violations (CSP, Trusted Types); a refused fetch (the wrong
    # code's 422) is logged by Chromium too, and is expected.
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error"
            and not m.text.startswith("Failed to load resource") else None)
    await page.goto(str(server.make_url("/account")))
    await page.fill("#contact", "+7 999 000-00-01")
    await page.click("#send-code")
    await page.wait_for_selector("#code-form", state="visible")
    [message] = list(sms.sent)
    assert message.to == ANNA["phone"]
    wrong = f"{(int(message.body[:6]) + 1) % 10**6:06d}"
    await page.fill("#code", wrong)
    await page.click("#check-code")
    await page.wait_for_selector("#notice.error")
    assert "4 tries left" in (await page.text_content("#notice") or "")
    await page.fill("#code", message.body[:6])
    await page.click("#check-code")
    await page.wait_for_selector("body[data-loaded=yes]")

    assert await page.text_content("#who") == "Anna Petrova"
    assert await page.text_content("#available") == "140"
    assert await page.text_content("#pending") == str(settled.earned)
    assert await page.text_content("#expiring") == "40"
    assert await page.text_content("#debt") == "0"
    assert await page.text_content("#pending-lots") == f"{settled.earned} points from 2026-12-08"
    assert "Socks × 3: 450.00" in (await page.text_content("#receipts") or "")
    # the session cookie is HttpOnly: the page's script cannot read it
    assert await page.evaluate("document.cookie") == ""

    await page.click("li[data-offer='perfume-x3'] button")
    await page.wait_for_selector("li[data-offer='perfume-x3'] .activated")
    assert customers.read(central.db, cid)["offers"] == ["perfume-x3"]
    actors = [r["actor"] for r in central.db.execute(
        "SELECT actor FROM audit WHERE action = 'customer.offer.activate'")]
    assert actors == [f"customer:{cid}"]

    # a new e-mail address, saved once the code sent to it is typed back
    await page.fill("#email", "anna@example.org")
    await page.click("#contacts-form button[type=submit]")
    await page.wait_for_selector("#email-code-form", state="visible")
    [confirmation] = list(email.sent)
    assert confirmation.to == "anna@example.org"
    await page.fill("#email-code", confirmation.body[:6])
    await page.click("#email-code-form button[type=submit]")
    await page.wait_for_selector("#email-code-form", state="hidden")
    assert await page.text_content("#notice") == "The new address is saved."
    contact = central.db.execute("SELECT email, source FROM message_contacts"
                                 " WHERE customer_id = ?", (cid,)).fetchone()
    assert (contact["email"], contact["source"]) == ("anna@example.org", "account")

    # signed out, the page asks to sign in again and the session is gone
    await page.click("#sign-out")
    await page.wait_for_selector("#contact-form", state="visible")
    await page.reload()
    await page.wait_for_selector("#contact-form", state="visible")
    assert await page.is_hidden("#account")
    assert problems == []
