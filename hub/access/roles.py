"""The three roles, each allowed everything the one before it is.

- ``viewer``: reads everything (the CIS pulling a cycle file, reporting);
- ``operator``: also works the cycle — runs its steps, resolves exceptions,
  sends re-read routes, verifies exports;
- ``admin``: also manages collectors, tokens, operator logins and rates.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


_RANKS = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


class AccessError(Exception):
    """A token, user or session change that cannot be made (unknown name, duplicate, …)."""


def parse_role(text: str) -> Role:
    try:
        return Role(text)
    except ValueError:
        raise AccessError(f"{text!r} is not a role: viewer, operator or admin") from None
