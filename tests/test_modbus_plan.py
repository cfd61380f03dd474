"""Planning Modbus requests: merge neighbours within gap and size limits, reject bad layouts."""

from decimal import Decimal
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.channels import DataType, ModbusChannel, ModbusSettings, ObisChannel
from protocols.driver import ProfileError
from protocols.modbus_plan import Block, plan_blocks


def channel(name, address, data_type=DataType.FLOAT32, function=4, **kw):
    return ModbusChannel(name=name, address=address, data_type=data_type, function=function, **kw)


def spans(blocks):
    return [(b.function, b.address, b.count, [c.name for c in b.channels]) for b in blocks]


def test_adjacent_channels_merge_into_one_request():
    channels = [channel("a", 0), channel("b", 2), channel("c", 4)]
    assert spans(plan_blocks(channels, ModbusSettings())) == [(4, 0, 6, ["a", "b", "c"])]


def test_merge_false_reads_each_channel_alone():
    channels = [channel("a", 0), channel("b", 2)]
    assert spans(plan_blocks(channels, ModbusSettings(merge=False))) == [
        (4, 0, 2, ["a"]), (4, 2, 2, ["b"]),
    ]


def test_gap_within_max_gap_merges_and_beyond_splits():
    channels = [channel("a", 0), channel("b", 5)]  # three unused registers between
    assert len(plan_blocks(channels, ModbusSettings(max_gap=3))) == 1
    assert plan_blocks(channels, ModbusSettings(max_gap=3))[0].count == 7
    assert len(plan_blocks(channels, ModbusSettings(max_gap=2))) == 2


def test_max_block_caps_a_merged_request():
    channels = [channel(f"c{n}", 2 * n) for n in range(10)]  # 20 adjacent registers
    blocks = plan_blocks(channels, ModbusSettings(max_block=8))
    assert [b.count for b in blocks] == [8, 8, 4]
    assert all(b.count <= 8 for b in blocks)


def test_functions_are_planned_separately_holding_first_and_sorted():
    channels = [channel("in2", 10), channel("hold", 0, function=3), channel("in1", 8)]
    assert spans(plan_blocks(channels, ModbusSettings())) == [
        (3, 0, 2, ["hold"]), (4, 8, 4, ["in1", "in2"]),
    ]


def test_registers_of_slices_each_channel_out_of_the_answer():
    a, b = channel("a", 10), channel("b", 13, DataType.UINT16)
    [block] = plan_blocks([a, b], ModbusSettings(max_gap=1))
    answer = [1, 2, 3, 4]
    assert block.registers_of(a, answer) == [1, 2]
    assert block.registers_of(b, answer) == [4]
    assert block.end == 14


@pytest.mark.parametrize(
    ("channels", "settings", "message"),
    [
        ([channel("a", 0), channel("b", 1)], ModbusSettings(), "overlap"),
        ([channel("a", 0), channel("a", 4)], ModbusSettings(), "twice"),
        ([channel("a", 0, DataType.UINT64)], ModbusSettings(max_block=3), "max_block"),
        ([channel("a", 0, function=6)], ModbusSettings(), "not 3 or 4"),
        ([channel("a", 65535)], ModbusSettings(), "address space"),
        ([channel("a", -1)], ModbusSettings(), "address space"),
        ([channel("a", 0)], ModbusSettings(max_block=126), "max_block"),
        ([channel("a", 0)], ModbusSettings(max_block=0), "max_block"),
        ([channel("a", 0)], ModbusSettings(max_gap=-1), "max_gap"),
    ],
)
def test_bad_layouts_are_profile_errors(channels, settings, message):
    with pytest.raises(ProfileError, match=message):
        plan_blocks(channels, settings)


def test_same_address_in_both_functions_is_no_overlap():
    blocks = plan_blocks([channel("a", 0, function=3), channel("b", 0)], ModbusSettings())
    assert len(blocks) == 2


def test_a_non_modbus_channel_is_rejected():
    with pytest.raises(ProfileError, match="not a Modbus channel"):
        plan_blocks([ObisChannel(name="x", code="1.8.0")], ModbusSettings())


def test_blocks_are_plain_values():
    a = channel("a", 0, scale=Decimal("0.1"))
    assert plan_blocks([a], ModbusSettings()) == (Block(4, 0, 2, (a,)),)


# --------------------------------------------------------------------------- properties

TYPES = list(DataType)


@st.composite
def layouts(draw):
    """Non-overlapping channels of random types and gaps, in a random order, two functions."""
    channels, next_free = [], {3: 0, 4: 0}
    for n in range(draw(st.integers(1, 30))):
        function = draw(st.sampled_from([3, 4]))
        data_type = draw(st.sampled_from(TYPES))
        address = next_free[function] + draw(st.integers(0, 6))
        next_free[function] = address + data_type.registers
        channels.append(channel(f"c{n}", address, data_type, function))
    return draw(st.permutations(channels))


settings_strategy = st.builds(
    ModbusSettings, merge=st.booleans(), max_block=st.integers(4, 125),
    max_gap=st.integers(0, 10),
)


@given(layouts(), settings_strategy)
def test_every_channel_is_read_once_within_limits(channels, settings):
    blocks = plan_blocks(channels, settings)
    planned = [c for b in blocks for c in b.channels]
    assert sorted(c.name for c in planned) == sorted(c.name for c in channels)
    for block in blocks:
        assert 1 <= block.count <= settings.max_block
        for member in block.channels:
            assert member.function == block.function
            assert block.address <= member.address and member.end <= block.end
        for before, after in pairwise(block.channels):
            assert 0 <= after.address - before.end <= settings.max_gap
        if not settings.merge:
            assert len(block.channels) == 1


@given(layouts(), settings_strategy)
def test_merging_never_needs_more_requests_than_reading_alone(channels, settings):
    merged = plan_blocks(channels, settings)
    alone = plan_blocks(channels, ModbusSettings(merge=False))
    assert len(merged) <= len(alone) == len(channels)


@given(layouts(), settings_strategy)
def test_neighbouring_blocks_could_not_have_been_merged(channels, settings):
    """Greedy is optimal here: a block starts only where the previous one could not grow."""
    blocks = plan_blocks(channels, settings)
    if not settings.merge:
        return
    for before, after in pairwise(blocks):
        if before.function != after.function:
            continue
        first = after.channels[0]
        assert (first.address - before.end > settings.max_gap
                or first.end - before.address > settings.max_block)
