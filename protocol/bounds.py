"""The bounds of every value that enters Tillpoint, checked where it enters.

Money, points and quantities are integers with a documented range; text is valid Unicode of
bounded length; JSON and documents are bounded in depth. A value outside them is refused
with OutOfBounds naming its field, before anything is stored, printed or published, so no
value can overflow a database column, a printer register or a msgpack integer further on.

The ranges, and why:

- money (kopecks: a line, a receipt, a payment): 0 .. 10^11, a billion roubles; the fiscal
  printer's registers hold 5 bytes (2^40, about 1.1e12);
- the price of one unit: 0 .. 10^9 kopecks (ten million roubles);
- a quantity: 1 .. 10^9 thousandths (a million units);
- points in one movement (an earning, a spending, a bonus, an adjustment): 0 .. 10^9;
- a customer's balance, and debt: at most 10^12 points, so sums over any history stay far
  below 2^63 (SQLite's SUM fails beyond it);
- counters, versions, sequence numbers: 0 .. 2^53, exact in every JSON reader;
- text (names, reasons, ids): valid Unicode, no control characters, at most 200
  characters unless a field says otherwise;
- JSON and documents: at most 32 levels deep, parsed only after the raw bytes say so.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class OutOfBounds(ValueError):
    """A value outside its bounds; the message begins with the field it came in."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"field {field!r} {problem}")
        self.field = field


@dataclass(frozen=True)
class IntRange:
    lo: int
    hi: int
    unit: str = ""

    def check(self, value: object, field: str) -> int:
        """The value if it is an integer (not a boolean, not a float) within the range."""
        if isinstance(value, bool) or not isinstance(value, int):
            raise OutOfBounds(field, f"must be an integer{self._unit()}")
        if not self.lo <= value <= self.hi:
            raise OutOfBounds(field, f"must be between {self.lo} and {self.hi}{self._unit()}")
        return value

    def holds(self, value: object) -> bool:
        return type(value) is int and self.lo <= value <= self.hi

    def _unit(self) -> str:
        return f" ({self.unit})" if self.unit else ""


MAX_MONEY = 10**11
MAX_PRICE = 10**9
MAX_QTY = 10**9
MAX_POINTS = 10**9
MAX_BALANCE = 10**12
MAX_COUNTER = 2**53

MONEY = IntRange(0, MAX_MONEY, "kopecks")
PRICE = IntRange(0, MAX_PRICE, "kopecks")
QTY = IntRange(1, MAX_QTY, "thousandths")
POINTS = IntRange(0, MAX_POINTS, "points")
# A manual adjustment gives or takes; 0 changes nothing and is refused by its caller.
ADJUSTMENT = IntRange(-MAX_POINTS, MAX_POINTS, "points")
COUNTER = IntRange(0, MAX_COUNTER)
# Whatever integer a published document holds: room for any amount above, and still
# exact in a double and a signed 64-bit column.
DOC_INT = IntRange(-MAX_COUNTER, MAX_COUNTER)

MAX_TEXT = 200
MAX_DEPTH = 32
MAX_LIST = 100_000


def text(value: object, field: str, *, max_len: int = MAX_TEXT, required: bool = False) -> str:
    """A string that is valid Unicode (no lone surrogates: they cannot be stored or sent),
    has no control characters, and is at most `max_len` characters long."""
    if not isinstance(value, str):
        raise OutOfBounds(field, "must be a string")
    if len(value) > max_len:
        raise OutOfBounds(field, f"must be at most {max_len} characters")
    if required and not value.strip():
        raise OutOfBounds(field, "must not be empty")
    if not valid_unicode(value):
        raise OutOfBounds(field, "must be valid Unicode (it holds a lone surrogate)")
    if _CONTROL.search(value):
        raise OutOfBounds(field, "must not hold control characters")
    return value


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def valid_unicode(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


ASCII_DIGITS = frozenset("0123456789")


def ascii_digits(value: str) -> bool:
    """str.isdigit() also says yes to Arabic-Indic or fullwidth digits; identifiers are
    made of 0-9 only."""
    return bool(value) and ASCII_DIGITS.issuperset(value)


# -- JSON ------------------------------------------------------------------------------

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(rb"[\[\]{}]")


def json_depth(raw: bytes) -> int:
    """How deep the arrays and objects of a JSON text nest, without parsing it (brackets
    inside strings do not count). Cheap when there are few brackets, linear otherwise."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return MAX_DEPTH  # cannot be deeper: no need to look closer
    depth = deepest = 0
    for m in _BRACKET.finditer(_STRING.sub(b'""', raw)):
        if m.group() in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


class BadJson(ValueError):
    """A request body that is not one bounded JSON object."""


def loads(raw: bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """json.loads with the depth checked first, and NaN/Infinity refused; raises BadJson."""
    if json_depth(raw) > max_depth:
        raise BadJson(f"request body nests deeper than {max_depth} levels")
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, bad UTF-8, 5,000-digit ints
        raise BadJson("request body is not valid JSON") from e


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


# -- documents --------------------------------------------------------------------------


def check_tree(value: Any, field: str, *, max_text: int = 1000, depth: int = 0) -> None:
    """Every string and integer of a document within bounds, its nesting too: what is
    published must be storable and encodable at every till. Raises OutOfBounds naming
    the first bad place (`doc.campaigns[3].name`)."""
    if depth > MAX_DEPTH:
        raise OutOfBounds(field, f"nests deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        text(value, field, max_len=max_text)
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int):
        DOC_INT.check(value, field)
    elif isinstance(value, float):
        raise OutOfBounds(field, "must not be a float: amounts are integers")
    elif isinstance(value, Mapping):
        if len(value) > MAX_LIST:
            raise OutOfBounds(field, f"has more than {MAX_LIST} fields")
        for k, v in value.items():
            if not isinstance(k, str):
                raise OutOfBounds(field, "has a key that is not a string")
            text(k, f"{field}.{k[:40]!s}" if valid_unicode(k) else field, max_len=MAX_TEXT)
            check_tree(v, f"{field}.{k}", max_text=max_text, depth=depth + 1)
    elif isinstance(value, list | tuple):
        if len(value) > MAX_LIST:
            raise OutOfBounds(field, f"has more than {MAX_LIST} items")
        for i, v in enumerate(value):
            check_tree(v, f"{field}[{i}]", max_text=max_text, depth=depth + 1)
    elif not isinstance(value, bytes):
        raise OutOfBounds(field, f"holds a {type(value).__name__}")


def json_fits(text: str) -> bool:
    """Whether the value that json.dumps (ASCII-escaped, the default) turned into `text` is
    within check_tree's bounds (max_text 1000), judged from the text with a few C-speed
    string operations: cheap enough for every customer of every delta page. False means
    "look closer" with check_tree, which names the place, or passes what this shortcut does
    not vouch for."""
    if "\\" in text or len(text) > MAX_LIST:
        return False  # an escape: a control character, non-ASCII text; or a long list
    # Without escapes, splitting at quotes gives the strings' contents at odd places.
    parts = text.split('"')
    strings = parts[1::2]
    if strings and max(map(len, strings)) > MAX_TEXT:
        for i in range(1, len(parts), 2):
            if len(parts[i]) > 1000 or (len(parts[i]) > MAX_TEXT
                                        and parts[i + 1].lstrip().startswith(":")):
                return False  # a value over 1,000 characters, a key over MAX_TEXT
    # What is left is structure, literals and numbers: integers only, within 2^53.
    rest = "".join(parts[0::2]).replace("true", "").replace("false", "").replace("null", "")
    if rest.translate(_INTEGERS_AND_STRUCTURE) or _BIG_INT.search(rest):
        return False
    return rest.count("[") + rest.count("{") <= MAX_DEPTH or \
        json_depth(text.encode()) <= MAX_DEPTH


_INTEGERS_AND_STRUCTURE = str.maketrans("", "", "0123456789-[]{}:, ")
_BIG_INT = re.compile(r"\d{16,}")  # 2^53 has 16 digits: those are looked at closely
