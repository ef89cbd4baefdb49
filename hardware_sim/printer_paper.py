"""The receipt roll: paper sensor submodes, running out after N lines, and the paper files.

Every printed line lands in ``DIR/paper/NNNNNN.txt`` (one file per document, named by a paper
sequence, since cancelled receipts have no fiscal number). Lines that could not be printed
because the paper ran out are held and printed after paper replacement and command ``B0``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SUBMODE_PAPER = 0
SUBMODE_NO_PAPER_IDLE = 1
SUBMODE_NO_PAPER_PRINTING = 2
SUBMODE_WAITING_CONTINUE = 3
SUBMODE_PRINTING = 5


@dataclass(frozen=True)
class PaperFile:
    name: str
    text: str


class PaperRoll:
    def __init__(self, paper_dir: Path) -> None:
        self.paper_dir = paper_dir
        self.paper_dir.mkdir(parents=True, exist_ok=True)
        self.submode = SUBMODE_PAPER
        self.lines_left: int | None = None  # None: plenty of paper
        self._held: list[tuple[str, str]] = []

    @property
    def present(self) -> bool:
        return self.submode in (SUBMODE_PAPER, SUBMODE_WAITING_CONTINUE)

    def print_lines(self, file_name: str, lines: list[str]) -> None:
        if self.submode != SUBMODE_PAPER:
            self._held.extend((file_name, line) for line in lines)
            return
        printed = lines
        if self.lines_left is not None and len(lines) >= self.lines_left:
            # The roll ends under the print head: the rest of this document waits.
            printed, rest = lines[: self.lines_left], lines[self.lines_left :]
            self._held.extend((file_name, line) for line in rest)
            self.lines_left = None
            self.submode = SUBMODE_NO_PAPER_PRINTING
        elif self.lines_left is not None:
            self.lines_left -= len(lines)
        if printed:
            self._append(file_name, printed)  # one open per command, not per line

    def run_out_now(self) -> None:
        self.lines_left = None
        if self.submode == SUBMODE_PAPER:
            self.submode = SUBMODE_NO_PAPER_IDLE
        elif self.submode == SUBMODE_WAITING_CONTINUE:
            self.submode = SUBMODE_NO_PAPER_PRINTING

    def run_out_after(self, lines: int) -> None:
        if lines <= 0:
            self.run_out_now()
            return
        self.lines_left = lines

    def replace(self) -> None:
        self.lines_left = None
        if self.submode == SUBMODE_NO_PAPER_IDLE:
            self.submode = SUBMODE_PAPER
        elif self.submode == SUBMODE_NO_PAPER_PRINTING:
            self.submode = SUBMODE_WAITING_CONTINUE

    def continue_printing(self) -> None:
        """Command B0 in submode 3: print what was held, back to normal."""
        held, self._held = self._held, []
        self.submode = SUBMODE_PAPER
        for file_name, line in held:
            self._append(file_name, [line])  # rare, and held lines may span files

    def _append(self, file_name: str, lines: list[str]) -> None:
        with (self.paper_dir / file_name).open("a", encoding="utf-8") as f:
            f.writelines(line + "\n" for line in lines)

    def files(self) -> list[PaperFile]:
        return [
            PaperFile(path.name, path.read_text(encoding="utf-8"))
            for path in sorted(self.paper_dir.glob("*.txt"))
        ]
