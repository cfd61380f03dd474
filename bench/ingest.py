"""Hub ingest: signed reads/s from an edge buffer through a real Mosquitto into the store, acked.

Three figures from the same reads in the same run:

1. **end to end**: an edge buffer's reads synced by the real sync client
   through a private Mosquitto into a ``meterhub serve`` process (SQLite
   store), until the edge holds the hub's ack for the last one;
2. **raw insert**: the same rows written with a bare DB-API ``executemany``
   into a fresh store of the same kind, one commit per 1000 — the limit once
   ingest checks one signature per batch;
3. **per-read verify**: Ed25519 checks of the same reads on one core — what
   ingest would be held to if it verified every signature inline.

Then the read→ack latency at a fixed offered load: batches of 100 pre-signed
reads published open-loop at 10 000 reads/s, each read's latency the time
from its batch's publish to the hub's ack covering it.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from paho.mqtt.enums import CallbackAPIVersion
from rich.console import Console
from rich.progress import Progress

from bench.edge_buffer import fleet_readings
from bench.harness import OUT as BENCH_OUT
from bench.harness import Figure, Headline, Result, finish
from bench.mqtt_rig import broker_and_hub, drain, enrolled_signer, fill_buffer
from hub.read_row import read_row
from hub.store import Store
from hub.store.collectors import add_collector
from hub.store.reads import insert_plan
from protocols.batch import encode_batch
from protocols.chain import GENESIS_TIP, SealedRead, sign_and_chain
from protocols.mqtt_contract import ack_topic, decode_ack, reads_topic
from protocols.signing import Signer, verify_signature

OUT = BENCH_OUT / "ingest"
INGEST_AIM = 0.5


def raw_insert_rate(sealed: list[SealedRead], workdir: Path) -> float:
    """Rows/s of a bare executemany of the same rows into a fresh store of the same kind."""
    now = datetime.now(UTC)
    rows = [read_row(s.data, s.sig, received_at=now) for s in sealed]
    with Store.open(f"sqlite:///{workdir / 'raw.sqlite'}", upgrade_schema=True) as store:
        with store.begin() as conn:
            add_collector(conn, rows[0]["collector"], Signer.generate().public_key)
        plan = insert_plan(store.engine.dialect)
        params = plan.params(rows)
        raw = store.engine.raw_connection()
        try:
            start = time.perf_counter()
            for at in range(0, len(params), 1000):
                cursor = raw.cursor()
                cursor.execute("BEGIN IMMEDIATE")
                cursor.executemany(plan.sql, params[at:at + 1000])
                cursor.execute("COMMIT")
            return len(params) / (time.perf_counter() - start)
        finally:
            raw.close()


def verify_rate(sealed: list[SealedRead], public_key: Ed25519PublicKey) -> float:
    start = time.perf_counter()
    for s in sealed:
        verify_signature(public_key, s.data, s.sig)
    return len(sealed) / (time.perf_counter() - start)


def latency_at(port: int, store: Store, *, rate: int, seconds: float) -> list[float]:
    """Per-read publish→ack latencies (s) at ``rate`` reads/s offered, open loop."""
    signer = enrolled_signer(store, "bench-latency")
    batch, count = 100, int(rate * seconds)
    sealed, _ = sign_and_chain(fleet_readings(count), signer=signer, collector="bench-latency",
                               after=GENESIS_TIP)
    payloads = [encode_batch("bench-latency", sealed[i:i + batch])
                for i in range(0, count, batch)]
    sent_at: dict[int, float] = {}
    latencies: list[float] = []
    acked = {"through": 0}
    done = threading.Event()

    def on_message(_client: object, _userdata: object, message: mqtt.MQTTMessage) -> None:
        now = time.perf_counter()
        through = decode_ack(message.payload).through_seq
        for last in sorted(k for k in sent_at if k <= through):
            latencies.extend([now - sent_at.pop(last)] * batch)
        acked["through"] = max(acked["through"], through)
        if through >= count:
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-latency")
    client.on_message = on_message
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.subscribe(ack_topic("bench-latency"), qos=1)
    client.loop_start()
    time.sleep(0.5)
    try:
        start = time.perf_counter()
        for index, payload in enumerate(payloads):
            due = start + index * batch / rate
            while (wait := due - time.perf_counter()) > 0:
                time.sleep(wait)
            sent_at[(index + 1) * batch] = time.perf_counter()
            client.publish(reads_topic("bench-latency"), payload, qos=1)
        done.wait(60)
    finally:
        client.loop_stop()
        client.disconnect()
    return latencies


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main(argv: list[str] | None = None) -> Result:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="200 000 reads and 60 s of load")
    parser.add_argument("--reads", type=int, help="reads synced end to end")
    args = parser.parse_args(argv)
    count = args.reads or (200_000 if args.full else 50_000)
    load_seconds = 60.0 if args.full else 10.0
    console = Console(width=120)
    with broker_and_hub(OUT) as (broker, store), Progress(console=console) as progress:
        signer = enrolled_signer(store, "bench-gw")
        buffer = fill_buffer(OUT / "edge.sqlite", "bench-gw", signer, count, progress)
        sealed = list(buffer.reads(from_seq=1))
        seconds = drain(buffer, broker.port, progress=progress)
        buffer.close()
        ingest = count / seconds
        raw = raw_insert_rate(sealed, OUT)
        verify = verify_rate(sealed[:20_000], signer.public_key)
        latencies = latency_at(broker.port, store, rate=10_000, seconds=load_seconds)
    lost = int(10_000 * load_seconds) - len(latencies)
    figures = [
        Figure("end to end: edge buffer → Mosquitto → hub store, acked", ingest, "reads/s",
               f"{count:,} reads, batches of 1000, window 8"),
        Figure("raw executemany of the same rows, same kind of store", raw, "rows/s",
               "the limit once a batch costs one signature check"),
        Figure("Ed25519 verify of each read, one core", verify, "reads/s",
               "the limit if ingest verified every read inline"),
        Figure("ingest ÷ raw insert", ingest / raw, "ratio", f"aim ≥ {INGEST_AIM}"),
        Figure("ingest ÷ per-read verify", ingest / verify, "ratio", "> 1: chain check pays"),
        Figure("read→ack latency p50 at 10 000 reads/s offered",
               1000 * statistics.median(latencies), "ms", f"{load_seconds:.0f} s of load"),
        Figure("read→ack latency p99 at 10 000 reads/s offered",
               1000 * percentile(latencies, 0.99), "ms",
               f"{len(latencies):,} reads acked, {lost:,} not"),
    ]
    return finish("ingest", "Hub ingest through MQTT", figures, full=args.full, console=console,
                  headline=Headline("end to end: edge buffer → Mosquitto → hub store, acked",
                                    "raw executemany of the same rows, same kind of store",
                                    "ingest ÷ raw insert", aim=INGEST_AIM))


if __name__ == "__main__":
    main()
