"""The head-office API of messages (central.api_messages) on SQLite and PostgreSQL:
templates refused at save when they would not render, naming the field; saved ones used
when sending; settings, contacts and the outbox listing with its filters; all audited."""

from __future__ import annotations

import pytest

from central import messages, staff
from central.message_channels import Channels
from central.message_sender import Sender
from central.messages import Draft
from tests.message_rigs import FakeGateway, new_customer
from tests.test_messages import drain, gateway_at


def as_role(central, clock, role: str) -> dict[str, str]:
    _, tok = staff.add(central.db, central.secrets.staff_token_key, f"a {role}", role, "t",
                       clock())
    return {"Authorization": f"Bearer {tok}"}


TEMPLATE = {"kind": "expiring", "language": "en", "subject": "Hurry, ${name}",
            "body": "${points} points go on ${day}; $$5 off too."}


@pytest.mark.parametrize(("change", "says"), [
    ({"body": "${points} points for ${nobody}"}, "field 'body' names an unknown placeholder"
                                                 " ${nobody}"),
    ({"subject": "50$ off"}, "field 'subject' has a '$' that starts no placeholder"),
    ({"subject": ""}, "field 'subject' must not be empty"),
    ({"body": 5}, "field 'body' must be a string"),
    ({"kind": "spam"}, "field 'kind' must be one of"),
    ({"language": "xx"}, "field 'language' must be one of"),
    ({"kind": {}}, "field 'kind' must be one of"),  # unhashable: was a 500 (schemathesis)
    ({"language": ["ru"]}, "field 'language' must be one of"),
    ({"colour": "red"}, "field 'colour' is not part of a template"),
])
async def test_a_template_that_would_not_render_is_refused_at_save(central, clock, change,
                                                                   says):
    resp = await central.put("/api/v1/message-templates", headers=central.admin,
                             json={**TEMPLATE, **change})
    assert resp.status == 400
    assert says in (await resp.json())["error"]
    assert central.db.execute("SELECT COUNT(*) FROM message_templates").fetchone()[0] == 0


async def test_a_saved_template_is_audited_and_used_for_sending(central, clock,
                                                                aiohttp_server):
    marketing = as_role(central, clock, "marketing")
    resp = await central.put("/api/v1/message-templates", headers=marketing, json=TEMPLATE)
    assert resp.status == 200, await resp.text()
    listed = (await (await central.get("/api/v1/message-templates",
                                       headers=marketing)).json())["templates"]
    mine = [t for t in listed if (t["kind"], t["language"]) == ("expiring", "en")]
    assert mine[0]["body"] == TEMPLATE["body"] and mine[0]["purpose"] == "service"
    [record] = [r for r in (await (await central.get(
        "/api/v1/audit", headers=central.admin)).json())["records"]
        if r["action"] == "message-template.save"]
    assert record["subject"] == "message-template:expiring/en"
    assert record["after"]["body"] == TEMPLATE["body"]
    # A support account may read templates, not change them.
    support = as_role(central, clock, "support")
    assert (await central.put("/api/v1/message-templates", headers=support,
                              json=TEMPLATE)).status == 403

    gateway = FakeGateway()
    cid = new_customer(central.db, central.secrets.card_keys, clock(), name="Ann",
                       phone="+79001119999")
    resp = await central.put(f"/api/v1/message-contacts/{cid}", headers=support,
                             json={"language": "en", "source": "app"})
    assert resp.status == 200, await resp.text()
    messages.enqueue(central.db, Draft(f"expiring:{cid}:2026-11-30", "expiring", cid,
                                       "service", {"points": 35, "day": "2026-11-30",
                                                   "days": 7}), clock())
    await drain(Sender(Channels(sms=await gateway_at(aiohttp_server, gateway))),
                central.db, clock)
    assert [b["text"] for b in gateway.received] == ["35 points go on 2026-11-30; $5 off too."]


async def test_contacts_are_validated_and_their_values_kept_out_of_the_audit(central, clock):
    cid = new_customer(central.db, central.secrets.card_keys, clock())
    url = f"/api/v1/message-contacts/{cid}"
    for body, says in [
        ({"email": "not an address", "source": "app"}, "field 'email'"),
        ({"language": "de", "source": "app"}, "field 'language'"),
        ({"service_opt_out": "yes", "source": "app"}, "field 'service_opt_out'"),
        ({"fax": "1", "source": "app"}, "field 'fax'"),
        ({"email": "a@b.example"}, "field 'source'"),
        ({"source": "app"}, "give at least one of"),
    ]:
        resp = await central.put(url, headers=central.admin, json=body)
        assert resp.status == 400 and says in (await resp.json())["error"], body
    assert (await central.put("/api/v1/message-contacts/nobody", headers=central.admin,
                              json={"language": "en", "source": "app"})).status == 404
    resp = await central.put(url, headers=central.admin,
                             json={"email": "ann@example.org", "source": "form at store 7"})
    assert (await resp.json())["email"] == "ann@example.org"
    got = await (await central.get(url, headers=central.admin)).json()
    assert got["email"] == "ann@example.org" and got["service_opt_out"] is False
    text = " ".join(str(tuple(r)) for r in central.db.execute("SELECT * FROM audit"))
    assert "ann@example.org" not in text and "message-contacts.read" in text


async def test_settings_are_validated_naming_the_field(central, clock):
    for body, says in [({"quiet_from": "25:00"}, "field 'quiet_from'"),
                       ({"quiet_to": "9"}, "field 'quiet_to'"),
                       ({"expiring_days": 0}, "field 'expiring_days'"),
                       ({"idle_days": "60"}, "field 'idle_days'"),
                       ({"loud": True}, "field 'loud'")]:
        resp = await central.put("/api/v1/message-settings", headers=central.admin, json=body)
        assert resp.status == 400 and says in (await resp.json())["error"], body
    resp = await central.put("/api/v1/message-settings", headers=central.admin,
                             json={"quiet_from": "22:00", "expiring_days": 3})
    assert await resp.json() == {"quiet_from": "22:00", "quiet_to": "09:00",
                                 "expiring_days": 3, "idle_days": 60}
    assert messages.settings(central.db).expiring_days == 3


async def test_the_outbox_is_listed_with_filters(central, clock):
    keys = central.secrets.card_keys
    ann = new_customer(central.db, keys, clock(), phone="+79001110001")
    bob = new_customer(central.db, keys, clock(), phone="+79001110002")
    for cid in (ann, bob):
        messages.enqueue(central.db, Draft(f"welcome:{cid}:joined", "welcome", cid,
                                           "service"), clock())
    messages.enqueue(central.db, Draft(f"birthday:{ann}:2026", "birthday", ann,
                                       "advertising"), clock())
    auditor = as_role(central, clock, "auditor")

    async def listed(query: str) -> dict:
        resp = await central.get(f"/api/v1/messages{query}", headers=auditor)
        assert resp.status == 200, await resp.text()
        return await resp.json()

    assert len((await listed(""))["messages"]) == 3
    assert [m["key"] for m in (await listed(f"?customer_id={ann}&kind=welcome"))[
        "messages"]] == [f"welcome:{ann}:joined"]
    page = await listed("?limit=2")
    assert len(page["messages"]) == 2 and page["counts"]["pending"] == 3
    rest = await listed(f"?before={page['next_before']}")
    assert [m["kind"] for m in rest["messages"]] == ["welcome"]
    for query, says in [("?status=lost", "query 'status'"), ("?channel=fax", "query 'channel'"),
                        ("?limit=0", "limit"), ("?before=x", "field 'before'")]:
        resp = await central.get(f"/api/v1/messages{query}", headers=auditor)
        assert resp.status == 400 and says in (await resp.json())["error"], query
    actions = [r[0] for r in central.db.execute("SELECT action FROM audit")]
    assert actions.count("messages.read") == 1  # the listing by customer
    assert (await central.get("/api/v1/messages",
                              headers=as_role(central, clock, "marketing"))).status == 403
