"""Running a command: one transaction, bounded retries, idempotency.

Every command of every app goes through `run_command`, which gives it:
  * one database transaction for its events, the inline projections and the
    command-log row (all or nothing);
  * retries, with a short random back-off, after a lost race or a serialization
    failure, re-running the whole decision against fresh state each time;
  * idempotency: with a key, the result is recorded in the command log in the
    same transaction, and a repeat returns the first result, storing nothing.

Writers of one aggregate queue rather than race: the handler loads each
aggregate with `load_with_snapshot(..., lock=True)`, which takes a
transaction-level advisory lock first (several aggregates in `lock_key` order,
so opposite transfers cannot deadlock). The unique (aggregate_id, version) key
stays the final guard against any writer that bypasses the lock.

A command costs four round trips: BEGIN; lock and load (one statement); the
append, read models, snapshot and command log (one statement, db.deferred());
COMMIT.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
import uuid
from typing import Any, Callable

from django.db import DatabaseError, transaction

from eventstore import context, db
from eventstore.models import CommandLog
from eventstore.store import ConcurrencyConflict, is_concurrency_conflict

MAX_ATTEMPTS = 5

_RECORD = """
INSERT INTO command_log (key, command, arguments_hash, result, recorded_at)
VALUES (%s, %s, %s, %s::jsonb, now())
ON CONFLICT (key) DO NOTHING
RETURNING 1
"""


class IdempotencyKeyReused(Exception):
    """The key already names a command with other arguments."""

    def __init__(self, key: str, command: str):
        super().__init__(
            f"The idempotency key {key!r} was already used for a different {command} request; "
            "nothing was done. Reload the form and submit it again."
        )


class _KeyTaken(Exception):
    """Another transaction recorded this idempotency key first: undo ours, return theirs."""


def arguments_hash(command: str, arguments: dict[str, Any]) -> str:
    canonical = json.dumps({"command": command, "arguments": arguments}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _retryable(error: Exception) -> bool:
    return isinstance(error, ConcurrencyConflict) or is_concurrency_conflict(error)


def _recorded(key: str, command: str, digest: str) -> CommandLog | None:
    """The command already recorded under `key`, if it is this very command."""
    previous = CommandLog.objects.filter(key=key).first()
    if previous is not None and (previous.command != command or previous.arguments_hash != digest):
        raise IdempotencyKeyReused(key, command)
    return previous


def run_command(
    command: str,
    *,
    arguments: dict[str, Any],
    idempotency_key: str | None,
    handle: Callable[[], tuple[Any, dict]],
    replay: Callable[[dict], Any],
) -> Any:
    """Run `handle` in a transaction; return its value.

    `handle()` loads, decides and appends, and returns (value, result) where
    `result` is a JSON object from which `replay(result)` rebuilds the value for
    a repeated idempotency key.
    """
    digest = arguments_hash(command, arguments)
    command_id = str(uuid.uuid4())
    correlation = context.current()["correlation_id"]
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            with (
                transaction.atomic(),
                context.metadata_context(correlation_id=correlation, causation_id=command_id),
                db.deferred(),
            ):
                value, result = handle()
                if idempotency_key:
                    recorded = db.fetchone(_RECORD, [idempotency_key, command, digest, json.dumps(result)])
                    if recorded is None:
                        raise _KeyTaken
                return value
        except _KeyTaken:
            return replay(_recorded(idempotency_key, command, digest).result)
        except (ConcurrencyConflict, DatabaseError) as error:
            if not _retryable(error):
                raise
            if attempt == MAX_ATTEMPTS:
                if isinstance(error, ConcurrencyConflict):
                    raise
                raise ConcurrencyConflict(None, None, f"{command} gave up after {attempt} attempts") from error
            time.sleep(random.uniform(0, 0.005 * 2**attempt))
        except Exception:
            # A refused repeat must still answer with the first result (say, a
            # withdrawal that emptied the account, submitted twice).
            if idempotency_key and (previous := _recorded(idempotency_key, command, digest)) is not None:
                return replay(previous.result)
            raise
    raise AssertionError("unreachable")
