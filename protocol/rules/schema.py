"""Reading a JSON-shaped document field by field, collecting every mistake with its path.

The compiler asks the reader for typed values; a wrong value records (path, problem) and
returns a harmless default so reading goes on and one publish shows all the mistakes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from protocol import bounds
from protocol.rules.arith import is_int, parse_scaled

MISSING: Any = object()
EMPTY: frozenset[str] = frozenset()


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


class Reader:
    def __init__(self) -> None:
        self.errors: list[tuple[str, str]] = []

    def error(self, path: str, problem: str) -> None:
        self.errors.append((path, problem))

    def obj(self, value: object, path: str, allowed: frozenset[str]) -> Mapping[str, Any]:
        """A mapping with only known keys (a typo like "percnt" is an error, not ignored)."""
        if not isinstance(value, Mapping):
            self.error(path, f"must be an object, got {_kind(value)}")
            return {}
        for key in value:
            if not isinstance(key, str):
                self.error(path, f"keys must be strings, got {_kind(key)}")
            elif key not in allowed:
                self.error(join(path, key),
                           f"unknown field (allowed: {', '.join(sorted(allowed))})")
        return value

    def int_(
        self, d: Mapping[str, Any], key: str, path: str, default: Any = MISSING,
        lo: int | None = 0, hi: int | None = None,
    ) -> Any:
        p = join(path, key)
        if key not in d:
            if default is MISSING:
                self.error(p, "is required")
                return 0
            return default
        v = d[key]
        if v is None and default is None:
            return None
        if isinstance(v, float):
            self.error(p, f"must be an integer, not a float ({v!r}); amounts are integers")
            return default if default not in (MISSING, None) else 0
        if not is_int(v):
            self.error(p, f"must be an integer, got {_kind(v)}")
            return default if default not in (MISSING, None) else 0
        # Unbounded fields are still bounded: every till stores and re-encodes the value.
        lo = -bounds.MAX_COUNTER if lo is None else lo
        hi = bounds.MAX_COUNTER if hi is None else hi
        if v < lo:
            self.error(p, f"must be at least {lo}, got {v}")
            return lo
        if v > hi:
            self.error(p, f"must be at most {hi}, got {v}")
            return hi
        return v

    def str_(
        self, d: Mapping[str, Any], key: str, path: str, default: Any = MISSING,
        choices: tuple[str, ...] | None = None,
    ) -> Any:
        p = join(path, key)
        if key not in d:
            if default is MISSING:
                self.error(p, "is required")
                return ""
            return default
        v = d[key]
        if v is None and default is None:
            return None
        if not isinstance(v, str) or not v:
            self.error(p, f"must be a non-empty string, got {_kind(v)}")
            return default if default not in (MISSING, None) else ""
        if problem := _text_problem(v):
            self.error(p, problem)
            return default if default not in (MISSING, None) else ""
        if choices is not None and v not in choices:
            self.error(p, f"must be one of {', '.join(choices)}, got {v!r}")
        return v

    def bool_(self, d: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        if key not in d:
            return default
        v = d[key]
        if not isinstance(v, bool):
            self.error(join(path, key), f"must be true or false, got {_kind(v)}")
            return default
        return v

    def strs(self, d: Mapping[str, Any], key: str, path: str) -> frozenset[str]:
        if key not in d:
            return EMPTY
        v = d[key]
        p = join(path, key)
        if not isinstance(v, list):
            self.error(p, f"must be a list of strings, got {_kind(v)}")
            return frozenset()
        out = set()
        for i, item in enumerate(v):
            if not isinstance(item, str) or not item:
                self.error(join(p, i), f"must be a non-empty string, got {_kind(item)}")
            elif problem := _text_problem(item):
                self.error(join(p, i), problem)
            else:
                out.add(item)
        return frozenset(out)

    def scaled(
        self, d: Mapping[str, Any], key: str, path: str, digits: int, lo: int, hi: int,
        what: str, required: bool = True,
    ) -> int:
        """A decimal number given as an int or a string ("2.5"), scaled to an int."""
        p = join(path, key)
        if key not in d:
            if required:
                self.error(p, "is required")
            return 0
        v = d[key]
        if isinstance(v, float):
            self.error(p, "must be an integer or a decimal string like \"2.5\","
                          f" not a float ({v!r})")
            return 0
        n = parse_scaled(v, digits)
        if n is None:
            self.error(p, f"must be an integer or a decimal string with at most {digits} decimals,"
                          f" got {v!r}")
            return 0
        if not lo <= n <= hi:
            scale = 10**digits
            self.error(p, f"{what} must be between {_fmt(lo, scale)} and {_fmt(hi, scale)},"
                          f" got {v}")
            return 0
        return n

    def moment(self, d: Mapping[str, Any], key: str, path: str) -> datetime | None:
        """An ISO 8601 date-time with its UTC offset (a naive time means nothing offline)."""
        if key not in d:
            return None
        v = d[key]
        p = join(path, key)
        if not isinstance(v, str):
            self.error(p, f"must be an ISO 8601 date-time string, got {_kind(v)}")
            return None
        try:
            t = datetime.fromisoformat(v)
        except ValueError:
            self.error(p, f"is not an ISO 8601 date-time: {v!r}")
            return None
        if t.tzinfo is None or t.utcoffset() is None:
            self.error(p, f"must carry a UTC offset, e.g. {v}+03:00")
            return None
        return t

    def items(self, d: Mapping[str, Any], key: str, path: str) -> list[Any]:
        if key not in d:
            return []
        v = d[key]
        if not isinstance(v, list):
            self.error(join(path, key), f"must be a list, got {_kind(v)}")
            return []
        return v


def _text_problem(v: str) -> str | None:
    try:
        bounds.text(v, "", max_len=MAX_DOC_TEXT)
    except bounds.OutOfBounds as e:
        return str(e).removeprefix("field '' ")
    return None


MAX_DOC_TEXT = 1000


def _fmt(n: int, scale: int) -> str:
    if scale == 1 or n % scale == 0:
        return str(n // scale)
    return f"{n // scale}.{str(n % scale).rjust(len(str(scale)) - 1, '0').rstrip('0')}"


def _kind(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return f"the integer {v}"
    if isinstance(v, float):
        return f"the float {v!r}"
    if isinstance(v, str):
        return f"the string {v!r}"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, Mapping):
        return "an object"
    return type(v).__name__
