"""run_projections: keep the asynchronous projections current, one runner per projection."""

import logging
import signal
import sys
import time
from types import FrameType
from typing import Any

import psycopg
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from django.db.backends.base.base import BaseDatabaseWrapper

from eventstore import db, projections, registry
from eventstore.context import metadata_context, system_actor

STOPPED = 4  # exit status of --once when a projection stopped at an event it cannot apply
log = logging.getLogger("eventstore.runner")  # its lines go out as the site's logs do (config/logs.py)
# A runner whose host dies (power, network) keeps its projections' locks until the server finds its
# connection dead. With these, the server probes an idle connection after 10 s and gives up on it
# after three unanswered probes 5 s apart: a runner waiting on another host takes over within a
# minute. (Over a Unix socket there is nothing to probe; the server ignores them.)
KEEPALIVES = {"tcp_keepalives_idle": "10", "tcp_keepalives_interval": "5", "tcp_keepalives_count": "3"}


class Command(BaseCommand):
    help = (
        "Catch every asynchronous projection up from its checkpoint, then wait for new events "
        "(LISTEN/NOTIFY, with polling as a fallback) and apply them in batches. Each projection "
        "has one runner at a time, held by a PostgreSQL advisory lock: a second runner waits. "
        "A projection that reaches an event it cannot apply stops there, says so in one line on "
        "the log and is released; the others go on (--once then exits 4). "
        "The runner holding projections also does the apps' periodic chores (expiring approval requests). "
        "Stops cleanly on SIGINT or SIGTERM, after the batch in hand."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("names", nargs="*", help="Projections to run (default: every asynchronous one).")
        parser.add_argument("--batch", type=int, default=projections.CHUNK, help="Events per transaction.")
        parser.add_argument("--poll", type=float, default=1.0, help="Seconds between checks without a notification.")
        parser.add_argument("--once", action="store_true", help="Catch up once and exit (for cron and scripts).")

    def handle(self, *args: Any, names: list[str], batch: int, poll: float, once: bool, **options: Any) -> None:
        if batch < 1 or poll <= 0:
            raise CommandError("--batch must be 1 or more and --poll above 0.")
        try:
            wanted = projections.asynchronous(names)
        except KeyError as error:
            raise CommandError(error.args[0]) from None
        if not wanted:
            raise CommandError("there is no asynchronous projection to run.")
        keep_alive(connection)
        self.stopping = False
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._stop)
        with metadata_context(actor=system_actor("run_projections")):
            self._run(wanted, batch, poll, once)

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def _run(self, wanted: list[projections.Projection], batch: int, poll: float, once: bool) -> None:
        owned: list[projections.Projection] = []
        told: set[str] = set()
        stopped: list[projections.Projection] = []
        chores_due = {chore.name: 0.0 for chore in registry.chores}
        listener = psycopg.connect(**db.conninfo(), autocommit=True)
        try:
            listener.execute("LISTEN events_appended")
            while not self.stopping:
                for projection in wanted:
                    if projection in owned or projection in stopped:
                        continue
                    if projections.try_lock_runner(projection.name):
                        owned.append(projection)
                        log.info("running %s", projection.name)
                    elif projection.name not in told:
                        told.add(projection.name)
                        log.info("waiting: another runner holds %s", projection.name)
                busy = False  # a projection had a whole batch: more may be waiting
                for projection in list(owned):
                    try:
                        busy |= self._step(projection, batch)
                    except projections.ProjectionStopped as stop:
                        # Trying again would stop at the same event: leave it to a runner
                        # started once the code or the event is fixed.
                        owned.remove(projection)
                        projections.unlock_runner(projection.name)
                        stopped.append(projection)
                        log.error("%s", stop)
                if owned:  # the active runner; one waiting to take over does none
                    self._chores(chores_due)
                if busy:  # one batch per projection a round: none starves the others or the locks it waits for
                    continue
                if once:
                    if stopped:
                        sys.exit(STOPPED)  # its line said why: a CommandError would say it twice
                    if len(owned) < len(wanted):
                        raise CommandError("another runner holds some of these projections.", returncode=3)
                    break
                for _ in listener.notifies(timeout=poll, stop_after=1):
                    pass
        finally:
            for projection in owned:
                projections.unlock_runner(projection.name)
            listener.close()
        log.info("stopped")

    def _chores(self, due: dict[str, float]) -> None:
        for chore in registry.chores:
            if time.monotonic() < due[chore.name]:
                continue
            due[chore.name] = time.monotonic() + chore.every_seconds
            done = chore.run()
            if done:
                log.info("%s: %s", chore.name, done)

    def _step(self, projection: projections.Projection, batch: int) -> bool:
        """Apply one batch to `projection`; whether it was a whole one (more may be waiting)."""
        applied = projections.catch_up(projection, limit=batch)
        if applied:
            log.info("%s: applied %d events", projection.name, applied)
        return applied == batch


def keep_alive(django_connection: BaseDatabaseWrapper) -> None:
    """Have the server probe this connection, which holds the runner's locks (KEEPALIVES)."""
    with django_connection.cursor() as cursor:
        for name, value in KEEPALIVES.items():
            cursor.execute("SELECT set_config(%s, %s, false)", [name, value])
