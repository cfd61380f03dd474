"""The demo's utility as of today: its CIS files, how each of its meters behaves, its history.

``demo/master_data/`` is a fixed sample utility whose cycle C2026-11 was read on
2026-11-01..07. A read only counts for a cycle when it was taken inside the
cycle's read window, and in the demo every read is taken now — by a gateway
polling simulated meters over their real protocols, and by a handheld whose
technician keys or probes a read today — so the demo re-dates that utility:

- the cycle being read is the one whose window is open today, ``C<YYYY-MM>``
  (today − 3 days … today + 3 days, scheduled today); the twelve cycles before
  it, a month apart, are the billing history the CIS hands over;
- the sample's meter exchange (``SDM630-00011`` → ``SDM630-00039``) moves with
  them, to 20 days before today;
- a route ``R04`` is added: four optical (IEC 62056-21) meters the gateway reads
  through optical heads, and a fifth, out of its reach, that the technician
  reads with the handheld's probe (the sample utility has no optical meter);
- the gateway also reads four homes' DSMR P1 ports, electricity and gas on
  M-Bus: a pilot the CIS does not bill yet, so on no route and in no file here.

Every meter's physics (its start value, daily use, dials, faults) is defined
here once, so the simulated fleet, the billing history and the dials the
scripted technician reads all agree with each other.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from simulators.billing_history import COLUMNS as HISTORY_COLUMNS
from simulators.billing_history import HistoryShape, PastCycle, history_rows
from simulators.meter_model import MeterSpec, Service, SimulatedMeter

SAMPLE = Path(__file__).resolve().parent / "master_data"
EXCHANGE_DAY = date(2026, 10, 14)
"""The sample's meter exchange day, moved to :data:`EXCHANGE_BEFORE` days before today."""
EXCHANGE_BEFORE = 20

PROBE_METER = "LGZ-61000005"
"""The optical meter out of the gateway's reach: the technician's probe reads it."""

FAULTS = {
    "SDM630-00001": "spike",
    "LGZ-61000002": "tamper",
    "SDM630-00003": "stuck",
    "SDM630-00004": "zero",
    "SDM630-00005": "backward",
    "SDM630-00013": "no_answer",
    "SDM630-00031": "garbled",
}
"""The meters that misbehave this cycle, and how.

``spike``, ``tamper``, ``no_answer`` and ``garbled`` are the simulator's own
faults, on the wire: a register jump, the tamper bit of the optical meter's
status word, a meter that never answers (so it is missing and goes on the
re-read route), a noisy line the gateway's retries get through. ``stuck``,
``zero`` and ``backward`` lie between bills, so they are written into the
billing history the CIS hands over: the meter stopped counting (stuck, zero) or
its last bill was above what it shows now (backward). The meter edits must
catch every value fault.
"""
SIMULATOR_FAULTS = {"spike", "tamper", "no_answer", "garbled"}
HISTORY_SHAPES = {"stuck": HistoryShape(flat_last=2), "zero": HistoryShape(flat_last=1),
                  "backward": HistoryShape(above_start_days=20)}
STILL = Decimal("0.0001")
"""Daily use of a meter that no longer counts: too little to show on its three decimals."""

OUT_OF_REACH = {"SDM630-00006", "SDM630-00027", "WTR-00006", PROBE_METER}
"""Meters with no link to the gateway (a dead radio, a basement); every gas meter too."""
TROUBLE = {"SDM630-00027": ("dog", "dog loose in the porch, nobody answered the bell")}
"""What the technician meets at a stop instead of the meter (the route warns: dog)."""

ADDED_ACCOUNTS = [
    ("AC-10061", "Harbour Row Bakery", "1 Harbour Row, Millbrook", "COM-E2"),
    ("AC-10062", "Quay Cold Store", "3 Harbour Row, Millbrook", "COM-E2"),
    ("AC-10063", "Noor Haddad", "5 Harbour Row, Millbrook", "RES-E1"),
    ("AC-10064", "Tomas Lindgren", "7 Harbour Row, Millbrook", "RES-E1"),
    ("AC-10065", "Boathouse Cafe", "9 Harbour Row, Millbrook", "COM-E2"),
]
ADDED_METERS = [
    ("LGZ-61000001", "Landis+Gyr ZMD310", "landis-gyr-zmd310", "AC-10061", "2022-03-01",
     "meter room, optical head fitted", ""),
    ("LGZ-61000002", "Landis+Gyr ZMD310", "landis-gyr-zmd310", "AC-10062", "2021-06-15",
     "loading bay, optical head fitted", "forklifts"),
    ("ISK-71000003", "Iskraemeco MT174", "iskra-mt174", "AC-10063", "2023-09-04",
     "hall cupboard, optical head fitted", ""),
    ("ISK-71000004", "Iskraemeco MT174", "iskra-mt174", "AC-10064", "2024-02-20",
     "hall cupboard, optical head fitted", ""),
    (PROBE_METER, "Landis+Gyr ZMD310", "landis-gyr-zmd310", "AC-10065", "2020-11-30",
     "boathouse back wall; no signal for the gateway's head", "slippery jetty"),
]
P1_PILOT = [("P1-E0001", "sagemcom-t210d", "5.0"), ("P1-E0002", "sagemcom-t210d", "5.0"),
            ("P1-E0003", "kaifa-ma105", "4.2"), ("P1-E0004", "kaifa-ma105", "4.2")]
"""Four homes' DSMR P1 ports (electricity, and gas on M-Bus channel 1): a smart-meter pilot
the gateway reads like any other meter, which the CIS does not bill yet (on no route)."""
RTU_BUSES = {"R02": ("rs485-a", "rs485-b"), "R03": ("rs485-water",)}


@dataclass(frozen=True)
class Cycle:
    id: str
    window_start: date
    window_end: date
    scheduled: date
    bill_start: date
    bill_end: date

    def row(self) -> dict[str, str]:
        return {"cycle_id": self.id, "read_window_start": self.window_start.isoformat(),
                "read_window_end": self.window_end.isoformat(),
                "scheduled_read_date": self.scheduled.isoformat(),
                "bill_period_start": self.bill_start.isoformat(),
                "bill_period_end": self.bill_end.isoformat()}


def _months_back(day: date, months: int) -> date:
    month = day.month - 1 - months
    return date(day.year + month // 12, month % 12 + 1, min(day.day, 28))


def cycles_for(today: date, past: int = 12) -> list[Cycle]:
    """The past ``past`` monthly cycles, oldest first, then the one whose window is open today."""
    scheduled = [_months_back(today, n) for n in range(past, 0, -1)] + [today]
    result = []
    for n, day in enumerate(scheduled):
        current = n == len(scheduled) - 1
        start, end = (day - timedelta(days=3), day + timedelta(days=3)) if current else \
            (day - timedelta(days=2), day + timedelta(days=4))
        previous = scheduled[n - 1] if n else _months_back(day, 1)
        result.append(Cycle(f"C{day:%Y-%m}", start, end, day, previous,
                            day - timedelta(days=1)))
    return result


@dataclass(frozen=True)
class Meter:
    """One meter of the utility (or of the P1 pilot) and how the simulator makes it behave."""

    serial: str
    service: Service
    profile: str
    spec: MeterSpec
    fault: str | None = None
    route: str | None = None

    @property
    def reachable(self) -> bool:
        return (self.serial not in OUT_OF_REACH and self.service is not Service.GAS
                and self.route is not None)


@dataclass(frozen=True)
class Utility:
    """The sample utility re-dated to ``today``, with its meters' physics."""

    today: date
    epoch: datetime
    cycles: list[Cycle]
    meters: dict[str, Meter]
    master: dict[str, list[dict[str, str]]]

    @property
    def cycle(self) -> Cycle:
        return self.cycles[-1]

    @property
    def past(self) -> list[PastCycle]:
        return [PastCycle(c.id, c.scheduled) for c in self.cycles[:-1]]

    def dials(self, serial: str, at: datetime) -> Decimal:
        """What ``serial``'s register shows at ``at``: what a technician reads off the meter."""
        spec = self.meters[serial].spec
        return SimulatedMeter(spec, self.epoch).registers(at)[spec.total_register]

    # --- the CIS's files ------------------------------------------------------------------

    def write_master_data(self, directory: Path) -> dict[str, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        paths = {}
        for kind, rows in self.master.items():
            paths[kind] = directory / f"{kind}.csv"
            _write_csv(paths[kind], rows)
        return paths

    def write_history(self, path: Path) -> int:
        """The CIS's billed reads of the last 12 cycles for every meter, agreeing with the fleet."""
        rows: list[dict[str, str]] = []
        for row in self.master["meters"]:
            meter = self.meters[row["meter_serial"]]
            installed = (date.fromisoformat(row["installed_on"]),
                         date.fromisoformat(row["removed_on"]) if row["removed_on"] else None)
            shape = HISTORY_SHAPES.get(meter.fault or "", HistoryShape())
            spec = meter.spec
            if spec.mean_per_day == STILL:  # it counted normally until it stopped
                spec = replace(spec, mean_per_day=Decimal(9))
            spec = replace(spec, tou=_has_tariffs(meter.profile))
            rows += history_rows(spec, self.epoch, self.past, shape=shape,
                                 installed=installed, multiplier=Decimal(row["multiplier"]))
        _write_csv(path, rows, HISTORY_COLUMNS)
        return len(rows)

    # --- the simulated fleet -------------------------------------------------------------

    def gateway_fleet(self, poll_interval_s: float) -> dict[str, Any]:
        """``meter-sim fleet`` file: every meter the gateway reaches, over its real protocol."""
        entries: list[dict[str, Any]] = []
        unit_ids: dict[str, int] = {}
        for meter in self.meters.values():
            if not meter.reachable:
                continue
            entry = self._fleet_entry(meter)
            if meter.route in RTU_BUSES:
                buses = RTU_BUSES[meter.route]
                number = int(meter.serial.rsplit("-", 1)[1])
                bus = buses[0] if len(buses) == 1 or number < 29 else buses[1]
                unit_ids[bus] = unit_ids.get(bus, 0) + 1
                entry.update(protocol="modbus_rtu", bus=bus, unit_id=unit_ids[bus])
            elif meter.profile.startswith(("landis", "iskra")):
                entry.update(protocol="iec62056_21")
            else:
                entry.update(protocol="modbus_tcp")
            entries.append(entry)
        for serial, profile, version in P1_PILOT:
            entries.append({"serial": serial, "profile": profile, "protocol": "dsmr_p1",
                            "dsmr_version": version, "interval_s": 1,
                            "gas_serial": serial.replace("-E", "-G"),
                            "start_value": str(Decimal(random.Random(serial).randint(2000, 9000))),
                            "mean_per_day": "9"})
        return {"speed": 1, "seed": 0, "epoch": self.epoch.isoformat(),
                "meters": [{**e, "poll_interval_s": poll_interval_s} for e in entries]}

    def street_fleet(self) -> dict[str, Any]:
        """The optical meter out of the gateway's reach, for the handheld's probe."""
        meter = self.meters[PROBE_METER]
        return {"speed": 1, "seed": 0, "epoch": self.epoch.isoformat(),
                "meters": [{**self._fleet_entry(meter), "protocol": "iec62056_21"}]}

    def _fleet_entry(self, meter: Meter) -> dict[str, Any]:
        spec = meter.spec
        entry: dict[str, Any] = {
            "serial": meter.serial, "profile": meter.profile, "dials": spec.dials,
            "decimals": spec.decimals, "mean_per_day": str(spec.mean_per_day),
            "start_value": str(spec.start_value), "clock_drift_ppm": spec.clock_drift_ppm,
        }
        if meter.fault in SIMULATOR_FAULTS:
            entry["faults"] = [meter.fault]
            if meter.fault == "garbled":
                entry["fault_rate"] = 0.3
        return entry


def _has_tariffs(profile: str) -> bool:
    """Whether the profile reads the day/night registers (the optical meters here do)."""
    return profile.startswith(("landis", "iskra"))


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _write_csv(path: Path, rows: list[dict[str, str]], columns: Any = None) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns or list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _spec(serial: str, service: Service, n: int, fault: str | None) -> MeterSpec:
    """A meter's physics, as the sample utility has always had them (seeded by its place n)."""
    if service is Service.WATER:
        spec = MeterSpec(serial, service, dials=5, mean_per_day=Decimal("0.4"),
                         start_value=Decimal(random.Random(n).randint(100, 900)))
    elif service is Service.GAS:
        spec = MeterSpec(serial, service, dials=5, mean_per_day=Decimal("3.1"),
                         start_value=Decimal(random.Random(n).randint(1000, 5000)))
    else:
        spec = MeterSpec(serial, service, mean_per_day=Decimal(8 + n % 7),
                         clock_drift_ppm=(n % 9 - 4) * 20,
                         start_value=Decimal(random.Random(n).randint(6000, 40000)))
    return replace(spec, mean_per_day=STILL) if fault in ("stuck", "zero") else spec


def utility_for(now: datetime) -> Utility:
    """The sample utility as of ``now`` (UTC): re-dated CIS files and every meter's physics."""
    today = now.astimezone(UTC).date()
    cycles = cycles_for(today)
    current = cycles[-1]
    exchange = (current.scheduled - timedelta(days=EXCHANGE_BEFORE)).isoformat()

    accounts = _read_csv(SAMPLE / "accounts.csv")
    accounts += [{"account_id": a, "name": name, "service_address": address, "status": "active",
                  "rate_code": rate, "rate_options": ""}
                 for a, name, address, rate in ADDED_ACCOUNTS]
    meters = _read_csv(SAMPLE / "meters.csv")
    for row in meters:
        for column in ("installed_on", "removed_on"):
            if row[column] == EXCHANGE_DAY.isoformat():
                row[column] = exchange
    meters += [{"meter_serial": serial, "service": "electric", "model": model,
                "profile": profile, "multiplier": "1", "dials": "6", "unit": "kWh", "size": "",
                "account_id": account, "installed_on": installed, "removed_on": ""}
               for serial, model, profile, account, installed, _, _ in ADDED_METERS]
    routes = _read_csv(SAMPLE / "routes.csv")
    for row in routes:
        row["cycle_id"] = current.id
    routes += [{"route_id": "R04", "cycle_id": current.id, "sequence": str(10 * (n + 1)),
                "meter_serial": serial, "location_notes": notes,
                "latitude": f"{45.5301 + n * 0.0004:.5f}",
                "longitude": f"{-73.5490 + n * 0.0003:.5f}", "hazards": hazards}
               for n, (serial, _, _, _, _, notes, hazards) in enumerate(ADDED_METERS)]

    on_route = {row["meter_serial"]: row["route_id"] for row in routes}
    physics = {}
    for n, row in enumerate(meters):
        serial = row["meter_serial"]
        service = Service(row["service"])
        profile = row["profile"] or ("arad-octave" if service is Service.WATER else "")
        fault = FAULTS.get(serial)
        physics[serial] = Meter(serial, service, profile, _spec(serial, service, n, fault), fault,
                                on_route.get(serial))
    epoch = now.astimezone(UTC).replace(microsecond=0)
    return Utility(today, epoch, cycles, physics,
                   {"accounts": accounts, "meters": meters,
                    "cycles": [c.row() for c in cycles], "routes": routes})
