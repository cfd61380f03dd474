"""Per-model meter register maps as data (one YAML file per model and firmware range).

A new meter model is a YAML file here and a simulator run, never a new code
path: the loader turns each file into a :class:`Profile` holding the very
channel types the drivers and simulators consume
(:mod:`protocols.channels`). A firmware variant names the profile it
``extends`` and lists only what differs.

Example::

    from firmware_profiles import get_profile, select_profile

    profile = select_profile("SDM630", firmware="2.3")     # eastron-sdm630-v2
    profile.channel("energy_import_kwh")                    # a ModbusChannel at 0x0048

The file format, the validation rules and the version ordering are described
in :mod:`firmware_profiles.loader`, :mod:`firmware_profiles.schema` and
:mod:`firmware_profiles.versions`.
"""

from firmware_profiles.errors import ProfileError, ProfileNotFound, ProfileValidationError
from firmware_profiles.library import (
    BUNDLED_DIR,
    PROFILE_PATH_ENV,
    ProfileLibrary,
    default_library,
    get_profile,
    load_profile_file,
    select_profile,
)
from firmware_profiles.profile import Profile
from firmware_profiles.versions import FirmwareRange, version_key

__all__ = [
    "BUNDLED_DIR",
    "PROFILE_PATH_ENV",
    "FirmwareRange",
    "Profile",
    "ProfileError",
    "ProfileLibrary",
    "ProfileNotFound",
    "ProfileValidationError",
    "default_library",
    "get_profile",
    "load_profile_file",
    "select_profile",
    "version_key",
]
