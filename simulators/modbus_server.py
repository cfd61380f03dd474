"""Simulated Modbus TCP and RTU meters, served by pymodbus's own server.

Each request is answered from the meter's :class:`~simulators.faceplate.Faceplate`
at that instant: the registers are computed on demand and encoded with this
module's own struct-based encoder (it shares no code with the driver's decoder,
so a bug cannot cancel itself out). An address the profile does not map
answers exception 02 (illegal data address), as most meters do — so a plan that
merges across a gap fails here as it would in the field.

Line faults act on the wire, per request, at the switch's ``rate``:
``no_answer`` sends nothing, ``slow_answer`` answers ``slow_s`` late, and
``garbled`` damages one byte of the answer — anywhere on RTU (the CRC then
fails), in the MBAP header, function code or byte count on TCP (TCP carries no
Modbus checksum, so a damaged register byte could not be detected by anyone;
a damaged header can). Value faults (stuck, backward, spike, rollover, tamper)
come through the faceplate.

Every simulator of a process runs on one shared event-loop thread, so a
benchmark can host 200 TCP meters (one port each) without 200 threads.

Example::

    device = SimulatedDevice(Faceplate(MeterSpec("E1", Service.ELECTRIC)), channels)
    with ModbusTcpSimulator(devices={1: device}) as meter:
        host, port = meter.endpoint.rsplit(":", 1)
        device.faceplate.faults.set(Fault.GARBLED)
"""

from __future__ import annotations

import asyncio
import logging
import re
import struct
import threading
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN, Decimal, localcontext
from typing import Any, ClassVar

from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext
from pymodbus.exceptions import NoSuchIdException
from pymodbus.framer import FramerType
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler

from protocols.channels import ByteOrder, DataType, ModbusChannel, Role, SerialSettings
from simulators.faceplate import Faceplate
from simulators.faults import Fault, FaultSwitch
from simulators.serving import Serving

log = logging.getLogger(__name__)

READ_FUNCTIONS = (3, 4)
MAX_READ_REGISTERS = 125
TCP_GARBLE_SPAN = 8
"""Transaction id (low byte), protocol id, length, unit id: header bytes a client must check."""
_START_TIMEOUT_S = 10.0
_DEFAULT_SERIAL = SerialSettings()


@dataclass
class SimulatedDevice:
    """One meter on a simulator: what it shows, and the registers its profile maps."""

    faceplate: Faceplate
    channels: Sequence[ModbusChannel]

    @property
    def faults(self) -> FaultSwitch:
        return self.faceplate.faults


# --------------------------------------------------------------------------- encoding


def register_number(channel: ModbusChannel, value: Decimal) -> int | float:
    """What the meter stores for ``value``: value ÷ scale, truncated for integer types."""
    with localcontext() as context:
        context.prec = 60
        raw = value / channel.scale
    if channel.data_type.is_float:
        return float(raw)
    return int(raw.to_integral_value(rounding=ROUND_DOWN))


def encode_registers(channel: ModbusChannel, number: float) -> list[int]:
    """``number`` as ``channel`` lays it out in registers (wire order).

    Integers wrap at the type's width, as a register counter does; a float too
    large for a float32 raises :class:`OverflowError`.

    >>> encode_registers(ModbusChannel(name="e", address=0, data_type=DataType.FLOAT32),
    ...                  1234.5677)
    [17562, 21035]
    """
    data_type = channel.data_type
    if data_type.is_float:
        data = struct.pack(">f" if data_type is DataType.FLOAT32 else ">d", number)
    else:
        bits = 16 * data_type.registers
        data = (int(number) % (1 << bits)).to_bytes(bits // 8, "big")
    words = [data[i : i + 2] for i in range(0, len(data), 2)]
    if channel.word_order is ByteOrder.LITTLE:
        words.reverse()
    if channel.byte_order is ByteOrder.LITTLE:
        words = [word[::-1] for word in words]
    return [int.from_bytes(word, "big") for word in words]


class RegisterMap:
    """A device's registers by (function, address), computed from its faceplate when read."""

    def __init__(self, device: SimulatedDevice) -> None:
        self.device = device
        self._cells: dict[tuple[int, int], tuple[ModbusChannel, int]] = {}
        for channel in device.channels:
            if channel.function not in READ_FUNCTIONS:
                raise ValueError(f"channel {channel.name!r}: function {channel.function} "
                                 "is not 3 or 4")
            for index in range(channel.count):
                key = (channel.function, channel.address + index)
                if key in self._cells:
                    other = self._cells[key][0].name
                    raise ValueError(f"channels {other!r} and {channel.name!r} overlap at "
                                     f"function {key[0]:02d} address {key[1]}")
                self._cells[key] = (channel, index)

    def read(self, function: int, address: int, count: int) -> list[int] | ExcCodes:
        """The ``count`` registers from ``address``, or the exception a meter would answer."""
        if function not in READ_FUNCTIONS:
            return ExcCodes.ILLEGAL_FUNCTION
        if not 1 <= count <= MAX_READ_REGISTERS:
            return ExcCodes.ILLEGAL_VALUE
        cells = [self._cells.get((function, address + offset)) for offset in range(count)]
        if any(cell is None for cell in cells):
            return ExcCodes.ILLEGAL_ADDRESS
        faceplate = self.device.faceplate
        at = faceplate.now()  # one instant for the whole answer, as a meter's snapshot
        encoded: dict[str, list[int]] = {}
        registers = []
        for channel, index in cells:  # type: ignore[misc]
            if channel.name not in encoded:
                encoded[channel.name] = encode_registers(channel, self._number(channel, at))
            registers.append(encoded[channel.name][index])
        return registers

    def _number(self, channel: ModbusChannel, at: datetime) -> int | float:
        faceplate = self.device.faceplate
        if channel.role is Role.STATUS:
            return faceplate.status_word(channel.flags)
        if channel.role is Role.IDENTITY:
            digits = re.sub(r"\D", "", faceplate.spec.serial)
            return int(digits) if digits else 0
        if channel.role is not Role.VALUE:
            return 0  # Modbus clock registers: not simulated
        return register_number(channel, faceplate.value(channel.name, channel.unit, at))


# --------------------------------------------------------------------------- pymodbus glue


class _FaceplateContext(ModbusServerContext):
    """pymodbus's datastore interface over register maps; nothing is stored.

    ``ModbusServerContext.__init__`` is not called: it only wraps pymodbus's
    own (deprecated) data blocks and logs a warning about them. The server uses
    a context whose ``old_simulator`` is true as is, through the three methods
    below.
    """

    def __init__(self, maps: Mapping[int, RegisterMap]) -> None:
        self.maps = dict(maps)
        self.old_simulator = True
        self.simdevices = []

    async def async_getValues(
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> list[int] | list[bool] | ExcCodes:
        register_map = self.maps.get(device_id)
        if register_map is None:
            raise NoSuchIdException(f"no unit {device_id}")
        return register_map.read(func_code, address, count)

    async def async_setValues(
        self,
        device_id: int,
        func_code: int,
        address: int,
        values: Sequence[int] | Sequence[bool],
    ) -> ExcCodes | None:
        return ExcCodes.ILLEGAL_FUNCTION  # a meter's registers are read-only

    def device_ids(self) -> list[int]:
        return list(self.maps)


class _MeterRequestHandler(ServerRequestHandler):
    """Answers each request in its own task with the request it belongs to, faults applied.

    pymodbus's handler reads ``last_pdu`` again after awaiting the datastore, so
    a request arriving while a slow answer sleeps would lend the slow answer its
    unit and transaction id; each task here keeps its own request.
    """

    server: _MeterServerMixin

    def handle_later(self) -> None:
        request, addr = self.last_pdu, self.last_addr
        self.last_pdu = None
        if request is not None:
            task = self.loop.create_task(self._answer(request, addr))
            self.server.tasks.add(task)
            task.add_done_callback(self.server.tasks.discard)

    async def _answer(self, request: ModbusPDU, addr: tuple[Any, ...] | None) -> None:
        server = self.server
        device = server.meters.get(request.dev_id)
        faults: FaultSwitch | None = None
        if device is None:
            if server.unknown_unit is None:
                return  # nobody on the bus has this address: silence
            response: ModbusPDU = ExceptionResponse(request.function_code, server.unknown_unit)
        else:
            faults = device.faults
            if faults.strikes(Fault.NO_ANSWER):
                log.debug("unit %d: no_answer, request dropped", request.dev_id)
                return
            if faults.strikes(Fault.SLOW_ANSWER):
                await asyncio.sleep(faults.slow_s)
            response = await self._respond(request)
        response.transaction_id = request.transaction_id
        response.dev_id = request.dev_id
        frame = self.framer.buildFrame(response)
        if faults is not None and faults.strikes(Fault.GARBLED):
            frame = server.garble(frame, faults)
            log.debug("unit %d: garbled answer %s", request.dev_id, frame.hex(" "))
        if self.transport is None:
            return  # the client hung up while we were slow
        self.send(frame, addr)

    async def _respond(self, request: ModbusPDU) -> ModbusPDU:
        if request.function_code not in READ_FUNCTIONS:
            return ExceptionResponse(request.function_code, ExcCodes.ILLEGAL_FUNCTION)
        try:
            return await request.datastore_update(self.server.context, request.dev_id)
        except (ArithmeticError, ValueError, struct.error) as exc:
            log.warning("unit %d: cannot encode an answer: %s", request.dev_id, exc)
            return ExceptionResponse(request.function_code, ExcCodes.DEVICE_FAILURE)


class _MeterServerMixin:
    """What the handler needs from its server: the meters, and how this transport garbles."""

    meters: dict[int, SimulatedDevice]
    unknown_unit: ExcCodes | None
    tasks: set[asyncio.Task[None]]
    trace_packet: Any
    trace_pdu: Any
    trace_connect: Any
    context: Any

    def callback_new_connection(self) -> _MeterRequestHandler:
        return _MeterRequestHandler(self, self.trace_packet, self.trace_pdu, self.trace_connect)

    def garble(self, frame: bytes, faults: FaultSwitch) -> bytes:
        return faults.garble(frame)


class _TcpServer(_MeterServerMixin, ModbusTcpServer):
    def garble(self, frame: bytes, faults: FaultSwitch) -> bytes:
        return faults.garble(frame[:TCP_GARBLE_SPAN]) + frame[TCP_GARBLE_SPAN:]


class _RtuServer(_MeterServerMixin, ModbusSerialServer):
    pass


# --------------------------------------------------------------------------- event loop


class _SharedLoop:
    """One asyncio loop in a daemon thread, shared by every simulator in the process."""

    _guard: ClassVar[threading.Lock] = threading.Lock()
    _current: ClassVar[_SharedLoop | None] = None

    def __init__(self) -> None:
        self.users = 0
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="modbus simulators",
                                        daemon=True)
        self._thread.start()

    @classmethod
    def acquire(cls) -> _SharedLoop:
        with cls._guard:
            if cls._current is None:
                cls._current = cls()
            cls._current.users += 1
            return cls._current

    def release(self) -> None:
        with self._guard:
            self.users -= 1
            if self.users > 0:
                return
            if type(self)._current is self:
                type(self)._current = None
        self.run(_cancel_tasks())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self.loop.close()

    def run(self, coroutine: Coroutine[Any, Any, Any], timeout: float = _START_TIMEOUT_S) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)


async def _cancel_tasks() -> None:
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# --------------------------------------------------------------------------- simulators


class _Simulator(Serving):
    """Start/stop plumbing shared by the TCP and RTU simulators."""

    endpoint: str

    def __init__(self, devices: Mapping[int, SimulatedDevice]) -> None:
        _quiet_pymodbus()
        if not devices:
            raise ValueError("a simulator needs at least one device")
        for unit_id in devices:
            if not 0 <= unit_id <= 247:
                raise ValueError(f"unit id {unit_id} is outside 0..247")
        self.devices = dict(devices)
        self._maps = {unit: RegisterMap(device) for unit, device in self.devices.items()}
        self._loop: _SharedLoop | None = None
        self._server: _MeterServerMixin | None = None

    def faults(self, unit_id: int) -> FaultSwitch:
        """The fault switch of the meter at ``unit_id``."""
        return self.devices[unit_id].faults

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        """Serve; returns once listening. Raises :class:`OSError` if the port cannot be opened."""
        if self._server is not None:
            return
        shared = _SharedLoop.acquire()
        try:
            self._server = shared.run(self._serve())
        except BaseException:
            shared.release()
            raise
        self._loop = shared
        log.debug("modbus simulator serving at %s, units %s", self.endpoint, sorted(self.devices))

    async def _serve(self) -> _MeterServerMixin:
        server = self._make_server(_FaceplateContext(self._maps))
        server.meters = self.devices
        server.tasks = set()
        try:
            await server.serve_forever(background=True)  # type: ignore[attr-defined]
        except RuntimeError as exc:
            raise OSError(f"cannot serve at {self._address()}: {exc}") from None
        self._listening(server)
        await asyncio.sleep(0)  # let a serial transport register its reader
        return server

    def stop(self) -> None:
        """Stop serving (pending slow answers are dropped); safe to call twice."""
        server, shared = self._server, self._loop
        self._server = self._loop = None
        if server is None or shared is None:
            return
        try:
            shared.run(_shutdown(server))
        finally:
            shared.release()

    def _make_server(self, context: _FaceplateContext) -> _MeterServerMixin:
        raise NotImplementedError

    def _listening(self, server: _MeterServerMixin) -> None:
        """Note where the server listens, once it does."""

    def _address(self) -> str:
        return self.endpoint



async def _shutdown(server: _MeterServerMixin) -> None:
    for task in list(server.tasks):
        task.cancel()
    await server.shutdown()  # type: ignore[attr-defined]


class ModbusTcpSimulator(_Simulator):
    """Modbus TCP meters behind one listening port (a meter, or a gateway with several units).

    ``port=0`` picks a free port; after :meth:`start`, ``port`` and ``endpoint``
    (``"127.0.0.1:PORT"``) name the real one. A request for a unit id no device
    has answers exception 0B (gateway target failed to respond), as a gateway does.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        devices: Mapping[int, SimulatedDevice],
    ) -> None:
        super().__init__(devices)
        self.host = host
        self.port = port
        self.endpoint = f"{host}:{port}"

    def _make_server(self, context: _FaceplateContext) -> _MeterServerMixin:
        server = _TcpServer(context, address=(self.host, self.port), ignore_missing_devices=True)
        server.unknown_unit = ExcCodes.GATEWAY_NO_RESPONSE
        return server

    def _listening(self, server: _MeterServerMixin) -> None:
        sockets = server.transport.sockets  # type: ignore[attr-defined]
        self.port = sockets[0].getsockname()[1]
        self.endpoint = f"{self.host}:{self.port}"


class ModbusRtuSimulator(_Simulator):
    """Modbus RTU meters sharing one serial line (e.g. the meter end of a ``VirtualCable``).

    A request for a unit id no device has gets no answer, as on a real bus.
    """

    def __init__(
        self,
        port_path: str,
        *,
        devices: Mapping[int, SimulatedDevice],
        serial: SerialSettings = _DEFAULT_SERIAL,
    ) -> None:
        super().__init__(devices)
        self.port_path = port_path
        self.serial = serial
        self.endpoint = port_path

    def _make_server(self, context: _FaceplateContext) -> _MeterServerMixin:
        server = _RtuServer(
            context, framer=FramerType.RTU, port=self.port_path,
            baudrate=self.serial.baudrate, bytesize=self.serial.bytesize,
            parity=self.serial.parity, stopbits=self.serial.stopbits,
            ignore_missing_devices=True,
        )
        server.unknown_unit = None
        return server


class _ToDebug(logging.Filter):
    """Hands pymodbus's records to our logger at DEBUG (it logs a silent meter as ERROR)."""

    routes_pymodbus = True

    def filter(self, record: logging.LogRecord) -> bool:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("pymodbus %s: %s", record.levelname.lower(), record.getMessage())
        return False


def _quiet_pymodbus() -> None:
    """Like the driver's: this package shares no code with ``protocols`` beyond its data."""
    pymodbus_log = logging.getLogger("pymodbus.logging")
    if any(getattr(found, "routes_pymodbus", False) for found in pymodbus_log.filters):
        return
    pymodbus_log.addFilter(_ToDebug())
    if pymodbus_log.level == logging.NOTSET:
        pymodbus_log.setLevel(logging.WARNING)
