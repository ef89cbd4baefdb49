"""Card reader decoders: every framing, every check, and fuzz (no phantom cards)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.devices import card_frames as cf
from protocol.cards import SCHEME_RANGES, luhn_valid, payment_scheme

PAN = "4111111111111111"
EAN = "4006381333931"


def rfid(tag_hex: str) -> bytes:
    data = bytes.fromhex(tag_hex)
    check = 0
    for b in data:
        check ^= b
    return b"\x02" + tag_hex.encode() + f"{check:02X}".encode() + b"\x03"


def track2_with_lrc(track: str) -> str:
    lrc = 0
    for c in track:
        lrc ^= (ord(c) - 0x30) & 0x0F
    return track + chr(0x30 + lrc)


# -- decode_line ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "number", "kind"),
    [
        (f";{PAN}=25121010000000?", PAN, "bank"),
        (f"{PAN}=25121010000000", PAN, "bank"),  # sentinels stripped by the reader
        (f"{PAN}=2512101?", PAN, "bank"),
        (track2_with_lrc(f";{PAN}=25121010000000?"), PAN, "bank"),
        (";7788990011223344=49121200000?", "7788990011223344", "loyalty"),
        (f"%B{PAN}^DOE/JOHN^2512101000000000?", PAN, "bank"),
        (EAN, EAN, "loyalty"),
        ("96385074", "96385074", "loyalty"),  # EAN-8
        (f"]E0{EAN}", EAN, "loyalty"),
    ],
)
def test_decode_good_reads(raw: str, number: str, kind: str) -> None:
    read = cf.decode_line(raw.encode(), aim=True)
    assert read.number == number and read.kind == kind and read.last4 == number[-4:]


@pytest.mark.parametrize(
    "raw",
    [
        "4006381333932",  # bad EAN-13 check digit
        "96385075",  # bad EAN-8 check digit
        "12345",  # digits of no known length
        "400638133393",  # 12 digits: not EAN-13
        f";{PAN}=25121010000000",  # start sentinel, no end sentinel
        f";{PAN}=2513101?",  # month 13
        f";{PAN}=251?",  # expiry and service code cut short
        f";{PAN}=25121010000000?X",  # junk after the end sentinel
        track2_with_lrc(f";{PAN}=25121010000000?")[:-1] + "0",  # wrong LRC (if not 0)
        ";12a4567890?",
        ";123456789012?",  # no field separator: not a card
        f";{PAN}?",
        f"{PAN}?",
        "%B^^?",
        "hello",
        "",
        "\x00\x01",
        "]E0",
        "\xff",
    ],
)
def test_decode_bad_reads_are_refused(raw: str) -> None:
    if raw == track2_with_lrc(f";{PAN}=25121010000000?"):
        pytest.skip("LRC happened to be 0")
    with pytest.raises(cf.InvalidRead) as err:
        cf.decode_line(raw.encode("latin-1"), aim=True)
    assert PAN not in str(err.value)


def test_aim_prefix_refused_when_not_configured() -> None:
    with pytest.raises(cf.InvalidRead):
        cf.decode_line(f"]E0{EAN}".encode(), aim=False)


def test_card_read_repr_shows_last4_only() -> None:
    read = cf.decode_line(f";{PAN}=25121010000000?".encode())
    assert PAN not in repr(read) and PAN not in str(read) and "1111" in repr(read)


def test_ean_check() -> None:
    assert cf.ean_valid(EAN) and cf.ean_valid("5901234123457") and cf.ean_valid("96385074")
    assert not cf.ean_valid("5901234123458") and not cf.ean_valid("59012341234५7")


# -- line framing ---------------------------------------------------------------------------


@pytest.mark.parametrize(("suffix", "end"), [("cr", b"\r"), ("lf", b"\n"), ("crlf", b"\r\n")])
def test_line_suffixes_byte_at_a_time(suffix: cf.Suffix, end: bytes) -> None:
    framer = cf.LineFramer(suffix)
    stream = EAN.encode() + end + b"5901234123457" + end
    out: list[bytes] = []
    for i, b in enumerate(stream):
        out += framer.feed(bytes([b]), now=i * 0.001)
    assert out == [EAN.encode(), b"5901234123457"] and framer.dropped == 0


def test_pause_ends_a_read_without_suffix() -> None:
    framer = cf.LineFramer("none")
    assert framer.feed(EAN[:5].encode(), now=0.0) == []
    assert framer.feed(EAN[5:].encode(), now=0.05) == []
    assert framer.flush(now=0.1) == []  # only 50 ms since the last byte
    assert framer.flush(now=0.16) == [EAN.encode()]
    # a new read after a pause ends the one before it too
    assert framer.feed(b"96385074", now=1.0) == []
    assert framer.feed(b"5901234123457", now=1.2) == [b"96385074"]


def test_stx_etx_framing_and_noise_outside_frames() -> None:
    framer = cf.LineFramer("cr", stx_etx=True)
    out = framer.feed(b"junk\x02" + EAN.encode() + b"\x03\r\n\x02]E0" + b"96385074\x03", now=0)
    assert out == [EAN.encode(), b"]E096385074"]
    assert framer.dropped == 1  # the run of junk
    # a frame cut by a new STX is dropped
    assert framer.feed(b"\x02123\x02" + EAN.encode() + b"\x03", now=0.1) == [EAN.encode()]
    assert framer.dropped == 2


def test_stale_partial_read_and_overlong_line_are_dropped() -> None:
    framer = cf.LineFramer("cr")
    framer.feed(b"12345", now=0)
    assert framer.feed(EAN.encode() + b"\r", now=5) == [EAN.encode()]
    assert framer.dropped == 1
    assert framer.feed(b"9" * 500 + b"\r", now=6) == []
    assert framer.dropped == 2


# -- RFID -----------------------------------------------------------------------------------


def test_rfid_frame_and_number() -> None:
    read, rest = cf.parse_rfid_frame(rfid("0A00BC614E") + b"x")
    assert read is not None and read.kind == "rfid"
    assert read.number == f"{0x00BC614E:010d}" and rest == b"x"


def test_rfid_bad_checksum_and_resync() -> None:
    good = rfid("0A00BC614E")
    bad = good[:11] + (b"0" if good[11:12] != b"0" else b"1") + good[12:]
    framer = cf.RfidFramer()
    assert framer.feed(bad + b"\x02\x02zz" + good, now=0) == [cf.parse_rfid_frame(good)[0]]
    assert framer.dropped >= 1


def test_rfid_byte_at_a_time_and_stale_partial() -> None:
    framer = cf.RfidFramer()
    good = rfid("1234567890")
    out = []
    for i, b in enumerate(good):
        out += framer.feed(bytes([b]), now=i * 0.001)
    assert len(out) == 1
    assert framer.feed(good[:7], now=1.0) == []
    assert framer.feed(good, now=2.0) == [out[0]]  # the stale half was forgotten
    assert framer.dropped == 1


def test_repeat_filter() -> None:
    f = cf.RepeatFilter(window=1.0)
    assert f.accept("a", 0.0)
    assert not f.accept("a", 0.5)
    assert not f.accept("a", 1.4)  # still in the field: each sighting extends the window
    assert f.accept("a", 3.0)
    assert f.accept("b", 3.1)
    assert f.accept("a", 3.2)


# -- fuzz -----------------------------------------------------------------------------------


def _valid(read: cf.CardRead) -> bool:
    """What any card taken from a stream must satisfy: it passed a real check."""
    n = read.number
    if read.kind == "rfid":
        return n.isdigit() and len(n) == 10
    return n.isdigit() and 6 <= len(n) <= 19 and (read.kind != "bank" or bool(payment_scheme(n)))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.sampled_from(["cr", "lf", "crlf", "none"]), st.booleans())
def test_fuzz_line_reader_random_bytes(data: bytes, suffix: cf.Suffix, stx: bool) -> None:
    framer = cf.LineFramer(suffix, stx_etx=stx)
    lines = []
    for i, b in enumerate(data):  # one byte at a time, 1 ms apart
        lines += framer.feed(bytes([b]), now=i * 0.001)
    lines += framer.flush(now=len(data) * 0.001 + 1)
    for raw in lines:
        try:
            read = cf.decode_line(raw, aim=True)
        except cf.InvalidRead:
            continue
        assert _valid(read)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([EAN, "96385074", f";{PAN}=25121010000000?", f"%B{PAN}^A/B^2512101?"]),
    st.integers(0, 100),
    st.integers(0, 255),
)
def test_fuzz_one_changed_character_is_no_card_or_a_checked_one(
    good: str, pos: int, value: int
) -> None:
    raw = bytearray(good.encode())
    pos %= len(raw)
    if raw[pos] == value:
        return
    raw[pos] = value
    try:
        read = cf.decode_line(bytes(raw), aim=True)
    except cf.InvalidRead:
        return
    # an EAN with one digit changed always fails its check digit; a track's number changed
    # in one digit is a Luhn failure for a bank card (then it is at most a loyalty number)
    assert not good.isdigit()
    assert _valid(read)
    if read.kind == "bank":
        assert read.number == PAN or (luhn_valid(read.number) and payment_scheme(read.number))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_rfid_random_bytes(data: bytes) -> None:
    framer = cf.RfidFramer()
    reads = []
    for i, b in enumerate(data):
        reads += framer.feed(bytes([b]), now=i * 0.001)
    assert all(_valid(r) for r in reads)


@settings(max_examples=300, deadline=None)
@given(
    st.from_regex(r"[0-9A-F]{10}", fullmatch=True),
    st.integers(0, 13),
    st.integers(1, 255),
    st.binary(max_size=20),
)
def test_fuzz_rfid_mutated_frame_is_never_taken(tag: str, pos: int, xor: int, junk: bytes) -> None:
    frame = bytearray(rfid(tag))
    frame[pos] ^= xor
    framer = cf.RfidFramer()
    reads = framer.feed(junk.replace(b"\x02", b"") + bytes(frame), now=0)
    good = cf.parse_rfid_frame(rfid(tag))[0]
    # a changed hex digit fails the checksum, unless it is a case change of the same digit
    for r in reads:
        assert r == good and bytes(frame).upper() == rfid(tag)
    # and the next good frame is found after the damage
    assert framer.feed(b"\x03" * 14 + rfid(tag), now=0.01)[-1:] == [good]


# -- bank or loyalty: by the payment scheme's range, never by Luhn alone ----------------------


def luhn_digit(body: str) -> str:
    """The digit that makes `body + digit` pass Luhn."""
    return next(d for d in "0123456789" if luhn_valid(body + d))


def ean13_digit(body: str) -> str:
    return next(d for d in "0123456789" if cf.ean_valid(body + d))


def _in_scheme_range(number: str) -> bool:
    return any(lo <= int(number[:w]) <= hi for _, w, lo, hi in SCHEME_RANGES)


ean13 = st.from_regex(r"[0-9]{12}", fullmatch=True).map(lambda b: b + ean13_digit(b))


@settings(max_examples=400, deadline=None)
@given(ean13)
def test_loyalty_ean_outside_every_scheme_range_is_never_bank(number: str) -> None:
    """The bug: one 13-digit EAN in ten passes Luhn too, and was called a bank card."""
    if _in_scheme_range(number):
        return
    assert payment_scheme(number) is None
    assert cf.decode_line(number.encode()).kind == "loyalty"  # scanned
    assert cf.decode_line(f";{number}=49121200000?".encode()).kind == "loyalty"  # on a stripe


def test_luhn_passing_ean_of_the_programme_is_loyalty() -> None:
    # 2990000000026 passes Luhn as well as its EAN check: a Luhn test alone called it "bank"
    assert luhn_valid("2990000000026") and cf.ean_valid("2990000000026")
    assert payment_scheme("2990000000026") is None
    assert cf.decode_line(b";2990000000026=49121200000?").kind == "loyalty"
    # an in-store EAN in Mir's range that passes Luhn: loyalty once the programme says so
    body = "220012345678"
    number = body + ean13_digit(body)
    ranges = ("2200123",)
    stripe = f";{number}=49121200000?".encode()
    if luhn_valid(number):
        assert cf.decode_line(stripe).kind == "bank"
    assert cf.decode_line(stripe, loyalty_ranges=ranges).kind == "loyalty"
    assert payment_scheme(number, ranges) is None


@pytest.mark.parametrize(
    ("prefix", "scheme"),
    [("2200", "mir"), ("2204", "mir"), ("4", "visa"), ("51", "mastercard"),
     ("55", "mastercard"), ("2221", "mastercard"), ("2720", "mastercard"), ("50", "maestro"),
     ("56", "maestro"), ("69", "maestro"), ("62", "unionpay"), ("3528", "jcb"),
     ("3589", "jcb"), ("34", "amex"), ("37", "amex")],
)
def test_scheme_ranges(prefix: str, scheme: str) -> None:
    body = prefix.ljust(15, "7")
    assert payment_scheme(body + luhn_digit(body)) == scheme
    bad = body + str((int(luhn_digit(body)) + 1) % 10)
    assert payment_scheme(bad) is None  # in range but failing Luhn


@pytest.mark.parametrize(
    "prefix", ["2205", "2220", "2721", "30", "3527", "3590", "33", "1", "7", "8", "9"])
def test_outside_scheme_ranges_is_loyalty(prefix: str) -> None:
    body = prefix.ljust(15, "3")
    assert payment_scheme(body + luhn_digit(body)) is None


@settings(max_examples=300, deadline=None)
@given(st.integers(6, 19).flatmap(lambda n: st.from_regex(rf"[0-9]{{{n}}}", fullmatch=True)),
       st.booleans(), st.booleans())
def test_track2_without_separator_is_never_a_card(pan: str, start: bool, end: bool) -> None:
    raw = (";" if start else "") + pan + ("?" if end else "")
    if not start and not end:
        return  # bare digits are a barcode, checked as an EAN
    with pytest.raises(cf.InvalidRead):
        cf.decode_line(raw.encode())


track2_pan = st.integers(12, 18).flatmap(
    lambda n: st.from_regex(rf"[0-9]{{{n}}}", fullmatch=True)).map(lambda b: b + luhn_digit(b))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(track2_pan, st.integers(1, 12), st.from_regex(r"[0-9]{3,12}",
             fullmatch=True), st.booleans()), min_size=1, max_size=4),
    st.sampled_from(["cr", "lf", "crlf"]),
    st.data(),
)
def test_track2_stream_round_trip(cards: list[tuple[str, int, str, bool]], suffix: cf.Suffix,
                                  data: st.DataObject) -> None:
    """Any valid track 2 reads, in any chunks, give each card once, with its scheme's kind."""
    end = {"cr": b"\r", "lf": b"\n", "crlf": b"\r\n"}[suffix]
    stream = b""
    for pan, month, rest, lrc in cards:
        track = f";{pan}=29{month:02d}{rest}?"
        stream += (track2_with_lrc(track) if lrc else track).encode() + end
    framer = cf.LineFramer(suffix)
    lines: list[bytes] = []
    pos, t = 0, 0.0
    while pos < len(stream):
        n = data.draw(st.integers(1, 8))
        t += 0.001
        lines += framer.feed(stream[pos:pos + n], now=t)
        pos += n
    reads = [cf.decode_line(raw) for raw in lines]
    assert [r.number for r in reads] == [c[0] for c in cards]
    for r in reads:
        assert r.kind == ("bank" if payment_scheme(r.number) else "loyalty")
