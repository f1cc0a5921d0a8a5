"""What a simulated debtor does when the simulated PBX dials them: the pluggable behaviour model.

`TestbedNumbers` mirrors the real testbed's simulated PSTN (asterisk_conf/testbed); `RandomDebtors`
draws fates from campaign-like probabilities for benchmarks; `ScenarioDebtors` (the demo's) draws
them from the pacing simulator's debtor model.
"""

from __future__ import annotations

import enum
import random
import re
import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from pacing.scenario import Distribution, Scenario


class Fate(enum.StrEnum):
    """How one dial ends, seen from the network."""

    HUMAN = "human"  # answers, AMD says HUMAN, talks, hangs up after `talk_seconds`
    MACHINE = "machine"  # answers with a recorded greeting, AMD says MACHINE
    BUSY = "busy"
    NO_ANSWER = "no_answer"  # rings until the dialplan's ring timeout
    CONGESTION = "congestion"
    INVALID = "invalid"  # unallocated number, Q.850 cause 1
    SILENT_HANGUP = "silent_hangup"  # answers at once, says nothing, hangs up


@dataclass(frozen=True, slots=True)
class Behaviour:
    """One debtor's reaction to one dial; durations in simulated seconds."""

    fate: Fate
    ring_seconds: float = 3.0
    talk_seconds: float = 30.0  # after the answer (human) or the greeting (machine)
    amd_seconds: float = 2.5  # how long AMD listens before deciding


class BehaviourModel(Protocol):
    """Decides a debtor's behaviour from the dialed number (and nothing the dialer can't see)."""

    def behaviour(self, number: str) -> Behaviour: ...


# A suffix of two or more digits is allowed, as in the testbed's dialplan (one number per account).
_TESTBED = re.compile(r"^555(\d)(\d\d)(?:\d{2,})?$")


class TestbedNumbers:
    """The testbed's numbering plan: the dialed number decides the outcome (see extensions_site).

    5551NN human ringing NN s; 5552NN machine ringing NN s; 555300 busy; 555400 never answered;
    555500 congestion; 5556NN answers and hangs up after NN s silently; 5557NN human who hangs up
    NN s after answering; 555800 unallocated; a longer number behaves as its first six digits.
    Any other number: `default`.
    """

    __test__ = False  # not a pytest class despite the name

    def __init__(self, default: Behaviour | None = None) -> None:
        self.default = default or Behaviour(Fate.INVALID, ring_seconds=0.0)

    def behaviour(self, number: str) -> Behaviour:
        match = _TESTBED.match(number.lstrip("+"))
        if match is None:
            return self.default
        kind, nn = match.group(1), int(match.group(2))
        if kind == "1":
            return Behaviour(Fate.HUMAN, ring_seconds=nn, talk_seconds=60.0, amd_seconds=2.5)
        if kind == "2":
            return Behaviour(Fate.MACHINE, ring_seconds=nn, talk_seconds=9.0, amd_seconds=3.5)
        if kind == "3":
            return Behaviour(Fate.BUSY, ring_seconds=0.2)
        if kind == "4":
            return Behaviour(Fate.NO_ANSWER, ring_seconds=600.0)
        if kind == "5":
            return Behaviour(Fate.CONGESTION, ring_seconds=0.2)
        if kind == "6":
            return Behaviour(Fate.SILENT_HANGUP, ring_seconds=0.0, talk_seconds=nn)
        if kind == "7":
            return Behaviour(Fate.HUMAN, ring_seconds=1.0, talk_seconds=nn, amd_seconds=2.5)
        if kind == "8":
            return Behaviour(Fate.INVALID, ring_seconds=0.0)
        return self.default


@dataclass(frozen=True, slots=True)
class FateMix:
    """Probabilities of each fate (they need not sum to 1: they are weights)."""

    human: float = 0.25
    machine: float = 0.15
    busy: float = 0.08
    no_answer: float = 0.40
    congestion: float = 0.04
    invalid: float = 0.08


class RandomDebtors:
    """Random fates and durations with a seeded generator, for benchmarks and the demo."""

    def __init__(
        self,
        mix: FateMix | None = None,
        *,
        seed: int = 7,
        ring_seconds: tuple[float, float] = (2.0, 20.0),
        talk_seconds: tuple[float, float] = (20.0, 240.0),
    ) -> None:
        mix = mix or FateMix()
        self._fates = [
            Fate.HUMAN,
            Fate.MACHINE,
            Fate.BUSY,
            Fate.NO_ANSWER,
            Fate.CONGESTION,
            Fate.INVALID,
        ]
        self._weights = [
            mix.human,
            mix.machine,
            mix.busy,
            mix.no_answer,
            mix.congestion,
            mix.invalid,
        ]
        if any(w < 0 for w in self._weights) or sum(self._weights) <= 0:
            raise ValueError("FateMix: weights must be >= 0 and not all zero")
        self._rng = random.Random(seed)
        self._ring = ring_seconds
        self._talk = talk_seconds

    def behaviour(self, number: str) -> Behaviour:
        fate = self._rng.choices(self._fates, self._weights)[0]
        return Behaviour(
            fate,
            ring_seconds=self._rng.uniform(*self._ring),
            talk_seconds=self._rng.uniform(*self._talk),
            amd_seconds=self._rng.uniform(1.5, 4.0),
        )


class ScenarioDebtors:
    """Debtors drawn from the pacing simulator's model (`pacing.scenario.Scenario`): the contact
    rate decides who answers, `answer_time` how long they ring, `machine_share` and
    `amd_machine_accuracy` which answers are machines (a machine AMD misses reaches an agent as
    a person, as in the simulator), and `talk_time` how long a person stays on the line.

    A dial nobody answers ends after `no_answer_time`: busy when that is short, else it rings out
    at the PBX's ring timeout. `patience` stretches the person's stay on the line so that the
    agent, who draws from the same `talk_time`, usually ends the conversation.
    """

    def __init__(self, scenario: Scenario, *, seed: int = 7, patience: float = 2.0) -> None:
        self.scenario = scenario
        self.patience = patience
        self._rng = np.random.default_rng(seed)
        self._start = time.monotonic()

    def _draw(self, dist: Distribution) -> float:
        return max(0.0, float(dist.sample(self._rng, 1)[0]))

    def behaviour(self, number: str) -> Behaviour:
        sc = self.scenario
        hour = (time.monotonic() - self._start) / 3600.0
        if self._rng.random() >= sc.contact_rate(hour):
            give_up = self._draw(sc.no_answer_time)
            if give_up < 10.0:
                return Behaviour(Fate.BUSY, ring_seconds=give_up)
            return Behaviour(Fate.NO_ANSWER, ring_seconds=give_up)
        ring = self._draw(sc.answer_time)
        amd = sc.amd_delay_s
        if self._rng.random() < sc.machine_share:
            talk = self._draw(sc.machine_talk_time)
            if self._rng.random() < sc.amd_machine_accuracy:
                return Behaviour(
                    Fate.MACHINE, ring_seconds=ring, talk_seconds=talk, amd_seconds=amd
                )
            return Behaviour(
                Fate.HUMAN, ring_seconds=ring, talk_seconds=amd + talk, amd_seconds=amd
            )
        talk = amd + self.patience * self._draw(sc.talk_time)
        return Behaviour(Fate.HUMAN, ring_seconds=ring, talk_seconds=talk, amd_seconds=amd)
