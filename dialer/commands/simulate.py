"""`dialer simulate SCENARIO.toml`: run one simulated shift under a chosen pacing policy and print
the pacing report (the telephony engineer's what-if). The simulation itself lives in `pacing`."""

from __future__ import annotations

import argparse
import json
import tomllib
from pathlib import Path

from dialer.errors import UserError
from pacing import scenario as scenarios
from pacing.policies import make_policy
from pacing.report import markdown_table, result_row
from pacing.simulator import simulate

POLICY_HELP = (
    "preview, progressive, power (lines_per_agent from [policy.settings]), power-R (R lines per "
    "ready agent, e.g. power-2), predictive, vicidial-adaptive or omni-formula; default: the "
    "scenario's [policy] mode"
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "simulate",
        help="simulate a shift under a pacing policy and print occupancy and abandon rate",
        description="Run the discrete-event pacing simulator on SCENARIO.toml (see "
        "benchmarks/scenarios/standard.toml for every knob) and print the pacing report.",
    )
    p.add_argument("scenario", metavar="SCENARIO.toml", type=Path)
    p.add_argument("--policy", help=POLICY_HELP)
    p.add_argument("--seed", type=int, default=1, help="random seed (default: 1)")
    p.add_argument(
        "--json",
        dest="json_out",
        metavar="OUT",
        type=Path,
        help="also write the report as JSON here",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        data = tomllib.loads(args.scenario.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"cannot read {args.scenario}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{args.scenario} is not valid TOML: {exc}") from exc
    try:
        # An unnamed scenario is reported under its file's name.
        sc = scenarios.from_dict({"name": args.scenario.stem, **data})
        mode = args.policy or sc.policy
        settings = sc.settings_dict()
        if mode.startswith("power-"):
            try:
                settings = {"lines_per_agent": float(mode.removeprefix("power-"))}
            except ValueError:
                raise ValueError(f"--policy {mode}: expected power-R with a number R") from None
            mode = "power"
        policy = make_policy(mode, settings)
    except ValueError as exc:
        raise UserError(f"{args.scenario}: {exc}") from exc
    result = simulate(sc, policy, seed=args.seed)
    curve = sc.contact_curve
    contact: float | str = curve[0][1] if len(curve) == 1 else "->".join(f"{r:g}" for _, r in curve)
    row = result_row(result, contact)
    print(markdown_table([row]))
    print()
    print(
        f"decisions: {result.decisions}; modes in force: "
        + ", ".join(f"{k} {v}" for k, v in sorted(result.modes.items()))
    )
    if args.json_out:
        doc = {"scenario": sc.to_dict(), "results": [row]}
        args.json_out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return 0
