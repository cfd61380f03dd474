"""The profiles a collector can use: the bundled ones plus a site's own directories.

A library is loaded once (all files parsed, ``extends`` resolved, every file
validated) and then answers two questions: *which profile is this id?* and
*which profile fits this model and firmware?* A broken file never hides the
others: it is reported by :meth:`ProfileLibrary.check`, and asking for it by
id raises its :class:`ProfileValidationError`.

Search order, later wins for the same id (file name): the package directory,
then the directories in ``METERHUB_PROFILE_PATH`` (``os.pathsep``-separated),
then the directories given to :meth:`ProfileLibrary.load` — so a site can
ship a corrected map for a model without touching the installation.

Example::

    library = ProfileLibrary.load([Path("/etc/meterhub/profiles")])
    library.select("SDM630", "2.3").id       # 'eastron-sdm630-v2'
    library.get("landis-gyr-zmd310").iec.max_baud
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from difflib import get_close_matches
from functools import cmp_to_key, lru_cache
from pathlib import Path

from firmware_profiles.errors import ProfileNotFound, ProfileValidationError
from firmware_profiles.loader import (
    PROFILE_SUFFIXES,
    ProfileSource,
    Resolver,
    load_sources,
    profile_files,
    read_source,
)
from firmware_profiles.profile import Profile
from firmware_profiles.versions import version_key

BUNDLED_DIR = Path(__file__).resolve().parent
PROFILE_PATH_ENV = "METERHUB_PROFILE_PATH"


def env_dirs() -> list[Path]:
    """The directories named in ``METERHUB_PROFILE_PATH``, in order."""
    value = os.environ.get(PROFILE_PATH_ENV, "")
    return [Path(part) for part in value.split(os.pathsep) if part.strip()]


class ProfileLibrary:
    """Every profile found, validated, by id; selection by model and firmware."""

    def __init__(
        self,
        sources: Mapping[str, ProfileSource],
        *,
        dirs: Sequence[Path] = (),
        dir_errors: Sequence[ProfileValidationError] = (),
    ) -> None:
        self.dirs = tuple(dirs)
        self._resolver = Resolver(sources)
        self._profiles, self._errors = self._resolver.build_all()
        self._dir_errors = list(dir_errors)

    @classmethod
    def load(cls, dirs: Sequence[Path] | None = None) -> ProfileLibrary:
        """The bundled profiles plus ``METERHUB_PROFILE_PATH`` plus ``dirs``.

        A directory that does not exist is reported by :meth:`check`, not raised:
        the profiles that do exist stay usable.
        """
        search: list[Path] = []
        for directory in [BUNDLED_DIR, *env_dirs(), *(Path(d) for d in dirs or ())]:
            if directory not in search:
                search.append(directory)
        files: list[Path] = []
        dir_errors = []
        for directory in search:
            if directory.is_dir():
                files.extend(profile_files(directory))
            else:
                dir_errors.append(ProfileValidationError(
                    directory, [("(dir)", "no such directory of profiles")]
                ))
        return cls(load_sources(files), dirs=search, dir_errors=dir_errors)

    def __contains__(self, profile_id: object) -> bool:
        return profile_id in self._profiles

    def __len__(self) -> int:
        return len(self._profiles)

    def all(self) -> list[Profile]:
        """Every valid profile, sorted by id."""
        return [self._profiles[key] for key in sorted(self._profiles)]

    def get(self, profile_id: str) -> Profile:
        """The profile with this id — or, given a path to a ``.yaml`` file, that file's profile.

        Raises :class:`ProfileValidationError` when the profile's file is broken and
        :class:`ProfileNotFound` (with the closest ids) when there is none.
        """
        if _looks_like_path(profile_id):
            return self.load_file(Path(profile_id))
        if profile_id in self._profiles:
            return self._profiles[profile_id]
        if profile_id in self._errors:
            raise self._errors[profile_id]
        known = sorted([*self._profiles, *self._errors])
        close = get_close_matches(profile_id, known, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ProfileNotFound(f"no profile {profile_id!r}{hint} ({len(known)} profiles in "
                              f"{', '.join(str(d) for d in self.dirs) or 'no directory'})")

    def select(self, model: str, firmware: str) -> Profile:
        """The profile for ``model`` (any case) whose firmware range holds ``firmware``.

        Among several matches the most specific wins: a variant over the profile it
        extends, then the range with the higher lower bound, then the one with an
        upper bound (the lower one). :class:`ProfileNotFound` says what exists.
        """
        wanted = model.strip().casefold()
        candidates = [p for p in self.all() if p.model.casefold() == wanted]
        if not candidates:
            models = sorted({p.model for p in self._profiles.values()}, key=str.casefold)
            by_fold = {m.casefold(): m for m in models}
            close = [by_fold[m] for m in get_close_matches(wanted, list(by_fold), n=3)]
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise ProfileNotFound(f"no profile for model {model!r}; {hint}"
                                  f"known models: {', '.join(models)}")
        matching = [p for p in candidates if p.firmware.contains(firmware)]
        if not matching:
            covered = ", ".join(f"{p.id} (firmware {p.firmware})" for p in candidates)
            raise ProfileNotFound(f"no profile for {candidates[0].model} firmware "
                                  f"{firmware!r}; {candidates[0].model} profiles cover: {covered}")
        return max(matching, key=cmp_to_key(self._compare_specificity))

    def check(self) -> list[ProfileValidationError]:
        """Every problem found while loading: missing directories, then broken files by path."""
        return [*self._dir_errors, *sorted(self._errors.values(), key=lambda e: str(e.path))]

    def check_files(self, paths: Iterable[Path]) -> tuple[list[Profile],
                                                          list[ProfileValidationError]]:
        """Validate ``paths`` as profiles, ``extends`` resolved against this library."""
        sources = dict(self._resolver.sources)
        own = [read_source(Path(path)) for path in paths]
        sources.update({source.id: source for source in own})
        resolver = Resolver(sources)
        profiles, errors = [], []
        for source in own:
            try:
                profiles.append(resolver.build(source.id))
            except ProfileValidationError as exc:
                errors.append(exc)
        return profiles, errors

    def load_file(self, path: Path) -> Profile:
        """The profile in ``path``; its ``extends`` is resolved against this library."""
        profiles, errors = self.check_files([path])
        if errors:
            raise errors[0]
        return profiles[0]

    def _extends(self, profile: Profile, other: Profile) -> bool:
        """Whether ``profile`` is a variant of ``other``, directly or through other variants."""
        seen = set()
        current: Profile | None = profile
        while current is not None and current.extends and current.id not in seen:
            seen.add(current.id)
            if current.extends == other.id:
                return True
            current = self._profiles.get(current.extends)
        return False

    def _compare_specificity(self, left: Profile, right: Profile) -> int:
        """Positive when ``left`` is the better match (see :meth:`select`)."""
        if self._extends(left, right):
            return 1
        if self._extends(right, left):
            return -1
        left_min, right_min = _low(left), _low(right)
        if left_min != right_min:
            return 1 if left_min > right_min else -1
        left_max, right_max = left.firmware.max, right.firmware.max
        if (left_max is None) != (right_max is None):
            return 1 if right_max is None else -1
        if left_max is not None and right_max is not None:
            left_key, right_key = version_key(left_max), version_key(right_max)
            if left_key != right_key:
                return 1 if left_key < right_key else -1
        return 1 if left.id < right.id else -1


def _low(profile: Profile) -> tuple[int, tuple[tuple[int, int, str], ...]]:
    low = profile.firmware.min
    return (0, ()) if low is None else (1, version_key(low))


def _looks_like_path(name: str) -> bool:
    return name.endswith(PROFILE_SUFFIXES) or "/" in name or os.sep in name


@lru_cache(maxsize=1)
def default_library() -> ProfileLibrary:
    """The library of bundled and ``METERHUB_PROFILE_PATH`` profiles, loaded once.

    Call ``default_library.cache_clear()`` after changing the environment variable.
    """
    return ProfileLibrary.load()


def get_profile(profile_id: str) -> Profile:
    """``default_library().get(profile_id)``: a profile by id (or a ``.yaml`` path)."""
    return default_library().get(profile_id)


def select_profile(model: str, firmware: str) -> Profile:
    """``default_library().select(model, firmware)``: the profile for a model and firmware."""
    return default_library().select(model, firmware)


def load_profile_file(path: Path | str) -> Profile:
    """The profile in one file, its ``extends`` resolved against the default library."""
    return default_library().load_file(Path(path))
