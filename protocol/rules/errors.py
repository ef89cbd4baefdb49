"""The engine's exceptions: each one says what is wrong in words a person can act on."""

from __future__ import annotations


class RuleSetError(ValueError):
    """A rule-set document that cannot be published; `errors` lists (path, problem) pairs."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = list(errors)
        shown = "; ".join(
            f"{path or '<document>'}: {problem}" for path, problem in self.errors[:20])
        more = f" (and {len(self.errors) - 20} more)" if len(self.errors) > 20 else ""
        super().__init__(f"invalid rule set: {shown}{more}")


class InputError(ValueError):
    """A receipt, line or customer the engine cannot price (bad types or negative amounts)."""


class RedemptionError(ValueError):
    """The customer asked to spend points the rules do not allow."""


class ReturnError(ValueError):
    """A return that does not fit the original receipt (unknown line, more than was bought)."""
