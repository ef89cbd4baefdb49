"""Staff roles, and the roles each head-office route admits, declared on the route itself.

A handler is decorated `@admits(Role.ADMIN, Role.SUPPORT)` under its `@routes.get(...)`;
the head-office auth middleware (central.office_auth) reads the declaration of the route a
request matched and refuses any other role with 403. A route that declares nothing admits
nobody: forgetting the declaration fails closed, and tests/test_staff_roles.py walks every
route, so it also fails a test.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import TypeVar


class Role(StrEnum):
    ADMIN = "admin"  # staff accounts, enrolment of tills, everything else
    MARKETING = "marketing"  # rule sets (campaigns), personal offers, programme totals
    ANALYST = "analyst"  # figures without personal data: totals, re-pricing, tills, caps
    SUPPORT = "support"  # customers: cards, profile, consents, export, erasure, adjustments
    SECURITY = "security"  # tills, alerts, offline caps, fraud reads, audit, approvals
    AUDITOR = "auditor"  # reads the audit log and the records it refers to; changes nothing


ROLES = tuple(Role)
EVERYONE = frozenset(Role)
# Who may approve a manual adjustment that waits for a second person (central.approvals).
APPROVERS = frozenset({Role.ADMIN, Role.SECURITY})

_ATTR = "__tillpoint_admits__"
Handler = TypeVar("Handler", bound=Callable[..., object])


def admits(*roles: Role) -> Callable[[Handler], Handler]:
    """Declare the roles a route admits (at least one)."""
    if not roles or not all(isinstance(r, Role) for r in roles):
        raise TypeError("admits() needs one or more Role values")

    def mark(handler: Handler) -> Handler:
        setattr(handler, _ATTR, frozenset(roles))
        return handler

    return mark


def admitted(handler: object) -> frozenset[Role] | None:
    """The roles a route's handler admits; None where it declares none."""
    return getattr(handler, _ATTR, None)


def parse(text: object) -> Role:
    """A role named in a request or on the command line; ValueError naming the choices."""
    try:
        return Role(text)
    except ValueError:
        raise ValueError(f"role must be one of {', '.join(ROLES)}") from None
