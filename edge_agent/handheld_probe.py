"""The handheld's probe: one read of the meter in front of the technician, checked.

A probe read is trusted more than a keyed one because nobody typed it — which
only holds if it came from the right meter. So the probe asks the meter for
its serial and refuses a reading from any meter but the route's
(:class:`WrongMeter`), takes the route's register and nothing else, and turns
every way a read can fail into a :class:`ProbeError` whose message a
technician can act on at the meter (hold the head closer, check the profile,
key the read by hand).

The wire is :func:`edge_agent.one_shot.read_once`, the same plan and driver the
gateway's collector uses, so a meter that reads on a gateway reads here.

Example::

    probe = Probe(Protocol.IEC62056_21, "/dev/ttyUSB0", default_profile="landis-gyr-zmd310")
    reading = probe.read(stop)         # ProbeReading, or ProbeError with a human message
    reading.value.value, reading.meter_time
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from edge_agent.handheld_config import HandheldSection
from edge_agent.one_shot import read_once
from firmware_profiles import Profile, ProfileLibrary
from protocols.channels import Protocol
from protocols.driver import (
    ChecksumError,
    DeviceError,
    FrameError,
    LinkError,
    MeterError,
    MeterSample,
    NoResponse,
    ProfileError,
    TimeoutError_,
)
from protocols.read import RegisterValue
from protocols.route_message import RouteStop

log = logging.getLogger(__name__)

UNVERIFIED_FLAG = "probe_serial_unverified"
"""On a probe read from a meter that does not report its serial (its profile has no identity)."""

Reader = Callable[..., list[MeterSample]]


class ProbeError(Exception):
    """A probe read that produced nothing to keep; ``str()`` is for the technician.

    ``kind`` is stable and machine-readable (the driver's error kinds, plus the
    probe's own), for logs and counts.
    """

    kind = "probe"


class ProbeUnavailable(ProbeError):
    """No probe port is configured on this handheld."""

    kind = "no_probe"


class ProbeProfileError(ProbeError):
    """No profile for this meter, or one that does not fit the probe or the meter."""

    kind = "profile"


class ProbeMeterError(ProbeError):
    """The meter did not answer, or answered with something unreadable."""

    def __init__(self, message: str, *, kind: str) -> None:
        self.kind = kind
        super().__init__(message)


class RegisterMissing(ProbeError):
    """The meter answered but has no value for the route's register (or in another unit)."""

    kind = "register_missing"


class WrongMeter(ProbeError):
    """The probe is on another meter than the stop's: nothing may be kept."""

    kind = "wrong_meter"

    def __init__(self, *, expected: str, reported: str) -> None:
        self.expected = expected
        self.reported = reported
        super().__init__(
            f"The probe is on meter {reported}, not {expected}: nothing was saved. "
            "Check you are at the right meter; if the meter was changed, report "
            "trouble “meter changed”."
        )


@dataclass(frozen=True)
class ProbeReading:
    """What the probe took from the right meter: the route's register and the meter's clock."""

    reported_serial: str | None
    """``None`` when the meter does not report its serial (then the read is flagged)."""
    value: RegisterValue
    meter_time: datetime | None
    flags: tuple[str, ...]
    """Device flags the meter raised (tamper, battery …), plus :data:`UNVERIFIED_FLAG`."""
    profile_id: str


_ADVICE = {
    LinkError: "The probe's port cannot be opened: is the probe plugged in?",
    NoResponse: "The meter did not answer: hold the probe on the optical port and try again.",
    ChecksumError: "The answer was garbled (checksum): hold the probe still and try again.",
    FrameError: "The answer was unreadable: hold the probe still and try again.",
    TimeoutError_: "The answer broke off: hold the probe still and try again.",
    DeviceError: "The meter refused the request.",
    ProfileError: "The meter does not match its profile.",
}


class Probe:
    """The configured probe port and protocol; reads one stop's meter at a time.

    Reads are serialised: there is one head and one port, and a second tap on
    "read with probe" must wait for the first read rather than garble both.
    """

    def __init__(
        self,
        protocol: Protocol,
        port: str | None,
        *,
        baudrate: int | None = None,
        timeout_s: float | None = None,
        echo: bool = False,
        unit_id: int = 1,
        timezone: str | None = None,
        default_profile: str | None = None,
        profile_dirs: Sequence[Path] = (),
        reader: Reader = read_once,
    ) -> None:
        if protocol not in (Protocol.IEC62056_21, Protocol.MODBUS_RTU):
            raise ValueError(f"a handheld probe speaks iec62056_21 or modbus_rtu, not {protocol}")
        self.protocol = protocol
        self.port = port
        self.baudrate = baudrate
        self.timeout_s = timeout_s
        self.echo = echo
        self.unit_id = unit_id
        self.timezone = timezone
        self.default_profile = default_profile
        self.profile_dirs = tuple(profile_dirs)
        self._reader = reader
        self._library: ProfileLibrary | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, section: HandheldSection, *, profile_dirs: Sequence[Path] = ()) -> Probe:
        return cls(
            Protocol(section.probe_protocol), section.probe_port,
            baudrate=section.probe_baudrate, timeout_s=section.probe_timeout_s,
            echo=section.probe_echo, unit_id=section.probe_unit_id,
            timezone=section.meter_timezone, default_profile=section.default_profile,
            profile_dirs=profile_dirs,
        )

    @property
    def available(self) -> bool:
        return self.port is not None

    def profile_for(self, stop: RouteStop) -> Profile:
        """The stop's profile, else the default; :class:`ProbeProfileError` when neither fits."""
        profile_id = stop.profile or self.default_profile
        if profile_id is None:
            raise ProbeProfileError(
                f"The route names no profile for meter {stop.meter} and no default profile "
                "is configured: key the read by hand."
            )
        try:
            if self._library is None:
                self._library = ProfileLibrary.load(list(self.profile_dirs))
            profile = self._library.get(profile_id)
        except ProfileError as exc:
            raise ProbeProfileError(f"Profile {profile_id} cannot be used: {exc}") from exc
        if profile.protocol != self.protocol.family:
            raise ProbeProfileError(
                f"Meter {stop.meter} has profile {profile.id} ({profile.protocol}); this "
                f"probe speaks {self.protocol.value}: key the read by hand."
            )
        return profile

    def read(self, stop: RouteStop) -> ProbeReading:
        """Read ``stop``'s register from the meter on the probe, refusing any other meter."""
        if self.port is None:
            raise ProbeUnavailable("No probe is configured on this handheld: key the read by hand.")
        profile = self.profile_for(stop)
        with self._lock:
            try:
                samples = self._reader(
                    self.protocol, self.port, profile, unit_id=self.unit_id,
                    baudrate=self.baudrate, timeout_s=self.timeout_s, echo=self.echo,
                    timezone=self.timezone,
                )
            except MeterError as exc:
                log.warning("probe read of %s failed [%s]: %s", stop.meter, exc.kind, exc)
                raise ProbeMeterError(f"{_advice(exc)} ({exc.detail})", kind=exc.kind) from exc
            except ValueError as exc:  # a setting the driver cannot use (bad port or time zone)
                raise ProbeMeterError(f"The probe is misconfigured: {exc}",
                                      kind="config") from exc
        return checked_reading(stop, samples, profile.id)


def checked_reading(
    stop: RouteStop, samples: Sequence[MeterSample], profile_id: str
) -> ProbeReading:
    """The stop's register from the meter's own sample, once it is the stop's meter (pure)."""
    own = next((sample for sample in samples if sample.mbus_channel == 0), None)
    if own is None:
        raise ProbeMeterError("The meter sent no reading of its own.", kind="frame")
    reported = own.identity.strip() if own.identity else None
    if reported is not None and not same_serial(reported, stop.meter):
        raise WrongMeter(expected=stop.meter, reported=reported)
    value = own.values.get(stop.register)
    if value is None:
        has = ", ".join(own.values) or "nothing"
        raise RegisterMissing(
            f"Meter {stop.meter} gave no {stop.register} (it gave {has}): key the read by hand."
        )
    if value.unit.casefold() != stop.unit.casefold():
        raise RegisterMissing(
            f"Meter {stop.meter} gives {stop.register} in {value.unit}, the route expects "
            f"{stop.unit}: key the read by hand."
        )
    flags = own.flags if reported is not None else (*own.flags, UNVERIFIED_FLAG)
    return ProbeReading(reported, RegisterValue(value.value, stop.unit, value.obis),
                        own.meter_time, tuple(flags), profile_id)


def same_serial(reported: str, expected: str) -> bool:
    """Whether the serial a meter reports is the route's meter (case and spacing aside)."""
    return reported.strip().casefold() == expected.strip().casefold()


def _advice(error: MeterError) -> str:
    for kind, advice in _ADVICE.items():
        if isinstance(error, kind):
            return advice
    return "The probe read failed."
