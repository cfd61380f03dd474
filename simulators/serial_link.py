"""A null-modem cable made of two pseudo-terminals, for meters that live on serial lines.

A driver under test opens ``device_path`` exactly as it would open
``/dev/ttyUSB0``; the simulated meter opens ``meter_path``. Between them a relay
thread copies bytes both ways and behaves like a wire rather than a pipe:

* **baud agreement** — a pty carries its baud setting but ignores it, so the
  relay compares both ends' settings and turns the bytes into line noise when
  they differ, as a UART at the wrong speed does. An optical driver that
  forgets the IEC 62056-21 baud switch therefore reads garbage, here as on a
  real meter.
* **wire time** (``pace=True``) — bytes arrive no faster than the sender's baud
  allows (start + data + parity + stop bits per character), so a 300-baud
  sign-on takes as long as it does in the field.

Example::

    with VirtualCable() as cable:
        meter = serial.Serial(cable.meter_path, 9600)
        driver_port = serial.Serial(cable.device_path, 9600)
"""

from __future__ import annotations

import logging
import os
import random
import selectors
import termios
import threading
import time
import tty
from types import TracebackType
from typing import Self

log = logging.getLogger(__name__)

_BAUD_CONSTANTS = {
    getattr(termios, f"B{rate}"): rate
    for rate in (50, 75, 110, 134, 150, 200, 300, 600, 1200, 1800, 2400, 4800, 9600,
                 19200, 38400, 57600, 115200, 230400, 460800, 921600)
    if hasattr(termios, f"B{rate}")
}
_CHUNK = 4096


def _line_settings(master_fd: int) -> tuple[int, int]:
    """(baud, bits per character on the wire) of the pty whose master is ``master_fd``."""
    attributes = termios.tcgetattr(master_fd)
    baud = _BAUD_CONSTANTS.get(attributes[5], 9600)
    cflag = attributes[2]
    data_bits = {termios.CS5: 5, termios.CS6: 6, termios.CS7: 7, termios.CS8: 8}.get(
        cflag & termios.CSIZE, 8
    )
    parity = 1 if cflag & termios.PARENB else 0
    stop = 2 if cflag & termios.CSTOPB else 1
    return baud, 1 + data_bits + parity + stop


class VirtualCable:
    """Two ptys joined by a relay thread; see the module docstring."""

    def __init__(self, *, enforce_baud: bool = True, pace: bool = False, seed: int = 0) -> None:
        self.enforce_baud = enforce_baud
        self.pace = pace
        self._noise = random.Random(seed)  # noqa: S311 - simulated line noise
        self._device_master, self._device_slave = os.openpty()
        self._meter_master, self._meter_slave = os.openpty()
        for fd in (self._device_slave, self._meter_slave):
            tty.setraw(fd)  # no echo or line editing before a program configures the port
        self.device_path = os.ttyname(self._device_slave)
        self.meter_path = os.ttyname(self._meter_slave)
        self.bytes_relayed = 0
        self.mismatched_bytes = 0
        self._stop_read, self._stop_write = os.pipe()
        self._thread = threading.Thread(
            target=self._relay, name=f"cable {self.device_path}", daemon=True
        )
        self._thread.start()

    def _relay(self) -> None:
        peers = {self._device_master: self._meter_master, self._meter_master: self._device_master}
        with selectors.DefaultSelector() as selector:
            for fd in peers:
                selector.register(fd, selectors.EVENT_READ)
            selector.register(self._stop_read, selectors.EVENT_READ)
            while True:
                for key, _ in selector.select():
                    if key.fd == self._stop_read:
                        return
                    try:
                        data = os.read(key.fd, _CHUNK)
                    except OSError:
                        continue  # no process has this end open right now
                    self._forward(data, key.fd, peers[key.fd])

    def _forward(self, data: bytes, source: int, target: int) -> None:
        sender_baud, bits = _line_settings(source)
        receiver_baud, _ = _line_settings(target)
        if self.pace:
            time.sleep(len(data) * bits / sender_baud)
        if self.enforce_baud and sender_baud != receiver_baud:
            self.mismatched_bytes += len(data)
            log.debug("cable %s: %d bytes sent at %d baud, received at %d: noise",
                      self.device_path, len(data), sender_baud, receiver_baud)
            data = bytes(self._noise.randrange(0x80, 0x100) for _ in data)
        self.bytes_relayed += len(data)
        view = memoryview(data)
        while view:
            try:
                written = os.write(target, view)
            except BlockingIOError:
                time.sleep(0.001)
                continue
            view = view[written:]

    def close(self) -> None:
        if self._stop_write < 0:
            return
        os.write(self._stop_write, b"x")
        self._thread.join(timeout=5)
        for fd in (self._device_master, self._device_slave, self._meter_master,
                   self._meter_slave, self._stop_read, self._stop_write):
            os.close(fd)
        self._stop_write = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
