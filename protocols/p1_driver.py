"""Read a DSMR smart meter's P1 port: wait for the next telegram, check it, map it to samples.

A P1 port is one-way: the meter pushes a telegram every 1 s (DSMR 5) or 10 s
(DSMR 4.x) whether anyone listens or not, so a read is "drop what the port has
buffered, wait for the next ``/``, collect through ``!`` and the CRC line". The
telegram is parsed by :mod:`protocols.dsmr_p1`; :func:`telegram_samples` turns
it into the meter's own sample and one sample per M-Bus sub-meter (gas, water)
that the channels name, each with its own clock and identity.

Errors, all naming the port: nothing within ``telegram_timeout_s`` →
:class:`NoResponse` (or :class:`FrameError` when only line noise came: wrong
baud rate); a telegram that started but did not end in time →
:class:`TimeoutError_`; CRC mismatch → :class:`ChecksumError`; malformed →
:class:`FrameError`; a channel the telegram does not carry →
:class:`ProfileError`; a port that cannot be opened → :class:`LinkError`.

**One retry.** A garbled telegram is almost always line noise, and the next one
comes 1–10 s later, so after a :class:`FrameError` (including a CRC mismatch)
the driver waits for one more telegram within the same ``telegram_timeout_s``.
If that one is good it is returned (the bad one is logged); otherwise the
*first* error is raised — it says more than "no second telegram in time".

Example::

    with P1Driver("/dev/ttyUSB0") as meter:
        electricity, gas = meter.read(profile.channels)
        gas.meter_time, gas.values["volume_m3"].value   # capture time, Decimal('1234.567')
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

import serial as pyserial

from protocols.channels import Channel, ObisChannel, Role, SerialSettings, status_flags
from protocols.driver import (
    ChannelValue,
    DriverBase,
    FrameError,
    LinkError,
    MeterSample,
    NoResponse,
    ProfileError,
    TimeoutError_,
)
from protocols.dsmr_p1 import MAX_TELEGRAM_BYTES, DataLine, Telegram
from protocols.time_zones import UnknownTimeZone, load_zone

try:
    from termios import error as _TermiosError  # what a tty that refuses a setting raises
except ImportError:  # pragma: no cover - not POSIX
    _TermiosError = OSError

log = logging.getLogger(__name__)
_PORT_ERRORS = (pyserial.SerialException, OSError, ValueError, _TermiosError)

POLL_S = 0.05
"""Longest a single port read blocks; the telegram deadline is checked this often."""
_CRC_LINE_MAX = 6
"""After ``!``: at most four hex digits and CR LF."""


class P1Driver(DriverBase):
    """A DSMR P1 port; see the module docstring. Opens the port on first use if not connected."""

    def __init__(
        self,
        port: str,
        *,
        serial: SerialSettings = SerialSettings(baudrate=115200),  # noqa: B008 - frozen
        telegram_timeout_s: float = 12.0,
        timezone: str = "Europe/Amsterdam",
        require_crc: bool = True,
    ) -> None:
        if telegram_timeout_s <= 0:
            raise ValueError(f"telegram_timeout_s must be positive, not {telegram_timeout_s}")
        try:  # an unknown zone is a configuration error: fail here, not per read
            load_zone(timezone)
        except UnknownTimeZone as error:
            raise ProfileError(f"timezone: {error}", where=port) from None
        self.port = port
        self.where = port
        self.settings = serial
        self.telegram_timeout_s = telegram_timeout_s
        self.timezone = timezone
        self.require_crc = require_crc
        self._port: pyserial.Serial | None = None
        self._pending = b""

    def connect(self) -> None:
        if self._port is not None:
            return
        settings = self.settings
        try:
            self._port = pyserial.Serial(
                self.port, baudrate=settings.baudrate, bytesize=settings.bytesize,
                parity=settings.parity, stopbits=settings.stopbits, timeout=POLL_S,
            )
        except _PORT_ERRORS as exc:
            raise LinkError(f"cannot open P1 port: {exc}", where=self.where) from exc
        self._pending = b""

    def close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            port.close()

    def read(self, channels: Sequence[Channel]) -> list[MeterSample]:
        """The next telegram's values for ``channels``: the meter first, then M-Bus sub-meters."""
        telegram = self.read_telegram()
        try:
            return telegram_samples(telegram, channels, timezone=self.timezone)
        except (ProfileError, FrameError) as exc:
            raise type(exc)(exc.detail, where=self.where, raw=exc.raw) from exc

    def read_telegram(self) -> Telegram:
        """The next complete, CRC-checked telegram (one retry after a garbled one)."""
        self.connect()
        port = self._port
        assert port is not None
        deadline = time.monotonic() + self.telegram_timeout_s
        try:
            port.reset_input_buffer()  # stale telegrams, and the one in flight
        except _PORT_ERRORS as exc:
            raise LinkError(f"P1 port failed: {exc}", where=self.where) from exc
        self._pending = b""
        first_error: FrameError | None = None
        while True:
            try:
                raw = self._receive(port, deadline)
            except TimeoutError_ as exc:
                if first_error is not None:
                    raise first_error from exc
                raise
            try:
                telegram = Telegram.from_bytes(raw)
            except FrameError as exc:
                located = type(exc)(exc.detail, where=self.where, raw=raw)
                if first_error is not None:
                    raise located from exc
                first_error = located
                log.warning("%s: %s; waiting for the next telegram", self.where, exc.detail)
                continue
            if self.require_crc and not telegram.checksum:  # the meter's kind, not noise: no retry
                raise FrameError("telegram has no CRC (a DSMR 2.2/3 meter needs "
                                 "require_crc=False)", where=self.where, raw=raw)
            return telegram

    def _receive(self, port: pyserial.Serial, deadline: float) -> bytes:
        """Bytes from a ``/`` through the CRC line, before ``deadline``."""
        buffer, self._pending = bytearray(self._pending), b""
        started = buffer.startswith(b"/")
        skipped = 0
        noise = False
        while True:
            if not started:
                start = buffer.find(b"/")
                if start < 0:
                    skipped += len(buffer)
                    noise = noise or any(byte >= 0x80 for byte in buffer)
                    buffer.clear()
                else:
                    skipped += start
                    del buffer[:start]
                    started = True
            if started:
                end = _telegram_end(buffer)
                if end is not None:
                    self._pending = bytes(buffer[end:])
                    return bytes(buffer[:end])
                if len(buffer) > MAX_TELEGRAM_BYTES:
                    raise FrameError(f"no end of telegram after {len(buffer)} bytes",
                                     where=self.where, raw=bytes(buffer[:256]))
            if time.monotonic() >= deadline:
                break
            buffer += self._read_some(port)
        timeout = self.telegram_timeout_s
        if started:
            raise TimeoutError_(f"telegram started but did not end within {timeout} s "
                                f"({len(buffer)} bytes)", where=self.where, raw=bytes(buffer))
        if noise:
            raise FrameError(f"{skipped} bytes of line noise and no telegram within {timeout} s "
                             "(wrong baud rate or parity?)", where=self.where)
        extra = f" ({skipped} bytes without a telegram start)" if skipped else ""
        raise NoResponse(f"no telegram within {timeout} s{extra}", where=self.where)

    def _read_some(self, port: pyserial.Serial) -> bytes:
        try:
            return port.read(port.in_waiting or 1)
        except _PORT_ERRORS as exc:
            raise LinkError(f"P1 port failed: {exc}", where=self.where) from exc


def _telegram_end(buffer: bytearray) -> int | None:
    """Index just past the CRC line of the telegram at the start of ``buffer``, if complete."""
    bang = buffer.find(b"\n!")
    if bang < 0:
        return None
    after = bang + 2
    newline = buffer.find(b"\n", after, after + _CRC_LINE_MAX)
    if newline >= 0:
        return newline + 1
    if len(buffer) >= after + _CRC_LINE_MAX:
        return after + _CRC_LINE_MAX  # no line end where one belongs: let the parser say so
    return None


def telegram_samples(
    telegram: Telegram, channels: Sequence[Channel], *, timezone: str = "Europe/Amsterdam"
) -> list[MeterSample]:
    """Map ``telegram`` to one sample per M-Bus channel named by ``channels`` (0 = the meter).

    ``value`` channels become registers (the channel's unit wins when the meter
    writes none; a different unit with ``scale`` 1 is a :class:`ProfileError`),
    ``clock`` gives the sample's ``meter_time``, ``identity`` its identity
    (hex-decoded ASCII), ``status`` its flags. Samples come in M-Bus channel
    order, the meter's own first.
    """
    parts: dict[int, _SampleParts] = {}
    for channel in channels:
        if not isinstance(channel, ObisChannel):
            raise ProfileError(f"{channel.name}: a P1 channel needs an OBIS code")
        line = telegram.find(channel.code)
        if line is None:
            raise ProfileError(f"{channel.name}: the telegram has no {channel.code}")
        if not 0 <= channel.group < len(line.groups):
            raise ProfileError(f"{channel.name}: {channel.code} has no group {channel.group}")
        parts.setdefault(channel.mbus_channel, _SampleParts()).add(channel, line, timezone)
    return [
        MeterSample(values=part.values, meter_time=part.meter_time, flags=tuple(part.flags),
                    identity=part.identity, mbus_channel=number)
        for number, part in sorted(parts.items())
    ]


class _SampleParts:
    """What the channels of one M-Bus channel contribute, collected before the sample is built."""

    def __init__(self) -> None:
        self.values: dict[str, ChannelValue] = {}
        self.meter_time: datetime | None = None
        self.identity: str | None = None
        self.flags: list[str] = []

    def add(self, channel: ObisChannel, line: DataLine, timezone: str) -> None:
        index = channel.group
        if channel.role is Role.VALUE:
            self.values[channel.name] = _value(channel, line)
        elif channel.role is Role.CLOCK:
            self.meter_time = line.timestamp(index, timezone=timezone)
        elif channel.role is Role.IDENTITY:
            self.identity = _identity(line, index)
        elif channel.role is Role.STATUS:
            number = line.quantity(index).value
            if number != number.to_integral_value() or number < 0:
                raise FrameError(f"{line.code}: status {number} is not a bit field")
            self.flags.extend(status_flags(int(number), channel.flags))
        else:
            raise ProfileError(f"{channel.name}: role {channel.role} does not exist in DSMR")


def _value(channel: ObisChannel, line: DataLine) -> ChannelValue:
    number, unit = line.quantity(channel.group)
    if channel.unit and unit and channel.unit.lower() != unit.lower() and channel.scale == 1:
        raise ProfileError(f"{channel.name}: the meter writes {line.code} in {unit}, "
                           f"the profile expects {channel.unit} without a scale")
    scaled = number if channel.scale == 1 else number * Decimal(channel.scale)
    return ChannelValue(scaled, channel.unit or unit, channel.obis or line.code)


def _identity(line: DataLine, index: int) -> str | None:
    """Identifiers are hex-encoded ASCII; one a meter writes as plain text is taken as is."""
    try:
        text = line.text(index)
    except FrameError:
        text = line.groups[index]
    return text.strip() or None
