"""A simulated DSMR smart meter pushing P1 telegrams onto a pseudo-terminal.

A real P1 port talks without being asked: every 1 s (DSMR 5) or 10 s (DSMR 4.x
and older) it writes one telegram at 115200 8N1 (DSMR 2.2 and 3: 9600 7E1),
taking the ~0.1 s a kilobyte needs on that wire. This emitter does the same on
the meter end of a :class:`~simulators.serial_link.VirtualCable`, with the
values of a :class:`~simulators.faceplate.Faceplate`: the meter's own channels
from ``faceplate``, an M-Bus sub-meter's (gas, water) from ``sub_meters[n]``,
its value as of its last capture (on the hour in DSMR 4, every 5 minutes in
DSMR 5), stamped with that capture time.

It shares no code with the driver it tests (``protocols.p1_driver``): its own
line formatting and its own CRC-16/ARC (bitwise here, table-driven there), so a
bug on one side cannot cancel one on the other. Only the channel *data* classes
are shared.

Faults (``faceplate.faults``): ``no_answer`` skips telegrams, ``slow_answer``
holds one back ``faults.slow_s``, ``garbled`` sends either a wrong CRC or a
damaged byte (alternately); value faults and ``clock_skew`` come through the
faceplates.

Example::

    with VirtualCable() as cable, P1Emitter(cable.meter_path, face, channels,
                                            sub_meters={1: gas_face}):
        samples = P1Driver(cable.device_path).read(channels)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from types import MappingProxyType
from zoneinfo import ZoneInfo

import serial

from protocols.channels import ObisChannel, Role
from simulators.faceplate import Faceplate
from simulators.faults import Fault
from simulators.meter_model import Service
from simulators.serving import Serving

log = logging.getLogger(__name__)

# Integer digits and decimals DSMR writes per unit (F9(3,3) for kWh, F5(3,3) for kW, …).
# Values keep every decimal the faceplate shows; these only pad.
_LAYOUT: dict[str, tuple[int, int]] = {
    "kwh": (6, 3), "wh": (9, 0), "kw": (2, 3), "w": (9, 0), "kvarh": (6, 3), "kvar": (2, 3),
    "v": (3, 1), "a": (3, 0), "m3": (5, 3), "gj": (5, 3), "s": (10, 0), "": (5, 0),
}
_DEVICE_TYPES = {Service.GAS: "003", Service.WATER: "007", Service.ELECTRIC: "002"}
_NO_SUB_METERS: Mapping[int, Faceplate] = MappingProxyType({})
_WRITE_TIMEOUT_S = 1.0


def crc16_arc_bitwise(data: bytes) -> int:
    """CRC-16/ARC one bit at a time (the driver's is table-driven; they must agree)."""
    crc = 0x0000
    for byte in data:
        crc ^= byte
        for _ in range(8):
            low_bit = crc & 1
            crc >>= 1
            if low_bit:
                crc ^= 0xA001
    return crc


class P1Emitter(Serving):
    """Writes a telegram to ``port_path`` every ``interval_s`` from a daemon thread.

    ``version`` ``"5.0"`` writes ``1-3:0.2.8(50)``, ``"4.2"`` ``(42)``; both add the
    clock ``0-0:1.0.0`` and a CRC at 115200 8N1. ``"2.2"`` and ``"3.0"`` write
    neither, run at 9600 7E1 and stamp times without S/W; a channel with code
    ``0-n:24.3.0`` gets the old two-line gas form. ``interval_s`` defaults to
    the version's own: 1 s for DSMR 5, 10 s before. ``pace`` spreads each
    telegram over its wire time, so a reader can open the port in the middle of
    one, as in the field. :meth:`telegram` gives the bytes without sending them.
    """

    def __init__(
        self,
        port_path: str,
        faceplate: Faceplate,
        channels: Sequence[ObisChannel],
        *,
        sub_meters: Mapping[int, Faceplate] = _NO_SUB_METERS,
        version: str = "5.0",
        interval_s: float | None = None,
        header: str = "/Ene5\\T210-D ESMR5.0",
        timezone: str = "Europe/Amsterdam",
        pace: bool = True,
    ) -> None:
        self.endpoint = port_path
        self.faceplate = faceplate
        self.faults = faceplate.faults
        self.channels = tuple(channels)
        self.sub_meters = dict(sub_meters)
        self.version = version
        self.major = int(version.split(".", maxsplit=1)[0])
        self.interval_s = interval_s if interval_s is not None else (
            1.0 if self.major >= 5 else 10.0)
        if self.interval_s <= 0:
            raise ValueError(f"interval_s must be positive, not {self.interval_s}")
        self.header = header
        self.zone = ZoneInfo(timezone)
        self.pace = pace
        modern = self.major >= 4
        self.baudrate, self.bytesize, self.parity = (115200, 8, "N") if modern else (9600, 7, "E")
        missing = {c.mbus_channel for c in self.channels if c.mbus_channel} - set(self.sub_meters)
        if missing:
            raise ValueError(f"channels name M-Bus channels {sorted(missing)} without a sub-meter")
        self.telegrams_sent = 0
        self._garbled = 0
        self._port: serial.Serial | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- what the meter says -------------------------------------------------------------

    def telegram(self) -> bytes:
        """The telegram the meter would send now, unfaulted on the line."""
        body = self._body()
        crc = f"{crc16_arc_bitwise(body):04X}" if self.major >= 4 else ""
        return body + f"{crc}\r\n".encode("ascii")

    def _body(self) -> bytes:
        face = self.faceplate
        lines: dict[str, list[str]] = {}
        if self.major >= 4:
            lines["1-3:0.2.8"] = ["".join(self.version.split(".")[:2])]
            lines["0-0:1.0.0"] = [self._timestamp(face.meter_time())]
        lines["0-0:96.1.1"] = [_hex(face.spec.serial)]
        for channel in self.channels:
            if channel.mbus_channel == 0:
                self._put(lines, channel, face, 0)
        for number in sorted(self.sub_meters):
            sub = self.sub_meters[number]
            lines[f"0-{number}:24.1.0"] = [_DEVICE_TYPES.get(sub.spec.service, "003")]
            lines[f"0-{number}:96.1.0"] = [_hex(sub.spec.serial)]
            for channel in self.channels:
                if channel.mbus_channel == number:
                    self._put(lines, channel, sub, number)
        text = "".join(_line(code, groups) for code, groups in lines.items())
        return f"{self.header}\r\n\r\n{text}!".encode("ascii")

    def _put(
        self, lines: dict[str, list[str]], channel: ObisChannel, face: Faceplate, number: int
    ) -> None:
        """Write ``channel``'s group into its line, creating the line in its DSMR form."""
        capture = _is_capture(channel.code) and number > 0
        shown_at, true_at = self._capture(face) if capture else (face.meter_time(), face.now())
        groups = lines.get(channel.code)
        if groups is None:
            groups = lines[channel.code] = self._new_line(channel, shown_at)
        if channel.role is Role.VALUE:
            value = face.value(channel.name, channel.unit, true_at)
            text = _number(value, channel.unit)
            if not channel.code.endswith(":24.3.0") and channel.unit:
                text += f"*{channel.unit}"
        elif channel.role is Role.CLOCK:
            text = self._timestamp(shown_at)
        elif channel.role is Role.IDENTITY:
            text = _hex(face.spec.serial)
        elif channel.role is Role.STATUS:
            text = f"{face.status_word(channel.flags):05d}"
        else:
            raise ValueError(f"{channel.name}: a P1 meter has no {channel.role} channel")
        groups.extend([""] * (channel.group + 1 - len(groups)))
        groups[channel.group] = text

    def _new_line(self, channel: ObisChannel, shown_at: datetime) -> list[str]:
        code = channel.code
        if code.endswith(":24.3.0"):  # DSMR 2.2/3 gas: value on the next line
            reference = code.replace("24.3.0", "24.2.1")
            return [self._timestamp(shown_at), "00", "60", "1", reference, channel.unit, ""]
        if _is_capture(code):
            return [self._timestamp(shown_at), ""]
        return []

    def _capture(self, face: Faceplate) -> tuple[datetime, datetime]:
        """(capture time on the sub-meter's clock, true time of that capture)."""
        now = face.now()
        shown = face.meter_time(now)
        step = 300 if self.major >= 5 else 3600
        seconds = int(shown.timestamp())
        captured = shown - timedelta(seconds=seconds % step, microseconds=shown.microsecond)
        return captured, max(now - (shown - captured), face.epoch)

    def _timestamp(self, moment: datetime) -> str:
        local = moment.astimezone(self.zone)
        digits = f"{local:%y%m%d%H%M%S}"
        if self.major < 4:
            return digits
        return digits + ("S" if local.dst() else "W")

    # --- the line ------------------------------------------------------------------------

    def start(self) -> None:
        """Open the port and start pushing telegrams."""
        if self._thread is not None:
            return
        self._port = serial.Serial(
            self.endpoint, self.baudrate, bytesize=self.bytesize, parity=self.parity,
            stopbits=1, write_timeout=_WRITE_TIMEOUT_S,
        )
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"p1 {self.endpoint}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop pushing and close the port; safe to call twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._port is not None:
            self._port.close()
            self._port = None

    def _run(self) -> None:
        due = time.monotonic()
        while not self._stop.is_set():
            wait = due - time.monotonic()
            if wait > 0 and self._stop.wait(wait):
                return
            due = max(due + self.interval_s, time.monotonic())
            if self.faults.strikes(Fault.NO_ANSWER):
                continue
            data = self.telegram()
            if self.faults.strikes(Fault.SLOW_ANSWER) and self._stop.wait(self.faults.slow_s):
                return
            if self.faults.strikes(Fault.GARBLED):
                data = self._garble(data)
            self._send(data)

    def _garble(self, data: bytes) -> bytes:
        """Odd times a wrong CRC, even times one damaged byte inside the data lines."""
        self._garbled += 1
        bang = data.rindex(b"!")
        crc = data[bang + 1 : bang + 5] if self.major >= 4 else b""
        wrong_crc = data[: bang + 1] + f"{int(crc or b'0', 16) ^ 0x5A5A:04X}\r\n".encode()
        if crc and self._garbled % 2:
            return wrong_crc
        start = data.index(b"\r\n\r\n") + 4
        region = data[start:bang]
        damaged = self.faults.garble(region)
        if crc and any(damaged.count(c) != region.count(c) for c in (b"\r", b"\n")):
            return wrong_crc  # the damage would have split or joined lines
        return data[:start] + damaged + data[bang:]

    def _send(self, data: bytes) -> None:
        port = self._port
        if port is None:
            return
        bits_per_char = 1 + self.bytesize + (self.parity != "N") + 1
        try:
            for line in data.splitlines(keepends=True) if self.pace else [data]:
                port.write(line)
                if self.pace:
                    time.sleep(len(line) * bits_per_char / self.baudrate)
        except (serial.SerialException, OSError) as exc:
            log.warning("p1 emitter %s: telegram not sent: %s", self.endpoint, exc)
            return
        self.telegrams_sent += 1



def _line(code: str, groups: list[str]) -> str:
    if code.endswith(":24.3.0") and len(groups) > 6:
        head = "".join(f"({group})" for group in groups[:6])
        return f"{code}{head}\r\n" + "".join(f"({group})\r\n" for group in groups[6:])
    return code + "".join(f"({group})" for group in groups or [""]) + "\r\n"


def _is_capture(code: str) -> bool:
    """M-Bus readings stamped with their capture time: ``0-n:24.2.x`` and DSMR 2.2 ``24.3.0``."""
    return ":24.2." in code or code.endswith(":24.3.0")


def _hex(text: str) -> str:
    return text.encode("ascii").hex().upper()


def _number(value: Decimal, unit: str) -> str:
    """``value`` padded to DSMR's digits for ``unit``, never rounded: 4.426 kWh → ``000004.426``."""
    integers, decimals = _LAYOUT.get(unit.lower(), (5, 3))
    sign = "-" if value < 0 else ""
    whole, _, fraction = format(abs(value), "f").partition(".")
    fraction = fraction.ljust(decimals, "0")
    return sign + whole.rjust(integers, "0") + (f".{fraction}" if fraction else "")
