"""Whatever campaign settings the API accepts, the engine and preview can run: generated from the
API's own published schema, checked by the API's own acceptance path, then fed to the engine's
parsers (pacing policy, claim options, retry rules) and to preview's skip."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dialer.api.campaigns import FIELDS, apply_fields, check_fields, check_settings
from dialer.api.schema import Invalid, JsonSchema
from dialer.compliance.claiming import claim_options
from dialer.domain.retry import DEFAULT_DELAYS
from dialer.domain.settings import ORDERING_NAMES, CampaignSettings, SettingsError
from dialer.engine.engine import InvalidPacing, _policy_for
from dialer.store.claim import ORDERINGS
from pacing.baselines import OmniFormulaPolicy, VicidialAdaptivePolicy
from pacing.policies import PredictiveSettings
from tests.unit.pacing.helpers import snapshot

ZONES = ["America/New_York", "America/Boise", "Atlantic/Canary", "Pacific/Honolulu", None]
NOW = dt.datetime(2026, 3, 8, 6, 59, tzinfo=dt.UTC)  # a DST change in the US


def from_schema(schema: Mapping[str, Any]) -> st.SearchStrategy[Any]:
    """Values valid under one of the API's schema fragments (the subset dialer.api.schema uses)."""
    if "oneOf" in schema:
        return st.one_of(*(from_schema(s) for s in schema["oneOf"]))
    if "enum" in schema:
        base: st.SearchStrategy[Any] = st.sampled_from(schema["enum"])
    else:
        kind = schema.get("type")
        if kind == "string":
            if "pattern" in schema:
                base = st.from_regex(schema["pattern"], fullmatch=True).filter(
                    lambda v: len(v) <= int(schema.get("maxLength", 200))
                )
            else:
                base = st.text(
                    min_size=int(schema.get("minLength", 0)),
                    max_size=min(int(schema.get("maxLength", 200)), 20),
                )
        elif kind == "integer":
            base = st.integers(int(schema.get("minimum", 0)), int(schema.get("maximum", 10**6)))
        elif kind == "number":
            low, high = float(schema.get("minimum", 0)), float(schema.get("maximum", 1e6))
            base = st.one_of(
                st.floats(low, high, allow_nan=False), st.integers(int(low), int(high))
            )
        elif kind == "boolean":
            base = st.booleans()
        elif kind == "array":
            base = st.lists(
                from_schema(schema["items"]), max_size=min(int(schema.get("maxItems", 3)), 3)
            )
        elif kind == "object":
            props = schema.get("properties", {})
            required = set(schema.get("required", ()))
            optional = {k: from_schema(v) for k, v in props.items() if k not in required}
            fixed = st.fixed_dictionaries(
                {k: from_schema(v) for k, v in props.items() if k in required},
                optional=optional,
            )
            extra = schema.get("additionalProperties")
            if isinstance(extra, dict):
                more = st.dictionaries(
                    st.sampled_from([*DEFAULT_DELAYS, "skipped", "next_phone_gap", "rpc_rest"]),
                    from_schema(extra),
                    max_size=4,
                )
                base = st.builds(lambda a, b: {**b, **a}, fixed, more)
            else:
                base = fixed
        else:
            raise AssertionError(f"schema fragment the generator does not know: {schema}")
    if schema.get("nullable"):
        return st.one_of(st.none(), base)
    return base


def _pacing_keys() -> list[str]:
    keys = [f.name for f in fields(PredictiveSettings)]
    keys += ["lines_per_agent", "start_level", "max_level", "diff_target", "adjust_every_s"]
    keys += ["intensity", "drop_limit", "ceiling", "throttle_from", "not_a_setting"]
    return keys


# `pacing` is a free-form object in the schema (which knobs apply depends on dial_mode): draw it
# from the knobs the policies know, with any JSON scalar, so that bad values are tried too.
PACING = st.dictionaries(
    st.sampled_from(_pacing_keys()),
    st.one_of(
        st.integers(-10, 10**6),
        st.floats(-10.0, 1e6, allow_nan=False),
        st.booleans(),
        st.text(max_size=4),
    ),
    max_size=4,
)
SETTINGS = {k: v for k, v in FIELDS.items() if k in (
    "dial_mode", "compliance_profile", "calling_window", "caps", "claim_order",
    "caller_id_pool", "caller_id_match_area", "retry_rules", "amd_accuracy",
    "wireless_consent_required",
)}  # fmt: skip


@dataclass
class CampaignRow:
    """The columns `apply_fields` writes, as on a fresh `Campaign` row."""

    id: int = 1
    name: str = "generated"
    dial_mode: str = "predictive"
    compliance_profile: str = "US"
    calling_window: dict[str, Any] = field(default_factory=dict)
    caps: dict[str, Any] = field(default_factory=dict)
    pacing: dict[str, Any] = field(default_factory=dict)
    retry_rules: dict[str, Any] = field(default_factory=dict)
    caller_id: str | None = None
    caller_id_pool: list[str] = field(default_factory=list)


def _accepted_by_the_api(data: dict[str, Any]) -> CampaignRow | None:
    """The API's own acceptance path (`create_campaign`): schema, then the whole settings."""
    row = CampaignRow()
    try:
        check_fields(data, FIELDS_SCHEMA)
        apply_fields(row, data)  # type: ignore[arg-type]
        check_settings(row)  # type: ignore[arg-type]
    except Invalid:
        return None
    return row


FIELDS_SCHEMA: JsonSchema = {"type": "object", "properties": FIELDS, "additionalProperties": False}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=from_schema({"type": "object", "properties": SETTINGS}), pacing=PACING)
def test_every_setting_the_api_accepts_runs_in_the_engine_and_preview(
    data: dict[str, Any], pacing: dict[str, Any]
) -> None:
    row = _accepted_by_the_api({**data, "pacing": pacing})
    event("accepted" if row is not None else "refused")
    if row is None:
        return
    event(f"accepted {row.dial_mode} with {len(row.pacing)} pacing knobs")
    parsed = CampaignSettings.of(row)  # type: ignore[arg-type]
    policy = _policy_for(row)  # type: ignore[arg-type]
    assert not isinstance(policy, InvalidPacing), policy.error
    decision = policy.decide(snapshot(ready=3, talking=[20.0], wrapping=[5.0], pending=[3.0]))
    assert decision.launches >= 0
    options = claim_options(row)  # type: ignore[arg-type]
    assert options.order == parsed.claim_order
    for zone in ZONES:
        for outcome in [*DEFAULT_DELAYS, "skipped", *row.retry_rules]:
            assert parsed.retry.phone_retry_at(outcome, NOW, zone) >= NOW


@pytest.mark.parametrize(
    ("settings_", "where"),
    [
        ({"retry_rules": {"skipped": "tomorrow"}}, "retry_rules.skipped"),
        ({"retry_rules": {"busy": -1}}, "retry_rules.busy"),
        ({"caps": {"phone_per_day": -1}}, "caps.phone_per_day"),
        ({"claim_order": ["alphabetical"]}, "claim_order"),
        ({"pacing": {"lines_per_agent": "two"}, "dial_mode": "power"}, "pacing.lines_per_agent"),
        ({"pacing": {"horizon": 3}}, "pacing.horizon"),
        ({"dial_mode": "robot"}, "dial_mode"),
    ],
)
def test_settings_the_engine_cannot_use_are_refused_naming_the_field(
    settings_: dict[str, Any], where: str
) -> None:
    row = CampaignRow()
    for key, value in settings_.items():
        if key in ("claim_order",):
            row.caps[key] = value
        else:
            setattr(row, key, value)
    with pytest.raises(SettingsError) as refused:
        CampaignSettings.of(row)  # type: ignore[arg-type]
    assert refused.value.field == where


def test_the_orderings_a_campaign_may_name_each_have_their_sql() -> None:
    assert tuple(ORDERINGS) == ORDERING_NAMES


def test_a_baseline_policy_is_parsed_by_its_own_mapping() -> None:
    assert isinstance(
        _policy_for(CampaignRow(dial_mode="vicidial-adaptive", pacing={"max_level": 2})),  # type: ignore[arg-type]
        VicidialAdaptivePolicy,
    )
    assert isinstance(
        _policy_for(CampaignRow(dial_mode="omni-formula", pacing={"ceiling": 0.02})),  # type: ignore[arg-type]
        OmniFormulaPolicy,
    )
