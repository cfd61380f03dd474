"""What can go wrong with a firmware profile, said so that a person can fix it.

All of them are :class:`protocols.driver.ProfileError`, so code that drives a
meter catches one type whether the profile was wrong on disk or wrong for the
meter. A broken file names itself and lists every problem as ``(key, why)``;
a missing profile says what does exist.
"""

from __future__ import annotations

from pathlib import Path

from protocols.driver import ProfileError as _DriverProfileError


class ProfileError(_DriverProfileError):
    """Base of this package's errors: a profile that cannot be loaded or found."""


class ProfileValidationError(ProfileError):
    """A profile file with problems; ``problems`` lists every one as ``(key, why)``.

    ``key`` is a dotted path into the file (``channels.energy_import_kwh.type``),
    ``(file)`` for an unreadable file or ``(syntax)`` for broken YAML.
    """

    def __init__(self, path: Path, problems: list[tuple[str, str]]) -> None:
        self.path = Path(path)
        self.problems = list(problems)
        listed = "; ".join(f"{key}: {why}" for key, why in self.problems)
        count = len(self.problems)
        super().__init__(
            f"{self.path}: invalid profile ({count} problem{'s' * (count != 1)}): {listed}"
        )

    def lines(self) -> list[str]:
        """One ``file: key: why`` line per problem, as ``edge-agent profiles check`` prints."""
        return [f"{self.path}: {key}: {why}" for key, why in self.problems]


class ProfileNotFound(ProfileError):
    """No profile has this id, or none covers this model and firmware; says what exists."""
