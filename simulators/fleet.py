"""A fleet of simulated elevators publishing through one `Publisher`, on a given clock.

    fleet = Fleet(scenario, clock, MqttPublisher(url), labels=LabelWriter(path))
    fleet.start()          # runs on a thread of its own
    ...
    fleet.stop()           # announces the cars offline, closes labels and publisher

The simulation advances in fixed steps of simulated time (`scenario.tick_s`) and then waits
for the clock to catch up, so what it sends depends only on the scenario, its seed and the
clock's start time, never on how fast the machine is: with a `FixedClock` a run is a
reproducible function of the scenario, with a `ScaledClock` it runs `speed` times faster
than real time, and if the machine cannot keep up the simulation falls behind the clock
(`stats.lag_s`) rather than change.
"""

from __future__ import annotations

import math
import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

from gateway.clock import Clock
from gateway.profiles import Profile
from simulators.car import Car, Pir
from simulators.crew import ApiReporter, CrewService
from simulators.device import Device
from simulators.faults import Fault, FaultInjector
from simulators.labels import Label, LabelWriter
from simulators.misbehave import Message, Misbehaviour, to_message
from simulators.mqtt import Publisher
from simulators.profiled import ProfileSpeaker
from simulators.scenario import Group, Scenario
from simulators.traffic import arrivals

MAX_UPTIME_S = 90 * 86400  # controllers were booted up to this long before the run
ALARM_TEST_EVERY_S = 86400.0


@dataclass
class FleetStats:
    sim_s: float = 0.0  # simulated seconds run
    lag_s: float = 0.0  # how far the simulation is behind its clock
    frames: Counter[str] = field(default_factory=Counter)  # by topic kind
    misbehaved: Counter[str] = field(default_factory=Counter)  # by misbehaviour
    faults: Counter[str] = field(default_factory=Counter)  # injected, by label kind

    @property
    def sent(self) -> int:
        return sum(self.frames.values())


def contracted_company(scenario: Scenario, group: Group, elevator_id: str) -> str:
    """The car's maintenance company: its group's, else one of the crews' companies, drawn
    from a stream of its own so a registry (the demo's) can name it without running the car."""
    if group.company:
        return group.company
    companies = scenario.crew.companies
    draw = random.Random(f"{scenario.seed}/{elevator_id}/company")
    return companies[draw.randrange(len(companies))]


class _Unit:
    """One elevator: the car, its controller, faults, crew and (mis)behaving firmware."""

    def __init__(self, fleet: Fleet, group: Group, elevator_id: str, neighbour: str) -> None:
        s = fleet.scenario

        def rng(purpose: str) -> random.Random:
            # One stream per car and purpose: a car behaves the same whatever the fleet size.
            return random.Random(f"{s.seed}/{elevator_id}/{purpose}")

        setup = rng("setup")
        lowest, highest = group.floors
        self.car = Car(lowest, highest, group.speed_mps, group.rated_kg, setup.randint(0, highest))
        epoch_ms = int(fleet.epoch.timestamp() * 1000)
        self.device = Device(
            elevator_id,
            self.car,
            fleet.epoch,
            s.tz,
            boot=epoch_ms - setup.randrange(3_600_000, MAX_UPTIME_S * 1000),
            status_interval_s=s.status_interval_s,
            first_status_s=setup.uniform(0, s.status_interval_s),
        )
        self.group = group
        alarm = rng("alarm")
        calls = s.alarm_tests_broken > 0 and alarm.random() >= s.alarm_tests_broken
        self.alarm_test_at = alarm.uniform(0, 600) if calls else math.inf
        self.traffic = rng("traffic")
        self.pir = Pir(self.car, rng("pir"), s.sensors)
        self.injector = FaultInjector(
            self.device, rng("faults"), s.faults, fleet._fault_started, fleet._fault_ended
        )
        company = contracted_company(s, group, elevator_id)
        self.crew = CrewService(
            self.device, rng("crew"), s.crew, company, fleet.reporter, fleet._label
        )
        # A stream of its own: which cars speak the profile changes nothing else.
        profile = fleet.profile
        speaks = profile is not None and rng("profile").random() < fleet.profile_share
        self.speaker = ProfileSpeaker(profile, elevator_id) if speaks and profile else None
        misbehaves = setup.random() < s.misbehave.devices
        self.misbehaviour = (
            Misbehaviour(elevator_id, s.misbehave, rng("misbehave"), neighbour)
            if misbehaves
            else None
        )

    def step(self, now: float, until: float, hour: int, dt: float) -> list[Message]:
        car = self.car
        if car.in_service:
            g = self.group
            for trip in arrivals(self.traffic, g.building, hour, dt, *g.floors, g.traffic):
                car.request(trip)
        self.injector.step(now)
        if now >= self.alarm_test_at:
            self.device.raise_event("ALARM_TEST")
            self.alarm_test_at += ALARM_TEST_EVERY_S
        self.pir.step(now, dt)
        idle = self.injector.active is None and car.in_service and car.people == 0
        self.crew.step(now, car_free=idle and not car.moving and car.door == "closed")
        self.device.advance(until)
        frames = self.device.take()
        if self.speaker is not None:  # a terminal of another format: it sends what it sends
            return self.speaker.messages(frames)
        if self.misbehaviour is not None:
            return self.misbehaviour.apply(frames, until)
        return [to_message(f) for f in frames]


class Fleet:
    def __init__(
        self,
        scenario: Scenario,
        clock: Clock,
        publisher: Publisher,
        labels: LabelWriter | None = None,
        reporter: ApiReporter | None = None,
        profile: Profile | None = None,
        profile_share: float = 1.0,
    ) -> None:
        self.scenario = scenario
        self.profile = profile  # a device profile that `profile_share` of the cars speak
        self.profile_share = profile_share
        self.clock = clock
        self.publisher = publisher
        self.labels = labels
        self.reporter = reporter
        self.epoch = clock.now()
        self.stats = FleetStats()
        self.label_log: list[Label] = []
        ids = [(g, e) for g in scenario.elevators for e in g.ids()]
        self.units = [_Unit(self, g, e, ids[(i + 1) % len(ids)][1]) for i, (g, e) in enumerate(ids)]
        self._by_id = {u.device.elevator_id: u for u in self.units}
        self._t = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._opened = False

    @property
    def elevator_ids(self) -> list[str]:
        return list(self._by_id)

    @property
    def crew_arrivals(self) -> int:
        return sum(u.crew.arrivals for u in self.units)

    def inject(self, elevator_id: str, kind: str) -> Fault | None:
        """Start a fault now (a code or an entrapment cause), if the car is in a state
        where it can happen; e.g. for a demo that wants an entrapment at once."""
        return self._by_id[elevator_id].injector.force(kind, self._t)

    # -- running --------------------------------------------------------------------------

    def open(self) -> None:
        if not self._opened:
            self.publisher.open(self.elevator_ids)
            self.stats.frames["online"] += len(self.units)
            self._opened = True

    def step(self) -> None:
        """Advance every car by one tick of simulated time and publish what they sent."""
        now, until = self._t, self._t + self.scenario.tick_s
        hour = (self.epoch + timedelta(seconds=now)).astimezone(self.scenario.tz).hour
        for unit in self.units:
            for message in unit.step(now, until, hour, self.scenario.tick_s):
                self.publisher.publish(
                    message.elevator_id, message.topic, message.payload, message.retain
                )
                self.stats.frames[message.topic.rsplit("/", 1)[1]] += 1
                if message.misbehaviour:
                    self.stats.misbehaved[message.misbehaviour] += 1
        self._t = self.stats.sim_s = until

    def run(self, duration_s: float | None = None) -> None:
        """Run in this thread for `duration_s` simulated seconds, or until `stop()`."""
        self.open()
        end = duration_s if duration_s is not None else float("inf")
        while self._t < end and not self._stop.is_set():
            self.step()
            ahead = (self.epoch + timedelta(seconds=self._t)) - self.clock.now()
            self.stats.lag_s = max(0.0, -ahead.total_seconds())
            if ahead > timedelta(0):
                self.clock.sleep(ahead.total_seconds())

    def start(self, duration_s: float | None = None) -> None:
        """Run on a background thread."""
        self.open()
        self._thread = threading.Thread(
            target=self.run, args=(duration_s,), name="elevator-fleet", daemon=True
        )
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a `start(duration_s)` run to end; True when it has."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running

    def stop(self) -> None:
        """Stop, label the faults still running, announce the cars offline, close."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for unit in self.units:
            if unit.injector.active is not None:
                self._fault_ended(unit.injector.active)
        if self.reporter is not None:
            self.reporter.close()
        if self._opened:
            self.publisher.close()
            self._opened = False
        if self.labels is not None:
            self.labels.close()

    # -- callbacks from faults and crews ---------------------------------------------------

    def _fault_started(self, fault: Fault) -> None:
        self.stats.faults[fault.kind] += 1
        if fault.needs_crew:
            self._by_id[fault.device.elevator_id].crew.dispatch(fault, fault.start_s)

    def _fault_ended(self, fault: Fault) -> None:
        self._label(fault.label())

    def _label(self, label: Label) -> None:
        if label.kind == "maintenance":
            self.stats.faults["maintenance"] += 1
        self.label_log.append(label)
        if self.labels is not None:
            self.labels.write(label)
