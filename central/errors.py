"""The one kind of refusal the central's domain code raises: a status and a message that
says what is wrong. The web layer answers it as it is, so handlers need no translating."""

from __future__ import annotations


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
