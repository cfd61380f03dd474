"""Meters that misbehave on demand: the stand-ins for real meters in tests and demos.

:mod:`simulators.meter_model` is the physics every simulator serves; the
protocol servers (Modbus TCP/RTU, IEC 62056-21, DSMR P1) speak it over real
sockets and pseudo-terminals. Simulators never import the drivers they test.
"""
