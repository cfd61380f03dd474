"""Turn a channel's 16-bit registers into the exact decimal a meter means.

Meters store one value across one, two or four registers, with byte order
inside each register and register (word) order chosen by the manufacturer; a
float register must become the decimal the meter's display shows, not the
binary expansion of the float: float32 ``0x449A522B`` is ``1234.5677`` (the
shortest decimal that reads back as the same float32), never
``1234.5677490234375``. The scale then multiplies that decimal exactly. Pure:
struct and integer arithmetic only (pymodbus's own converter knows no byte
order), so every type × order combination is property-tested.

Example::

    channel = ModbusChannel(name="energy_import_kwh", address=0x48, function=4,
                            data_type=DataType.FLOAT32)
    decode_value(channel, [0x449A, 0x522B])    # Decimal('1234.5677')
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from decimal import Context, Decimal, Inexact, InvalidOperation, Rounded
from fractions import Fraction

from protocols.channels import ByteOrder, DataType, ModbusChannel, Role, status_flags
from protocols.driver import FrameError, ProfileError

_SIGNED = {DataType.INT16, DataType.INT32, DataType.INT64}
_FLOAT_FORMATS = {DataType.FLOAT32: ">f", DataType.FLOAT64: ">d"}
_EXACT = Context(prec=1000, traps=[Inexact, Rounded, InvalidOperation])
"""Scaling must never round: a value that cannot be scaled exactly is an error, not a guess."""
_FLOAT32_MAX_DIGITS = 9
"""Nine significant digits always identify a float32 (17 for a float64, which ``repr`` finds)."""


def decode_value(channel: ModbusChannel, registers: Sequence[int]) -> Decimal:
    """The value of ``channel`` held in ``registers`` (its own, in wire order), × scale.

    Raises :class:`FrameError` for the wrong number of registers, a register
    outside 0..65535, or a float that is NaN or infinite (a meter never meters
    those: they mean a damaged answer), and :class:`ProfileError` for a scale
    that cannot multiply exactly.

    >>> from protocols.channels import ModbusChannel, DataType
    >>> decode_value(ModbusChannel(name="v", address=0, data_type=DataType.FLOAT32),
    ...              [0x449A, 0x522B])
    Decimal('1234.5677')
    """
    raw = _raw_bytes(channel, registers)
    if channel.data_type.is_float:
        (number,) = struct.unpack(_FLOAT_FORMATS[channel.data_type], raw)
        if not math.isfinite(number):
            raise FrameError(f"channel {channel.name!r}: {number} is not a meter reading",
                             raw=raw)
        if channel.data_type is DataType.FLOAT32:
            value = float32_decimal(number)
        else:
            value = float64_decimal(number)
    else:
        value = Decimal(int.from_bytes(raw, "big", signed=channel.data_type in _SIGNED))
    return _scaled(channel, value)


def decode_status(channel: ModbusChannel, registers: Sequence[int]) -> tuple[str, ...]:
    """Flag names of a status channel's set bits (the register's bits, unsigned, unscaled).

    >>> from protocols.channels import ModbusChannel, Role
    >>> decode_status(ModbusChannel(name="s", address=9, role=Role.STATUS, flags={3: "tamper"}),
    ...               [0b1000])
    ('tamper',)
    """
    if channel.data_type.is_float:
        raise ProfileError(f"status channel {channel.name!r} cannot be {channel.data_type}")
    word = int.from_bytes(_raw_bytes(channel, registers), "big", signed=False)
    return status_flags(word, channel.flags)


def decode_channel(
    channel: ModbusChannel, registers: Sequence[int]
) -> Decimal | tuple[str, ...]:
    """:func:`decode_status` for a status channel, :func:`decode_value` for any other."""
    if channel.role is Role.STATUS:
        return decode_status(channel, registers)
    return decode_value(channel, registers)


def float32_decimal(number: float) -> Decimal:
    """The shortest decimal that reads back as the float32 ``number`` (the nearest such one).

    ``number`` must be exactly representable as a float32 (any value unpacked
    from four bytes is).

    >>> float32_decimal(struct.unpack(">f", bytes.fromhex("449A522B"))[0])
    Decimal('1234.5677')
    """
    bits = _float32_bits(number)
    magnitude = bits & 0x7FFF_FFFF
    if magnitude >= 0x7F80_0000:
        raise FrameError(f"{number} is not a meter reading")
    if magnitude == 0:
        return Decimal(0)
    exact = Fraction(_float32(magnitude))
    below = Fraction(_float32(magnitude - 1))
    if magnitude == 0x7F7F_FFFF:
        above = exact + (exact - below)  # the step to the next float32 (it would be inf)
    else:
        above = Fraction(_float32(magnitude + 1))
    low, high = (below + exact) / 2, (exact + above) / 2
    ties_round_here = magnitude % 2 == 0  # round-half-even lands on an even mantissa
    for digits in range(1, _FLOAT32_MAX_DIGITS + 1):
        found = _closest_within(exact, digits, low, high, inclusive=ties_round_here)
        if found is not None:
            return _positional(-found if bits >> 31 else found)
    raise AssertionError(f"no {_FLOAT32_MAX_DIGITS}-digit decimal for {number!r}")  # unreachable


def float64_decimal(number: float) -> Decimal:
    """The shortest decimal that reads back as the float64 ``number`` (Python's ``repr``)."""
    if not math.isfinite(number):
        raise FrameError(f"{number} is not a meter reading")
    if number == 0:
        return Decimal(0)
    return _positional(Decimal(repr(number)))


def _raw_bytes(channel: ModbusChannel, registers: Sequence[int]) -> bytes:
    """The value's bytes, most significant first, from registers in wire order."""
    if len(registers) != channel.count:
        raise FrameError(
            f"channel {channel.name!r} ({channel.data_type}) needs {channel.count} registers, "
            f"got {len(registers)}"
        )
    words = list(registers)
    if any(not isinstance(word, int) or not 0 <= word <= 0xFFFF for word in words):
        raise FrameError(f"channel {channel.name!r}: {words} are not 16-bit registers")
    if channel.word_order is ByteOrder.LITTLE:
        words.reverse()
    byte_order = "little" if channel.byte_order is ByteOrder.LITTLE else "big"
    return b"".join(word.to_bytes(2, byte_order) for word in words)


def _scaled(channel: ModbusChannel, value: Decimal) -> Decimal:
    scale = channel.scale
    if not isinstance(scale, Decimal) or not scale.is_finite():
        raise ProfileError(f"channel {channel.name!r}: scale {scale!r} is not a finite decimal")
    try:
        return _positional(_EXACT.multiply(value, scale))
    except (Inexact, Rounded, InvalidOperation):
        raise ProfileError(
            f"channel {channel.name!r}: {value} × {scale} has no exact decimal"
        ) from None


def _positional(value: Decimal) -> Decimal:
    """``value`` with no positive exponent, so it prints as a plain number (1E+2 → 100)."""
    if value.as_tuple().exponent > 0:  # type: ignore[operator]
        return _EXACT.quantize(value, Decimal(1))
    return value


def _closest_within(
    exact: Fraction, digits: int, low: Fraction, high: Fraction, *, inclusive: bool
) -> Decimal | None:
    """The ``digits``-significant-digit decimal nearest ``exact`` inside (low, high), if any.

    The interval is lopsided at a power of two, so the nearest decimal may fall
    outside on the short side while its neighbour on the long side is inside:
    both neighbours of the rounded candidate are tried.
    """
    nearest = Decimal(format(float(exact), f".{digits - 1}e"))
    step = Decimal(1).scaleb(nearest.adjusted() - digits + 1)
    best: Decimal | None = None
    for candidate in (nearest, nearest - step, nearest + step):
        if candidate <= 0 or len(candidate.as_tuple().digits) > digits:
            continue
        point = Fraction(candidate)
        inside = low <= point <= high if inclusive else low < point < high
        if inside and (best is None or abs(point - exact) < abs(Fraction(best) - exact)):
            best = candidate
    return best


def _float32_bits(number: float) -> int:
    (bits,) = struct.unpack(">I", struct.pack(">f", number))
    return bits


def _float32(bits: int) -> float:
    (number,) = struct.unpack(">f", bits.to_bytes(4, "big"))
    return number
