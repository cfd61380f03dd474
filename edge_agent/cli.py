"""``edge-agent``: the command a technician or a gateway's service manager runs.

A thin layer over :mod:`edge_agent.keys`, :mod:`edge_agent.buffer` and
:mod:`edge_agent.agent`: everything here can also be done from Python.
Errors a person can fix (a readable key, a bad config, a tampered buffer) are
printed as one clear line on stderr with a non-zero exit code, never as a
traceback.
"""

from __future__ import annotations

import logging
import signal
import stat
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from edge_agent import __version__, read_cli, route_cli
from edge_agent.agent import Agent, open_buffer
from edge_agent.buffer import EdgeBuffer, EdgeBufferError
from edge_agent.buffer_schema import SchemaError
from edge_agent.config import (
    CONFIG_ENV,
    DEFAULT_CONFIG_PATH,
    AgentConfig,
    ConfigError,
    KeyConfig,
    load_config,
)
from edge_agent.files import write_atomic
from edge_agent.health import load_health
from edge_agent.keys import (
    PASSPHRASE_ENV,
    KeyFileError,
    generate_key_file,
    key_file_info,
    load_signer,
    passphrase_from_env,
)
from edge_agent.metrics import MetricsError
from edge_agent.profiles_cli import profiles_app
from protocols.batch import MAX_BATCH_READS, encode_batch
from protocols.broker_settings import BrokerCredentialError
from protocols.errors import ReadError
from protocols.logs import LOG_FORMAT_ENV, LogFormat, announce, configure_logging
from protocols.signing import load_public_key, public_key_pem, public_key_raw_b64

app = typer.Typer(
    name="edge-agent",
    help=(
        "meterhub edge agent: reads meters on a gateway or a technician's handheld, signs "
        "every read the moment it is taken, keeps it in a durable local buffer, and hands "
        "it to the hub until the hub acknowledges it."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
keys_app = typer.Typer(
    help="The collector's Ed25519 signing key: create it, show its id, export the public half.",
    no_args_is_help=True,
)
buffer_app = typer.Typer(
    help="The local buffer of signed reads: verify its chain, export reads to carry to the hub.",
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys")
app.add_typer(buffer_app, name="buffer")
app.add_typer(profiles_app, name="profiles")
app.command("read")(read_cli.read)
app.command("route")(route_cli.route)
app.add_typer(route_cli.code_app, name="handheld-code")

out = Console(markup=False)
err = Console(stderr=True, markup=False)
log = logging.getLogger("edge_agent")

KeyOption = Annotated[
    Path | None,
    typer.Option("--key", envvar="METERHUB_EDGE_KEY", show_default="collector.key, or "
                 "[key] path of --config", help="Private key file (PEM, mode 0600)."),
]
PassphraseEnvOption = Annotated[
    str | None,
    typer.Option(
        "--passphrase-env", show_default=f"{PASSPHRASE_ENV}, or [key] passphrase_env of --config",
        help="Name of the environment variable holding the key's passphrase; the key is "
        "encrypted when it is set.",
    ),
]
KeyConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", envvar=CONFIG_ENV, help="Take the key's path and passphrase "
                 "variable from this agent configuration's \\[key] section (the key the agent "
                 "signs with), unless --key / --passphrase-env say otherwise."),
]
ConfigOption = Annotated[
    Path,
    typer.Option("--config", "-c", envvar=CONFIG_ENV, help="Agent configuration file (TOML)."),
]


def _version(value: bool) -> None:
    if value:
        out.print(f"edge-agent {__version__}")
        raise typer.Exit


@app.callback()
def main(
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning or error.")
    ] = "warning",
    log_format: Annotated[LogFormat, typer.Option(
        "--log-format", envvar=LOG_FORMAT_ENV, case_sensitive=False,
        help="text (for people and the journal) or json (one object per line, for a log "
             "shipper).")] = LogFormat.TEXT,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print version.")
    ] = False,
) -> None:
    configure_logging(log_level, err, log_format)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn errors a person can fix into one log line and exit code 1 or 2, no traceback."""
    try:
        yield
    except (ConfigError, KeyFileError, SchemaError, MetricsError, BrokerCredentialError) as exc:
        log.error("%s", exc)
        raise typer.Exit(2) from None
    except (EdgeBufferError, ReadError) as exc:
        log.error("%s: %s", type(exc).__name__, exc)
        raise typer.Exit(1) from None


# --- keys -----------------------------------------------------------------------


def _key_setting(key: Path | None, passphrase_env: str | None,
                 config: Path | None) -> tuple[Path, str]:
    """The key file and passphrase variable: the options', else the config's [key], else defaults.

    So that ``edge-agent keys show -c /etc/meterhub-edge/edge-agent.toml`` shows
    the key the agent really signs with, not a ``collector.key`` in the
    current directory.
    """
    section = _config(config).key if config is not None else KeyConfig()
    return key or section.path, passphrase_env or section.passphrase_env


@keys_app.command("generate")
def keys_generate(
    key: KeyOption = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing key.")] = False,
    passphrase_env: PassphraseEnvOption = None,
    config: KeyConfigOption = None,
) -> None:
    """Create a new signing key, readable by its owner only (mode 0600)."""
    key, passphrase_env = _key_setting(key, passphrase_env, config)
    with _user_errors():
        signer = generate_key_file(
            key, passphrase=passphrase_from_env(passphrase_env), overwrite=force
        )
    out.print(f"wrote {key} (mode 0600)")
    out.print(f"key_id {signer.key_id}")
    out.print("enrol the public key with the hub: edge-agent keys export-public", style="dim")


@keys_app.command("show")
def keys_show(
    key: KeyOption = None,
    passphrase_env: PassphraseEnvOption = None,
    config: KeyConfigOption = None,
) -> None:
    """Show a key's id, file mode, encryption and public key."""
    key, passphrase_env = _key_setting(key, passphrase_env, config)
    with _user_errors():
        info = key_file_info(key, passphrase=passphrase_from_env(passphrase_env))
    table = Table(show_header=False, box=None)
    table.add_row("file", str(info.path))
    table.add_row("mode", stat.filemode(info.mode | stat.S_IFREG))
    table.add_row("encrypted", "yes" if info.encrypted else "no")
    table.add_row("key_id", info.key_id)
    table.add_row("public key", public_key_raw_b64(info.public_key))
    out.print(table)


@keys_app.command("export-public")
def keys_export_public(
    key: KeyOption = None,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write here instead of standard output.")
    ] = None,
    passphrase_env: PassphraseEnvOption = None,
    config: KeyConfigOption = None,
) -> None:
    """Print the public key (PEM) to enrol this collector with the hub."""
    key, passphrase_env = _key_setting(key, passphrase_env, config)
    with _user_errors():
        signer = load_signer(key, passphrase=passphrase_from_env(passphrase_env))
    pem = public_key_pem(signer.public_key)
    if out_file is None:
        sys.stdout.write(pem.decode("ascii"))
    else:
        write_atomic(out_file, pem)
        err.print(f"wrote public key {signer.key_id} to {out_file}")


# --- status and buffer ----------------------------------------------------------------


def _config(path: Path) -> AgentConfig:
    with _user_errors():
        return load_config(path)


def _existing_buffer(cfg: AgentConfig) -> EdgeBuffer:
    """Open the configured buffer for inspection; never create one as a side effect.

    Callers open it inside ``_user_errors()``, which reports what opening raises.
    """
    if not cfg.buffer.path.exists():
        log.error("no buffer at %s yet: `edge-agent run` creates it", cfg.buffer.path)
        raise typer.Exit(1)
    return open_buffer(cfg)


@app.command("status")
def status(config: ConfigOption = DEFAULT_CONFIG_PATH) -> None:
    """Show the buffer: chain tip, unacked depth, budget used, oldest unacked read."""
    cfg = _config(config)
    with _user_errors(), _existing_buffer(cfg) as buffer:
        stats = buffer.stats()
    table = Table(title=f"edge-agent {cfg.collector}", show_header=False)
    table.add_row("buffer", str(cfg.buffer.path))
    table.add_row("last seq", str(stats.last_seq))
    table.add_row("acked through", str(stats.acked_through))
    table.add_row("unacked (depth)", str(stats.pending))
    table.add_row("reads held", str(stats.held))
    table.add_row(
        "budget used",
        f"{stats.stored_bytes / 2**20:.1f} of {stats.budget_bytes / 2**20:.1f} MiB "
        f"({100 * stats.stored_bytes / stats.budget_bytes:.1f}%)",
    )
    table.add_row(
        "oldest unacked",
        stats.oldest_unacked_at.isoformat() if stats.oldest_unacked_at else "none",
    )
    out.print(table)
    _print_health(Path(cfg.collection.health_path))


def _print_health(path: Path) -> None:
    """The meters' health as the running (or last) agent saved it."""
    if not path.exists():
        return
    try:
        meters = load_health(path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.error("meter health file %s is unreadable: %s", path, exc)
        return
    table = Table(title=f"meters ({path.name})")
    for column in ("meter", "protocol", "last success", "polls", "failures",
                   "in a row", "error kind"):
        table.add_column(column, no_wrap=True)
    table.add_column("last error")
    for health in meters:
        style = "" if health.healthy else "red"
        table.add_row(
            health.serial, health.protocol,
            health.last_success.isoformat(timespec="seconds") if health.last_success else "never",
            str(health.polls), str(health.failures), str(health.consecutive_failures),
            health.last_error_kind or "", health.last_error or "",
            style=style,
        )
    out.print(table)


@buffer_app.command("verify")
def buffer_verify(
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    public_key: Annotated[
        Path | None,
        typer.Option("--public-key", help="Verify against this public key (PEM) instead of "
                                          "the keys recorded in the buffer."),
    ] = None,
) -> None:
    """Verify every held read's signature and the hash chain from end to end."""
    cfg = _config(config)
    with _user_errors(), _existing_buffer(cfg) as buffer:
        keys = load_public_key(public_key.read_bytes()) if public_key else None
        total = buffer.stats().held
        with Progress(
            "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
            TimeRemainingColumn(), console=err, transient=True,
        ) as progress:
            task = progress.add_task("verifying", total=total)
            count = buffer.verify(keys, progress=lambda done: progress.update(task, completed=done))
        tip = buffer.tip()
    out.print(Text.assemble(("ok", "green"),
                            f": {count} reads verified, chain intact through seq {tip.seq}"))


@buffer_app.command("export")
def buffer_export(
    out_file: Annotated[Path, typer.Option("--out", help="Batch file to write.")],
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    from_seq: Annotated[
        int | None, typer.Option("--from-seq", help="First seq (default: first unacked).")
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=MAX_BATCH_READS, help="Reads per batch.")
    ] = 1000,
) -> None:
    """Write held reads as a batch file, one batch per line, for `meterhub verify`."""
    cfg = _config(config)
    with _user_errors(), _existing_buffer(cfg) as buffer:
        start = from_seq if from_seq is not None else buffer.tip_acked() + 1
        sealed = list(buffer.reads(from_seq=start))
    if not sealed:
        log.error("nothing to export from seq %d", start)
        raise typer.Exit(1)
    lines = [encode_batch(cfg.collector, sealed[i:i + batch_size])
             for i in range(0, len(sealed), batch_size)]
    write_atomic(out_file, b"\n".join(lines) + b"\n")
    out.print(f"wrote {len(sealed)} reads (seq {sealed[0].seq}–{sealed[-1].seq}) to {out_file} "
              f"as {len(lines)} batches")


# --- run ------------------------------------------------------------------------------


@app.command("run")
def run(config: ConfigOption = DEFAULT_CONFIG_PATH) -> None:
    """Run the agent until stopped (SIGTERM or Ctrl-C); refuses to start on any unsafe setup."""
    cfg = _config(config)
    with _user_errors():
        agent = Agent.start(cfg)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    announce(err, f"edge-agent {cfg.collector} running (key {agent.signer.key_id})")
    try:
        agent.run(stop)
    finally:
        agent.close()
