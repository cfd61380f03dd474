"""kill -9 at random moments never leaves a gap, a duplicate or a broken chain."""

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_agent.buffer import EdgeBuffer
from edge_agent.keys import generate_key_file
from protocols.canonical import decode_read

REPO = Path(__file__).resolve().parents[1]
KILLS = 25


@pytest.mark.slow
def test_kill_9_mid_append_leaves_a_gap_free_verifiable_chain(tmp_path):
    signer = generate_key_file(tmp_path / "collector.key")
    buffer_path = tmp_path / "buffer.sqlite"
    rng = random.Random(20261123)
    killed_while_running = 0
    resumed_from = []
    for _ in range(KILLS):
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.crash_appender", str(buffer_path),
             str(tmp_path / "collector.key")],
            cwd=REPO, stdout=subprocess.PIPE, text=True,
        )
        ready = child.stdout.readline().split()
        assert ready and ready[0] == "ready", "child failed to open the buffer"
        resumed_from.append(int(ready[1]))
        time.sleep(rng.uniform(0.0, 0.25))   # somewhere inside an append, most likely
        if child.poll() is None:
            killed_while_running += 1
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        child.stdout.close()
        assert child.returncode == -signal.SIGKILL

    assert killed_while_running >= 20
    assert resumed_from == sorted(resumed_from)         # progress is never lost
    assert resumed_from[-1] > KILLS                     # and there was real progress

    with EdgeBuffer(buffer_path, collector="gw-crash") as buffer:
        assert buffer.verify(signer.public_key) == buffer.tip().seq  # every signature, one chain
        sealed = list(buffer.reads())
    seqs = [s.seq for s in sealed]
    assert seqs == list(range(1, len(seqs) + 1))        # gap-free from 1
    values = [int(decode_read(s.data).values["energy_import_kwh"].value) for s in sealed]
    assert values == list(range(1, len(values) + 1))    # no reading lost or duplicated
