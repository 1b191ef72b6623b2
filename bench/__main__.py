"""`make bench`: run the benchmarks, print their figures, exit 1 if a target is missed.

python -m bench            every benchmark
python -m bench append     only the named ones
"""

import importlib
import sys

from harness.database import scratch_database

BENCH_DATABASE = "bank_bench"  # made anew for each benchmark, dropped after it
BENCHMARKS = ["append", "commands", "workers", "replay", "pages", "rebuild"]


def main(names):
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        sys.exit(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    results = {}
    for name in names or BENCHMARKS:
        with scratch_database(BENCH_DATABASE) as conninfo:  # each benchmark on a fresh database
            results[name] = importlib.import_module(f"bench.{name}").run(conninfo)
    missed = [name for name, met in results.items() if not met]
    print(f"\n{len(results) - len(missed)} of {len(results)} benchmarks met their target")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
