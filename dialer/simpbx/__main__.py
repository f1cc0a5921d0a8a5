"""Runs the simulated PBX on its own: `python -m dialer.simpbx [--port 5038] [--random]`.

It owns nothing but its process; it prints the ami:// URL to give the dialer (DIALER_AMI_SERVERS).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from dialer.simpbx.behaviour import BehaviourModel, RandomDebtors, TestbedNumbers
from dialer.simpbx.server import SimPbx


async def serve(port: int, model: BehaviourModel, secret: str, time_scale: float) -> None:
    pbx = SimPbx(model, port=port, secret=secret, time_scale=time_scale)
    await pbx.start()
    print(f"simulated PBX ready: {pbx.url}?name=simpbx", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await pbx.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description="A simulated Asterisk speaking AMI on loopback.")
    parser.add_argument("--port", type=int, default=5038)
    parser.add_argument("--secret", default="simpbx")
    parser.add_argument(
        "--random",
        action="store_true",
        help="random debtors (campaign-like mix) instead of the testbed's numbering plan",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--time-scale", type=float, default=1.0, help="0.1 = ten times faster")
    args = parser.parse_args()
    model: BehaviourModel = RandomDebtors(seed=args.seed) if args.random else TestbedNumbers()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, model, args.secret, args.time_scale))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
