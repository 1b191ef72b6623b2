"""The benchmarks (`make bench`; see bench/__main__.py)."""

import os

# A benchmark prints figures: a log line for every request, command or runner batch would bury them.
os.environ.setdefault("LOG_LEVEL", "WARNING")
