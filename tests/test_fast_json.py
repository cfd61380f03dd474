"""orjson on ingest's hot path must write exactly what the json module wrote before it."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from hub.store.engine import compact_json
from hub.store.reads import fast_compact_json
from protocols.batch import decode_batch, encode_batch
from protocols.chain import GENESIS_TIP, sign_and_chain
from protocols.read import METER_RE
from protocols.signing import Signer
from tests.readings import readings

# What a parsed read's registers and flags can hold: JSON without floats (a read's numbers
# are decimal strings; the integers are seqs). Any text, control characters and astral
# characters included.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**63, max_value=2**63 - 1)
    | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_fast_compact_json_writes_compact_jsons_text(value):
    assert fast_compact_json(value) == compact_json(value)


@given(st.integers(min_value=1, max_value=30), st.from_regex(METER_RE, fullmatch=True))
def test_a_batch_envelope_is_the_compact_json_it_always_was(count, meter):
    sealed, _ = sign_and_chain(readings(count, meter=meter), signer=Signer.generate(),
                               collector="gw-1", after=GENESIS_TIP)
    payload = encode_batch("gw-1", sealed)
    envelope = json.loads(payload)
    assert payload == json.dumps(envelope, ensure_ascii=False,
                                 separators=(",", ":")).encode("utf-8")
    assert [r.data for r in decode_batch(payload).reads] == [s.data for s in sealed]
