"""Read a meter through its optical port (IEC 62056-21 modes A, B and C) with pyserial.

The sign-on is the standard's: at 300 baud 7E1, an optional NUL wake-up train
for battery meters, the request, the identification; then mode C acknowledges
with an option select at the offered rate (capped by the profile) and both
ends switch baud, mode B switches at once, mode A stays. The readout's BCC is
checked, its data sets are matched to the profile's channels, and the values
come back exactly as the meter wrote them (× the channel's scale).

Timing follows deadlines, never fixed sleeps for the answers: nothing within
``response_timeout_s`` is :class:`NoResponse`; an answer that stops for longer
than ``inter_char_timeout_s`` is :class:`TimeoutError_` (or :class:`FrameError`
when what came was noise, e.g. after a missed baud switch). The only waits are
the ones the standard asks of a reader: the meter's reaction time before the
option select, the switch delay, and the pause after a wake-up train.

Example::

    with IecOpticalDriver("/dev/ttyUSB0", settings=profile.iec, timezone="Europe/Vienna") as meter:
        [sample] = meter.read(profile.channels)
        sample.values["energy_import_kwh"].value      # Decimal('12345.678')
        sample.meter_time, sample.flags               # UTC; ('tamper',) when F.F says so
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, tzinfo
from typing import TypeVar

import serial

try:
    import termios

    _PortSettingsError: type[Exception] = termios.error
except ImportError:  # not POSIX: pyserial reports every port failure as SerialException
    termios = None  # type: ignore[assignment]
    _PortSettingsError = OSError

from protocols.channels import Channel, IecSettings, ObisChannel, Role, status_flags
from protocols.driver import (
    ChannelValue,
    DriverBase,
    FrameError,
    LinkError,
    MeterError,
    MeterSample,
    NoResponse,
    ProfileError,
    TimeoutError_,
)
from protocols.iec62056_21 import (
    ETX,
    MODE_C_BAUDS,
    MODES,
    STX,
    AckOptionSelectMessage,
    DataBlock,
    DataValue,
    IdentificationMessage,
    RequestMessage,
    baud_char,
    parse_date,
    parse_decimal,
    parse_hex,
    parse_time,
    parse_timestamp,
)
from protocols.time_zones import UnknownTimeZone, load_zone

log = logging.getLogger(__name__)
_T = TypeVar("_T")
_session_ends: dict[str, float] = {}
_session_ends_lock = threading.Lock()

WAKEUP_TRAIN_S = 2.2
"""Battery meters wake on 2.1–2.3 s of NUL characters at the initial baud rate …"""
WAKEUP_PAUSE_S = 1.5
"""… followed by 1.5–1.7 s of silence before the request."""
SESSION_GAP_S = 0.2
"""Quiet time before a new sign-on, so a meter that just sent a readout is back at 300 baud.

It belongs to the line, not to a driver object: a collector that makes a new
driver for each poll must wait as well, so the end of each session is kept per port.
"""
POLL_S = 0.02
"""Granularity of the deadlines: the port's read timeout, set once at open (see ``_set_baud``)."""
MAX_IDENTIFICATION = 128
MAX_READOUT = 64 * 1024
"""A full readout of a large meter is a few kilobytes; more than this is a stuck line."""


class IecOpticalDriver(DriverBase):
    """One meter behind an optical head (or an IEC 62056-21 bus with ``address``)."""

    def __init__(
        self,
        port: str,
        *,
        settings: IecSettings,
        address: str = "",
        response_timeout_s: float = 1.5,
        inter_char_timeout_s: float = 0.5,
        timezone: str = "UTC",
        echo: bool = False,
    ) -> None:
        self.port = port
        self.where = f"{port} address {address}" if address else port
        self.settings = settings
        self.address = address
        self.response_timeout_s = response_timeout_s
        self.inter_char_timeout_s = inter_char_timeout_s
        self.echo = echo
        if settings.mode.upper() not in MODES:
            raise ProfileError(f"IEC 62056-21 mode {settings.mode!r} is not one of {MODES}",
                               where=self.where)
        try:
            self._request = RequestMessage(address).to_bytes()
        except ValueError as error:
            raise ProfileError(str(error), where=self.where) from error
        try:
            self.zone: tzinfo = load_zone(timezone)
        except UnknownTimeZone as error:
            raise ProfileError(f"timezone: {error}", where=self.where) from None
        self._serial: serial.Serial | None = None
        self._soft_parity = False
        self._pending = bytearray()
        self._last_byte_at = 0.0

    # --- the driver interface -------------------------------------------------

    def connect(self) -> None:
        if self._serial is not None:
            return
        try:
            self._serial, self._soft_parity = self._open()
            self._serial.reset_input_buffer()
        except (serial.SerialException, OSError, ValueError, _PortSettingsError) as error:
            self.close()
            raise LinkError(f"cannot open the optical port: {error}", where=self.where) from error
        log.debug("%s: open at %d baud 7E1%s", self.where, self.settings.initial_baud,
                  " (parity in software)" if self._soft_parity else "")

    def _open(self) -> tuple[serial.Serial, bool]:
        """The port at 7E1 — or at 8N1 with 7E1 done in software, when the port cannot do 7E1.

        A pty (the simulators' cable) and some USB bridges have no 7-bit mode:
        they refuse it or silently stay at 8N1. Seven data bits plus an even
        parity bit are eight bits on the wire, so such a port still speaks 7E1
        when each byte sent carries its parity bit in bit 7 and each byte
        received has it checked and removed (see :func:`_with_parity`).
        """

        def open_port(bytesize: int, parity: str) -> serial.Serial:
            return serial.Serial(
                self.port, baudrate=self.settings.initial_baud, bytesize=bytesize, parity=parity,
                stopbits=serial.STOPBITS_ONE, timeout=POLL_S,
                write_timeout=self.response_timeout_s,
            )

        try:
            port = open_port(serial.SEVENBITS, serial.PARITY_EVEN)
        except _PortSettingsError:
            pass  # the port refused 7E1 outright
        else:
            if _is_7e1(port):
                return port, False
            port.close()
        return open_port(serial.EIGHTBITS, serial.PARITY_NONE), True

    def read(self, channels: Sequence[Channel]) -> list[MeterSample]:
        """Sign on, take the readout and return the meter's one sample for ``channels``."""
        obis = _obis_channels(channels, self.where)
        if self._serial is None:
            self.connect()
        identification, block = self._session()
        return [readout_sample(block, obis, zone=self.zone, where=self.where,
                               identification=identification)]

    def close(self) -> None:
        port, self._serial = self._serial, None
        if port is not None:
            try:
                port.close()
            except (serial.SerialException, OSError) as error:
                log.debug("%s: closing: %s", self.where, error)

    # --- the sign-on -------------------------------------------------------------

    def _session(self) -> tuple[IdentificationMessage, DataBlock]:
        port = self._serial
        assert port is not None
        settings = self.settings
        try:
            with _session_ends_lock:
                previous_end = _session_ends.get(self.port, -SESSION_GAP_S)
            self._wait_until(previous_end + SESSION_GAP_S)
            self._set_baud(settings.initial_baud)
            port.reset_input_buffer()
            self._pending.clear()
            if settings.wakeup:
                self._send(bytes(max(1, round(WAKEUP_TRAIN_S * settings.initial_baud / 10))))
                self._wait_until(time.monotonic() + WAKEUP_PAUSE_S)
            self._send(self._request)
            identification = self._parse(
                IdentificationMessage.from_bytes,
                self._receive(_line_end, "identification", first=ord("/"),
                              limit=MAX_IDENTIFICATION),
            )
            self._switch(identification)
            frame = self._receive(_block_end, "readout", first=STX, limit=MAX_READOUT)
            return identification, self._parse(DataBlock.from_bytes, frame)
        except (serial.SerialException, OSError, _PortSettingsError) as error:
            raise LinkError(f"optical port failed: {error}", where=self.where) from error
        finally:
            with _session_ends_lock:
                _session_ends[self.port] = time.monotonic()
            self._restore_baud()

    def _switch(self, identification: IdentificationMessage) -> None:
        """Agree on the readout's baud rate as ``settings.mode`` says, and switch to it."""
        port, settings = self._serial, self.settings
        assert port is not None
        mode = settings.mode.upper()
        if mode == "A":
            return
        offered = identification.baud_for(mode)
        if offered is None:
            raise ProfileError(
                f"meter offers baud rate character {identification.baud_char!r}, "
                f"not one of mode {mode}", where=self.where,
            )
        if mode == "B":
            target = offered
        else:
            try:
                char = baud_char(min(offered, settings.max_baud), "C")
            except ValueError as error:
                raise ProfileError(str(error), where=self.where) from error
            target = MODE_C_BAUDS[char]
            self._wait_until(self._last_byte_at + settings.reaction_s)
            self._send(AckOptionSelectMessage(baud_char=char).to_bytes())
            self._wait_until(time.monotonic() + settings.switch_delay_s)
        if settings.honours_baud_switch:
            log.debug("%s: switching to %d baud", self.where, target)
            self._set_baud(target)

    def _set_baud(self, baud: int) -> None:
        """Change the port's rate, only when it differs.

        Every change of a pyserial setting re-applies all line settings, and on
        a port that half-accepts them that fails (EINVAL); so the line is only
        touched when the rate really changes, and the read timeout is set once
        at open (``POLL_S``) while the deadlines are kept here.
        """
        port = self._serial
        assert port is not None
        if port.baudrate != baud:
            port.baudrate = baud

    def _restore_baud(self) -> None:
        if self._serial is None:
            return
        try:
            self._set_baud(self.settings.initial_baud)
        except (serial.SerialException, OSError, ValueError, _PortSettingsError) as error:
            log.debug("%s: restoring the initial baud rate: %s", self.where, error)

    # --- bytes on the line ----------------------------------------------------------

    def _send(self, data: bytes) -> None:
        """Write ``data`` and wait until it has left; with ``echo``, read it back and drop it."""
        port = self._serial
        assert port is not None
        port.write(data.translate(_WITH_PARITY) if self._soft_parity else data)
        port.flush()
        if self.echo:
            echoed = self._receive(
                lambda buffer: len(data) if len(buffer) >= len(data) else None,
                "echo of what was sent", first=data[0], limit=len(data),
            )
            if echoed != data:
                raise FrameError(f"the optical head echoed {echoed!r}, not {data!r}",
                                 where=self.where, raw=echoed)

    def _receive(
        self, end: Callable[[bytearray], int | None], what: str, *, first: int, limit: int
    ) -> bytes:
        """Bytes up to ``end(buffer)``, under the response and inter-character deadlines."""
        port = self._serial
        assert port is not None
        buffer, self._pending = self._pending, bytearray()
        timeout = self.inter_char_timeout_s if buffer else self.response_timeout_s
        deadline = time.monotonic() + timeout
        while True:
            stop = end(buffer)
            if stop is not None:
                self._pending = buffer[stop:]
                return bytes(buffer[:stop])
            if len(buffer) > limit:
                raise FrameError(f"{what}: more than {limit} bytes without an end",
                                 where=self.where, raw=bytes(buffer[:limit]))
            if time.monotonic() >= deadline:
                raise self._stalled(bytes(buffer), what, first)
            chunk = port.read(max(1, min(port.in_waiting, limit + 1 - len(buffer))))
            if chunk:
                buffer += chunk.translate(_PARITY_CHECKED) if self._soft_parity else chunk
                self._last_byte_at = time.monotonic()
                deadline = self._last_byte_at + self.inter_char_timeout_s

    def _stalled(self, received: bytes, what: str, first: int) -> MeterError:
        if not received:
            return NoResponse(f"no {what} within {self.response_timeout_s} s", where=self.where)
        if received[0] != first or not received.isascii():
            return FrameError(
                f"{what}: unreadable bytes {received[:24]!r} (line noise or a wrong baud rate)",
                where=self.where, raw=received,
            )
        return TimeoutError_(
            f"{what} stopped after {len(received)} bytes for more than "
            f"{self.inter_char_timeout_s} s", where=self.where, raw=received,
        )

    def _parse(self, parse: Callable[[bytes], _T], data: bytes) -> _T:
        try:
            return parse(data)
        except FrameError as error:
            raise type(error)(error.detail, where=self.where, raw=error.raw) from error

    @staticmethod
    def _wait_until(moment: float) -> None:
        remaining = moment - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)


# --- from a readout to a sample (pure) -----------------------------------------------


def readout_sample(
    block: DataBlock,
    channels: Sequence[ObisChannel],
    *,
    zone: tzinfo,
    where: str = "",
    identification: IdentificationMessage | None = None,
) -> MeterSample:
    """The sample ``channels`` describe in ``block``, read in the meter's timezone ``zone``.

    A channel whose code is missing, whose unit disagrees with the readout's,
    or whose text is not what its role needs raises :class:`ProfileError`
    naming the code.
    """
    values: dict[str, ChannelValue] = {}
    flags: list[str] = []
    identity = None
    clock: dict[Role, str] = {}
    for channel in channels:
        text = _value(block, channel, where)
        try:
            if channel.role is Role.VALUE:
                values[channel.name] = ChannelValue(
                    parse_decimal(text.value) * channel.scale, channel.unit, channel.obis
                )
            elif channel.role is Role.STATUS:
                flags += status_flags(parse_hex(text.value), channel.flags)
            elif channel.role is Role.IDENTITY:
                identity = text.value.strip() or None
            else:
                clock[channel.role] = text.value
        except FrameError as error:
            raise ProfileError(f"{channel.code} ({channel.name}): {error.detail}",
                               where=where) from error
    extra = {}
    if identification is not None:
        extra = {"manufacturer": identification.manufacturer,
                 "identification": identification.identification}
    return MeterSample(values=values, meter_time=_meter_time(clock, zone, where),
                       flags=tuple(flags), identity=identity, extra=extra)


def _value(block: DataBlock, channel: ObisChannel, where: str) -> DataValue:
    data_set = block.find(channel.code)
    if data_set is None:
        raise ProfileError(f"the readout has no data set {channel.code} ({channel.name})",
                           where=where)
    if channel.group >= len(data_set.values):
        raise ProfileError(
            f"data set {channel.code} has {len(data_set.values)} value(s), "
            f"the profile reads value {channel.group} ({channel.name})", where=where,
        )
    value = data_set.values[channel.group]
    if value.unit and value.unit.lower() != channel.unit.lower():
        raise ProfileError(
            f"data set {channel.code} is in {value.unit!r}, the profile says {channel.unit!r} "
            f"({channel.name})", where=where,
        )
    return value


def _meter_time(clock: dict[Role, str], zone: tzinfo, where: str) -> datetime | None:
    try:
        if Role.CLOCK in clock:
            return parse_timestamp(clock[Role.CLOCK], zone).astimezone(UTC)
        if Role.CLOCK_DATE in clock and Role.CLOCK_TIME in clock:
            day, moment = parse_date(clock[Role.CLOCK_DATE]), parse_time(clock[Role.CLOCK_TIME])
            return datetime.combine(day, moment, tzinfo=zone).astimezone(UTC)
    except FrameError as error:
        raise ProfileError(f"meter clock: {error.detail}", where=where) from error
    if clock:
        raise ProfileError("the profile names only one of clock_date and clock_time", where=where)
    return None


def _obis_channels(channels: Sequence[Channel], where: str) -> list[ObisChannel]:
    obis = []
    for channel in channels:
        if not isinstance(channel, ObisChannel):
            raise ProfileError(f"channel {channel.name} is not an OBIS channel", where=where)
        if channel.mbus_channel:
            raise ProfileError(f"channel {channel.name}: an optical readout has no M-Bus "
                               "sub-meters", where=where)
        obis.append(channel)
    return obis


def _is_7e1(port: serial.Serial) -> bool:
    """Whether the open ``port`` really runs 7 data bits with even parity."""
    fd = getattr(port, "fd", None)
    if termios is None or fd is None:
        return True  # only POSIX ports can be asked; the others did not refuse
    cflag = termios.tcgetattr(fd)[2]
    return cflag & termios.CSIZE == termios.CS7 and bool(cflag & termios.PARENB)


def _with_parity(byte: int) -> int:
    """The 7-bit ``byte`` with its even parity bit in bit 7."""
    low = byte & 0x7F
    return low | 0x80 if low.bit_count() % 2 else low


_WITH_PARITY = bytes(_with_parity(byte) for byte in range(256))
_PARITY_CHECKED = bytes(
    byte & 0x7F if byte.bit_count() % 2 == 0 else byte | 0x80 for byte in range(256)
)
"""Received 8-bit bytes → 7-bit characters; a parity error stays above 0x7F, marked as noise."""


def _line_end(buffer: bytearray) -> int | None:
    found = buffer.find(b"\r\n")
    return None if found < 0 else found + 2


def _block_end(buffer: bytearray) -> int | None:
    found = buffer.find(ETX)
    return found + 2 if 0 <= found < len(buffer) - 1 else None
