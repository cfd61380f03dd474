"""A meter with an optical port (IEC 62056-21 modes A, B, C) on a real pseudo-terminal.

It answers a sign-on the way a Landis+Gyr or Iskra meter does: at 300 baud
7E1 it waits for ``/?!`` (or ``/?<its address>!``), identifies itself, and
then — mode C — waits for the option select and switches to the baud rate
asked for (or ignores the switch, like some real meters), mode B switches to
the rate it announced, mode A stays; it sends the readout with its BCC and
goes back to 300 baud. Values come from a :class:`Faceplate`, so faults on the
faceplate's switch show on the wire: ``no_answer``, ``slow_answer`` and
``garbled`` here, value faults through the faceplate.

It shares no code with :mod:`protocols.iec62056_21` or the driver — framing,
BCC and formatting are written again here, so a bug in one cannot cancel
itself out in the other. Only the channel data classes are shared.

Example::

    with VirtualCable() as cable, IecMeterSimulator(
        cable.meter_path, faceplate, channels, settings=IecSettings(mode="C")
    ):
        ...  # open cable.device_path with the driver
"""

from __future__ import annotations

import logging
import re
import termios
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import serial

from protocols.channels import IecSettings, ObisChannel, Role
from simulators.faceplate import Faceplate
from simulators.faults import Fault
from simulators.serving import Serving

log = logging.getLogger(__name__)

_C_RATES = {300: "0", 600: "1", 1200: "2", 2400: "3", 4800: "4", 9600: "5", 19200: "6"}
_B_RATES = {600: "A", 1200: "B", 2400: "C", 4800: "D", 9600: "E", 19200: "F"}
_MODE_A_CHAR = "J"
"""Any character that is no mode B or C rate: a mode A meter announces no rate."""
_STX, _ETX, _ACK = b"\x02", b"\x03", 0x06
_ACK_WAIT_S = 1.5
"""A mode C meter gives up waiting for the option select after this long (the standard's 1.5 s)."""
_SETTLE_S = 0.03
"""Time for bytes just written to leave the pty before this end changes baud."""
_AWAKE_S = 5.0
"""How long a battery meter stays awake after a wake-up train or a session."""
_WAKEUP_NULS = 10
_POLL_S = 0.05
_MAX_LINE = 512
_DEMAND_RE = re.compile(r"(?:\d+-\d+:)?\d+\.6\.\d+")


class IecMeterSimulator(Serving):
    """A meter serving readouts of ``channels`` on the pty at ``port_path`` until stopped."""

    def __init__(
        self,
        port_path: str,
        faceplate: Faceplate,
        channels: Sequence[ObisChannel],
        *,
        settings: IecSettings,
        manufacturer: str = "LGZ",
        identification: str = "ZMD3104407.B32",
        address: str = "",
        timezone: str = "UTC",
        echo: bool = False,
    ) -> None:
        self.endpoint = port_path
        self.faceplate = faceplate
        self.faults = faceplate.faults
        self.channels = list(channels)
        self.settings = settings
        self.manufacturer = manufacturer
        self.identification = identification
        self.address = address
        self.zone = ZoneInfo(timezone)
        self.echo = echo
        self.sessions = 0
        """Readouts sent (or being sent) so far."""
        self.last_baud: int | None = None
        """The baud rate of the last readout."""
        self._mode = settings.mode.upper()
        self._port: serial.Serial | None = None
        self._buffer = bytearray()
        self._awake_until = 0.0
        self._nuls = 0
        self._soft_parity = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._port = self._open()
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._serve, name=f"iec meter {self.endpoint}", daemon=True
        )
        self._thread.start()

    def _open(self) -> serial.Serial:
        """The port at 7E1, or at 8N1 with the parity bit made here when it has no 7-bit mode.

        A pty has none: it refuses 7E1 or silently stays 8N1. Seven bits and an
        even parity bit are eight bits on the line, so the meter then adds the
        parity bit to each byte it sends and checks it on each byte it receives.
        """

        def open_port(bytesize: int, parity: str) -> serial.Serial:
            return serial.Serial(self.endpoint, baudrate=self.settings.initial_baud,
                                 bytesize=bytesize, parity=parity, stopbits=1, timeout=_POLL_S)

        try:
            port = open_port(7, "E")
            cflag = termios.tcgetattr(port.fd)[2]
            if cflag & termios.CSIZE == termios.CS7 and cflag & termios.PARENB:
                self._soft_parity = False
                return port
            port.close()
        except termios.error:
            pass
        self._soft_parity = True
        return open_port(8, "N")

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._port is not None:
            self._port.close()
            self._port = None


    # --- serving ---------------------------------------------------------------

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                self._session()
            except (serial.SerialException, OSError, termios.error) as error:
                if self._stopping.is_set():
                    return
                log.warning("iec meter %s: %s", self.endpoint, error)
                self._stopping.wait(_POLL_S)

    def _session(self) -> None:
        line = self._next_line(None)
        if line is None or not self._addressed(line):
            return
        if self.settings.wakeup and time.monotonic() > self._awake_until:
            log.debug("iec meter %s: asleep, request ignored", self.endpoint)
            return
        if self.faults.strikes(Fault.NO_ANSWER):
            return
        delay = self.settings.reaction_s
        if self.faults.strikes(Fault.SLOW_ANSWER):
            delay += self.faults.slow_s
        if self._stopping.wait(delay):
            return
        ident = f"/{self.manufacturer}{self._baud_char()}{self.identification}\r\n"
        self._write(ident.encode("ascii", "replace"))
        try:
            if self._agree_baud():
                self._send_readout()
        finally:
            self._set_baud(self.settings.initial_baud)
            self._awake_until = time.monotonic() + _AWAKE_S

    def _agree_baud(self) -> bool:
        """Switch to the readout's baud rate as the mode says; ``False`` to abandon the session."""
        settings = self.settings
        if self._mode == "B":
            if settings.honours_baud_switch:
                self._set_baud(_baud_of(_B_RATES, self._baud_char()))
        elif self._mode == "C":
            line = self._next_line(_ACK_WAIT_S)
            if line is None:
                return False
            match = re.fullmatch(rb".*\x06([0-9])([0-9])([0-9A-Z])\r\n", line, re.DOTALL)
            if match is None:
                self._buffer[:0] = line  # a new request, perhaps: serve it next
                return False
            protocol, rate, mode = (chr(group[0]) for group in match.groups())
            offered = _baud_of(_C_RATES, self._baud_char())
            asked = _baud_of(_C_RATES, rate)
            if protocol != "0" or mode != "0" or not 0 < asked <= offered:
                log.debug("iec meter %s: option select %r not served", self.endpoint, line)
                return False
            if self._stopping.wait(settings.switch_delay_s):
                return False
            if settings.honours_baud_switch:
                self._set_baud(asked)
        return not self._stopping.wait(settings.reaction_s)

    def _send_readout(self) -> None:
        message = self.readout()
        if self.faults.strikes(Fault.GARBLED):
            message = self.faults.garble(message)
        self.sessions += 1  # counted before sending: the reader may be done before write returns
        self.last_baud = self._port.baudrate if self._port else None
        self._write(message)

    # --- the readout -------------------------------------------------------------

    def readout(self) -> bytes:
        """The data message the meter would send now: ``STX`` lines ``!`` ``CR LF`` ``ETX`` BCC."""
        at = self.faceplate.now()
        shown = self.faceplate.meter_time(at).astimezone(self.zone)
        groups: dict[str, dict[int, str]] = {}
        for channel in self.channels:
            groups.setdefault(channel.code, {})[channel.group] = self._field(channel, at, shown)
        if not any(channel.code == "0.0.0" for channel in self.channels):
            groups = {"0.0.0": {0: self.faceplate.spec.serial}, **groups}
        lines = []
        for code, fields in groups.items():
            values = [fields.get(index, "") for index in range(max(fields) + 1)]
            if _DEMAND_RE.fullmatch(code) and len(values) == 1:
                captured = shown - timedelta(minutes=shown.minute % 15, seconds=shown.second)
                values.append(captured.strftime("%y%m%d%H%M"))
            lines.append(code + "".join(f"({value})" for value in values) + "\r\n")
        covered = ("".join(lines) + "!\r\n").encode("ascii", "replace") + _ETX
        return _STX + covered + bytes([_block_check(covered)])

    def _field(self, channel: ObisChannel, at: datetime, shown: datetime) -> str:
        face = self.faceplate
        if channel.role is Role.STATUS:
            return format(face.status_word(channel.flags), "08X")
        if channel.role is Role.CLOCK_TIME:
            return shown.strftime("%H%M%S")
        if channel.role is Role.CLOCK_DATE:
            return shown.strftime("%y%m%d")
        if channel.role is Role.CLOCK:
            return shown.strftime("%y%m%d%H%M%S")
        if channel.role is Role.IDENTITY:
            return face.spec.serial
        raw = face.value(channel.name, channel.unit, at) / channel.scale
        number = _fixed(raw, face.spec.dials)
        return f"{number}*{channel.unit}" if channel.unit else number

    # --- the line ----------------------------------------------------------------------

    def _baud_char(self) -> str:
        top = self.settings.max_baud
        if self._mode == "C":
            return _C_RATES[max(rate for rate in _C_RATES if rate <= max(top, 300))]
        if self._mode == "B":
            return _B_RATES[max(rate for rate in _B_RATES if rate <= max(top, 600))]
        return _MODE_A_CHAR

    def _addressed(self, line: bytes) -> bool:
        match = re.fullmatch(rb".*/\?([0-9A-Za-z ]*)!\r\n", line, re.DOTALL)
        if match is None:
            return False
        address = match[1].decode("ascii")
        return address in ("", self.address)

    def _next_line(self, timeout: float | None) -> bytes | None:
        """The next CR LF-terminated line received (echoed when ``echo``); ``None`` on timeout."""
        port = self._port
        assert port is not None
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stopping.is_set():
            end = self._buffer.find(b"\r\n")
            if end >= 0:
                line = bytes(self._buffer[: end + 2])
                del self._buffer[: end + 2]
                return line
            if deadline is not None and time.monotonic() > deadline:
                return None
            chunk = port.read(max(1, port.in_waiting))
            if not chunk:
                continue
            if self.echo:
                port.write(chunk)  # the head reflects the light as it came, parity bit and all
            if self._soft_parity:
                chunk = chunk.translate(_RECEIVED)
            self._nuls += chunk.count(0)
            if self._nuls >= _WAKEUP_NULS:  # a wake-up train, perhaps in several pieces
                self._nuls = 0
                self._awake_until = time.monotonic() + _AWAKE_S
            self._buffer += chunk.replace(b"\x00", b"")
            if len(self._buffer) > _MAX_LINE:
                del self._buffer[:-_MAX_LINE]
        return None

    def _write(self, data: bytes) -> None:
        port = self._port
        assert port is not None
        port.write(data.translate(_SENT) if self._soft_parity else data)
        port.flush()

    def _set_baud(self, baud: int) -> None:
        """Change baud only when it differs: a pty refuses a no-op 7E1 reconfiguration."""
        port = self._port
        if port is None or port.baudrate == baud:
            return
        self._stopping.wait(_SETTLE_S)  # let what was written leave at the old rate
        port.baudrate = baud


def _parity_bit(byte: int) -> int:
    return bin(byte & 0x7F).count("1") & 1


_SENT = bytes((byte & 0x7F) | _parity_bit(byte) << 7 for byte in range(256))
_RECEIVED = bytes(
    byte & 0x7F if _parity_bit(byte) == byte >> 7 else 0x80 | byte for byte in range(256)
)
"""8-bit bytes off a port without 7E1 → characters; a parity error keeps bit 7 (noise)."""


def _baud_of(table: dict[int, str], char: str) -> int:
    return next((rate for rate, known in table.items() if known == char), 0)


def _block_check(data: bytes) -> int:
    check = 0
    for byte in data:
        check ^= byte
    return check & 0x7F


def _fixed(value: Decimal, integer_digits: int) -> str:
    """``Decimal('123.456')`` → ``'000123.456'``: the meter's fixed-width display."""
    text = format(abs(value), "f")
    whole, point, fraction = text.partition(".")
    return ("-" if value < 0 else "") + whole.zfill(integer_digits) + point + fraction
