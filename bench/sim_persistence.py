"""Time per receipt as fiscal history grows: ``python -m bench.sim_persistence [N ...]``.

Drives whole receipts (open, sale line, close) through the link layer and the command layer of
one ``Simulator`` in-process: no pty, no event loop, but the real persistence in a temporary
directory. Prints the mean time per receipt and the mean over the last 10% of receipts, which
shows whether the cost per receipt grows with history. A measuring tool, not a test.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from hardware_sim.shtrih_frames import build_frame
from hardware_sim.simulator import SimOptions, Simulator

CASHIER = (1).to_bytes(4, "little")
ADMIN = (30).to_bytes(4, "little")
ACK = b"\x06"


def _command(sim: Simulator, payload: bytes) -> None:
    out = sim.link.feed(build_frame(payload), time.monotonic())
    # ACK, then STX LEN CMD ERR ...: the error code sits after the command byte(s).
    err = out[4] if payload[0] != 0xFF else out[5]
    if out[:1] != ACK or err != 0:
        raise RuntimeError(f"command {payload[:2].hex()} failed: {out.hex(' ')}")
    sim.link.feed(ACK, time.monotonic())


def _receipt() -> list[bytes]:
    sale = b"\x80" + CASHIER + (1000).to_bytes(5, "little") + (12345).to_bytes(5, "little")
    sale += b"\x01" + b"\x01\x00\x00\x00" + "Кофе".encode("cp1251")
    close = b"\x85" + CASHIER + (20000).to_bytes(5, "little") + bytes(15 + 2 + 4) + bytes(40)
    return [b"\x8d" + CASHIER + b"\x00", sale, close]


def run(receipts: int) -> tuple[float, float]:
    """Mean seconds per receipt overall and over the last tenth."""
    with tempfile.TemporaryDirectory() as directory:
        sim = Simulator(SimOptions(directory=Path(directory)))
        _command(sim, b"\xe0" + CASHIER)
        payloads = _receipt()
        times: list[float] = []
        for _ in range(receipts):
            started = time.perf_counter()
            for payload in payloads:
                _command(sim, payload)
            times.append(time.perf_counter() - started)
        _command(sim, b"\x41" + ADMIN)  # the Z report counts the shift's receipts
        tail = times[-max(1, receipts // 10) :]
        return sum(times) / len(times), sum(tail) / len(tail)


def main(argv: list[str]) -> None:
    for receipts in [int(a) for a in argv] or [500, 2000]:
        mean, tail = run(receipts)
        print(
            f"N={receipts:5d}: {mean * 1000:7.3f} ms/receipt mean,"
            f" {tail * 1000:7.3f} ms/receipt over the last {max(1, receipts // 10)}"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
