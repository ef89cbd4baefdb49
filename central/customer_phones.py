"""Customers' phones as the tills hold them: tokens under the newest card key
(protocol.phones), made when a customer's delta is sent (central.deltas).

A till receives a customer's phone token only with a delta of that customer, so whenever
the tokens a till should hold change without the customer changing, the customers with a
phone are marked changed: once when phones first went to tills (the migration that put
them in E.164), and at each start of the central with a newer card key than phones were
last sent under, so no till is left holding only tokens of a key that will retire.
"""

from __future__ import annotations

from central.db import Connection, transaction
from protocol.card_keys import CardKeyring

KEY_MARK = "phone_key_version"  # a row of `counters`: the key phones were last sent under


def mark_changed(conn: Connection) -> None:
    """Every customer with a settled phone marked changed, past every mark made so far
    (as migration 20 marks every customer: each new mark is above the counter, and the
    counter ends above each new mark), in the caller's transaction.

    The counter's row is locked first, so no other transaction takes a mark until these
    commit: a till never passes one of them unseen. Other writers wait for that while; it
    happens once per card key."""
    if conn.execute("SELECT 1 FROM customers WHERE phone IS NOT NULL AND phone_review IS NULL"
                    " LIMIT 1").fetchone() is None:
        return
    conn.execute("UPDATE counters SET value = value WHERE name = 'customer_change'")
    conn.execute(
        "UPDATE customers SET change_seq = change_seq + 1"
        " + (SELECT value FROM counters WHERE name = 'customer_change')"
        " WHERE phone IS NOT NULL AND phone_review IS NULL")
    conn.execute("UPDATE counters SET value = 2 * value + 1 WHERE name = 'customer_change'")


def follow_key(conn: Connection, ring: CardKeyring) -> bool:
    """At start: if the newest card key is not the one phones were last sent under, resend
    them (mark_changed) and record it. True if it did. Several processes starting at once
    do it once: the check and the mark are one transaction under a lock."""
    newest = ring.newest.version
    with transaction(conn):
        conn.dialect.lock(conn, KEY_MARK)
        row = conn.execute("SELECT value FROM counters WHERE name = ?", (KEY_MARK,)).fetchone()
        if row is None:
            # Phones first went out with the migration, under the key of that day: this one.
            conn.execute("INSERT INTO counters (name, value) VALUES (?, ?)", (KEY_MARK, newest))
            return False
        if row["value"] == newest:
            return False
        mark_changed(conn)
        conn.execute("UPDATE counters SET value = ? WHERE name = ?", (newest, KEY_MARK))
    return True
