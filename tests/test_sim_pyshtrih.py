"""The simulator against pyshtrih, a public Shtrih-M client we did not write.

Our drivers and our simulator are both ours, so they can share a misreading of the spec.
pyshtrih (PyPI) talks to the simulator's pty here: the link exchange, the replies it parses,
and the fiscal document numbering of docs/spec/shtrih-m.md — the shift-open report takes a
number, the X report takes none, `FF0A` gives the types of the fiscal data format.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tillpoint.processes import Processes, read_file, tillpoint_cmd

pyshtrih = pytest.importorskip("pyshtrih", reason="pyshtrih is in the test extras")


def deadline_wait(path: Path, procs: Processes, timeout: float = 30.0) -> str:
    end = time.monotonic() + timeout
    while (text := read_file(path)) is None:
        procs.check_alive()
        if time.monotonic() > end:
            raise AssertionError(f"the simulator did not write {path} in {timeout}s")
        time.sleep(0.02)
    return text


@pytest.fixture
def device(tmp_path: Path) -> Iterator[object]:
    procs = Processes(tmp_path / "logs")
    try:
        procs.start("sim", tillpoint_cmd("sim", "run", "--dir", str(tmp_path),
                                         "--control-port", "0"))
        json.loads(deadline_wait(tmp_path / "control.json", procs))
        dev = pyshtrih.ShtrihM01F(port=str(tmp_path / "printer"), baudrate=115200, timeout=2)
        dev.connect()
        try:
            yield dev
        finally:
            dev.disconnect()
    finally:
        procs.stop_all()


def last_document(dev) -> int:
    return dev.fs_state()["Номер последнего ФД"]


def document_type(dev, number: int) -> int:
    return dev.fs_find_document_by_num(number)["Тип фискального документа"]


def test_pyshtrih_reads_the_simulators_document_numbering(device) -> None:
    dev = device
    assert dev.name == "ШТРИХ-М-ПТК"
    assert last_document(dev) == 0
    dev.open_shift()
    assert last_document(dev) == 1  # the shift-open report is a fiscal document
    assert document_type(dev, 1) == 2
    dev.x_report()
    assert last_document(dev) == 1  # the X report is not

    dev.open_check(0)
    dev.sale(("Tea", 2000, 1250), department_num=1, tax1=1)
    dev.cancel_check()
    assert last_document(dev) == 1  # nor is a cancelled receipt

    dev.open_check(0)
    dev.sale(("Tea", 2000, 1250), department_num=1, tax1=1)
    dev.close_check(cash=3000)
    assert last_document(dev) == 2
    assert document_type(dev, 2) == 3
    dev.z_report()
    assert last_document(dev) == 3
    assert document_type(dev, 3) == 5
    with pytest.raises(pyshtrih.Error):
        dev.fs_find_document_by_num(4)
