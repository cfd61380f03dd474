"""Hands polled reads to the edge buffer in batches, from one thread.

Polls finish on many lanes at once; the buffer signs and commits each batch in
one transaction, which costs the same fsync for one read or five hundred. So
lanes put their reads on a queue and one writer appends whatever has gathered
(up to ``max_batch``, waiting at most ``linger_s``). Nothing is dropped while
the buffer refuses (``BufferFull``, disk low): the writer keeps the batch,
raises an alarm, and retries; only when the in-memory queue itself is full
does a poll's reads get refused, loudly.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence

from edge_agent.buffer import EdgeBuffer, EdgeBufferError
from protocols.read import Reading

log = logging.getLogger(__name__)

RETRY_S = 5.0


class BufferWriter:
    def __init__(
        self,
        buffer: EdgeBuffer,
        *,
        max_batch: int = 500,
        linger_s: float = 0.05,
        max_queued: int = 100_000,
    ) -> None:
        self._buffer = buffer
        self._queue: queue.Queue[Reading] = queue.Queue(maxsize=max_queued)
        self._max_batch = max_batch
        self._linger_s = linger_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="buffer-writer", daemon=True)
        self.appended = 0
        self.refused = 0

    def start(self) -> BufferWriter:
        self._thread.start()
        return self

    def submit(self, readings: Sequence[Reading]) -> None:
        """Queue ``readings`` for the buffer; log an alarm if the queue is full."""
        for reading in readings:
            try:
                self._queue.put_nowait(reading)
            except queue.Full:
                self.refused += 1
                log.error("ALARM read of meter %s refused: %d reads wait for the buffer",
                          reading.meter, self._queue.qsize())

    def stop(self, timeout: float = 30.0) -> None:
        """Write what is queued, then stop."""
        self._stop.set()
        self._thread.join(timeout)

    def _next_batch(self) -> list[Reading]:
        try:
            batch = [self._queue.get(timeout=0.2)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + self._linger_s
        while len(batch) < self._max_batch:
            remaining = deadline - time.monotonic()
            try:
                batch.append(self._queue.get(timeout=max(remaining, 0)) if remaining > 0
                             else self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _run(self) -> None:
        while not (self._stop.is_set() and self._queue.empty()):
            batch = self._next_batch()
            while batch:
                try:
                    self._buffer.append(batch)
                except EdgeBufferError as exc:
                    log.error("ALARM buffer refused %d reads (%s); retrying in %.0f s",
                              len(batch), exc, RETRY_S)
                    if self._stop.wait(RETRY_S):
                        log.error("stopping with %d reads not buffered", len(batch) +
                                  self._queue.qsize())
                        return
                    continue
                self.appended += len(batch)
                batch = []
