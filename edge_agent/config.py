"""The edge agent's configuration file (TOML), validated before anything starts.

A gateway is configured once and then left alone for months, so a wrong
setting must be caught at start, with the file, the key and the reason — not
discovered at 3 a.m. as a crash. Relative paths are relative to the config
file, so a config directory can be copied as a unit.

Example ``edge-agent.toml``::

    collector = "gw-0001"

    [key]
    path = "collector.key"
    passphrase_env = "METERHUB_KEY_PASSPHRASE"   # optional: encrypt the key

    [buffer]
    path = "buffer.sqlite"
    budget_mb = 256          # unacked reads beyond this raise BufferFull
    retention_days = 7       # acked reads kept this long, then pruned
    min_free_mb = 32         # never fill the filesystem

    [agent]
    housekeeping_interval_s = 3600

    # What to poll: see edge_agent/meter_config.py for [collection], [[bus]], [[meter]].
    # Where to send reads: see edge_agent/sync_config.py for [sync] (none: buffer only).
    # A technician's handheld: see edge_agent/handheld_config.py for [handheld].
    # Prometheus metrics: see edge_agent/metrics.py for [metrics] (listen_host, listen_port,
    # token_file).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from edge_agent.handheld_config import HandheldSection
from edge_agent.keys import PASSPHRASE_ENV
from edge_agent.meter_config import BusConfig, CollectionSection, MeterConfig
from edge_agent.meter_plan import MeterPlanError, plan_meters
from edge_agent.metrics import MetricsSection
from edge_agent.sync_config import SyncSection
from protocols.read import COLLECTOR_RE

DEFAULT_CONFIG_PATH = Path("edge-agent.toml")
CONFIG_ENV = "METERHUB_EDGE_CONFIG"

CollectorName = Annotated[str, StringConstraints(pattern=f"^{COLLECTOR_RE.pattern}$")]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KeyConfig(_Section):
    path: Path = Path("collector.key")
    passphrase_env: str = PASSPHRASE_ENV


class BufferConfig(_Section):
    path: Path = Path("buffer.sqlite")
    budget_mb: float = Field(default=256, gt=0)
    retention_days: float = Field(default=7, ge=0)
    min_free_mb: float = Field(default=32, ge=0)

    @property
    def budget_bytes(self) -> int:
        return int(self.budget_mb * 1024 * 1024)

    @property
    def min_free_bytes(self) -> int:
        return int(self.min_free_mb * 1024 * 1024)


class AgentSection(_Section):
    housekeeping_interval_s: float = Field(default=3600, gt=0)


class AgentConfig(_Section):
    """The whole file. Paths are absolute once loaded through :func:`load_config`."""

    collector: CollectorName
    key: KeyConfig = KeyConfig()
    buffer: BufferConfig = BufferConfig()
    agent: AgentSection = AgentSection()
    collection: CollectionSection = CollectionSection()
    bus: list[BusConfig] = Field(default_factory=list)
    meter: list[MeterConfig] = Field(default_factory=list)
    sync: SyncSection | None = None
    handheld: HandheldSection | None = None
    metrics: MetricsSection | None = None

    @property
    def buses(self) -> dict[str, BusConfig]:
        return {bus.name: bus for bus in self.bus}


class ConfigError(Exception):
    """A config file that cannot be used; lists every problem as ``key: why``."""

    def __init__(self, path: Path, problems: list[tuple[str, str]]) -> None:
        self.path = path
        self.problems = problems
        lines = "\n".join(f"  {key}: {why}" for key, why in problems)
        super().__init__(f"{path}: invalid configuration\n{lines}")


def load_config(path: Path) -> AgentConfig:
    """Read, validate and resolve ``path``; raise :class:`ConfigError` on any problem."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(path, [("(file)", "no such file")]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(path, [("(syntax)", str(exc))]) from None
    try:
        config = AgentConfig.model_validate(raw)
    except ValidationError as exc:
        problems = [
            (".".join(str(part) for part in error["loc"]) or "(root)", error["msg"])
            for error in exc.errors()
        ]
        raise ConfigError(path, problems) from None
    base = path.resolve().parent
    config = config.model_copy(
        update={
            "key": config.key.model_copy(update={"path": base / config.key.path}),
            "buffer": config.buffer.model_copy(update={"path": base / config.buffer.path}),
            "collection": config.collection.model_copy(update={
                "health_path": str(base / config.collection.health_path),
                "profile_dirs": [str(base / d) for d in config.collection.profile_dirs],
            }),
            "sync": config.sync.resolved(base) if config.sync else None,
            "handheld": config.handheld.resolved(base) if config.handheld else None,
            "metrics": config.metrics.resolved(base) if config.metrics else None,
        }
    )
    try:
        plan_meters(config)
    except MeterPlanError as exc:
        raise ConfigError(path, exc.problems) from None
    return config
