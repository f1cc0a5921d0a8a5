from pacing.baselines import OmniFormulaPolicy, VicidialAdaptivePolicy
from pacing.snapshot import Attempt, Outcome

from .helpers import snapshot


def test_vicidial_raises_the_dial_level_while_agents_wait() -> None:
    policy = VicidialAdaptivePolicy(adjust_every_s=15.0)
    for t in range(0, 31):
        policy.decide(snapshot(now=float(t), ready=5, talking=[30.0] * 5))
    assert policy.level > 1.0


def test_vicidial_halves_the_dial_level_when_the_drop_rate_passes_the_limit() -> None:
    policy = VicidialAdaptivePolicy(start_level=2.4, adjust_every_s=15.0)
    policy.decide(snapshot(now=0.0, ready=5))
    policy.decide(snapshot(now=16.0, ready=5, window_abandoned=5.0, window_connected=95.0))
    assert policy.level == 1.2


def test_vicidial_dials_level_times_agents_minus_calls_up() -> None:
    policy = VicidialAdaptivePolicy(start_level=2.0)
    d = policy.decide(snapshot(ready=2, talking=[10.0] * 8, pending=[3.0] * 5))
    assert d.launches == 20 - 8 - 5


def test_omni_dials_for_free_agents_over_the_answer_rate() -> None:
    policy = OmniFormulaPolicy()
    d = policy.decide(snapshot(ready=3, talking=[1.0] * 10))
    rate = policy.estimators.contact.value
    assert d.launches == int(3 / rate)


def test_omni_throttles_down_to_one_call_per_ready_agent_at_the_ceiling() -> None:
    policy = OmniFormulaPolicy()
    abandons = [Attempt(i, float(i), Outcome.ABANDONED, 8.0) for i in range(10)]
    d = policy.decide(snapshot(ready=3, talking=[1.0] * 10, attempts=abandons))
    assert d.launches == 3
