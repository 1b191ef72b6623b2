"""`make soak`: the bank under load and faults, then every invariant checked by code.

Worker processes run random commands (every command, transfers included, some
submitted twice with one idempotency key) against a few hot accounts and many
cold ones, while a chaos process kills database connections, cancels
statements and holds long transactions open. A command whose outcome a worker
could not see (its connection died) is sent again with the same key, as a
careful client would, until it gets a definite answer.

    python -m soak [--seconds 300] [--workers 8] [--accounts 200] [--hot 4]
"""

import argparse
import sys
import time

from soak.run import soak


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=300, help="How long the workers run (default 300).")
    parser.add_argument("--workers", type=int, default=8, help="Worker processes (default 8).")
    parser.add_argument("--accounts", type=int, default=200, help="Accounts opened before the run (default 200).")
    parser.add_argument("--hot", type=int, default=4, help="How many of them take half the traffic (default 4).")
    parser.add_argument("--seed", type=int, default=None)
    options = parser.parse_args(argv)
    # Workers pick cold accounts from those past the hot ones: there must be some.
    if options.seconds <= 0 or options.workers < 1 or options.hot < 2 or options.accounts <= options.hot:
        parser.error("need --seconds > 0, --workers >= 1, --hot >= 2 and --accounts > --hot")
    started = time.monotonic()
    violations = soak(options)
    print(f"\nsoak finished in {time.monotonic() - started:.0f} s with {violations} violations")
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
