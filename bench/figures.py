"""The figures every benchmark reports: rates, alternating rounds, a small table.

Every figure is a ratio against raw psycopg measured on the same database in the
same run, because absolute times on shared machines drift. Rounds alternate
between the two sides so that drift hits both alike.
"""

import statistics
import time


def rate(operations: int, seconds: float) -> float:
    return operations / seconds if seconds > 0 else float("inf")


def alternate(rounds: int, **sides):
    """Run each side's callable once per round; return median seconds per side.

    The order flips every round so that neither side always runs right after the
    other (checkpoints and fsync bursts would otherwise land on one side).
    """
    timings = {name: [] for name in sides}
    order = list(sides.items())
    for _ in range(rounds):
        order.reverse()
        for name, run in order:
            started = time.perf_counter()
            run()
            timings[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in timings.items()}


def report(title: str, rows, target: str = ""):
    """Print a small aligned table: rows of (label, value, unit)."""
    print(f"\n{title}")
    width = max(len(label) for label, _, _ in rows)
    for label, value, unit in rows:
        print(f"  {label:<{width}}  {value:>12,.2f} {unit}")
    if target:
        print(f"  target: {target}")
