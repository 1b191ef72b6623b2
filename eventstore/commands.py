"""Running a command: one transaction, bounded retries, idempotency.

Every command of every app goes through `run_command`, which gives it:
  * one database transaction for its events, the inline projections and the
    command-log row (all or nothing);
  * retries, with a short random back-off, after a lost race or a serialization
    failure, re-running the whole decision against fresh state each time;
  * idempotency: with a key, the result is recorded in the command log in the
    same transaction, and a repeat returns the first result, storing nothing.
    Keys are namespaced by the actor (stored as "<actor>:<key>"), so one
    member of staff's key never answers for another's command.

A command is a transaction of its own (durable): run inside someone else's
transaction it could not commit what it promises, so it refuses at once.

Writers of one aggregate queue rather than race: the handler loads each
aggregate with `load_with_snapshot(..., lock=True)`, which takes a
transaction-level advisory lock first (several aggregates in `lock_key` order,
so opposite transfers cannot deadlock). The unique (aggregate_id, version) key
stays the final guard against any writer that bypasses the lock.

A command costs four round trips: BEGIN; lock and load (one statement, which
also reads the database's clock that dates the events); the append, read
models, snapshot and command log (one statement, db.deferred()); COMMIT.
Opening an account loads nothing, so it reads the clock in a round trip of its own.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import random
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable

from django.db import DatabaseError, transaction

from eventstore import context, db
from eventstore.models import CommandLog
from eventstore.store import ConcurrencyConflict, is_concurrency_conflict, recording_appends

MAX_ATTEMPTS = 5
MAX_KEY_LENGTH = 100
_LOCK_NOT_AVAILABLE, _QUERY_CANCELED = "55P03", "57014"

_RECORD = """
INSERT INTO command_log (key, command, arguments_hash, result, recorded_at)
VALUES (%s, %s, %s, %s::jsonb, now())
ON CONFLICT (key) DO NOTHING
RETURNING 1
"""


class IdempotencyKeyReused(Exception):
    """The key already names a command with other arguments."""

    def __init__(self, command: str):
        super().__init__(
            f"This idempotency key was already used for a different {command} request (a form submitted "
            "before with other values); nothing was done. Open the form again to submit a new one."
        )


class InvalidIdempotencyKey(ValueError):
    """The key cannot be stored: not text, blank, too long, or with control characters."""


class Busy(Exception):
    """A lock the command needed was held for longer than the lock timeout; nothing was done."""


@dataclass
class Outcome:
    """What the caller of a command inside `outcome()` learns beyond its value."""

    replayed: bool = False  # answered from the command log: this key had already run


_outcome: contextvars.ContextVar[Outcome | None] = contextvars.ContextVar("command_outcome", default=None)


@contextmanager
def outcome():
    """`with outcome() as seen: service(...)`; then `seen.replayed` tells a repeat from a first run."""
    seen = Outcome()
    token = _outcome.set(seen)
    try:
        yield seen
    finally:
        _outcome.reset(token)


class _KeyTaken(Exception):
    """Another transaction recorded this idempotency key first: undo ours, return theirs."""


def arguments_hash(command: str, arguments: dict[str, Any]) -> str:
    canonical = json.dumps({"command": command, "arguments": arguments}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _retryable(error: Exception) -> bool:
    return isinstance(error, ConcurrencyConflict) or is_concurrency_conflict(error)


def _timed_out(error: DatabaseError) -> bool:
    """A lock wait past lock_timeout, or a statement past statement_timeout (not a cancel by hand)."""
    cause = error.__cause__
    sqlstate = getattr(cause, "sqlstate", None)
    return sqlstate == _LOCK_NOT_AVAILABLE or (sqlstate == _QUERY_CANCELED and "statement timeout" in str(cause))


def check_key(key) -> str:
    if not isinstance(key, str) or not key.strip():
        raise InvalidIdempotencyKey("An idempotency key must be a non-empty string.")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidIdempotencyKey(f"An idempotency key must be at most {MAX_KEY_LENGTH} characters.")
    if not key.isprintable():
        raise InvalidIdempotencyKey("An idempotency key must be printable text, without control characters.")
    if any("\ud800" <= ch <= "\udfff" for ch in key):
        raise InvalidIdempotencyKey("An idempotency key must be valid text (it has a lone surrogate).")
    return key


def namespaced(key: str) -> str:
    """The key as stored: prefixed by whoever is acting, so keys never cross between people."""
    return f"{context.current().get('actor') or 'anonymous'}:{key}"


def recorded_results(keys) -> dict[str, dict]:
    """Of these keys, those the acting person's commands already used, with each one's result."""
    stored = {namespaced(check_key(key)): key for key in keys}
    return {stored[row.key]: row.result for row in CommandLog.objects.filter(key__in=list(stored))}


def _recorded(key: str, command: str, digest: str) -> CommandLog | None:
    """The command already recorded under `key`, if it is this very command."""
    previous = CommandLog.objects.filter(key=key).first()
    if previous is not None and (previous.command != command or previous.arguments_hash != digest):
        raise IdempotencyKeyReused(command)
    return previous


def run_command(
    command: str,
    *,
    arguments: dict[str, Any],
    idempotency_key: str | None,
    handle: Callable[[], tuple[Any, dict]],
    replay: Callable[[dict], Any],
) -> Any:
    """Run `handle` in a transaction of its own; return its value.

    `handle()` loads, decides and appends, and returns (value, result) where
    `result` is a JSON object from which `replay(result)` rebuilds the value for
    a repeated idempotency key. Raises InvalidIdempotencyKey for a key that
    cannot be stored, IdempotencyKeyReused for a key that named another
    command, Busy when a lock wait timed out, and ConcurrencyConflict naming
    the aggregates when every attempt lost a race.
    """
    key = None if idempotency_key is None else namespaced(check_key(idempotency_key))
    digest = arguments_hash(command, arguments)
    command_id = str(uuid.uuid4())
    metadata = context.current()
    # An explicit causation (the admin's "admin:freeze") says more than a fresh id.
    causation = metadata.get("causation_id") or command_id
    for attempt in range(1, MAX_ATTEMPTS + 1):
        appends: list = []
        try:
            with (
                transaction.atomic(durable=True),
                context.metadata_context(correlation_id=metadata["correlation_id"], causation_id=causation),
                recording_appends() as appends,
                db.deferred(),
            ):
                value, result = handle()
                if key:
                    recorded = db.fetchone(_RECORD, [key, command, digest, json.dumps(result)])
                    if recorded is None:
                        raise _KeyTaken
                return value
        except _KeyTaken:
            return _replay(replay, _recorded(key, command, digest))
        except (ConcurrencyConflict, DatabaseError) as error:
            if isinstance(error, DatabaseError) and _timed_out(error):
                raise Busy(f"{command}: {str(error.__cause__).splitlines()[0]}") from error
            if not _retryable(error):
                raise
            if attempt == MAX_ATTEMPTS:
                raise _gave_up(command, attempt, appends) from error
            time.sleep(random.uniform(0, 0.005 * 2**attempt))
        except Exception:
            # A refused repeat must still answer with the first result (say, a
            # withdrawal that emptied the account, submitted twice).
            if key and (previous := _recorded(key, command, digest)) is not None:
                return _replay(replay, previous)
            raise
    raise AssertionError("unreachable")


def _replay(replay: Callable[[dict], Any], previous: CommandLog) -> Any:
    if (seen := _outcome.get()) is not None:
        seen.replayed = True
    return replay(previous.result)


def _gave_up(command: str, attempts: int, appends: list) -> ConcurrencyConflict:
    detail = f"{command} gave up after {attempts} attempts"
    if not appends:  # lost before it appended anything (a deadlock while locking)
        return ConcurrencyConflict(None, None, detail)
    (first_id, first_version), others = appends[0], appends[1:]
    if others:
        detail += "; also " + ", ".join(f"aggregate {i} at version {v}" for i, v in others)
    return ConcurrencyConflict(first_id, first_version, detail)
