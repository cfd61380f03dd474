"""Plan the Modbus requests that read a profile's channels, merging neighbours where allowed.

On RS-485 every request costs two frames and two silent gaps, so reading twelve
adjacent float registers one by one takes twelve times the bus time of one
merged read. The plan groups channels by function (03 holding, 04 input), sorts
them by address and merges a channel into the running block when the unused
registers between them are at most ``max_gap`` and the block stays within
``max_block`` registers — or reads every channel alone when the profile says
``merge: false``. Pure: no I/O, so every rule is tested directly.

Example::

    blocks = plan_blocks(channels, ModbusSettings(max_block=60, max_gap=0))
    for block in blocks:
        registers = client.read(block.function, block.address, block.count)
        for channel in block.channels:
            decode_value(channel, block.registers_of(channel, registers))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby, pairwise

from protocols.channels import ModbusChannel, ModbusSettings
from protocols.driver import ProfileError

READ_FUNCTIONS = (3, 4)
"""Read holding registers (03) and read input registers (04): all a meter read needs."""
MAX_READ_REGISTERS = 125
"""The most registers one 03/04 request may ask for (Modbus application protocol 6.3)."""
ADDRESS_SPACE = 0x10000


@dataclass(frozen=True)
class Block:
    """One request: ``count`` registers from ``address`` with ``function``, and what they hold."""

    function: int
    address: int
    count: int
    channels: tuple[ModbusChannel, ...]

    @property
    def end(self) -> int:
        """First address after the block."""
        return self.address + self.count

    def registers_of(self, channel: ModbusChannel, registers: Sequence[int]) -> list[int]:
        """The registers of ``channel`` within the block's answer ``registers``."""
        offset = channel.address - self.address
        return list(registers[offset : offset + channel.count])


def plan_blocks(channels: Sequence[ModbusChannel], settings: ModbusSettings) -> tuple[Block, ...]:
    """The requests that read ``channels``: function 03 blocks first, each sorted by address.

    Raises :class:`ProfileError` for a channel that is not a Modbus channel, uses
    another function than 03/04, lies outside the address space, overlaps
    another channel of the same function, shares another's name, or is longer
    than ``max_block``; and for settings no request can honour.

    >>> from protocols.channels import DataType
    >>> a = ModbusChannel(name="a", address=0, data_type=DataType.FLOAT32)
    >>> b = ModbusChannel(name="b", address=2, data_type=DataType.FLOAT32)
    >>> [(x.address, x.count) for x in plan_blocks([a, b], ModbusSettings())]
    [(0, 4)]
    """
    _check_settings(settings)
    _check_channels(channels, settings)
    ordered = sorted(channels, key=lambda c: (c.function, c.address))
    blocks: list[Block] = []
    for function, group in groupby(ordered, key=lambda c: c.function):
        members = list(group)
        _check_overlaps(members)
        blocks += _merge(function, members, settings)
    return tuple(blocks)


def _check_settings(settings: ModbusSettings) -> None:
    if not 1 <= settings.max_block <= MAX_READ_REGISTERS:
        raise ProfileError(
            f"max_block {settings.max_block} is outside 1..{MAX_READ_REGISTERS}, "
            "the registers one Modbus read may ask for"
        )
    if settings.max_gap < 0:
        raise ProfileError(f"max_gap {settings.max_gap} is negative")


def _check_channels(channels: Sequence[ModbusChannel], settings: ModbusSettings) -> None:
    names: set[str] = set()
    for channel in channels:
        if not isinstance(channel, ModbusChannel):
            raise ProfileError(f"{channel!r} is not a Modbus channel")
        where = f"channel {channel.name!r}"
        if channel.name in names:
            raise ProfileError(f"{where} appears twice")
        names.add(channel.name)
        if channel.function not in READ_FUNCTIONS:
            raise ProfileError(f"{where}: function {channel.function} is not 3 or 4")
        if channel.address < 0 or channel.end > ADDRESS_SPACE:
            raise ProfileError(
                f"{where}: registers {channel.address}..{channel.end - 1} "
                "are outside the address space 0..65535"
            )
        if channel.count > settings.max_block:
            raise ProfileError(
                f"{where}: {channel.data_type} needs {channel.count} registers, "
                f"more than max_block {settings.max_block}"
            )


def _check_overlaps(members: Sequence[ModbusChannel]) -> None:
    """``members`` share a function and are sorted by address."""
    for before, after in pairwise(members):
        if after.address < before.end:
            raise ProfileError(
                f"channels {before.name!r} ({before.address}..{before.end - 1}) and "
                f"{after.name!r} ({after.address}..{after.end - 1}) overlap "
                f"in function {after.function:02d}"
            )


def _merge(
    function: int, members: Sequence[ModbusChannel], settings: ModbusSettings
) -> list[Block]:
    """Greedy: extend the running block while gap and size allow; optimal for sorted input."""
    blocks: list[Block] = []
    current: list[ModbusChannel] = []
    for channel in members:
        if current and settings.merge:
            gap = channel.address - current[-1].end
            if gap <= settings.max_gap and channel.end - current[0].address <= settings.max_block:
                current.append(channel)
                continue
        if current:
            blocks.append(_block(function, current))
        current = [channel]
    if current:
        blocks.append(_block(function, current))
    return blocks


def _block(function: int, members: Sequence[ModbusChannel]) -> Block:
    address = members[0].address
    return Block(function, address, members[-1].end - address, tuple(members))
