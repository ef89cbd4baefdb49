"""Card reader decoders, pure: bytes (and the time they arrived) in, card reads out.

Line readers (magnetic stripe track 1/2, barcode scanners) send one read per line, ended by
CR, LF, CR LF or a pause, optionally wrapped in STX/ETX and prefixed with an AIM symbology
identifier. RDM6300-style RFID readers send `STX` + 10 hex digits + 2 hex checksum + `ETX`
and repeat it while the tag stays in the field.

Nothing here ever puts card data into an exception message or a repr: a `CardRead` holds
the number, and shows only its last four digits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from protocol.cards import card_kind

STX = 0x02
ETX = 0x03
CR = 0x0D
LF = 0x0A

PAUSE = 0.1  # seconds of silence that end a read on a scanner without a suffix
STALE = 1.0  # a partial read older than this with no end is noise
MAX_LINE = 128  # track 1 is at most 79 characters; anything longer is noise
RFID_FRAME_LEN = 14

Suffix = Literal["cr", "lf", "crlf", "none"]
Kind = Literal["loyalty", "bank", "rfid"]


class InvalidRead(ValueError):
    """A read that fails its checks. The message names the check, never the data."""


@dataclass(frozen=True, repr=False)
class CardRead:
    number: str = field(compare=True)
    kind: Kind

    @property
    def last4(self) -> str:
        return self.number[-4:]

    def __repr__(self) -> str:
        return f"CardRead(kind={self.kind!r}, last4={self.last4!r})"

    __str__ = __repr__


# -- line framing ---------------------------------------------------------------------------


class LineFramer:
    """Splits a line reader's byte stream into reads, with the framing removed.

    `feed` returns the reads completed by `data`; `flush` the read a pause has completed (for
    readers without a suffix). Framing failures (overlong lines, bytes outside STX/ETX,
    partial reads gone stale) are counted in `dropped`.
    """

    def __init__(
        self,
        suffix: Suffix = "cr",
        *,
        stx_etx: bool = False,
        pause: float = PAUSE,
        stale: float = STALE,
        max_len: int = MAX_LINE,
    ) -> None:
        if suffix not in ("cr", "lf", "crlf", "none"):
            raise ValueError("suffix must be cr, lf, crlf or none")
        self.suffix = suffix
        self.stx_etx = stx_etx
        self.pause = pause
        self.stale = stale
        self.max_len = max_len
        self.dropped = 0
        self._buf = bytearray()
        self._in_frame = False  # inside STX ... ETX
        self._overlong = False
        self._noise = False  # inside a run of bytes outside STX/ETX
        self._last: float | None = None

    @property
    def pending(self) -> bool:
        return bool(self._buf) or self._in_frame

    def _end_read(self, out: list[bytes]) -> None:
        raw = bytes(self._buf).strip(b"\r\n")
        self._buf.clear()
        if self._overlong:
            self._overlong = False
            self.dropped += 1
        elif raw:
            out.append(raw)

    def _discard(self) -> None:
        if self._buf or self._in_frame:
            self.dropped += 1
        self._buf.clear()
        self._in_frame = False
        self._overlong = False

    def _expire(self, now: float, out: list[bytes]) -> None:
        if self._last is None or not self.pending:
            return
        idle = now - self._last
        if self.suffix == "none" and not self.stx_etx and idle >= self.pause:
            self._end_read(out)
        elif idle >= self.stale:
            self._discard()

    def flush(self, now: float) -> list[bytes]:
        out: list[bytes] = []
        self._expire(now, out)
        return out

    def feed(self, data: bytes, now: float) -> list[bytes]:
        out: list[bytes] = []
        self._expire(now, out)
        self._last = now
        for b in data:
            if self.stx_etx:
                self._feed_framed(b, out)
            else:
                self._feed_line(b, out)
        return out

    def _push(self, b: int) -> None:
        if len(self._buf) >= self.max_len:
            self._overlong = True
        else:
            self._buf.append(b)

    def _feed_line(self, b: int, out: list[bytes]) -> None:
        end = {"cr": CR, "lf": LF, "crlf": LF, "none": None}[self.suffix]
        if b == end:
            self._end_read(out)
        elif b in (CR, LF) and not self._buf:
            return  # the other half of a CR LF, or a blank line
        else:
            self._push(b)

    def _feed_framed(self, b: int, out: list[bytes]) -> None:
        if b == STX:
            if self._in_frame:
                self._discard()  # a new frame before this one ended: this one is broken
            self._in_frame = True
            self._buf.clear()
            self._overlong = False
            self._noise = False
        elif not self._in_frame:
            if b not in (CR, LF) and not self._noise:
                self.dropped += 1  # one drop per run of stray bytes
                self._noise = True
        elif b == ETX:
            self._in_frame = False
            self._end_read(out)
        else:
            self._push(b)


# -- decoding a read ------------------------------------------------------------------------


def ean_valid(digits: str) -> bool:
    """The check digit of an EAN-13 or EAN-8 code."""
    if not digits.isascii() or not digits.isdigit() or len(digits) not in (8, 13):
        return False
    body = [int(c) for c in digits[:-1]]
    # weights 3,1,3,1... from the digit next to the check digit
    total = sum(d * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10 == int(digits[-1])


def _digits(s: str) -> bool:
    return s.isascii() and s.isdigit()


def _track2_lrc(chars: str) -> int:
    lrc = 0
    for c in chars:
        lrc ^= (ord(c) - 0x30) & 0x0F
    return lrc


def _strip_aim(s: str, aim: bool) -> str:
    if s.startswith("]"):
        if not aim or len(s) < 3 or not s[1].isalpha() or not s[2].isalnum():
            raise InvalidRead("unexpected AIM prefix")
        return s[3:]
    return s


def _bank_or_loyalty(pan: str, loyalty_ranges: tuple[str, ...]) -> Kind:
    # by the payment scheme's range, not by Luhn alone, which loyalty numbers pass too
    return "bank" if card_kind(pan, loyalty_ranges) == "bank" else "loyalty"


def _decode_track2(s: str, loyalty_ranges: tuple[str, ...]) -> CardRead:
    if s.startswith(";"):
        end = s.find("?")
        if end < 0:
            raise InvalidRead("track 2 without end sentinel")
        tail = s[end + 1 :]
        if len(tail) > 1:
            raise InvalidRead("track 2: data after the LRC")
        if tail and (not "0" <= tail <= "?" or _track2_lrc(s[: end + 1]) != ord(tail) - 0x30):
            raise InvalidRead("track 2: bad LRC")
        body = s[1:end]
    else:
        body = s[:-1] if s.endswith("?") else s
    pan, sep, rest = body.partition("=")
    if not _digits(pan) or not 6 <= len(pan) <= 19:
        raise InvalidRead("track 2: bad card number field")
    if not sep:
        # ISO/IEC 7813: the separator always follows the number; without it this is a
        # misread (or a number typed between sentinels), not a card
        raise InvalidRead("track 2 without field separator")
    if len(rest) < 7 or not _digits(rest) or not 1 <= int(rest[2:4]) <= 12:
        raise InvalidRead("track 2: bad expiry or service code")
    return CardRead(pan, _bank_or_loyalty(pan, loyalty_ranges))


def _decode_track1(s: str, loyalty_ranges: tuple[str, ...]) -> CardRead:
    end = s.find("?")
    if end < 0 or len(s) - end > 2:
        raise InvalidRead("track 1 without end sentinel")
    fields = s[2:end].split("^")
    if len(fields) < 3:
        raise InvalidRead("track 1: missing fields")
    pan = fields[0].replace(" ", "")
    if not _digits(pan) or not 12 <= len(pan) <= 19:
        raise InvalidRead("track 1: bad card number field")
    if len(fields[2]) < 7 or not _digits(fields[2][:7]):
        raise InvalidRead("track 1: bad expiry or service code")
    return CardRead(pan, _bank_or_loyalty(pan, loyalty_ranges))


def decode_line(
    raw: bytes, *, aim: bool = False, loyalty_ranges: tuple[str, ...] = ()
) -> CardRead:
    """One line reader read (framing already removed) to a card read, or InvalidRead.

    `loyalty_ranges`: the programme's own card-number prefixes, loyalty even inside a
    payment scheme's range. A barcode is always a loyalty card.
    """
    try:
        s = raw.decode("ascii")
    except UnicodeDecodeError:
        raise InvalidRead("not ASCII") from None
    s = _strip_aim(s.strip(" "), aim)
    if not s or not s.isprintable():
        raise InvalidRead("empty or control characters")
    if s.startswith("%B"):
        return _decode_track1(s, loyalty_ranges)
    if s.startswith(";") or "=" in s:
        return _decode_track2(s, loyalty_ranges)
    if _digits(s):
        if ean_valid(s):
            return CardRead(s, "loyalty")
        raise InvalidRead("barcode: bad check digit or length")
    raise InvalidRead("unknown format")


# -- RFID (RDM6300 / EM4100) ----------------------------------------------------------------


class InvalidRfidFrame(ValueError):
    def __init__(self, reason: str, skip: int = 1) -> None:
        super().__init__(reason)
        self.skip = skip


_HEX = frozenset(b"0123456789ABCDEFabcdef")


def parse_rfid_frame(buf: bytes) -> tuple[CardRead | None, bytes]:
    """One RDM6300 frame at the start of `buf`: `(read, rest)`, `(None, buf)` if incomplete.

    Raises `InvalidRfidFrame` (with how many bytes to skip) when `buf` does not start with a
    valid frame. The card number is the 32-bit tag id in decimal, 10 digits, as printed on
    EM4100 cards.
    """
    if not buf:
        return None, buf
    if buf[0] != STX:
        nxt = buf.find(bytes([STX]), 1)
        raise InvalidRfidFrame("no STX", skip=nxt if nxt > 0 else len(buf))
    head = buf[1:RFID_FRAME_LEN]
    bad = next((i for i, b in enumerate(head[:12]) if b not in _HEX), None)
    if bad is not None:
        raise InvalidRfidFrame("not hex")
    if len(buf) < RFID_FRAME_LEN:
        return None, buf
    if buf[13] != ETX:
        raise InvalidRfidFrame("no ETX")
    digits = bytes(buf[1:13]).decode("ascii")
    data = bytes.fromhex(digits[:10])
    check = 0
    for b in data:
        check ^= b
    if check != int(digits[10:12], 16):
        raise InvalidRfidFrame("bad checksum")
    number = f"{int.from_bytes(data[1:5], 'big'):010d}"
    return CardRead(number, "rfid"), bytes(buf[RFID_FRAME_LEN:])


class RfidFramer:
    """Re-syncs on STX, drops and counts bad frames, forgets partial frames gone stale."""

    def __init__(self, *, stale: float = PAUSE) -> None:
        self.stale = stale
        self.dropped = 0
        self._buf = b""
        self._last: float | None = None
        self._in_noise = False

    def feed(self, data: bytes, now: float) -> list[CardRead]:
        if self._buf and self._last is not None and now - self._last >= self.stale:
            self._buf = b""
            self.dropped += 1
        self._last = now
        self._buf += data
        out: list[CardRead] = []
        while self._buf:
            try:
                read, rest = parse_rfid_frame(self._buf)
            except InvalidRfidFrame as exc:
                if self._buf[0] == STX or not self._in_noise:
                    self.dropped += 1
                self._in_noise = self._buf[0] != STX
                self._buf = self._buf[exc.skip :]
                continue
            if read is None:
                break
            self._in_noise = False
            out.append(read)
            self._buf = rest
        return out


class RepeatFilter:
    """One presentation per tag: repeats within `window` seconds of the last sighting."""

    def __init__(self, window: float = 1.0) -> None:
        self.window = window
        self._key: str | None = None
        self._seen = 0.0

    def accept(self, key: str, now: float) -> bool:
        repeat = key == self._key and now - self._seen <= self.window
        self._key, self._seen = key, now
        return not repeat
