"""The proof that the customer was present at the checkout, as a journal entry carries it.

A sale that spends points must show how the customer proved to be there (agent.presence):
- `card`: the card was presented at the reader; its card tokens under each card key the
  till holds, newest first (`tokens`): the central knows the card under one of them, even
  if it re-keyed the card since the till last heard of it;
- `app`: a code from the customer's app (protocol.app_codes): `key_version`, `step`,
  `code`, so the central can compute the code again and check its step against the sale
  time, and that no other entry used the same step;
- `sms`: a code the central sent by SMS and checked itself: its `challenge` id.

It rides in the hash-chained entry: the central re-checks it (central.presence) and alerts
on a proof that does not hold.
"""

from __future__ import annotations

from typing import Any

from protocol import app_codes
from protocol.cards import is_card_token

METHODS = ("card", "app", "sms")
MAX_CHALLENGE = 64
MAX_TOKENS = 8  # a card's tokens under each card key in its lifetime
MAX_STEP = 2**40  # 30-second steps: far beyond any date a till sells on


class BadProof(ValueError):
    pass


def card(tokens: list[str]) -> dict[str, Any]:
    return {"method": "card", "tokens": list(tokens)}


def app(key_version: int, step: int, code: str) -> dict[str, Any]:
    return {"method": "app", "key_version": key_version, "step": step, "code": code}


def sms(challenge: str) -> dict[str, Any]:
    return {"method": "sms", "challenge": challenge}


def check(proof: Any) -> dict[str, Any]:
    """The proof if it is well formed, else BadProof naming what is wrong."""
    if not isinstance(proof, dict):
        raise BadProof("must be a map")
    method = proof.get("method")
    if method not in METHODS:
        raise BadProof(f"method must be one of {', '.join(METHODS)}")
    expected = {"card": {"method", "tokens"}, "sms": {"method", "challenge"},
                "app": {"method", "key_version", "step", "code"}}[method]
    if set(proof) != expected:
        raise BadProof(f"a {method} proof has exactly {', '.join(sorted(expected))}")
    if method == "card" and not (isinstance(proof["tokens"], list)
                                 and 0 < len(proof["tokens"]) <= MAX_TOKENS
                                 and all(isinstance(t, str) and is_card_token(t)
                                         for t in proof["tokens"])):
        raise BadProof(f"tokens must be 1 to {MAX_TOKENS} card tokens")
    if method == "sms" and not (isinstance(proof["challenge"], str)
                                and 0 < len(proof["challenge"]) <= MAX_CHALLENGE
                                and proof["challenge"].isascii()):
        raise BadProof("challenge must be the central's challenge id")
    if method == "app":
        for name, hi in (("key_version", 2**31), ("step", MAX_STEP)):
            v = proof[name]
            if type(v) is not int or not 0 < v < hi:
                raise BadProof(f"{name} must be a positive integer")
        try:
            app_codes.check_format(proof["code"])
        except app_codes.BadCode as e:
            raise BadProof(str(e)) from None
    return proof
