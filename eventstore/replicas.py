"""Streaming replicas: which database a page reads from, how far behind it is, and reading one's own writes.

REPLICA_DATABASE_URLS names PostgreSQL streaming replicas of the primary (hot
standbys, as `pg_basebackup -R` makes them). A page reads the bank's data from one
of them; commands, and the loads they decide on, always run on the primary.

* **Read your writes.** After a command, the maker's session keeps the primary's
  WAL position (LSN) at its commit. Their next pages wait until the replica has
  replayed that far, at most REPLICA_WAIT_FOR_WRITES_MS, then read from the
  primary: nobody sees their own change vanish after the redirect.
* **How stale.** Measured by WAL position, not by the replayed transactions'
  times, which look old whenever the primary is idle. Each process notes the
  primary's position whenever it asks for it; a replica is as far behind as the
  oldest noted position it has not yet replayed. A page read more than
  REPLICA_STALE_AFTER_SECONDS behind says so. The figure is a lower bound, exact
  to the interval between a process's requests.
* **Skipped.** A replica that fails (down, or a query cancelled by a conflict
  with recovery) is left alone for REPLICA_RETRY_SECONDS; one more than
  REPLICA_MAX_LAG_SECONDS behind is passed over while it is. The primary serves
  instead, and /healthz and projection_status say why.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connections

from eventstore import db

log = logging.getLogger(__name__)
T = TypeVar("T")

POLL_S = 0.01  # how often a read waiting for its own write asks the replica again
SEEN_KEPT = 10_000  # the primary's positions a process remembers (pruned by age too)


def lsn(text: str) -> int:
    """A pg_lsn as text ('16/B374D848') as the byte position it names."""
    high, _, low = text.partition("/")
    return int(high, 16) << 32 | int(low, 16)


def lsn_text(position: int) -> str:
    """A byte position as PostgreSQL writes a pg_lsn."""
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"


def aliases() -> list[str]:
    """The replicas configured: every database besides the primary."""
    return [alias for alias in settings.DATABASES if alias != db.PRIMARY]


class _Seen:
    """The primary's WAL positions this process has seen, with when (monotonic), oldest first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._times: deque[float] = deque(maxlen=SEEN_KEPT)
        self._positions: deque[int] = deque(maxlen=SEEN_KEPT)

    def note(self, position: int, at: float) -> None:
        with self._lock:
            if self._positions and position <= self._positions[-1]:
                return  # nothing written since: the earlier time is the one that counts
            self._times.append(at)
            self._positions.append(position)
            horizon = at - 2 * settings.REPLICA_MAX_LAG_SECONDS
            while len(self._times) > 1 and self._times[1] < horizon:
                self._times.popleft()
                self._positions.popleft()

    def behind(self, replayed: int, now: float) -> float:
        """Seconds since the primary first stood past `replayed`, as far as this process saw (0: not seen)."""
        with self._lock:
            first = bisect.bisect_right(self._positions, replayed)
            return now - self._times[first] if first < len(self._times) else 0.0


_seen = _Seen()
_failed_until: dict[str, float] = {}


def primary_position() -> int:
    """Where the primary's WAL stands now (past every commit it has acknowledged); noted as seen."""
    row = db.fetchone("SELECT pg_current_wal_lsn()::text")
    assert row is not None
    position = lsn(row[0])
    _seen.note(position, time.monotonic())
    return position


def replayed(alias: str) -> int | None:
    """How far `alias` has replayed the primary's WAL (None: it is not replaying, so not a replica)."""
    row = db.fetchone("SELECT pg_last_wal_replay_lsn()::text", alias=alias)
    return lsn(row[0]) if row and row[0] is not None else None


def _replayed_by(alias: str, position: int | None, deadline: float) -> int | None:
    """How far `alias` has replayed, asked again every POLL_S until it reaches `position` (None: no
    wait) or `deadline` (monotonic) passes."""
    reached = replayed(alias)
    while reached is not None and position is not None and reached < position and time.monotonic() < deadline:
        time.sleep(POLL_S)
        reached = replayed(alias)
    return reached


@dataclass(frozen=True)
class Reading:
    """Where a request reads the bank's data from, and how far behind the primary that is (seconds)."""

    alias: str
    behind: float = 0.0


def choose(*, after: int | None = None) -> Reading:
    """A replica to read from that has replayed `after` (waiting for it a little), or the primary.

    With no replica configured this asks nothing of any database.
    """
    candidates = [alias for alias in aliases() if _failed_until.get(alias, 0.0) <= time.monotonic()]
    if not candidates:
        return Reading(db.PRIMARY)
    primary = primary_position()
    if after is not None and after > primary:
        after = None  # a position this primary never reached: it was restored or replaced since
    deadline = time.monotonic() + settings.REPLICA_WAIT_FOR_WRITES_MS / 1000
    for alias in random.sample(candidates, len(candidates)):  # spreads the pages over the replicas
        try:
            position = _replayed_by(alias, after, deadline)
        except DatabaseError as error:
            failed(alias, error)
            continue
        if position is None or (after is not None and position < after):
            continue
        behind = _seen.behind(position, time.monotonic()) if position < primary else 0.0
        if behind <= settings.REPLICA_MAX_LAG_SECONDS:
            return Reading(alias, behind)
    return Reading(db.PRIMARY)


def failed(alias: str, error: Exception) -> None:
    """Leave `alias` alone for REPLICA_RETRY_SECONDS, and drop its connection (it may be broken)."""
    _failed_until[alias] = time.monotonic() + settings.REPLICA_RETRY_SECONDS
    log.warning("replica %s failed; reading from the primary for %s s: %s", alias, settings.REPLICA_RETRY_SECONDS,
                _first_line(error))  # fmt: skip
    with contextlib.suppress(DatabaseError):
        connections[alias].close()


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def is_replica_failure(error: BaseException) -> bool:
    """Whether a read on a replica failed in a way the primary would not: the replica went away, or
    cancelled the query to replay the primary's changes (a conflict with recovery, or a replayed lock
    waited on past the lock timeout). Not a statement timeout: the primary would take as long, and
    reading again would double a wait that is already past what staff should bear."""
    if db.sqlstate(error) == db.QUERY_CANCELED:
        return False
    return isinstance(error, OperationalError | InterfaceError)


class LaterReads:
    """Reads that outlive their request, such as a long export's chunks, made after the view has
    returned: from the database the request chose, and, once that replica fails, from the primary.
    Each read should be short (a chunk), so a replica that fails costs one chunk read again."""

    def __init__(self) -> None:
        self.alias = db.reads()

    def __call__(self, read: Callable[[], T]) -> T:
        if self.alias != db.PRIMARY:
            try:
                with db.reading_from(self.alias):
                    return read()
            except DatabaseError as error:
                if not is_replica_failure(error):
                    raise
                failed(self.alias, error)
                self.alias = db.PRIMARY
        with db.reading_from(db.PRIMARY):
            return read()


@dataclass(frozen=True)
class State:
    """A replica as /healthz and projection_status report it."""

    alias: str
    problem: str  # why pages skip it; "" when they read from it. Shown to anyone by /healthz.
    replayed: int | None = None
    bytes_behind: int | None = None
    seconds_behind: float | None = None  # a lower bound unless caught_up
    caught_up: bool = False  # with the primary's position when asked, within the time allowed
    detail: str = ""  # the driver's words (host, port): for the operators' projection_status only


def states(*, settle: float = 0.0) -> list[State]:
    """Each replica's state. A replica behind the primary's position is given up to `settle` seconds
    to replay it: how long it took is its lag, measured by position."""
    found: list[State] = []
    for alias in aliases():
        primary, start = primary_position(), time.monotonic()  # the primary failing is no replica's fault
        try:
            position = _replayed_by(alias, primary, start + settle)
        except DatabaseError as error:
            found.append(State(alias, "unreachable", detail=_first_line(error)))
            continue
        if position is None:
            found.append(State(alias, "not replaying the primary's WAL (not a standby)"))
            continue
        now = time.monotonic()
        behind = now - start if position >= primary else max(_seen.behind(position, now), now - start)
        problem = f"{behind:.1f} s behind the primary" if behind > settings.REPLICA_MAX_LAG_SECONDS else ""
        found.append(State(alias, problem, position, max(primary - position, 0), behind, position >= primary))
    return found
