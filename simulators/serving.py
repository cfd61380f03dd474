"""What every simulated meter shares as a running thing: start, stop, where to reach it.

The fleet, the CLI and the tests start and stop Modbus, optical and P1
simulators alike; one base keeps them interchangeable there and gives each the
``with`` form without writing it three times.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Serving:
    """A simulator that serves at ``endpoint`` between :meth:`start` and :meth:`stop`."""

    endpoint: str

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """Stop serving; safe to call twice."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
