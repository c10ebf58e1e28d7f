"""Engine speed and snapshot size over random complete walks of the dialog.

    python -m benchmarks.engine [--walks 2000] [--seed 1]

Each figure is printed beside a baseline measured in the same run: one bare
transitions trigger on the same Machine, which is the least a step can cost.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from typing import Any

from bot.engine import Engine, Event
from bot.loading import load_engine
from bot.outputs import Ask


def random_walk(engine: Engine, rng: random.Random) -> list[tuple[dict[str, Any], Event]]:
    """The (snapshot, event) pairs of one random complete path, to replay under the clock."""
    steps = []
    snapshot, outputs = engine.step(None, Event("start"))
    while not engine.is_finished(snapshot):
        ask = outputs[-1]
        assert isinstance(ask, Ask)
        event = Event.answer(rng.choice(ask.choices).id, ref=ask.ref)
        steps.append((snapshot, event))
        snapshot, outputs = engine.step(snapshot, event)
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--walks", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    engine = load_engine()
    rng = random.Random(args.seed)
    walks = [random_walk(engine, rng) for _ in range(args.walks)]
    pairs = [pair for walk in walks for pair in walk]

    clock = time.perf_counter_ns
    step_ns = []
    for snapshot, event in pairs:
        t0 = clock()
        engine.step(snapshot, event)
        step_ns.append(clock() - t0)

    # Baseline: the bare Machine trigger for the same answers, no rendering or checks.
    machine, cursor = engine._machine, engine._cursor
    trigger = machine.events["answer"].trigger
    bare_ns = []
    for snapshot, event in pairs:
        t0 = clock()
        cursor.state = snapshot["state"]
        trigger(cursor, choice=event.choice)
        bare_ns.append(clock() - t0)

    sizes = []
    for walk in walks:
        last_snapshot, last_event = walk[-1]
        final, _ = engine.step(last_snapshot, last_event)
        sizes.append(len(json.dumps(final, separators=(",", ":")).encode()))

    median = statistics.median(step_ns) / 1000
    bare = statistics.median(bare_ns) / 1000
    result = {
        "steps": len(pairs),
        "step_median_us": round(median, 2),
        "step_p99_us": round(sorted(step_ns)[int(len(step_ns) * 0.99)] / 1000, 2),
        "steps_per_second": round(len(pairs) / (sum(step_ns) / 1e9)),
        "bare_trigger_median_us": round(bare, 2),
        "step_to_bare_trigger_ratio": round(median / bare, 2),
        "snapshot_bytes_max": max(sizes),
        "snapshot_bytes_median": statistics.median(sizes),
    }
    width = max(map(len, result))
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
