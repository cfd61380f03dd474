"""The virtual null-modem cable behaves like a wire: both ways, baud-checked, paced."""

import time

import serial

from simulators.serial_link import VirtualCable


def open_port(path, baud, **settings):
    return serial.Serial(path, baud, timeout=1, **settings)


def test_bytes_cross_both_ways():
    with VirtualCable() as cable:
        meter, device = open_port(cable.meter_path, 9600), open_port(cable.device_path, 9600)
        device.write(b"/?!\r\n")
        assert meter.read(5) == b"/?!\r\n"
        meter.write(b"/LGZ5ZMD\r\n")
        assert device.read(10) == b"/LGZ5ZMD\r\n"
        meter.close()
        device.close()


def test_ends_at_different_bauds_read_noise_until_they_agree():
    with VirtualCable() as cable:
        meter, device = open_port(cable.meter_path, 300), open_port(cable.device_path, 9600)
        meter.write(b"hello")
        garbled = device.read(5)
        assert len(garbled) == 5
        assert garbled != b"hello"
        assert cable.mismatched_bytes == 5
        meter.baudrate = 9600
        meter.write(b"hello")
        assert device.read(5) == b"hello"
        meter.close()
        device.close()


def test_baud_checking_can_be_switched_off():
    with VirtualCable(enforce_baud=False) as cable:
        meter, device = open_port(cable.meter_path, 300), open_port(cable.device_path, 9600)
        meter.write(b"hello")
        assert device.read(5) == b"hello"
        meter.close()
        device.close()


def test_paced_bytes_take_their_wire_time():
    with VirtualCable(pace=True) as cable:
        meter = open_port(cable.meter_path, 1200)
        device = open_port(cable.device_path, 1200)
        started = time.monotonic()
        meter.write(b"x" * 60)  # 60 chars x 10 bits at 1200 baud = 0.5 s
        assert device.read(60) == b"x" * 60
        assert time.monotonic() - started >= 0.45
        meter.close()
        device.close()


def test_closing_twice_is_harmless():
    cable = VirtualCable()
    cable.close()
    cable.close()
