"""`elevator-gateway demo`: the whole product on one machine, faster than real time.

A Mosquitto of its own, the embedded stores, the gateway and a simulated fleet, all on one
scaled clock. At the default speed (20x) the 30-minute arrival limit is 90 s of wall time,
so an entrapment, a crew dispatched and arriving, and a missed limit are all seen within
two minutes: two cars are trapped at the start, one of them served by a crew that is always
late.

Each fleet runs in a process of its own: sharing one interpreter with the gateway, a fleet
that falls half a second behind at 60x looks like 30 s of silence, which the gateway rightly
reads as every car going offline.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import random
import signal
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from gateway.app import Gateway
from gateway.clock import ScaledClock
from gateway.embedded import EmbeddedBroker
from gateway.registry import Record
from gateway.settings import ROLES, load_settings, new_token
from simulators.crew import ApiReporter, CrewConfig, DelayConfig
from simulators.faults import FaultConfig
from simulators.fleet import Fleet, contracted_company
from simulators.mqtt import MqttPublisher
from simulators.scenario import Group, Scenario

# Rates per elevator-year, raised far above the real 0.05-0.16 so a short demo shows them.
_DEMO_FAULTS = FaultConfig(entrapments_per_year=300.0, faults_per_year=300.0)
_LATE = DelayConfig(late_share=1.0)


@dataclass(frozen=True)
class DemoOptions:
    elevators: int = 50
    speed: float = 20.0  # faster, and a one-second stall of this machine reads as silence
    http_port: int = 8080
    data_dir: Path | None = None
    seed: int = 7


def _scenarios(options: DemoOptions) -> tuple[Scenario, Scenario]:
    """The fleet, and a small group whose maintenance company's crews are always late."""
    fleet = Scenario(seed=options.seed, faults=_DEMO_FAULTS, alarm_tests_broken=0.1).resized(
        max(1, options.elevators - 2)
    )
    late = Scenario(
        seed=options.seed + 1,
        alarm_tests_broken=0.1,
        elevators=(
            Group("LATE", 2, "residential", (-1, 18), traffic=3.0, company="Tardy Lifts Ltd"),
        ),
        faults=dataclasses.replace(_DEMO_FAULTS, entrapments_per_year=0.0),
        crew=CrewConfig(delay=_LATE, companies=("Tardy Lifts Ltd",)),
    )
    return fleet, late


# Chengdu districts and a street in each, for the demo fleet's addresses.
_DISTRICTS = (
    ("锦江区", "春熙路"), ("青羊区", "人民中路二段"), ("金牛区", "一环路北三段"),
    ("武侯区", "人民南路四段"), ("成华区", "建设路"), ("高新区", "天府大道中段"),
)  # fmt: skip
_USE_UNITS = {
    "residential": "{district}安居物业服务有限公司",
    "office": "{district}商务楼宇管理有限公司",
    "hospital": "成都市{district}人民医院",
}
_CARS_PER_SITE = 4


def demo_registry(scenarios: tuple[Scenario, ...], today: date) -> list[tuple[str, Record]]:
    """A registry record for every simulated car: a site in a Chengdu district, its use
    unit, the company whose crews serve it (the one the simulator sends) with a 24-hour
    phone, and inspection and maintenance dates, some of them overdue (drawn per car)."""
    companies = sorted(
        {contracted_company(s, g, e) for s in scenarios for g in s.elevators for e in g.ids()}
    )
    phones = {c: f"028-8555-{n + 1:02d}{n + 1:02d}" for n, c in enumerate(companies)}
    records = []
    cars = [(g, e, s) for s in scenarios for g in s.elevators for e in g.ids()]
    for n, (group, eid, scenario) in enumerate(cars):
        site = n // _CARS_PER_SITE
        district, street = _DISTRICTS[site % len(_DISTRICTS)]
        draw = random.Random(f"demo-registry/{eid}")
        company = contracted_company(scenario, group, eid)
        records.append((eid, {
            "site": f"CD-{site + 1:03d}",
            "district": district,
            "address": f"成都市{district}{street} {site * 7 + 3} 号 {n % _CARS_PER_SITE + 1} 号梯",
            "use_unit": _USE_UNITS[group.building].format(district=district),
            "maintenance_company": company,
            "maintenance_phone": phones[company],
            "inspection_due": today + timedelta(days=draw.randint(-20, 330)),
            "last_maintenance": today - timedelta(days=draw.randint(1, 24)),
        }))  # fmt: skip
    return records


def _run_fleet(
    scenario: Scenario,
    clock: tuple[float, str, float],
    broker_url: str,
    api_url: str,
    token: str,
    name: str,
    stop: Any,
    frames_sent: Any,
) -> None:
    """A fleet in its own process, on the same scaled clock as the gateway."""
    signal.signal(
        signal.SIGINT, signal.SIG_IGN
    )  # Ctrl-C reaches the whole group; the parent stops us
    speed, start, anchor = clock
    twin = ScaledClock(speed, datetime.fromisoformat(start), anchor)
    reporter = ApiReporter(api_url, token, twin)
    fleet = Fleet(scenario, twin, MqttPublisher(broker_url, client_id=name), reporter=reporter)
    fleet.start()
    trapped = False
    parent = os.getppid()
    while not stop.value and os.getppid() == parent:  # stopped, or the demo is gone
        time.sleep(0.2)
        # A passenger trapped between floors in the first car caught moving with one.
        if not trapped:
            trapped = any(fleet.inject(eid, "between_floors") for eid in fleet.elevator_ids)
        frames_sent.value = fleet.stats.sent
    fleet.stop()
    reporter.close()


class Demo:
    def __init__(self, options: DemoOptions) -> None:
        self.options = options
        self.workdir = options.data_dir or Path(tempfile.mkdtemp(prefix="elevator-demo-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.tokens = {role: new_token() for role in ROLES}
        self.clock = ScaledClock(options.speed)
        self.broker = EmbeddedBroker(self.workdir / "mosquitto")
        self._context = multiprocessing.get_context("spawn")  # no threads inherited mid-flight
        # Shared without locks: a fleet killed with the group (`timeout`, a terminal closing)
        # while holding a lock would leave the demo's own stop waiting on it forever.
        self._stop = self._context.Value("b", 0, lock=False)
        self._fleets: list[multiprocessing.process.BaseProcess] = []
        self._sent = [self._context.Value("q", 0, lock=False) for _ in range(2)]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.options.http_port}"

    def start(self) -> None:
        self.broker.start()
        settings = load_settings(
            mqtt_url=self.broker.url,
            mqtt_client_id="demo-gateway",
            tsdb_url="",
            store_url=f"sqlite:///{self.workdir / 'gateway.db'}",
            spool_dir=self.workdir / "spool",
            http_port=self.options.http_port,
            tokens=",".join(f"{role}:{token}" for role, token in self.tokens.items()),
            log_level="warning",
        )
        self.gateway = Gateway(settings, self.clock).start()
        self.gateway.session.wait_connected(15)
        scenarios = _scenarios(self.options)
        now = self.clock.now()
        for eid, record in demo_registry(scenarios, now.date()):
            self.gateway.store.put_elevator(eid, record, now)
            self.gateway.registry.update(eid, record)
        clock = (self.clock.speed, self.clock.start.isoformat(), self.clock.anchor)
        for n, scenario in enumerate(scenarios):
            process = self._context.Process(
                target=_run_fleet,
                args=(scenario, clock, self.broker.url, self.url, self.tokens["dispatcher"],
                      f"demo-fleet-{n}", self._stop, self._sent[n]),
                name=f"demo-fleet-{n}",
                daemon=True,
            )  # fmt: skip
            process.start()
            self._fleets.append(process)

    def stop(self) -> None:
        # The gateway first: a fleet's clean stop announces every car offline, which the
        # gateway would rightly report as offline cars (and passengers in them).
        self.gateway.stop()
        self._stop.value = 1
        for process in self._fleets:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
        self.broker.stop()

    def commands(self) -> list[str]:
        """How to use the demo's data from a shell: the report over its days so far and to
        come (its clock runs `speed` times fast, so a day passes in 72 minutes at 20x)."""
        start = self.clock.now().date()
        store = f"GATEWAY_STORE_URL=sqlite:///{self.workdir / 'gateway.db'}"
        period = f"--since {start} --until {start + timedelta(days=8)}"
        return [
            "  the demo's data, from another shell:",
            f"    {store} elevator-gateway report {period}",
            f"    {store} elevator-gateway report {period} --format html -o demo-report.html",
        ]

    def summary(self) -> Table:
        incidents = self.gateway.store.list_incidents(state="all", limit=10_000)
        entrapments = [i for i in incidents if i.kind == "entrapment"]
        table = Table(
            title=f"demo at {self.options.speed:g}x - {self.clock.now():%H:%M:%S} UTC",
            show_header=False,
        )
        table.add_row("frames sent", f"{sum(v.value for v in self._sent):,}")
        table.add_row(
            "incidents open / all", f"{sum(i.is_open for i in incidents)} / {len(incidents)}"
        )
        table.add_row("entrapments", str(len(entrapments)))
        table.add_row(
            "crews dispatched", str(sum(i.dispatched_at is not None for i in entrapments))
        )
        table.add_row("crews arrived in time", str(sum(i.sla == "met" for i in entrapments)))
        table.add_row("30-minute limit missed", str(sum(i.sla == "breached" for i in entrapments)))
        return table


def run_demo(options: DemoOptions, stop: threading.Event, console: Console) -> None:
    """Run until `stop` is set, showing progress; everything is stopped cleanly after."""
    demo = Demo(options)
    demo.start()
    try:
        console.print(
            f"[bold]Elevator gateway demo[/bold] ({options.elevators} elevators, "
            f"{options.speed:g}x real time; data in {demo.workdir})"
        )
        console.print(f"  dispatch console  {demo.url}/    API docs {demo.url}/docs")
        for role, token in demo.tokens.items():
            console.print(f"  {role:<10} token {token}")
        for line in demo.commands():
            console.print(line, highlight=False, soft_wrap=True)
        console.print("  Ctrl-C stops everything.")
        with Live(demo.summary(), console=console, refresh_per_second=1) as live:
            while not stop.wait(1.0):
                live.update(demo.summary())
    finally:
        demo.stop()
