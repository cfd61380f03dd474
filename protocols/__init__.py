"""Every wire format of meterhub: the signed read and its chain, and the meter protocols.

Meter protocols share one driver interface (:mod:`protocols.driver`) over the
channel types of :mod:`protocols.channels`: Modbus RTU/TCP
(:mod:`protocols.modbus_driver`), IEC 62056-21 optical (:mod:`protocols.iec_driver`)
and DSMR P1 (:mod:`protocols.p1_driver`).

The signed read is the contract between edge and hub, so it lives here, apart
from storage and MQTT. The names most callers need::

    from protocols import Reading, Read, Signer, sign_and_chain, verify_chain
"""

from protocols.batch import Batch, decode_batch, encode_batch
from protocols.canonical import decode_read, encode_chained, encode_read
from protocols.chain import (
    GENESIS_HASH,
    GENESIS_TIP,
    ChainTip,
    SealedRead,
    SignedRead,
    read_hash,
    sign_and_chain,
    verify_chain,
    verify_read,
)
from protocols.errors import (
    BatchError,
    ChainError,
    ExtraFieldError,
    InvalidFieldError,
    MalformedReadError,
    MissingFieldError,
    NonCanonicalError,
    ReadError,
    SeqGapError,
    SeqRegressionError,
    SignatureError,
    WrongCollectorError,
    WrongKeyError,
)
from protocols.read import ClockQuality, Read, Reading, RegisterValue, Source
from protocols.signing import Signer, key_id_for, load_public_key, public_key_pem

__all__ = [
    "GENESIS_HASH",
    "GENESIS_TIP",
    "Batch",
    "BatchError",
    "ChainError",
    "ChainTip",
    "ClockQuality",
    "ExtraFieldError",
    "InvalidFieldError",
    "MalformedReadError",
    "MissingFieldError",
    "NonCanonicalError",
    "Read",
    "ReadError",
    "Reading",
    "RegisterValue",
    "SealedRead",
    "SeqGapError",
    "SeqRegressionError",
    "SignatureError",
    "SignedRead",
    "Signer",
    "Source",
    "WrongCollectorError",
    "WrongKeyError",
    "decode_batch",
    "decode_read",
    "encode_batch",
    "encode_chained",
    "encode_read",
    "key_id_for",
    "load_public_key",
    "public_key_pem",
    "read_hash",
    "sign_and_chain",
    "verify_chain",
    "verify_read",
]
