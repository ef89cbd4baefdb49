"""What each route of the central takes and answers: the table the OpenAPI document
(central.openapi) is built from.

Adding a route: add one entry `("METHOD", "/path/{id}"): Op(summary, answer, ...)` to
OPERATIONS below, under its module's heading. `answer` is the success body's JSON Schema
(`obj(required, optional)` for objects, `null(...)` for what may be null, `arr(...)`,
`one_of(choices)`); `body` the request's, with an `example` that works; `query` its
parameters; `ok` the success status if not 200; `auth` None for a route without a staff
token (or another name added to central.openapi.SECURITY_SCHEMES). Errors need no entry:
every operation answers RFC 9457 problems as its default. tests/test_openapi.py fails until
the route is here, and runs schemathesis against it.

A route that is not JSON (the signed msgpack sync API, an HTML page) goes in LEFT_OUT with
the reason.
"""

from __future__ import annotations

from central.message_templates import KINDS as MESSAGE_KINDS
from central.message_templates import LANGUAGES
from central.openapi import (
    ANY_OBJ,
    BOOL,
    INT,
    STR,
    Op,
    Query,
    Schema,
    arr,
    null,
    obj,
)
from central.personal_data import CONSENT_KINDS


def one_of(choices: tuple[str, ...] | list[str]) -> Schema:
    return {"type": "string", "enum": list(choices)}


# -- shared shapes -------------------------------------------------------------------------

COUNT: Schema = {"type": "integer", "minimum": 0}
BEFORE = Query("before", COUNT, "pages on: the `next_before` of the previous page")
LIMIT = Query("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "page size")
INSTANT: Schema = {"type": "string", "description": "ISO 8601 with its UTC offset"}

CONSENT = obj({"granted": BOOL, "at": STR}, {"source": null(STR), "actor": null(STR)})
CONSENTS = obj({kind: null(CONSENT) for kind in CONSENT_KINDS})
BALANCE = obj({"available": INT, "pending": INT, "debt": INT})
CUSTOMER = obj(
    {"id": STR, "name": null(STR), "phone": null(STR), "tier": null(STR),
     "segments": arr(STR), "birthday": null(STR), "cards": arr(STR), "balance": BALANCE},
    {"offers": arr(STR), "granted_offers": ANY_OBJ, "purchases": null(INT),
     "cards_to_relink": arr(STR), "history": arr(ANY_OBJ), "consents": CONSENTS})
NEW_CUSTOMER = obj(
    {"card_number": STR},
    {"name": STR, "phone": STR, "tier": STR, "segments": arr(STR), "birthday": STR,
     "welcome_bonus": INT})
CUSTOMER_CHANGE = obj({}, {"name": STR, "phone": null(STR), "tier": null(STR),
                           "segments": arr(STR), "birthday": null(STR)})
TILL = obj({"id": STR, "store": STR, "status": STR},
           {"name": null(STR), "enrolled_at": null(STR), "last_sync_at": null(STR),
            "current_epoch": null(STR), "acked_seq": null(INT),
            "quarantine": null(obj({"since": STR, "reason": null(STR)}))})
JOURNAL_ENTRY = obj({"epoch": STR, "seq": INT, "hash": STR, "kind": STR, "receipt_id": STR},
                    {"cashier": null(STR), "presence": null(STR), "earned": INT,
                     "redeemed": INT, "clawback": INT, "refund": INT,
                     "personal": null({"type": "string", "enum": ["sealed", "erased"]})})
VERIFIED = obj({"ok": BOOL, "problem": null(STR)})
RULESET = obj({"version": INT, "activates_at": null(STR), "doc": ANY_OBJ})
ALERT = obj({"id": INT, "at": STR, "kind": STR, "message": STR},
            {"severity": null(STR), "till_id": null(STR), "customer_id": null(STR),
             "source": null(STR), "count": null(INT), "last_at": null(STR),
             "acked_at": null(STR), "acked_by": null(STR)})
COUNTS: Schema = {"type": "object", "additionalProperties": INT}
CAPS_FIELDS = {name: null(COUNT) for name in ("redeem_per_receipt", "redeem_per_card_day",
                                              "till_outstanding", "max_offline_s")}
STAFF = obj({"id": STR, "name": STR, "role": STR, "created_at": STR},
            {"created_by": null(STR), "expires_at": null(STR), "revoked_at": null(STR),
             "revoked_by": null(STR)})
STAFF_WITH_TOKEN = {**STAFF, "required": [*STAFF["required"], "token"],
                    "properties": {**STAFF["properties"], "token": STR}}
TOKEN_DAYS = obj({}, {"days": {"type": "integer", "minimum": 1}})
APPROVAL = obj({"id": STR, "customer_id": STR, "points": INT, "status": STR},
               {"reason": STR, "requested_by": STR, "requested_at": STR,
                "decided_by": null(STR), "decided_at": null(STR), "note": null(STR)})
CAMPAIGN = obj({"id": STR, "status": STR, "version": INT, "rule": ANY_OBJ},
               {"name": null(STR), "kind": null(STR), "state": STR, "from": null(STR),
                "to": null(STR), "created_at": STR, "updated_at": STR,
                "updated_by": null(STR), "published_in": null(INT)})
ETAG = {"ETag": {**STR, "description": 'the campaign\'s version, e.g. "3": send it as If-Match'}}
VERSIONED = obj({}, {"version": {"type": "integer", "minimum": 1}})
DRY_RUN = obj({}, {"receipts": arr(ANY_OBJ), "last": INT, "from": null(INSTANT),
                   "to": null(INSTANT)})
HIT = obj({"id": INT, "rule": STR}, {"verdict": null(STR), "note": null(STR),
                                     "hold_status": null(STR)})
CONTACTS = obj({}, {"email": null(STR), "phone": null(STR), "push_token": null(STR),
                    "language": null(STR), "home_store": null(STR),
                    "service_opt_out": BOOL})
FRAUD_RULES: Schema = {"type": "object", "additionalProperties": obj({"enabled": BOOL})}
RESULT_OF_DRY_RUN = obj({"campaign": STR, "receipts": arr(ANY_OBJ), "totals": obj(
    {"receipts": INT, "changed": INT, "points_change": INT, "discount_change": INT})},
    {"ruleset_version": INT, "source": STR})
CUSTOMER_PAGE = obj({"customers": arr(obj({"id": STR})), "next_after": null(STR)})
ORDER = obj({"lines": arr(obj({"sku": STR, "qty": INT, "price": INT},
                              {"category": STR, "brand": STR, "flags": arr(STR)}))},
            {"customer_id": null(STR), "redeem": null(INT)})
ORDER_EXAMPLE = {"lines": [{"sku": "tea", "qty": 1000, "price": 25000}]}
SENT_CODE = obj({"challenge": STR, "channel": STR, "expires_at": STR},
                {"resend_after": null(INT)})
ME = obj({"id": STR}, {"name": null(STR), "phone": null(STR), "email": null(STR),
                       "language": null(STR), "service_opt_out": BOOL, "tier": null(STR),
                       "cards": arr(STR), "blocked": null(ANY_OBJ), "consents": CONSENTS})
ACCOUNT_OFFERS = obj({"offers": arr(ANY_OBJ)}, {"earned": arr(ANY_OBJ)})
SETTINGS = obj({"quiet_from": STR, "quiet_to": STR, "expiring_days": INT, "idle_days": INT})
TEMPLATE = obj({"kind": STR, "language": STR, "subject": STR, "body": STR})

OPERATIONS: dict[tuple[str, str], Op] = {
    # -- the document itself (central.openapi) --
    ("GET", "/api/v1/openapi.json"): Op("This OpenAPI document", ANY_OBJ, tag="meta"),

    # -- customers (central.api_office) --
    ("POST", "/api/v1/customers"): Op(
        "Create a customer with a card", CUSTOMER, ok=201, body=NEW_CUSTOMER,
        example={"card_number": "4111111111111111", "name": "Анна"}, tag="customers"),
    ("POST", "/api/v1/customers/lookup"): Op(
        "Find the customer of a card number (in the body, never the URL)", CUSTOMER,
        body=obj({"card_number": STR}), example={"card_number": "4000000000000002"},
        tag="customers"),
    ("POST", "/api/v1/customers/{id}/cards"): Op(
        "Link a card to a customer", CUSTOMER, ok=201, body=obj({"card_number": STR}),
        example={"card_number": "5555555555554444"}, tag="customers"),
    ("GET", "/api/v1/customers/{id}"): Op(
        "A customer: profile, balance, history and consents (audited read)", CUSTOMER,
        tag="customers"),
    ("PATCH", "/api/v1/customers/{id}"): Op("Change a customer's profile", CUSTOMER,
                                            body=CUSTOMER_CHANGE, tag="customers"),
    ("POST", "/api/v1/customers/{id}/consents"): Op(
        "Record a consent given or withdrawn", CONSENTS, ok=201,
        body=obj({"kind": one_of(CONSENT_KINDS), "granted": BOOL}, {"source": STR}),
        example={"kind": "advertising", "granted": True, "source": "form at store 42"},
        tag="customers"),
    ("GET", "/api/v1/customers/{id}/personal-data"): Op(
        "Everything held about a customer (subject access request)",
        obj({"exported_at": STR, "customer": ANY_OBJ, "consents": arr(ANY_OBJ),
             "ledger": arr(ANY_OBJ), "receipts": arr(ANY_OBJ), "journal": arr(ANY_OBJ)}),
        tag="customers"),
    ("POST", "/api/v1/customers/{id}/erase"): Op(
        "Erase a customer's personal data; the account stays, pseudonymous",
        obj({"id": STR, "erased_at": STR, "balance": BALANCE},
            {"cards_removed": INT, "journal": ANY_OBJ}),
        body=obj({"reason": STR}), example={"reason": "the customer asked"},
        tag="customers"),
    ("POST", "/api/v1/customers/{id}/offers"): Op(
        "Activate a personal offer", CUSTOMER, body=obj({"offer": STR}),
        example={"offer": "coffee-2-for-1"}, tag="customers"),
    ("POST", "/api/v1/customers/{id}/adjustments"): Op(
        "Adjust a customer's points; above the threshold it waits for approval (202)",
        CUSTOMER, body=obj({"points": INT, "reason": STR}),
        example={"points": 50, "reason": "goodwill"},
        also={202: APPROVAL}, tag="customers"),
    ("POST", "/api/v1/customers/{id}/app-code"): Op(
        "The key of the customer's app codes, as an otpauth:// URI (TLS only)",
        obj({"otpauth_uri": STR, "key_version": INT}), ok=201, tag="customers"),

    # -- tills, enrolment, rule set, alerts, caps, totals (central.api_office) --
    ("GET", "/api/v1/tills"): Op("Every enrolled till", obj({"tills": arr(TILL)}),
                                 tag="tills"),
    ("POST", "/api/v1/tills/{id}/revoke"): Op(
        "Revoke a till's key", obj({"id": STR, "status": STR}), tag="tills"),
    ("POST", "/api/v1/tills/{id}/release"): Op(
        "Lift a till's quarantine", ANY_OBJ, body=obj(), body_required=False, tag="tills"),
    ("GET", "/api/v1/tills/{id}/journal"): Op(
        "What the central holds of a till's journal", obj({"entries": arr(JOURNAL_ENTRY)}),
        tag="tills"),
    ("GET", "/api/v1/tills/{id}/journal/verify"): Op(
        "Verify a till's journal chain", VERIFIED, tag="tills"),
    ("POST", "/api/v1/enrolment-tokens"): Op(
        "A one-time token to enrol a till of a store", obj({"token": STR, "store": STR}),
        ok=201, body=obj({"store": STR}, {"ttl_hours": {"type": "integer", "minimum": 1,
                                                         "maximum": 720}}), tag="tills"),
    ("GET", "/api/v1/ruleset"): Op("The current rule set", RULESET, tag="rules"),
    ("PUT", "/api/v1/ruleset"): Op(
        "Publish a whole rule set", obj({"version": INT}), ok=201,
        body=obj({"doc": ANY_OBJ}, {"activates_at": INSTANT}), tag="rules"),
    ("GET", "/api/v1/alerts"): Op(
        "Alerts, newest first", obj({"alerts": arr(ALERT), "next_before": null(INT)}),
        query=(Query("kind", STR), Query("severity", STR), Query("till_id", STR),
               Query("source", STR), Query("acked", {"type": "string",
                                                     "enum": ["true", "false"]}),
               BEFORE, LIMIT), tag="alerts"),
    ("POST", "/api/v1/alerts/{id}/ack"): Op("Acknowledge an alert", ALERT, body=obj(),
                                            body_required=False, tag="alerts"),
    ("GET", "/api/v1/summary"): Op(
        "Programme totals from the ledger", obj({"ledger": COUNTS, "receipts": obj(
            {"n": INT, "sales": INT, "returns": INT, "member_sales": INT})}),
        tag="reports"),
    ("GET", "/api/v1/offline-caps"): Op("What a till may redeem offline", obj(CAPS_FIELDS),
                                        tag="tills"),
    ("PUT", "/api/v1/offline-caps"): Op(
        "Set the offline caps (left out: default; null: no limit)", obj(CAPS_FIELDS),
        body=obj({}, CAPS_FIELDS), tag="tills"),
    ("GET", "/api/v1/repricing"): Op(
        "How far the central has re-priced the tills' sales",
        obj({"checked": INT, "mismatches": INT}), tag="reports"),

    # -- KPIs (central.api_kpis) --
    ("GET", "/api/v1/kpis"): Op(
        "The programme's KPIs for a period, each figure with its definition",
        obj({"period": obj({"from": STR, "to": STR}), "receipts": ANY_OBJ}),
        query=(Query("from", {"type": "string", "format": "date"}, required=True),
               Query("to", {"type": "string", "format": "date"}, required=True),
               Query("store", STR), Query("region", STR), Query("tier", STR),
               Query("segment", STR), Query("active_days", COUNT),
               Query("format", {"type": "string", "enum": ["json", "csv"]})),
        media={"text/csv": STR}, tag="reports"),

    # -- campaigns (central.api_campaigns) --
    ("GET", "/api/v1/campaigns"): Op(
        "Campaigns, filtered and paged", obj({"campaigns": arr(CAMPAIGN),
                                              "next_cursor": null(STR)}),
        query=(Query("status", {"type": "string", "enum": [
                   "draft", "live", "paused", "ended", "scheduled", "active"]}),
               Query("kind", STR), Query("store", STR), Query("channel", STR),
               Query("q", STR), Query("active_at", INSTANT), Query("cursor", STR), LIMIT),
        tag="campaigns"),
    ("POST", "/api/v1/campaigns"): Op(
        "Create a campaign (a rule-set campaign with its dates and status)", CAMPAIGN,
        ok=201, body=obj({"id": STR}, {"status": STR, "from": null(INSTANT),
                                       "to": null(INSTANT)}),
        example={"id": "autumn", "name": "Autumn 5%",
                 "effect": {"type": "percent", "percent": 5}},
        headers=ETAG, tag="campaigns"),
    ("GET", "/api/v1/campaigns/{id}"): Op("A campaign", CAMPAIGN, headers=ETAG,
                                          tag="campaigns"),
    ("PATCH", "/api/v1/campaigns/{id}"): Op(
        "Edit a campaign against the version read (If-Match or `version`; stale: 409)",
        CAMPAIGN, body=VERSIONED, example={"version": 1, "name": "Seeded 12%"},
        headers=ETAG, tag="campaigns"),
    **{("POST", f"/api/v1/campaigns/{{id}}/{action}"): Op(
        f"{action.capitalize()} a campaign (If-Match or `version`)", CAMPAIGN,
        body=obj({}, {"version": {"type": "integer", "minimum": 1},
                      **({"from": null(INSTANT), "to": null(INSTANT)}
                         if action == "schedule" else {})}),
        body_required=False, headers=ETAG, tag="campaigns")
       for action in ("schedule", "pause", "resume", "end")},
    ("POST", "/api/v1/campaigns/dry-run"): Op(
        "Price sample receipts with a draft campaign", RESULT_OF_DRY_RUN,
        body={**DRY_RUN, "required": ["campaign"],
              "properties": {**DRY_RUN["properties"], "campaign": ANY_OBJ}},
        example={"campaign": {"id": "try", "effect": {"type": "percent", "percent": 5}}},
        tag="campaigns"),
    ("POST", "/api/v1/campaigns/{id}/dry-run"): Op(
        "Price sample receipts with a change to a campaign", RESULT_OF_DRY_RUN,
        body={**DRY_RUN, "properties": {**DRY_RUN["properties"], "change": null(ANY_OBJ)}},
        body_required=False, tag="campaigns"),
    ("GET", "/api/v1/campaigns/{id}/figures"): Op(
        "A campaign's figures: receipts, points, discount, budget",
        obj({"campaign": STR, "receipts": INT, "points": INT, "discount": INT},
            {"budget": null(ANY_OBJ), "behind": INT}),
        tag="campaigns"),
    ("GET", "/api/v1/campaigns/{id}/roi"): Op(
        "A campaign's ROI over store-local days: treated against its held-out control group,"
        " with every input",
        obj({"campaign": STR, "period": ANY_OBJ, "treated": ANY_OBJ, "control": ANY_OBJ,
             "incremental_margin": ANY_OBJ},
            {"basis": null(STR), "cost": ANY_OBJ, "roi_bp": null(INT), "roi": null(STR)}),
        query=(Query("from", {"type": "string", "format": "date"}, required=True),
               Query("to", {"type": "string", "format": "date"}, required=True)),
        tag="campaigns"),

    # -- product costs (central.api_costs) --
    ("PUT", "/api/v1/product-costs"): Op(
        "Replace the product cost feed (JSON here; also CSV `sku,cost` as text/csv)",
        obj({"skus": INT, "digest": STR}, {"uploaded_at": null(STR), "uploaded_by": null(STR)}),
        body=obj({"costs": arr(obj({"sku": STR, "cost": COUNT}))}),
        example={"costs": [{"sku": "shoe-1", "cost": 90_000}]}, tag="campaigns"),
    ("GET", "/api/v1/product-costs"): Op(
        "The product cost feed: its count, digest and who uploaded it, and a page of costs",
        obj({"skus": INT, "digest": STR, "costs": arr(obj({"sku": STR, "cost": INT}))},
            {"uploaded_at": null(STR), "uploaded_by": null(STR)}),
        query=(Query("after", STR, "pages on: the last sku of the previous page"),
               Query("limit", {"type": "integer", "minimum": 1, "maximum": 1000},
                     "page size")),
        tag="campaigns"),

    # -- fraud (central.api_fraud) --
    ("GET", "/api/v1/fraud-rules"): Op("The fraud rules and thresholds", FRAUD_RULES,
                                       tag="fraud"),
    ("PUT", "/api/v1/fraud-rules"): Op(
        "Change fraud rules (only what changes)", FRAUD_RULES, body=ANY_OBJ,
        example={"card-many-stores": {"minutes": 15}}, tag="fraud"),
    ("GET", "/api/v1/fraud-hits"): Op(
        "Fraud hits, newest first", obj({"hits": arr(HIT), "next_before": null(INT)}),
        query=(Query("rule", STR), Query("verdict", {"type": "string", "enum": [
                   "confirmed", "false-positive", "none"]}), BEFORE, LIMIT), tag="fraud"),
    ("GET", "/api/v1/fraud-hits/{id}"): Op("A fraud hit with its evidence", HIT,
                                           tag="fraud"),
    ("POST", "/api/v1/fraud-hits/{id}/review"): Op(
        "Review a hit", HIT, body=obj({"verdict": {"type": "string", "enum": [
            "confirmed", "false-positive"]}}, {"note": STR}), tag="fraud"),
    ("POST", "/api/v1/fraud-hits/{id}/hold"): Op(
        "Release or confirm the points a hit holds", HIT,
        body=obj({"action": {"type": "string", "enum": ["release", "confirm"]},
                  "reason": STR}), tag="fraud"),

    # -- staff (central.api_staff) --
    ("GET", "/api/v1/staff/me"): Op("The caller's own account", STAFF, tag="staff"),
    ("GET", "/api/v1/staff"): Op("Every staff account", obj({"staff": arr(STAFF)}),
                                 tag="staff"),
    ("POST", "/api/v1/staff"): Op(
        "Add a staff account; the token is in this answer only", STAFF_WITH_TOKEN, ok=201,
        body=obj({"name": STR, "role": {"type": "string", "enum": [
            "admin", "marketing", "analyst", "support", "security", "auditor"]}},
            TOKEN_DAYS["properties"]), tag="staff"),
    ("POST", "/api/v1/staff/{id}/revoke"): Op("Revoke a staff account", STAFF, tag="staff"),
    ("POST", "/api/v1/staff/{id}/token"): Op(
        "Issue a new token (the old one stops working)", STAFF_WITH_TOKEN, ok=201,
        body=TOKEN_DAYS, body_required=False, example={"days": 30}, tag="staff"),

    # -- audit (central.api_audit) --
    ("GET", "/api/v1/audit"): Op(
        "Audit records, newest first", obj({"records": arr(obj(
            {"seq": INT, "at": STR, "actor": STR, "action": STR, "hash": STR},
            {"subject": null(STR), "prev_hash": null(STR), "before": {}, "after": {}})),
            "next_before": null(INT)}),
        query=(Query("actor", STR), Query("action", STR), Query("subject", STR),
               Query("since", INSTANT), Query("until", INSTANT), BEFORE, LIMIT),
        tag="audit"),
    ("GET", "/api/v1/audit/verify"): Op("Verify the audit log's chain",
                                        obj({"records": INT, "ok": BOOL,
                                             "problem": null(STR)}), tag="audit"),

    # -- approvals (central.api_approvals) --
    ("GET", "/api/v1/adjustment-policy"): Op(
        "Above how many points an adjustment waits for approval",
        obj({"approval_above": null(INT)}), tag="approvals"),
    ("PUT", "/api/v1/adjustment-policy"): Op(
        "Set the approval threshold (null: none wait)", obj({"approval_above": null(INT)}),
        body=obj({"approval_above": null(COUNT)}), tag="approvals"),
    ("GET", "/api/v1/approvals"): Op(
        "Adjustments waiting or decided, oldest first",
        obj({"approvals": arr(APPROVAL), "next_after": null(STR)}),
        query=(Query("status", {"type": "string", "enum": [
                   "pending", "approved", "rejected"]}),
               Query("after", STR, "the `next_after` of the previous page"), LIMIT),
        tag="approvals"),
    ("POST", "/api/v1/approvals/{id}/approve"): Op(
        "Approve (a second person)", {**APPROVAL, "properties": {
            **APPROVAL["properties"], "customer": ANY_OBJ}}, tag="approvals"),
    ("POST", "/api/v1/approvals/{id}/reject"): Op(
        "Reject", APPROVAL, body=obj({}, {"note": STR}), body_required=False,
        tag="approvals"),

    # -- messages to customers (central.api_messages) --
    ("GET", "/api/v1/message-templates"): Op(
        "Every kind's template in every language",
        obj({"templates": arr({**TEMPLATE, "properties": {
            **TEMPLATE["properties"], "purpose": STR, "placeholders": arr(STR),
            "updated_at": null(STR), "actor": null(STR)}})}), tag="messages"),
    ("PUT", "/api/v1/message-templates"): Op(
        "Save a template (rendered against sample values first)", TEMPLATE,
        body=obj({"kind": one_of(tuple(MESSAGE_KINDS)), "language": one_of(LANGUAGES),
                  "subject": STR, "body": STR}),
        example={"kind": "welcome", "language": "en", "subject": "Welcome, ${name}",
                 "body": "Your card is ready."},
        tag="messages"),
    ("GET", "/api/v1/message-settings"): Op("Quiet hours and the triggers' days", SETTINGS,
                                            tag="messages"),
    ("PUT", "/api/v1/message-settings"): Op(
        "Change quiet hours and the triggers' days", SETTINGS,
        body=obj({}, {"quiet_from": STR, "quiet_to": STR, "expiring_days": INT,
                      "idle_days": INT}), tag="messages"),
    ("GET", "/api/v1/message-contacts/{id}"): Op("How a customer is reached", CONTACTS,
                                                 tag="messages"),
    ("PUT", "/api/v1/message-contacts/{id}"): Op(
        "Change how a customer is reached", CONTACTS,
        body=obj({}, {"email": null(STR), "push_token": null(STR), "language": null(STR),
                      "home_store": null(STR), "service_opt_out": BOOL, "source": STR}),
        example={"email": "anna@example.com", "language": "ru", "source": "the app"},
        tag="messages"),
    ("GET", "/api/v1/messages"): Op(
        "The outbox, newest first, with counts by status",
        obj({"messages": arr(obj({"id": INT})), "counts": COUNTS,
             "next_before": null(INT)}),
        query=(Query("status", {"type": "string", "enum": [
                   "pending", "sending", "sent", "skipped", "failed"]}),
               Query("kind", STR), Query("customer_id", STR),
               Query("channel", {"type": "string", "enum": ["email", "sms", "push",
                                                             "receipt"]}),
               Query("before", {"type": "integer", "minimum": 1}), LIMIT),
        tag="messages"),

    # -- finding and blocking customers (central.api_customers) --
    ("GET", "/api/v1/customers"): Op(
        "Find customers (audited read); a whole card number goes to /customers/search",
        CUSTOMER_PAGE,
        query=(Query("id", STR), Query("card", STR, "the card's last four digits"),
               Query("phone", STR), Query("name", STR), Query("after", STR,
                                                            "the `next_after` of a page"),
               Query("limit", {"type": "integer", "minimum": 1})), tag="customers"),
    ("POST", "/api/v1/customers/search"): Op(
        "Find customers by any filter, a whole card number too (audited read)",
        CUSTOMER_PAGE, body=obj({}, {"id": STR, "card": STR, "card_number": STR, "phone": STR,
                                     "name": STR, "after": STR, "limit": INT}),
        example={"card_number": "4000000000000002"}, tag="customers"),
    **{("POST", f"/api/v1/customers/{{id}}/{verb}"): Op(
        f"{verb.capitalize()} a customer, or one card (`card` or `card_number`)",
        obj({"customer_id": STR}), body=obj({}, {"reason": STR, "card": STR,
                                                 "card_number": STR}),
        example={"reason": "card reported stolen"}, tag="customers")
       for verb in ("block", "unblock")},
    ("DELETE", "/api/v1/customers/{id}/cards/{card}"): Op(
        "Remove a card, named by its last four characters (the body tells apart two alike)",
        ANY_OBJ, body=obj({}, {"card_number": STR, "par": STR}), body_required=False,
        tag="customers"),

    # -- the dashboard's own API (central.dashboard) --
    ("GET", "/api/v1/dashboard"): Op(
        "The caller and the dashboard's sections their role may read",
        obj({"account": obj({"id": STR, "role": STR}), "sections": {}}), tag="meta"),

    # -- sales channels' credentials (central.api_channel) --
    ("GET", "/api/v1/channels"): Op("Every sales channel", obj({"channels": arr(ANY_OBJ)}),
                                    tag="channels"),
    ("POST", "/api/v1/channels"): Op(
        "Add a sales channel; its token is in this answer only",
        obj({"channel": ANY_OBJ, "token": STR}), ok=201,
        body=obj({"name": STR, "kind": one_of(["web", "app"]), "store": STR}),
        example={"name": "Web shop", "kind": "web", "store": "web"}, tag="channels"),
    ("POST", "/api/v1/channels/{id}/revoke"): Op("Revoke a sales channel's token", ANY_OBJ,
                                                 tag="channels"),

    # -- the channel API, for the web shop and the app (central.api_channel) --
    ("POST", "/channel/v1/price"): Op(
        "Price an order; moves nothing", ANY_OBJ, body=ORDER, auth="channelToken",
        example=ORDER_EXAMPLE, tag="channel"),
    ("POST", "/channel/v1/orders/{order_id}/confirm"): Op(
        "Confirm an order, with a redemption (idempotent by order id: another body 409)",
        obj({"order_id": STR}), body=ORDER, auth="channelToken", example=ORDER_EXAMPLE,
        tag="channel"),
    ("POST", "/channel/v1/orders/{order_id}/returns/{return_id}"): Op(
        "Return lines of an order (idempotent by return id)", obj({"order_id": STR}),
        body=obj({"lines": arr(obj({"index": INT, "qty": INT}))}), auth="channelToken",
        tag="channel"),
    ("GET", "/channel/v1/orders/{order_id}"): Op(
        "An order as confirmed, with its returns", obj({"order_id": STR}),
        auth="channelToken", tag="channel"),

    # -- the customer's own account (central.api_account) --
    ("POST", "/account/v1/sign-in/code"): Op(
        "Send a one-time sign-in code to a phone or an e-mail address", SENT_CODE, ok=202,
        body=obj({}, {"phone": STR, "email": STR}), auth=None, tag="account"),
    ("POST", "/account/v1/sign-in"): Op(
        "Sign in with the code: a session cookie, or a bearer token",
        obj({"customer_id": STR, "expires_at": STR}, {"token": STR}),
        body=obj({"challenge": STR, "code": STR}, {"session": one_of(["cookie", "bearer"])}),
        auth=None, tag="account"),
    ("POST", "/account/v1/sign-out"): Op("End the session", {}, ok=204,
                                         auth="accountSession", tag="account"),
    ("GET", "/account/v1/me"): Op("The signed-in customer", ME, auth="accountSession",
                                  tag="account"),
    ("GET", "/account/v1/balance"): Op(
        "Balance: available, pending with dates, expiring within 30 days, debt",
        obj({"available": INT, "pending": INT, "debt": INT}), auth="accountSession",
        tag="account"),
    ("GET", "/account/v1/history"): Op(
        "Receipts with their goods, and point movements",
        obj({"receipts": arr(ANY_OBJ)}, {"movements": arr(ANY_OBJ)}),
        query=(Query("limit", {"type": "integer", "minimum": 1, "maximum": 100}),),
        auth="accountSession", tag="account"),
    ("GET", "/account/v1/offers"): Op("Personal offers", ACCOUNT_OFFERS,
                                      auth="accountSession", tag="account"),
    ("POST", "/account/v1/offers"): Op("Activate a personal offer", ACCOUNT_OFFERS,
                                       body=obj({"offer": STR}), auth="accountSession",
                                       tag="account"),
    ("PATCH", "/account/v1/contacts"): Op(
        "Change language, advertising opt-out, or drop the e-mail address", ME,
        body=obj({}, {"email": null(STR), "language": STR, "service_opt_out": BOOL}),
        auth="accountSession", tag="account"),
    ("POST", "/account/v1/contacts/email"): Op(
        "Send a code to a new e-mail address", SENT_CODE, ok=202, body=obj({"email": STR}),
        auth="accountSession", tag="account"),
    ("POST", "/account/v1/contacts/email/confirm"): Op(
        "Save the new address with the code sent to it", ME,
        body=obj({"challenge": STR, "code": STR, "email": STR}), auth="accountSession",
        tag="account"),
    ("POST", "/account/v1/consents"): Op(
        "Give or withdraw a consent", CONSENTS, ok=201,
        body=obj({"kind": one_of(CONSENT_KINDS), "granted": BOOL}), auth="accountSession",
        tag="account"),
    ("GET", "/account/v1/personal-data"): Op(
        "Everything held about the customer, as a download", ANY_OBJ,
        auth="accountSession", tag="account"),
    ("POST", "/account/v1/erase"): Op(
        "Erase the customer's personal data; the session ends", obj({"erased_at": STR}),
        body=obj({"confirm": one_of(["erase"])}), auth="accountSession", tag="account"),

    # -- the sync API's JSON route (central.api_sync) --
    ("POST", "/sync/v1/enroll"): Op(
        "Enrol a till with a one-time token and its Ed25519 key (no staff token)",
        obj({"till_id": STR, "store": STR, "central_public_key": STR},
            {"card_keys": ANY_OBJ, "card_keys_withheld": STR}),
        body=obj({"token": STR, "public_key": STR, "proof": STR}, {"name": STR}),
        auth=None, tag="sync"),
}

# Routes the document leaves out, and why.
_SIGNED = "the tills' signed sync API: msgpack or signed requests, specified in protocol/"
_PAGE = "an HTML page or its static files (tested in headless Chromium), not JSON"
LEFT_OUT: dict[tuple[str, str], str] = {
    ("GET", "/account"): _PAGE,
    ("GET", "/account/assets/{name}"): _PAGE,
    ("GET", "/dashboard"): _PAGE,
    ("GET", "/dashboard/{name}"): _PAGE,
    ("POST", "/sync/v1/batches"): _SIGNED,
    ("GET", "/sync/v1/ruleset"): _SIGNED,
    ("GET", "/sync/v1/card-keys"): _SIGNED,
    ("GET", "/sync/v1/customers"): _SIGNED,
    ("GET", "/sync/v1/position"): _SIGNED,
    ("POST", "/sync/v1/returns/reserve"): _SIGNED,
    ("POST", "/sync/v1/returns/release"): _SIGNED,
    ("POST", "/sync/v1/reports"): _SIGNED,
    ("POST", "/sync/v1/presence/sms"): _SIGNED,
    ("POST", "/sync/v1/cards/relink"): _SIGNED,
    ("POST", "/sync/v1/presence/sms/check"): _SIGNED,
}
