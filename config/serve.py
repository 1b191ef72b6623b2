"""`make serve`: the back-office as production runs it on one host.

gunicorn serves config.production (static files collected, then served by
whitenoise) and the projection runner works beside it. SIGTERM or SIGINT stops
both cleanly: gunicorn lets the requests in hand finish, the runner its batch,
and serve exits 0. If either ends on its own, serve stops the other and exits
with its status, so the supervisor (systemd, a container runtime) restarts them.

Needs DATABASE_URL (the application role), EVENTSTORE_SIGNING_KEYS, SECRET_KEY
and ALLOWED_HOSTS; says plainly which are missing, and never starts the
embedded database. RUNNER_DATABASE_URL (the runner role) defaults to
DATABASE_URL. config/gunicorn.py reads BIND, WEB_CONCURRENCY and the rest.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from config.environment import missing

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    if absent := missing(os.environ):
        print("make serve needs, in the environment (production never starts the embedded database):", file=sys.stderr)
        for variable in absent:
            print(f"  {variable}", file=sys.stderr)
        return 2
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.production"}
    manage = [sys.executable, "manage.py"]
    collected = subprocess.run([*manage, "collectstatic", "--noinput", "--verbosity", "0"], cwd=ROOT, env=env)
    if collected.returncode:
        return collected.returncode
    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--config", "python:config.gunicorn", "config.wsgi:application"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    runner_env = env | {"DATABASE_URL": os.environ.get("RUNNER_DATABASE_URL") or env["DATABASE_URL"]}
    runner = subprocess.Popen([*manage, "run_projections"], cwd=ROOT, env=runner_env)
    return _supervise(web, runner)


def _supervise(*children: subprocess.Popen[bytes]) -> int:
    """Wait until asked to stop or until a child ends; stop the others; the status to exit with."""
    asked = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal asked
        asked = True

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)
    while not asked and all(child.poll() is None for child in children):
        time.sleep(0.2)
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    statuses = [child.wait() for child in children]
    if asked:  # a clean stop, unless a child failed on its way out
        return next((status for status in statuses if status not in (0, -signal.SIGTERM)), 0)
    return next((status for status in statuses if status), 1)


if __name__ == "__main__":
    sys.exit(main())
