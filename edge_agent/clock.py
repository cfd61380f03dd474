"""Whether the collector's own clock is NTP-synchronised, as the kernel reports it.

Every read records ``clock.ntp_synced`` so the hub can tell a meter whose clock
drifts from a gateway whose clock does. The kernel knows: ``adjtimex(2)`` in
read-only mode returns ``TIME_ERROR`` while the system clock is not
synchronised (chrony, ntpd and systemd-timesyncd all clear it once they are).
Asking is cheap, but the answer is cached briefly because it changes slowly.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
import threading
import time

log = logging.getLogger(__name__)

TIME_ERROR = 5
CACHE_S = 60.0
_TIMEX_BYTES = 512  # larger than struct timex on every Linux ABI; modes=0 means read-only

_lock = threading.Lock()
_cached: tuple[float, bool] | None = None


def _kernel_says_synced() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    timex = ctypes.create_string_buffer(_TIMEX_BYTES)
    state = libc.adjtimex(timex)
    if state < 0:
        log.warning("adjtimex failed (errno %d); treating the clock as not synchronised",
                    ctypes.get_errno())
        return False
    return state != TIME_ERROR


def ntp_synced() -> bool:
    """True when the kernel considers the system clock synchronised (cached for a minute)."""
    global _cached  # noqa: PLW0603 - a process-wide cache of a process-wide fact
    with _lock:
        now = time.monotonic()
        if _cached is None or now - _cached[0] > CACHE_S:
            _cached = (now, _kernel_says_synced())
        return _cached[1]
