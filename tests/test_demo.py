"""`tillpoint demo` as a user runs it: a real store, a day of sales, a true reconciliation."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Whole demo stores take minutes on a busy machine; `-m 'not slow'` leaves them out.
pytestmark = pytest.mark.slow


def test_demo_plays_a_day_and_the_ledger_matches_the_journals(tmp_path):
    # The size the README's command runs (its defaults): a smaller day once hid a till limit
    # (typed card numbers a minute) that the README's demo ran into.
    out = subprocess.run(
        [sys.executable, "-m", "tillpoint", "demo", "--json", "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout)
    assert summary["receipts"] == 100 and summary["tills"] == 2
    assert summary["ledger_matches_journals"] is True
    assert summary["returns"] >= 1 and summary["points_redeemed"] > 0
    assert summary["returns_at_another_till"] >= 1
    assert 0 < summary["members"] <= 20
    assert summary["non_member_receipts"] > 0
    # Points were spent only with the customer present (card at the reader or the app's
    # code), and the central found every proof good.
    assert summary["presence_alerts"] == 0
    # Every process it started is gone: nothing holds the central's port file any more.
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    assert leftovers.stdout.strip() == ""


def test_ctrl_c_stops_the_demo_and_every_process_it_started(tmp_path):
    import signal
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "tillpoint", "demo", "--receipts", "100000", "--tills", "1",
         "--dir", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # As from a terminal: a suite started in the background by a shell without job control
        # inherits SIGINT ignored, and Python would then keep ignoring the Ctrl-C under test.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        # Wait until the day is under way: the till has printed its first receipt.
        while not list((tmp_path / "till-1" / "devices" / "paper").glob("*.txt")):
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "the demo never got going"
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        # A deadline, not a pace: on a loaded 2-core machine stopping every process takes a while.
        _, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            # The demo's children run in process groups of their own: a failed run must not
            # leave them selling to nobody for the rest of the suite.
            subprocess.run(["pkill", "-KILL", "-f", str(tmp_path)], check=False)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    assert leftovers.stdout.strip() == ""
