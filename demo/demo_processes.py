"""Every process the demo starts, and the broker it starts first — all stopped on the way out.

The demo starts a broker, a hub, two simulated fleets, a gateway agent and a
handheld agent. Each background process is started in a session of its own
(so a Ctrl-C at the terminal reaches the demo alone, which then stops them in
order: agents first, broker last) and recorded in a :class:`Registry`;
:meth:`Registry.close` — called from ``main``'s ``finally``, so also after a
Ctrl-C, a SIGTERM or a failed step — asks each to stop (SIGTERM), waits, and
kills whatever is left of its process group.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from simulators.private_broker import Mosquitto, free_port


class DemoFailed(Exception):
    """A step of the demo did not do what it should; the message says which and where to look."""


@dataclass
class Registry:
    """The background processes (and other things to stop) the demo started, newest last.

    Their ids also go to ``pidfile``: a demo killed with ``kill -9`` cannot stop its
    processes, so the next run over the same directory does (:func:`sweep`).
    """

    pidfile: Path
    stoppers: list[tuple[str, Callable[[], None]]] = field(default_factory=list)
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    def remember(self, pid: int) -> None:
        with self.pidfile.open("a") as pids:
            pids.write(f"{pid}\n")

    def spawn(self, name: str, args: list[str], *, cwd: Path, log: Path,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start ``args`` in the background, output to ``log``; it is stopped on the way out."""
        with log.open("ab") as output:
            process = subprocess.Popen(args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=output,
                                       stderr=subprocess.STDOUT, start_new_session=True,
                                       env={**os.environ, **(env or {})})
        self.processes[process.pid] = process
        self.remember(process.pid)
        self.stoppers.append((name, lambda: self.stop(process)))
        return process

    def on_exit(self, name: str, stop: Callable[[], None]) -> None:
        self.stoppers.append((name, stop))

    def stop(self, process: subprocess.Popen[bytes], timeout: float = 20) -> None:
        """SIGTERM, wait up to ``timeout``; then SIGKILL its whole process group."""
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout)
        _kill_group(process.pid)
        process.wait()
        self.processes.pop(process.pid, None)

    def power_cut(self, process: subprocess.Popen[bytes]) -> None:
        """``kill -9``: no chance to finish a write, flush or say goodbye to the broker."""
        process.send_signal(signal.SIGKILL)
        process.wait()
        _kill_group(process.pid)
        self.processes.pop(process.pid, None)

    def close(self) -> None:
        """Stop everything still running, newest first (agents before the hub, broker last)."""
        while self.stoppers:
            _name, stop = self.stoppers.pop()
            try:
                stop()
            except Exception as exc:  # noqa: BLE001 - keep stopping the rest whatever happens
                print(f"stopping {_name}: {exc}", flush=True)


def sweep(pidfile: Path, marker: str) -> list[int]:
    """Kill what an earlier, killed demo left running: its recorded ids, if still its own.

    A process id counts only while its command line still names ``marker`` (the
    demo's directory), so a recycled id of some other process is left alone.
    """
    swept = []
    if not pidfile.exists():
        return swept
    for line in pidfile.read_text().split():
        pid = int(line)
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if marker.encode() in command:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
            _kill_group(pid)
            swept.append(pid)
    return swept


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def wait_for(what: str, done: Callable[[], bool], *, timeout: float,
              process: subprocess.Popen[bytes] | None = None, log: Path | None = None,
              every: float = 0.1) -> None:
    """Until ``done()``; :class:`DemoFailed` naming ``what`` (and the log) on timeout or exit."""
    deadline = time.monotonic() + timeout
    while not done():
        if process is not None and process.poll() is not None:
            raise DemoFailed(f"{what}: the process exited with {process.returncode}"
                             + (f" (log: {log})" if log else ""))
        if time.monotonic() > deadline:
            raise DemoFailed(f"{what}: not within {timeout:.0f} s" + (f" (log: {log})" if log
                                                                       else ""))
        time.sleep(every)


def log_has(log: Path, text: str) -> bool:
    return log.exists() and text in log.read_text(errors="replace")


# --- the broker --------------------------------------------------------------------------


@dataclass(frozen=True)
class Broker:
    kind: str          # "mosquitto" or "amqtt"
    port: int
    secured: bool      # passwords and ACL enforced
    subscription: str  # what the hub subscribes to for reads
    log: Path


AMQTT_CONFIG = """\
# The demo's embedded broker (amqtt, pure Python): QoS 1 and retained messages,
# no shared subscriptions, and here no passwords or ACL (anonymous, loopback only).
listeners:
  default:
    type: tcp
    bind: 127.0.0.1:{port}
plugins:
  amqtt.plugins.authentication.AnonymousAuthPlugin:
    allow_anonymous: true
"""


def choose_broker(wanted: str) -> str:
    """``auto``: Mosquitto when installed, else the embedded amqtt."""
    if wanted != "auto":
        return wanted
    return "mosquitto" if shutil.which("mosquitto") else "amqtt"


def start_mosquitto(registry: Registry, workdir: Path, passwd: Path, acl: Path,
                    shared: str) -> Broker:
    broker = Mosquitto(workdir, password_file=passwd, acl_file=acl, persistence=False)
    broker.start()
    registry.on_exit("mosquitto", broker.stop)
    process = getattr(broker, "_process", None)  # for the sweep after a kill -9 of the demo
    if process is not None:
        registry.remember(process.pid)
    return Broker("mosquitto", broker.port, True, shared, broker.log_path)


def start_amqtt(registry: Registry, workdir: Path, executable: Path, plain: str) -> Broker:
    if not executable.exists():
        raise DemoFailed("neither Mosquitto nor the embedded broker is installed: install "
                         "mosquitto, or run `.venv/bin/pip install amqtt`")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = workdir / "amqtt.yaml"
    config.write_text(AMQTT_CONFIG.format(port=port))
    log = workdir / "amqtt.log"
    process = registry.spawn("amqtt", [str(executable), "-c", str(config)], cwd=workdir, log=log)
    wait_for("the embedded broker to listen", lambda: _accepts(port), timeout=30,
             process=process, log=log)
    return Broker("amqtt", port, False, plain, log)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
