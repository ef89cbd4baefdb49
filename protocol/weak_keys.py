"""Ed25519 public keys that prove nothing: refused before a till is enrolled with one.

A public key of small order (one of the eight torsion points, the identity, all zeros
among them) lets a forger make signatures that verify without any private key: with
A of order 8, [k]A takes at most eight values, so a signature (R, S) = (-[k]A + [S]B, S)
for a guessed [k]A verifies one time in eight or better. Libraries disagree on refusing such
keys at verification (RFC 8032 does not require it), so the central refuses them once, at
enrolment: a key must decode canonically to a point of the prime-order subgroup other than
the identity, which also refuses mixed-order keys (a valid key plus a torsion component).

Pure integer arithmetic, from RFC 8032 section 5.1; about a millisecond per check.
"""

from __future__ import annotations

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493  # the prime order of the base point
D = -121665 * pow(121666, P - 2, P) % P
_SQRT_M1 = pow(2, (P - 1) // 4, P)

Point = tuple[int, int, int, int]  # extended coordinates (X, Y, Z, T), x = X/Z, y = Y/Z
IDENTITY: Point = (0, 1, 1, 0)


def _decode(raw: bytes) -> Point | None:
    """The point a 32-byte key encodes, or None if it encodes none or not canonically."""
    if len(raw) != 32:
        return None
    y = int.from_bytes(raw, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    if y >= P:
        return None  # a non-canonical encoding of y
    u, v = (y * y - 1) % P, (D * y * y + 1) % P
    x = u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P) % P
    if (v * x * x - u) % P:
        x = x * _SQRT_M1 % P
        if (v * x * x - u) % P:
            return None  # y is not on the curve
    if x == 0 and sign:
        return None  # "negative zero": a second encoding of the same point
    if x & 1 != sign:
        x = P - x
    return (x, y, 1, x * y % P)


def _add(a: Point, b: Point) -> Point:
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    aa = (y1 - x1) * (y2 - x2) % P
    bb = (y1 + x1) * (y2 + x2) % P
    cc = 2 * D * t1 * t2 % P
    dd = 2 * z1 * z2 % P
    e, f, g, h = bb - aa, dd - cc, dd + cc, bb + aa
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _times(k: int, point: Point) -> Point:
    result = IDENTITY
    while k:
        if k & 1:
            result = _add(result, point)
        point = _add(point, point)
        k >>= 1
    return result


def _is_identity(point: Point) -> bool:
    x, y, z, _ = point
    return x % P == 0 and (y - z) % P == 0


def weakness(raw: bytes) -> str | None:
    """Why this Ed25519 public key must not be enrolled, or None if it is a sound one."""
    point = _decode(raw)
    if point is None:
        return "not a canonical encoding of a curve point"
    if _is_identity(point):
        return "the identity point"
    if not _is_identity(_times(L, point)):
        # [L]P is P's torsion component: the whole point if it is of small order.
        if _is_identity(_times(8, point)):
            return "a point of small order"
        return "a point outside the prime-order subgroup"
    return None
