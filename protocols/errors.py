"""Typed errors for signed reads, so a caller can tell *what* is wrong and *where*.

Every error names the collector and seq when they are known and, for a field
problem, the dotted path of the field (``values.energy_import_kwh.value``). The
hub turns these into quarantine reasons and the edge into log lines, so the
message must make sense to an operator reading it months later.
"""

from __future__ import annotations


class ReadError(Exception):
    """Base of every problem with a read's bytes, form, chain or signature."""

    reason = "invalid_read"  # stable machine-readable code (quarantine reasons, metrics)

    def __init__(
        self,
        message: str,
        *,
        collector: str | None = None,
        seq: int | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.collector = collector
        self.seq = seq
        self.field = field
        super().__init__(str(self))

    def where(self) -> str:
        parts = []
        if self.collector is not None:
            parts.append(f"collector {self.collector}")
        if self.seq is not None:
            parts.append(f"seq {self.seq}")
        if self.field is not None:
            parts.append(f"field {self.field!r}")
        return ", ".join(parts)

    def __str__(self) -> str:
        where = self.where()
        return f"{where}: {self.message}" if where else self.message

    def located(self, *, collector: str | None, seq: int | None) -> ReadError:
        """Fill in where the error happened once the caller knows it."""
        if self.collector is None:
            self.collector = collector
        if self.seq is None:
            self.seq = seq
        self.args = (str(self),)
        return self


# --- form: the bytes are not a well-formed canonical read -------------------


class MalformedReadError(ReadError):
    """The bytes are not UTF-8 JSON of an object."""

    reason = "malformed"


class MissingFieldError(MalformedReadError):
    """A field the read format requires is absent."""

    reason = "missing_field"


class ExtraFieldError(MalformedReadError):
    """A field the read format does not know is present (no silent extras)."""

    reason = "extra_field"


class InvalidFieldError(MalformedReadError):
    """A field is present but its type or value is not allowed."""

    reason = "invalid_field"


class NonCanonicalError(MalformedReadError):
    """Well-formed, but not the one canonical byte form of this read."""

    reason = "non_canonical"


# --- chain: the read does not follow the collector's previous read ----------


class ChainError(ReadError):
    """``prev_hash`` does not match the hash of the previous read."""

    reason = "broken_chain"


class SeqGapError(ChainError):
    """A read is missing between two reads: seq jumped ahead."""

    reason = "seq_gap"


class SeqRegressionError(ChainError):
    """A seq repeats or goes backwards inside a sequence of reads."""

    reason = "seq_regression"


class WrongCollectorError(ChainError):
    """The read names another collector than the one whose chain is checked."""

    reason = "wrong_collector"


# --- signature -------------------------------------------------------------


class SignatureError(ReadError):
    """The Ed25519 signature does not verify over the received bytes."""

    reason = "bad_signature"


class WrongKeyError(SignatureError):
    """The read names a key that is not (or no longer) this collector's."""

    reason = "wrong_key"


# --- batches ------------------------------------------------------------------


class BatchError(ReadError):
    """A batch envelope (MQTT payload or export file) is malformed."""

    reason = "malformed_batch"
