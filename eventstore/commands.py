"""Running a command: one transaction, writers of one aggregate in line, bounded retries.

Every command of every app goes through `run_command`, which gives it:
  * one database transaction for the command-log row, its events and the inline
    projections (all or nothing);
  * a transaction-level advisory lock per aggregate it writes, taken in a fixed
    order, so two commands on one account queue instead of failing, and two
    opposite transfers cannot deadlock; the unique (aggregate_id, version) key
    stays the final guard against any writer that bypasses the lock;
  * retries, with a short random back-off, after a lost race or a serialization
    failure, re-running the whole decision against fresh state each time;
  * idempotency: with a key, the first result is recorded in the command log,
    and a repeat returns it without storing anything.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
import uuid
from typing import Any, Callable, Iterable

from django.db import DatabaseError, IntegrityError, connection, transaction

from eventstore import context
from eventstore.models import CommandLog
from eventstore.store import ConcurrencyConflict

MAX_ATTEMPTS = 5
_RETRYABLE_SQLSTATES = {"40001", "40P01"}
_COMMAND_LOG_PKEY = "command_log_pkey"


class IdempotencyKeyReused(Exception):
    """The key already names a command with other arguments."""

    def __init__(self, key: str, command: str):
        super().__init__(
            f"The idempotency key {key!r} was already used for a different {command} request; "
            "nothing was done. Reload the form and submit it again."
        )


def arguments_hash(command: str, arguments: dict[str, Any]) -> str:
    canonical = json.dumps({"command": command, "arguments": arguments}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def lock_key(aggregate_id: uuid.UUID) -> int:
    """A signed 64-bit advisory-lock key for one aggregate (the bigint lock space)."""
    return int.from_bytes(aggregate_id.bytes[:8], "big", signed=True)


def _retryable(error: Exception) -> bool:
    if isinstance(error, ConcurrencyConflict):
        return True
    cause = getattr(error, "__cause__", None)
    if getattr(cause, "sqlstate", None) in _RETRYABLE_SQLSTATES:
        return True
    # Two requests with one idempotency key raced: the loser retries and finds the winner's row.
    return isinstance(error, IntegrityError) and getattr(getattr(cause, "diag", None), "constraint_name", None) == _COMMAND_LOG_PKEY


def run_command(
    command: str,
    *,
    arguments: dict[str, Any],
    idempotency_key: str | None,
    aggregate_ids: Iterable[uuid.UUID],
    handle: Callable[[], tuple[Any, dict]],
    replay: Callable[[dict], Any],
) -> Any:
    """Run `handle` in a transaction with the aggregates locked; return its value.

    `handle()` loads, decides and appends, and returns (value, result) where
    `result` is a JSON object from which `replay(result)` rebuilds the value for
    a repeated idempotency key.
    """
    digest = arguments_hash(command, arguments)
    keys = sorted({lock_key(aggregate_id) for aggregate_id in aggregate_ids})
    lock_sql = "SELECT " + ", ".join(["pg_advisory_xact_lock(%s)"] * len(keys)) if keys else None
    command_id = str(uuid.uuid4())
    correlation = context.current()["correlation_id"]
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            with transaction.atomic(), context.metadata_context(correlation_id=correlation, causation_id=command_id):
                if lock_sql:
                    with connection.cursor() as cursor:
                        cursor.execute(lock_sql, keys)
                if idempotency_key:
                    previous = CommandLog.objects.filter(key=idempotency_key).first()
                    if previous is not None:
                        if previous.command != command or previous.arguments_hash != digest:
                            raise IdempotencyKeyReused(idempotency_key, command)
                        return replay(previous.result)
                value, result = handle()
                if idempotency_key:
                    CommandLog.objects.create(
                        key=idempotency_key, command=command, arguments_hash=digest, result=result
                    )
                return value
        except (ConcurrencyConflict, DatabaseError) as error:
            if not _retryable(error):
                raise
            if attempt == MAX_ATTEMPTS:
                if isinstance(error, ConcurrencyConflict):
                    raise
                raise ConcurrencyConflict(None, None, f"{command} gave up after {attempt} attempts") from error
            time.sleep(random.uniform(0, 0.005 * 2**attempt))
    raise AssertionError("unreachable")
