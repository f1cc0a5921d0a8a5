from pacing.decision import Decision
from pacing.policies import PowerPolicy, PredictivePolicy, ProgressivePolicy
from pacing.scenario import BreakSpec, Scenario
from pacing.simulator import SimResult, simulate
from pacing.snapshot import Snapshot

TINY = Scenario(agents=5, shift_s=3600.0, contact_curve=((0.0, 0.3),))


def test_progressive_never_abandons_when_agents_stay_at_their_desks() -> None:
    # Every call out has a ready agent of its own, and only an answer takes that agent away.
    result = simulate(TINY.with_(agents=8), ProgressivePolicy(), seed=3)
    assert result.connected > 50
    assert result.abandoned == 0


def test_progressive_abandons_when_an_agent_pauses_while_its_call_rings() -> None:
    # Short breaks all shift long: some start while the agent is ready and its call is out.
    breaks = tuple(BreakSpec(start_s=100.0 * i, duration_s=20.0, groups=4) for i in range(36))
    result = simulate(TINY.with_(agents=8, breaks=breaks), ProgressivePolicy(), seed=3)
    assert result.abandoned > 0


def test_under_amd_progressive_abandons_exactly_the_humans_taken_for_machines() -> None:
    sc = TINY.with_(machine_share=0.3, amd_human_false_positive=0.1)
    result = simulate(sc, ProgressivePolicy(), seed=4)
    assert result.amd_false_positives > 0
    assert result.abandoned == result.amd_false_positives


def test_the_same_seed_gives_the_same_shift() -> None:
    a = simulate(TINY, PowerPolicy(2.0), seed=7)
    b = simulate(TINY, PowerPolicy(2.0), seed=7)
    c = simulate(TINY, PowerPolicy(2.0), seed=8)
    assert a.metrics() == b.metrics()
    assert a.dials != c.dials


def test_occupancy_counts_talk_and_wrap_up_over_logged_in_time() -> None:
    r = simulate(TINY, PowerPolicy(3.0), seed=1)
    assert 0.0 < r.occupancy <= 1.0
    assert abs(r.talk_s + r.wrap_s + r.ready_s - r.logged_in_s) < 1e-6 * r.logged_in_s
    assert abs(r.logged_in_s - TINY.agents * TINY.shift_s) < 1e-6 * r.logged_in_s


def test_breaks_are_not_logged_in_time() -> None:
    breaks = (BreakSpec(start_s=1200.0, duration_s=600.0, groups=1),)
    r = simulate(TINY.with_(breaks=breaks), ProgressivePolicy(), seed=1)
    assert r.logged_in_s < TINY.agents * (TINY.shift_s - 550.0)


def test_over_dialing_abandons_calls() -> None:
    r = simulate(TINY.with_(contact_curve=((0.0, 0.6),)), PowerPolicy(3.0), seed=2)
    assert r.abandon_rate > 0.05


class _TrunkCheck:
    """Wraps a policy and records the channels in use at each decision."""

    def __init__(self, inner: PowerPolicy) -> None:
        self.inner = inner
        self.name = inner.name
        self.worst_free = 10**9

    def decide(self, snapshot: Snapshot) -> Decision:
        assert snapshot.trunk_free is not None
        self.worst_free = min(self.worst_free, snapshot.trunk_free)
        d = self.inner.decide(snapshot)
        assert d.launches <= snapshot.trunk_free
        return d


def test_the_trunk_channel_limit_is_never_exceeded() -> None:
    check = _TrunkCheck(PowerPolicy(3.0))
    simulate(TINY.with_(trunk_channels=8), check, seed=1)
    assert check.worst_free == 0


def test_predictive_beats_progressive_occupancy_on_a_small_team() -> None:
    sc = Scenario(agents=20, shift_s=2 * 3600.0, contact_curve=((0.0, 0.15),))
    progressive: SimResult = simulate(sc, ProgressivePolicy(), seed=5)
    predictive: SimResult = simulate(sc, PredictivePolicy(), seed=5)
    assert predictive.occupancy > progressive.occupancy + 0.15
    assert predictive.abandon_rate < 0.05
    assert predictive.modes.get("warm-up", 0) > 0
