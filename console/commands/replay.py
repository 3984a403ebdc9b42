"""`lagdeck replay GROUP`: reset a group's offsets, a dry run unless --execute.

The plan printed by a dry run is exactly what `--execute` applies (it is
recomputed and refused if the group's committed offsets moved in between);
after applying, the committed offsets are read back and shown.
"""

from __future__ import annotations

import argparse
import sys

from collectors.errors import UsageError
from collectors.untrusted import line_field as _s
from console.context import Context, print_json
from dlq.guard import ensure_writable
from dlq.replay import ReplayPlan, ResetSpec, execute_reset, plan_reset


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="reset a consumer group's offsets (dry run by default)")
    p.add_argument("group", metavar="GROUP")
    p.add_argument("--topic", required=True, metavar="T")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--to-earliest", action="store_true")
    how.add_argument("--to-latest", action="store_true")
    how.add_argument("--to-datetime", metavar="ISO",
                     help="ISO 8601 (naive times are UTC) or epoch milliseconds")
    how.add_argument("--to-offset", type=int, metavar="N")
    how.add_argument("--shift-by", type=int, metavar="N", help="negative replays, positive skips")
    how.add_argument("--by-duration", metavar="D", help="back from now: 15m, 1h30m, PT1H")
    p.add_argument("--execute", action="store_true", help="apply the plan (default: dry run)")
    p.add_argument("--create", action="store_true",
                   help="allow --execute to create a group that does not exist yet")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=run)


def spec_from_args(args: argparse.Namespace) -> ResetSpec:
    if args.to_earliest:
        return ResetSpec.earliest()
    if args.to_latest:
        return ResetSpec.latest()
    if args.to_datetime is not None:
        return ResetSpec.to_datetime(args.to_datetime)
    if args.to_offset is not None:
        return ResetSpec.to_offset(args.to_offset)
    if args.shift_by is not None:
        return ResetSpec.shift_by(args.shift_by)
    return ResetSpec.by_duration(args.by_duration)


def _show(v: int | None) -> str:
    return "-" if v is None else str(v)


def _print_plan(plan: ReplayPlan, header: str) -> None:
    out = sys.stdout
    state = plan.group_state if plan.exists else "does not exist"
    out.write(f"{header}: group {_s(plan.group)} ({_s(state)}) on {_s(plan.topic)}, "
              f"reset {plan.spec.describe()}\n")
    out.write(f"  {'PARTITION':>9}  {'CURRENT':>10}  {'NEW':>10}  {'DELTA':>8}  RANGE\n")
    for p in plan.partitions:
        delta = "" if p.delta is None or not p.changes else f"{p.delta:+d}"
        note = f"  ({_s(p.note)})" if p.note else ""
        out.write(f"  {p.partition:>9}  {_show(p.current_offset):>10}  {_show(p.new_offset):>10}"
                  f"  {delta:>8}  [{p.low}, {p.high}]{note}\n")


_DELTA_NOTE = "  (delta: records the group will read again, or skip when negative)\n"


def run(args: argparse.Namespace, ctx: Context) -> int:
    if not args.group.strip():
        raise UsageError("replay: the GROUP argument is empty")
    cluster = ctx.config.cluster
    spec = spec_from_args(args)
    if args.execute:
        ensure_writable(cluster, f"replay (offset reset) of group {args.group}")
    plan = plan_reset(cluster, args.group, args.topic, spec)
    if not args.execute:
        if args.json:
            print_json(plan.to_json(dry_run=True))
        else:
            _print_plan(plan, "dry run")
            sys.stdout.write(_DELTA_NOTE)
            changed = len(plan.changes)
            sys.stdout.write(f"{changed} partition(s) would change; nothing changed "
                             "(add --execute to apply)\n")
            if not plan.exists:
                sys.stdout.write(f"group {plan.group} does not exist: --execute would refuse "
                                 "(add --create to make it)\n")
        return 0
    result = execute_reset(cluster, plan, create=args.create)
    if args.json:
        print_json(result.to_json())
        return 0
    _print_plan(result.plan, "applied")
    after = ", ".join(f"{p}:{_show(o)}" for p, o in result.committed_after)
    sys.stdout.write(f"{len(result.applied)} partition(s) changed; committed offsets read back: "
                     f"{after}\n")
    return 0
