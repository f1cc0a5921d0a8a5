"""A simulated PBX speaking real AMI on loopback: Asterisk's side of a call, without Asterisk.

It owns nothing of the dialer's; tests, benchmarks and the demo point an `AmiServer` at it.
"""

from dialer.simpbx.behaviour import (
    Behaviour,
    BehaviourModel,
    Fate,
    FateMix,
    RandomDebtors,
    ScenarioDebtors,
    TestbedNumbers,
)
from dialer.simpbx.server import PlacedCall, SimPbx

__all__ = [
    "Behaviour",
    "BehaviourModel",
    "Fate",
    "FateMix",
    "PlacedCall",
    "RandomDebtors",
    "ScenarioDebtors",
    "SimPbx",
    "TestbedNumbers",
]
