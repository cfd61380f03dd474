"""Child process for the kill -9 test: appends numbered readings until it is killed.

Reading number n carries register value n, so after any number of crashes the
buffer must hold exactly 1, 2, 3, … with no number missing or repeated. On
start it resumes from the newest committed read, like an agent after a power
cut, and prints ``ready`` once the buffer is open.
"""

import random
import sys
from decimal import Decimal
from pathlib import Path

from edge_agent.buffer import EdgeBuffer
from edge_agent.keys import load_signer
from protocols.canonical import decode_read
from tests.readings import reading


def main(buffer_path: str, key_path: str) -> None:
    buffer = EdgeBuffer(buffer_path, collector="gw-crash",
                        signer=load_signer(Path(key_path)))
    newest = buffer.pending(limit=1, after_seq=buffer.tip().seq - 1)
    counter = int(decode_read(newest[0].data).values["energy_import_kwh"].value) if newest else 0
    print("ready", counter, flush=True)
    rng = random.Random()
    while True:
        size = rng.randint(1, 300)
        batch = [reading(counter + i, value=Decimal(counter + i + 1)) for i in range(size)]
        buffer.append(batch)
        counter += size


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
