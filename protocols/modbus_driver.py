"""Read Modbus meters over TCP and over an RS-485 bus, through pymodbus's client.

Both drivers execute the plan of :mod:`protocols.modbus_plan` (function 03/04
blocks), decode with :mod:`protocols.modbus_decode`, and turn everything
pymodbus can raise into the typed errors of :mod:`protocols.driver`:

* port missing, connection refused or dropped → :class:`LinkError`;
* nothing back within ``timeout_s`` → :class:`NoResponse`;
* a Modbus exception response → :class:`DeviceError` with its ``code``;
* bytes came back but no valid answer: an RTU frame whose CRC does not match →
  :class:`ChecksumError`; anything else of the wrong shape, length, unit,
  function or transaction → :class:`FrameError`.

pymodbus 3.16 does not report a bad CRC: its RTU framer drops the frame and
the client waits out its timeout, exactly as if the meter were silent. The
driver therefore watches the bytes that arrive (pymodbus's ``trace_packet``
hook) and, when a transaction ends without an answer although bytes came, checks
their CRC itself — so a garbled answer is a :class:`ChecksumError`, not a
:class:`NoResponse`. It still costs the full timeout, as it does on a real bus.

One RS-485 bus carries many meters but only one transaction at a time:
:class:`ModbusRtuBus` owns the port and a lock, keeps the t3.5 silence between
frames, and hands out a :class:`ModbusRtuDriver` per meter.

Example::

    with ModbusTcpDriver("10.0.0.7", 502, unit_id=1, settings=profile.modbus) as meter:
        [sample] = meter.read(profile.channels)

    with ModbusRtuBus("/dev/ttyUSB0", serial=profile.serial) as bus:
        for unit in (1, 2, 3):
            [sample] = bus.driver(unit, profile.modbus).read(profile.channels)
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Literal, Self

from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.client.base import ModbusBaseSyncClient
from pymodbus.exceptions import ConnectionException, ModbusException
from pymodbus.framer import FramerType
from pymodbus.framer.rtu import FramerRTU
from pymodbus.pdu import ModbusPDU

from protocols.channels import Channel, ModbusSettings, Role, SerialSettings
from protocols.driver import (
    ChannelValue,
    ChecksumError,
    DeviceError,
    DriverBase,
    FrameError,
    LinkError,
    MeterError,
    MeterSample,
    NoResponse,
    ProfileError,
)
from protocols.modbus_decode import decode_status, decode_value
from protocols.modbus_plan import Block, plan_blocks

log = logging.getLogger(__name__)

DEFAULT_SETTINGS = ModbusSettings()
DEFAULT_SERIAL = SerialSettings()
MAX_UNIT_ID = 247
RTU_BITS_PER_CHAR = 11
"""Modbus RTU counts 11 bits per character (start, 8 data, parity or a second stop, stop)."""
_EXCEPTION_NAMES = {
    1: "illegal function", 2: "illegal data address", 3: "illegal data value",
    4: "server device failure", 5: "acknowledge", 6: "server device busy",
    8: "memory parity error", 10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}
_UNSUPPORTED_ROLES = {Role.CLOCK, Role.CLOCK_DATE, Role.CLOCK_TIME}


def rtu_silence_s(baudrate: int) -> float:
    """The t3.5 gap between RTU frames: 3.5 characters, fixed at 1.75 ms above 19200 baud.

    >>> round(rtu_silence_s(9600) * 1000, 2)
    4.01
    """
    if baudrate > 19200:
        return 0.00175
    return 3.5 * RTU_BITS_PER_CHAR / baudrate


class _ToDebug(logging.Filter):
    """Hands pymodbus's records (it logs a meter's silence as ERROR) to our logger at DEBUG.

    A filter on pymodbus's own logger drops each record before any handler sees it.
    """

    routes_pymodbus = True

    def __init__(self, target: logging.Logger) -> None:
        super().__init__()
        self.target = target

    def filter(self, record: logging.LogRecord) -> bool:
        if self.target.isEnabledFor(logging.DEBUG):
            self.target.debug("pymodbus %s: %s", record.levelname.lower(), record.getMessage())
        return False


def quiet_pymodbus() -> None:
    """Route pymodbus's log to ours at DEBUG, once; a level someone set explicitly stays."""
    pymodbus_log = logging.getLogger("pymodbus.logging")  # the one logger pymodbus uses
    if any(getattr(found, "routes_pymodbus", False) for found in pymodbus_log.filters):
        return
    pymodbus_log.addFilter(_ToDebug(log))
    if pymodbus_log.level == logging.NOTSET:
        pymodbus_log.setLevel(logging.WARNING)  # don't let pymodbus format a debug line per frame


class _Link:
    """One pymodbus sync client, and what arrived during the current transaction."""

    def __init__(
        self,
        make_client: Callable[[Callable[[bool, bytes], bytes]], ModbusBaseSyncClient],
        *,
        framing: Literal["rtu", "tcp"],
        timeout_s: float,
    ) -> None:
        quiet_pymodbus()
        self.framing = framing
        self.timeout_s = timeout_s
        self._received = b""
        self._client = make_client(self._trace_packet)

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        if not sending and data:
            self._received = bytes(data)  # pymodbus passes what it has buffered so far
        return data

    @property
    def is_open(self) -> bool:
        return bool(self._client.connected)

    def open(self, where: str) -> None:
        try:
            opened = self._client.connect()
        except (ModbusException, OSError) as exc:
            raise LinkError(f"cannot open: {exc}", where=where) from None
        if not opened:
            what = "port" if self.framing == "rtu" else "connection"
            raise LinkError(f"cannot open the {what} (missing, refused or busy)", where=where)

    def close(self) -> None:
        self._client.close()

    def exchange(self, block: Block, unit_id: int, where: str) -> list[int]:
        """One 03/04 request and its registers; every failure as a typed error."""
        if not self.is_open:
            self.open(where)
        self._received = b""
        read = (
            self._client.read_holding_registers
            if block.function == 3
            else self._client.read_input_registers
        )
        try:
            response = read(block.address, count=block.count, device_id=unit_id)
        except ConnectionException as exc:
            self.close()
            raise LinkError(f"link lost: {exc.string}", where=where) from None
        except (ModbusException, TimeoutError, ValueError, IndexError, struct.error) as exc:
            # pymodbus gave up on the answer (or tripped over garbage while parsing it)
            raise self._unanswered(block, exc, where) from None
        except OSError as exc:
            self.close()
            raise LinkError(f"link lost: {exc}", where=where) from None
        return self._registers(block, response, where)

    def _unanswered(self, block: Block, exc: Exception, where: str) -> MeterError:
        """No answer came out of pymodbus: silence, or bytes that formed no valid answer."""
        received, request = self._received, _describe(block)
        if not received:
            return NoResponse(f"no answer to {request} within {self.timeout_s} s", where=where)
        if self.framing == "rtu" and _crc_mismatch(received):
            return ChecksumError(
                f"answer to {request} fails its CRC: {received.hex(' ')}", where=where, raw=received
            )
        log.debug("%s: pymodbus found no answer to %s in %s: %s",
                  where, request, received.hex(" "), exc)
        return FrameError(
            f"answer to {request} is not a valid frame: {received.hex(' ')}",
            where=where, raw=received,
        )

    def _registers(self, block: Block, response: ModbusPDU, where: str) -> list[int]:
        request = _describe(block)
        if response.function_code & 0x7F != block.function:
            raise FrameError(
                f"answer to {request} has function {response.function_code:#04x}",
                where=where, raw=self._received,
            )
        if response.isError():
            code = int(getattr(response, "exception_code", 0))
            name = _EXCEPTION_NAMES.get(code, "unknown exception")
            raise DeviceError(f"meter refused {request}: exception {code:02d} ({name})",
                              code=code, where=where)
        registers = list(response.registers)
        if len(registers) != block.count:
            raise FrameError(
                f"answer to {request} holds {len(registers)} registers", where=where,
                raw=self._received,
            )
        return registers


def _describe(block: Block) -> str:
    return f"function {block.function:02d} at {block.address} × {block.count}"


def _crc_mismatch(frame: bytes) -> bool:
    """Whether an RTU frame's last two bytes are not the CRC of the rest."""
    if len(frame) < FramerRTU.MIN_SIZE:
        return False
    return not FramerRTU.check_CRC(frame[:-2], int.from_bytes(frame[-2:], "big"))


class _ModbusDriver(DriverBase):
    """Plan, exchange, decode: what both transports share."""

    def __init__(self, *, unit_id: int, settings: ModbusSettings, where: str) -> None:
        if not 0 <= unit_id <= MAX_UNIT_ID:
            raise ValueError(f"unit id {unit_id} is outside 0..{MAX_UNIT_ID}")
        self.unit_id = unit_id
        self.settings = settings
        self.where = where
        self.transactions = 0
        """Requests sent by this driver, retries included: what merging saves."""
        self._planned: tuple[tuple[Channel, ...], tuple[Block, ...]] | None = None

    def plan(self, channels: Sequence[Channel]) -> tuple[Block, ...]:
        """The requests :meth:`read` sends for ``channels`` (cached for the last set read)."""
        key = tuple(channels)
        if self._planned is not None and self._planned[0] == key:
            return self._planned[1]
        try:
            for channel in key:
                if channel.role in _UNSUPPORTED_ROLES:
                    raise ProfileError(
                        f"channel {channel.name!r}: a {channel.role} channel has no Modbus reading "
                        "here (Modbus meters report no clock to this driver)"
                    )
            blocks = plan_blocks(key, self.settings)  # type: ignore[arg-type]
        except ProfileError as exc:
            raise ProfileError(exc.detail, where=self.where) from None
        self._planned = (key, blocks)
        return blocks

    def read(self, channels: Sequence[Channel]) -> list[MeterSample]:
        """Read ``channels`` in as few requests as the profile allows; one sample."""
        blocks = self.plan(channels)
        values: dict[str, ChannelValue] = {}
        flags: list[str] = []
        identity: str | None = None
        for block in blocks:
            registers = self._exchange(block)
            try:
                for channel in block.channels:
                    own = block.registers_of(channel, registers)
                    if channel.role is Role.STATUS:
                        flags += decode_status(channel, own)
                    elif channel.role is Role.IDENTITY:
                        identity = str(decode_value(channel, own))
                    else:
                        values[channel.name] = ChannelValue(
                            decode_value(channel, own), channel.unit, channel.obis
                        )
            except (FrameError, ProfileError) as exc:
                raise type(exc)(exc.detail, where=self.where, raw=exc.raw) from None
        return [MeterSample(values=values, flags=tuple(flags), identity=identity)]

    def _exchange(self, block: Block) -> list[int]:
        raise NotImplementedError


class ModbusTcpDriver(_ModbusDriver):
    """A Modbus TCP meter (or a gateway's unit) at ``host:port``.

    A transaction that times out or returns garbage closes the connection, so
    a late answer can never be taken for the next one; the next read
    reconnects. ``retries`` repeats a request that got no valid answer (never
    one the meter refused).
    """

    def __init__(
        self,
        host: str,
        port: int = 502,
        *,
        unit_id: int = 1,
        settings: ModbusSettings = DEFAULT_SETTINGS,
        timeout_s: float = 1.0,
        retries: int = 0,
    ) -> None:
        super().__init__(unit_id=unit_id, settings=settings, where=f"{host}:{port} unit {unit_id}")
        if retries < 0:
            raise ValueError(f"retries must not be negative, not {retries}")
        self.host, self.port, self.timeout_s, self.retries = host, port, timeout_s, retries
        self._link = _Link(
            lambda trace: ModbusTcpClient(
                host, port=port, timeout=timeout_s, retries=0, trace_packet=trace,
                name=f"{host}:{port}",
            ),
            framing="tcp", timeout_s=timeout_s,
        )

    def connect(self) -> None:
        self._link.open(self.where)

    def close(self) -> None:
        self._link.close()

    def _exchange(self, block: Block) -> list[int]:
        for attempt in range(self.retries + 1):
            self.transactions += 1
            try:
                return self._link.exchange(block, self.unit_id, self.where)
            except (NoResponse, FrameError) as exc:
                self._link.close()  # drop whatever may still arrive for this request
                if attempt == self.retries:
                    raise
                log.debug("%s: %s; retrying", self.where, exc.detail)
        raise AssertionError("unreachable")  # pragma: no cover


class ModbusRtuBus:
    """One RS-485 port shared by the Modbus RTU meters on it; one transaction at a time.

    :meth:`driver` gives each meter its own driver on this bus; closing a
    driver leaves the bus open for the others, :meth:`close` closes the port.
    Safe to use from several threads: requests queue on the bus's lock.
    """

    def __init__(
        self, port: str, *, serial: SerialSettings = DEFAULT_SERIAL, timeout_s: float = 1.0
    ) -> None:
        self.port = port
        self.where = port
        self.serial = serial
        self.timeout_s = timeout_s
        self.transactions = 0
        """Requests sent on this bus by all its drivers."""
        self.silence_s = rtu_silence_s(serial.baudrate)
        self._lock = threading.Lock()
        self._quiet_since = 0.0
        self._link = _Link(
            lambda trace: ModbusSerialClient(
                port, framer=FramerType.RTU, baudrate=serial.baudrate,
                bytesize=serial.bytesize, parity=serial.parity, stopbits=serial.stopbits,
                timeout=timeout_s, retries=0, trace_packet=trace, name=port,
            ),
            framing="rtu", timeout_s=timeout_s,
        )

    def open(self) -> None:
        """Open the port (done by the first request if not before); :class:`LinkError` if absent."""
        with self._lock:
            if not self._link.is_open:
                self._link.open(self.where)

    def driver(
        self, unit_id: int, settings: ModbusSettings = DEFAULT_SETTINGS, *, retries: int = 0
    ) -> ModbusRtuDriver:
        """A driver for the meter at ``unit_id`` on this bus."""
        return ModbusRtuDriver(self, unit_id, settings=settings, retries=retries)

    def exchange(self, block: Block, unit_id: int, where: str) -> list[int]:
        """One request to ``unit_id`` after the bus has been silent for t3.5."""
        with self._lock:
            wait = self._quiet_since + self.silence_s - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self.transactions += 1
            try:
                return self._link.exchange(block, unit_id, where)
            finally:
                self._quiet_since = time.monotonic()

    def close(self) -> None:
        with self._lock:
            self._link.close()

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class ModbusRtuDriver(_ModbusDriver):
    """One meter on a :class:`ModbusRtuBus`; made by :meth:`ModbusRtuBus.driver`."""

    def __init__(
        self,
        bus: ModbusRtuBus,
        unit_id: int,
        *,
        settings: ModbusSettings = DEFAULT_SETTINGS,
        retries: int = 0,
    ) -> None:
        super().__init__(unit_id=unit_id, settings=settings, where=f"{bus.port} unit {unit_id}")
        if retries < 0:
            raise ValueError(f"retries must not be negative, not {retries}")
        self.bus = bus
        self.retries = retries

    def connect(self) -> None:
        """Open the bus if no other meter has yet."""
        try:
            self.bus.open()
        except LinkError as exc:
            raise LinkError(exc.detail, where=self.where) from None

    def close(self) -> None:
        """Nothing to release: the bus stays open for its other meters."""

    def _exchange(self, block: Block) -> list[int]:
        for attempt in range(self.retries + 1):
            self.transactions += 1
            try:
                return self.bus.exchange(block, self.unit_id, self.where)
            except (NoResponse, FrameError) as exc:
                if attempt == self.retries:
                    raise
                log.debug("%s: %s; retrying", self.where, exc.detail)
        raise AssertionError("unreachable")  # pragma: no cover
