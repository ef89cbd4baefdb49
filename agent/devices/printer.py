"""The Shtrih-M fiscal printer as the checkout flow sees it: receipts, shifts, state.

`ShtrihPrinter` owns a `Supervisor` that keeps a `SerialConnection` open and a `ShtrihLink`
on it. Every operation takes the printer lock, so a receipt is never interleaved with a
status poll or another receipt. Device errors become `PrinterError` with a message the
cashier can act on.

Opening a shift writes a fiscal document (the shift-open report) and so moves the fiscal
document number on (docs/spec/shtrih-m.md, "State"). So the checkout flow opens the shift
first (`ready_for_receipt`) and takes the number it returns as the one to judge the receipt
by; `registered_receipt` then asks the device (`FF0A`) which later documents are receipts, so
a shift-open or shift-close report is never taken for one.

A receipt that fails part way (no paper, lost contact) is remembered: calling
`print_receipt` again with the same receipt resumes it where the device stopped, or returns
the fiscal document number if the device did register it, so one sale never gives two fiscal
documents. Anything else with a document open is refused until the document is finished or
cancelled (`cancel_open_document`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Literal

from agent.devices import shtrih_commands as cmd
from agent.devices.serial_port import SerialConnection
from agent.devices.shtrih_errors import (
    NO_PAPER,
    NOT_CONNECTED,
    PAYMENTS_LESS_THAN_TOTAL,
    RECEIPT_OPEN,
    SHIFT_OVER_24H,
    STILL_PRINTING,
    WAITING_CONTINUE,
    PrinterError,
    message_for,
)
from agent.devices.shtrih_frames import Frame
from agent.devices.shtrih_link import LinkError, LinkTimings, ReplyLost, ShtrihLink
from agent.devices.supervisor import Supervisor
from agent.failpoints import failpoint

__all__ = [
    "FiscalLine",
    "FiscalReceipt",
    "PrinterError",
    "PrinterState",
    "ShtrihPrinter",
]

log = logging.getLogger(__name__)

POINTS_TEXT = "Points"
DISCOUNT_TEXT = "Discount"


@dataclass(frozen=True)
class FiscalLine:
    text: str
    qty: int  # thousandths
    price: int  # kopecks per unit
    department: int = 1
    tax: int = 0  # tax group 0..4, 0 = none
    points_discount: int = 0  # kopecks of this line paid with points
    discount: int = 0  # kopecks of instant discount (campaigns) on this line

    @property
    def total(self) -> int:
        """Line sum in kopecks, rounded half up as the device does."""
        return (self.qty * self.price + 500) // 1000


@dataclass(frozen=True)
class FiscalReceipt:
    kind: Literal["sale", "return"]
    lines: tuple[FiscalLine, ...]
    cash: int  # kopecks
    card: int = 0  # kopecks, payment type 2
    text_lines: tuple[str, ...] = ()  # loyalty lines printed before closing

    @property
    def points(self) -> int:
        return sum(line.points_discount for line in self.lines)


@dataclass
class PrinterState:
    connected: bool = False
    mode: int | None = None
    submode: int | None = None
    shift_open: bool = False
    shift_over_24h: bool = False
    paper: bool = True
    document_open: bool = False
    last_fiscal_document: int | None = None
    last_error: str | None = None


@dataclass(frozen=True)
class _Step:
    frame: bytes
    command: int


@dataclass
class _Progress:
    """How far a receipt got on the device, to resume it without repeating a step."""

    receipt: FiscalReceipt
    steps: list[_Step]
    last_before: int  # last fiscal document number before this receipt
    done: int = 0
    uncertain: bool = False  # a step's outcome is unknown (reply lost): cannot resume
    opened: bool = field(default=False)


class ShtrihPrinter:
    def __init__(
        self,
        port: str,
        *,
        baudrate: int = 115200,
        password: int = 1,
        admin_password: int = 30,
        points_mode: Literal["discount", "payment"] = "discount",
        points_payment_type: int = 4,
        line_width: int = 48,
        timings: LinkTimings | None = None,
        status_interval: float | None = 5.0,
        connect_wait: float = 3.0,
        busy_wait: float = 30.0,
    ) -> None:
        if points_mode not in ("discount", "payment"):
            raise ValueError("points_mode must be 'discount' or 'payment'")
        if not 2 <= points_payment_type <= 4:
            raise ValueError("points_payment_type must be 2..4")
        if line_width not in cmd.LINE_WIDTHS:
            raise ValueError(f"line_width must be one of {cmd.LINE_WIDTHS}")
        self.port = port
        self.baudrate = baudrate
        self.password = password
        self.admin_password = admin_password
        self.points_mode = points_mode
        self.points_payment_type = points_payment_type
        self.line_width = line_width
        self.timings = timings or LinkTimings()
        self.status_interval = status_interval
        self.connect_wait = connect_wait
        self.busy_wait = busy_wait
        self._state = PrinterState()
        self._link: ShtrihLink | None = None
        self._ready = asyncio.Event()
        self._lock = asyncio.Lock()
        self._progress: _Progress | None = None
        self._supervisor = Supervisor(f"printer {port}", self._session)
        #: faults by kind since start, for monitoring: "link" (no answer), "device" (an
        #: error code, paper out among them), "malformed" (an answer that makes no sense)
        self.errors: Counter[str] = Counter()
        #: monotonic time of the last (re)connection, for status and measurements
        self.connected_at: float | None = None

    def __repr__(self) -> str:
        return f"ShtrihPrinter({self.port!r}, connected={self._state.connected})"

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the reconnect supervisor; never fails because the port is absent."""
        self._supervisor.start()

    async def stop(self) -> None:
        await self._supervisor.stop()

    @property
    def sessions_lost(self) -> int:
        """Connections to the device that failed or broke since the agent started."""
        return self._supervisor.sessions_lost

    def state(self) -> PrinterState:
        copy = PrinterState(**vars(self._state))
        if not copy.connected and copy.last_error is None:
            copy.last_error = NOT_CONNECTED
        return copy

    async def wait_connected(self, timeout: float) -> bool:
        self._usable_link()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._ready.wait()
                return True
        return False

    async def _session(self, connected: Callable[[], None]) -> None:
        link = ShtrihLink(lambda data: conn.write(data), self.timings)
        conn = await SerialConnection.open(self.port, baudrate=self.baudrate, on_data=link.feed)

        def lost(f: asyncio.Future[BaseException | None]) -> None:
            link.connection_lost(f.result())
            self._ready.clear()
            self._state.connected = False

        conn.closed.add_done_callback(lost)
        try:
            async with self._lock:
                self._link = link
                self._state.last_error = None
                await self._refresh_status()  # the device must answer before we call it up
            self._state.connected = True
            self.connected_at = time.monotonic()
            self._ready.set()
            connected()
            await self._watch(conn)
        finally:
            self._ready.clear()
            self._link = None
            self._state.connected = False
            await conn.close()

    async def _watch(self, conn: SerialConnection) -> None:
        """Until the port closes; poll the status now and then to keep `state()` fresh."""
        while True:
            wait = self.status_interval
            done, _ = await asyncio.wait({conn.closed}, timeout=wait)
            if done:
                return
            if self._lock.locked():
                continue
            async with self._lock:
                try:
                    await self._refresh_status()
                except PrinterError as exc:
                    if exc.code is None:
                        # silent device or closed port: let the supervisor start over, so
                        # `state()` says disconnected until the device answers again
                        return

    # -- requests --------------------------------------------------------------------------

    def _usable_link(self) -> ShtrihLink | None:
        link = self._link
        if link is not None and link.is_down:
            # the port failed under a request before the session noticed: not ready
            self._ready.clear()
            self._state.connected = False
            return None
        return link

    @contextlib.asynccontextmanager
    async def _locked(self) -> AsyncIterator[None]:
        """Wait for a connection, then take the lock: the session needs the lock to connect."""
        await self._link_ready()
        async with self._lock:
            yield

    async def _link_ready(self) -> ShtrihLink:
        if self._usable_link() is None:
            await self.wait_connected(self.connect_wait)
        link = self._usable_link()
        if link is None:
            self._state.last_error = NOT_CONNECTED
            raise PrinterError(None, NOT_CONNECTED)
        return link

    async def _request(self, frame: bytes, *, idempotent: bool) -> Frame:
        link = self._link
        if link is None:
            raise PrinterError(None, NOT_CONNECTED)
        try:
            return await link.request(frame, idempotent=idempotent)
        except LinkError as exc:
            self.errors["link"] += 1
            err = PrinterError(None, message_for(None))
            self._state.last_error = err.message
            log.warning("printer link: %s", exc)
            raise err from exc

    async def _call(self, frame: bytes, command: int, *, idempotent: bool = False) -> bytes:
        """One command; a device still busy printing refused it, so it is sent again."""
        delay = 0.02
        deadline = time.monotonic() + self.busy_wait
        while True:
            reply = await self._request(frame, idempotent=idempotent)
            try:
                return self._payload(reply, command)
            except PrinterError as exc:
                if exc.code != STILL_PRINTING or time.monotonic() + delay > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(0.25, delay * 2)

    def _payload(self, reply: Frame, command: int) -> bytes:
        try:
            payload = cmd.reply_payload(reply, command)
        except cmd.DeviceError as exc:
            if exc.code != STILL_PRINTING:  # busy is a wait, not a fault
                self.errors["device"] += 1
            err = PrinterError(exc.code)
            self._state.last_error = err.message
            raise err from None
        except cmd.MalformedReply as exc:
            self.errors["malformed"] += 1
            self._state.last_error = message_for(None)
            raise PrinterError(None) from exc
        return payload

    async def _refresh_status(self) -> cmd.ShortStatus:
        frame = cmd.encode_short_status(self.password)
        reply = await self._request(frame, idempotent=True)
        try:
            st = cmd.decode_short_status(reply)
        except cmd.DeviceError as exc:
            raise PrinterError(exc.code) from None
        except cmd.MalformedReply as exc:
            raise PrinterError(None) from exc
        s = self._state
        s.mode, s.submode = st.mode, st.submode
        s.shift_open, s.shift_over_24h = st.shift_open, st.shift_over_24h
        s.paper, s.document_open = st.paper, st.document_open
        if st.submode == 3:
            s.last_error = message_for(WAITING_CONTINUE)
        elif not st.paper:
            s.last_error = message_for(NO_PAPER)
        elif st.shift_over_24h:
            s.last_error = message_for(SHIFT_OVER_24H)
        return st

    async def _last_document(self) -> int:
        frame = cmd.encode_simple(cmd.FS_STATUS, self.admin_password)
        reply = await self._request(frame, idempotent=True)
        try:
            number = cmd.decode_fs_status(reply).last_document
        except cmd.DeviceError as exc:
            raise PrinterError(exc.code) from None
        except cmd.MalformedReply as exc:
            raise PrinterError(None) from exc
        self._state.last_fiscal_document = number
        return number

    # -- the API the checkout flow calls ---------------------------------------------------

    async def status(self) -> PrinterState:
        async with self._locked():
            await self._refresh_status()
        return self.state()

    async def last_fiscal_document(self) -> int:
        async with self._locked():
            return await self._last_document()

    async def document_open(self) -> bool:
        async with self._locked():
            return (await self._refresh_status()).document_open

    async def cancel_open_document(self) -> None:
        async with self._locked():
            if (await self._refresh_status()).document_open:
                await self._call(
                    cmd.encode_simple(cmd.CANCEL_RECEIPT, self.password), cmd.CANCEL_RECEIPT
                )
                await self._refresh_status()
            self._progress = None

    async def ready_for_receipt(self) -> int:
        """Open the shift if it is closed; the last fiscal document number after that.

        A receipt printed next is registered exactly when the number moves past this one:
        the shift-open report, which takes a number of its own, is already behind it.
        """
        async with self._locked():
            st = await self._refresh_status()
            if not st.shift_open:
                self._check_printable(st, resuming=False)
                await self._call(cmd.encode_simple(cmd.OPEN_SHIFT, self.password), cmd.OPEN_SHIFT)
                await self._refresh_status()
            return await self._last_document()

    async def registered_receipt(self, after: int, kind: Literal["sale", "return"]) -> int | None:
        """The number of a receipt of `kind` the device registered after document `after`,
        or None. Judged by each new document's type (`FF0A`), never by the count alone: a
        shift-open or shift-close report takes a number too."""
        async with self._locked():
            last = await self._last_document()
            # Nothing else prints while a receipt is unfinished, so this is a few documents;
            # newest first, as the receipt is the last thing the device did.
            for number in range(last, after, -1):
                found = await self._find_document(number)
                if found.document_type != cmd.FN_DOC_RECEIPT:
                    continue
                operation = cmd.receipt_operation(found)
                if operation is None or operation == cmd.OPERATION_BY_KIND[kind]:
                    return number
            return None

    async def _find_document(self, number: int) -> cmd.FoundDocument:
        frame = cmd.encode_find_document(self.admin_password, number)
        reply = await self._request(frame, idempotent=True)
        try:
            return cmd.decode_find_document(reply)
        except cmd.DeviceError as exc:
            raise PrinterError(exc.code) from None
        except cmd.MalformedReply as exc:
            raise PrinterError(None) from exc

    async def continue_printing(self) -> None:
        """After the paper was replaced: `B0`. Harmless when nothing waits for it."""
        async with self._locked():
            st = await self._refresh_status()
            if st.submode in (2, 3):
                await self._call(
                    cmd.encode_simple(cmd.CONTINUE_PRINTING, self.admin_password),
                    cmd.CONTINUE_PRINTING,
                )
                await self._refresh_status()
            if self._state.paper and self._state.submode != 3:
                self._state.last_error = None

    async def x_report(self) -> None:
        async with self._locked():
            await self._call(cmd.encode_simple(cmd.X_REPORT, self.admin_password), cmd.X_REPORT)

    async def close_shift(self) -> int:
        """Z report; returns its fiscal document number."""
        async with self._locked():
            st = await self._refresh_status()
            if st.document_open:
                raise PrinterError(RECEIPT_OPEN)
            before = await self._last_document()
            try:
                await self._call(cmd.encode_simple(cmd.Z_REPORT, self.admin_password), cmd.Z_REPORT)
            except PrinterError as exc:
                if exc.code is not None:
                    raise
                # lost reply: the device says whether the report was made
                after = await self._last_document()
                if after == before:
                    raise
            await self._refresh_status()
            return await self._last_document()

    async def print_receipt(self, r: FiscalReceipt) -> int:
        """Print `r` as one fiscal receipt; returns its fiscal document number."""
        async with self._locked():
            st = await self._refresh_status()
            progress = await self._resume_or_start(r, st)
            if isinstance(progress, int):
                return progress
            self._progress = progress
            await self._run_steps(progress)
            self._progress = None
            self._state.last_error = None
            await self._refresh_status()
            number = await self._last_document()
            if number == progress.last_before:
                raise PrinterError(None, "the printer did not register the receipt: check it")
            return number

    # -- receipts --------------------------------------------------------------------------

    async def _resume_or_start(self, r: FiscalReceipt, st: cmd.ShortStatus) -> _Progress | int:
        prev = self._progress
        if prev is not None and prev.receipt == r:
            last = await self._last_document()
            if not st.document_open:
                if prev.opened and last > prev.last_before:
                    self._progress = None
                    return last  # registered before contact was lost: never print it twice
                prev = None  # never opened, or cancelled: start again
            elif prev.uncertain:
                await self._call(
                    cmd.encode_simple(cmd.CANCEL_RECEIPT, self.password), cmd.CANCEL_RECEIPT
                )
                st = await self._refresh_status()
                prev = None
            else:
                self._check_printable(st, resuming=True)
                return prev
        if st.document_open:
            raise PrinterError(RECEIPT_OPEN)
        self._check_printable(st, resuming=False)
        self._check_payments(r)
        if not st.shift_open:
            await self._call(cmd.encode_simple(cmd.OPEN_SHIFT, self.password), cmd.OPEN_SHIFT)
        return _Progress(receipt=r, steps=self._plan(r), last_before=await self._last_document())

    def _check_printable(self, st: cmd.ShortStatus, *, resuming: bool) -> None:
        if st.submode == 3:
            raise PrinterError(WAITING_CONTINUE)
        if not st.paper:
            raise PrinterError(NO_PAPER)
        if st.shift_over_24h and not resuming:
            raise PrinterError(SHIFT_OVER_24H)

    def _check_payments(self, r: FiscalReceipt) -> None:
        if not r.lines:
            raise PrinterError(None, "the receipt has no lines")
        total = sum(line.total - line.discount for line in r.lines)
        paid = r.cash + r.card
        if self.points_mode == "discount":
            total -= r.points
        else:
            paid += r.points
        if paid < total:
            raise PrinterError(PAYMENTS_LESS_THAN_TOTAL)

    def _plan(self, r: FiscalReceipt) -> list[_Step]:
        pw, width = self.password, self.line_width
        receipt_type = cmd.RECEIPT_SALE if r.kind == "sale" else cmd.RECEIPT_RETURN_SALE
        steps = [_Step(cmd.encode_open_receipt(pw, receipt_type), cmd.OPEN_RECEIPT)]
        for line in r.lines:
            taxes = cmd.tax_groups(line.tax)
            frame = cmd.encode_line(
                pw,
                quantity=line.qty,
                price=line.price,
                department=line.department,
                taxes=taxes,
                text=line.text,
                width=width,
                is_return=r.kind == "return",
            )
            steps.append(_Step(frame, cmd.RETURN_SALE if r.kind == "return" else cmd.SALE))
            if line.discount:
                frame = cmd.encode_discount(
                    pw, amount=line.discount, taxes=taxes, text=DISCOUNT_TEXT, width=width
                )
                steps.append(_Step(frame, cmd.DISCOUNT))
            if line.points_discount and self.points_mode == "discount":
                frame = cmd.encode_discount(
                    pw, amount=line.points_discount, taxes=taxes, text=POINTS_TEXT, width=width
                )
                steps.append(_Step(frame, cmd.DISCOUNT))
        for text in r.text_lines:
            steps.append(_Step(cmd.encode_print_text(pw, text, width), cmd.PRINT_TEXT))
        payments = [r.cash, r.card, 0, 0]
        if self.points_mode == "payment":
            payments[self.points_payment_type - 1] += r.points
        steps.append(
            _Step(cmd.encode_close_receipt(pw, payments=payments, width=width), cmd.CLOSE_RECEIPT)
        )
        return steps

    async def _run_steps(self, p: _Progress) -> None:
        for i in range(p.done, len(p.steps)):
            step = p.steps[i]
            try:
                await self._call(step.frame, step.command)
            except PrinterError as exc:
                cause = exc.__cause__
                if isinstance(cause, LinkError):
                    # ReplyLost or no link: the step may or may not have run
                    p.uncertain = True
                    p.opened = True
                    if isinstance(cause, ReplyLost):
                        log.warning("printer: reply to step %d lost", i)
                elif i == 0:
                    p.opened = False
                # a refused step did not run: resuming sends it again
                with contextlib.suppress(PrinterError):
                    await self._refresh_status()
                raise
            p.done = i + 1
            if i == 0:
                p.opened = True
                failpoint("receipt_opened")  # crash tests: killed with the receipt open
