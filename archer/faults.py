"""Crash points for fault-injection runs (scripts/chaos.sh).

With ARCHER_CRASH_AT=<point>:<n> in its environment, a process kills itself with SIGKILL the
n-th time it reaches `crash_point(<point>)`: no exception, no `finally`, no atexit, exactly as a
`kill -9` from outside would stop it, but at a known place. Without the variable a crash point
costs one dictionary lookup.

Points (where they sit):
    collect           the driver received one chunk of episodes from a collector
    critic_step       ArCHer finished one critic step (before its Polyak update)
    actor_step        ArCHer finished one actor optimizer step
    checkpoint_write  a checkpoint's files are written to <name>.tmp, not yet marked COMPLETE
    checkpoint_swap   the old checkpoint was renamed to <name>.old, the new one not yet in place

The variable is inherited by the processes a run starts (Ray workers, learner ranks): a point
they reach kills them instead. scripts/chaos.sh runs the learner in the driver
(cluster.learner_ranks=0), so the points above are the driver's.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

VARIABLE = "ARCHER_CRASH_AT"
POINTS = ("collect", "critic_step", "actor_step", "checkpoint_write", "checkpoint_swap")

_hits: Counter[str] = Counter()


def parse(spec: str) -> tuple[str, int]:
    """`"critic_step:3"` -> ("critic_step", 3); a clear ValueError for anything else."""
    point, _, count = spec.partition(":")
    if point not in POINTS or not count.isdigit() or int(count) < 1:
        raise ValueError(f"{VARIABLE}={spec!r}: expected <point>:<n> with n >= 1 and point one "
                         f"of {', '.join(POINTS)}")
    return point, int(count)


def crash_point(name: str) -> None:
    """Kill this process here if ARCHER_CRASH_AT names this point and this is its n-th hit."""
    spec = os.environ.get(VARIABLE)
    if not spec:
        return
    point, count = parse(spec)
    if point != name:
        return
    _hits[name] += 1
    if _hits[name] == count:
        os.kill(os.getpid(), signal.SIGKILL)
