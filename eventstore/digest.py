"""The daily digest: one day's chain heads and a root hash over them, to keep outside the database.

A log signed with keys the application holds cannot prove itself against someone
who holds those keys and the owner's role: they could rewrite a history and sign
it again. A digest written each day to storage nobody can change (WORM storage,
an email to the auditors) can: `verify_event_store --digest FILE` recomputes the
day from the log and names every aggregate whose head, or whose events that day,
no longer match.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from typing import Any

from django.db import connection

from eventstore import store

FORMAT = "eventstore-digest/1"

# Each aggregate written that day (UTC): its first and last version that day, and the last one's
# chain hash (NULL for an event stored before signing: worked out from the log).
DAY = """
SELECT e.aggregate_id, min(e.version), max(e.version),
       (SELECT l.chain_hash FROM events l WHERE l.aggregate_id = e.aggregate_id AND l.version = max(e.version))
  FROM events e
 WHERE e.created_at >= %s AND e.created_at < %s
   AND NOT EXISTS (SELECT 1 FROM event_quarantine q WHERE q.event_id = e.id)
 GROUP BY e.aggregate_id ORDER BY e.aggregate_id
"""


def heads(day: datetime.date) -> list[list[Any]]:
    """[aggregate id, first version, last version, chain hash (hex)] of each aggregate written on `day`."""
    start = datetime.datetime.combine(day, datetime.time.min, tzinfo=datetime.UTC)
    with connection.cursor() as cursor:
        cursor.execute(DAY, [start, start + datetime.timedelta(days=1)])
        rows = cursor.fetchall()
    return [
        [str(aggregate_id), first, last, bytes(chain or store.chain_head(aggregate_id, last)).hex()]
        for aggregate_id, first, last, chain in rows
    ]


def root(day_heads: list[list[Any]]) -> str:
    """One hash over the day's heads, in aggregate order."""
    digest = hashlib.sha256()
    for aggregate_id, first, last, chain in day_heads:
        digest.update(f"{aggregate_id}:{first}:{last}:{chain}\n".encode())
    return digest.hexdigest()


def make(day: datetime.date) -> dict[str, Any]:
    day_heads = heads(day)
    return {"format": FORMAT, "date": day.isoformat(), "aggregates": len(day_heads), "root": root(day_heads),
            "heads": day_heads}  # fmt: skip


def differences(kept: dict[str, Any]) -> list[str]:
    """What no longer matches a digest kept outside the database (nothing: the log still matches it)."""
    if kept.get("format") != FORMAT:
        return [f"not a digest this version can read (format {kept.get('format')!r})"]
    day = datetime.date.fromisoformat(kept["date"])
    now = {row[0]: row for row in heads(day)}
    then = {row[0]: row for row in kept["heads"]}
    found = [f"{day}: {aggregate_id} had no event that day; now it has" for aggregate_id in sorted(now.keys() - then)]
    found += [
        f"{day}: {aggregate_id} had events that day; now it has none" for aggregate_id in sorted(then.keys() - now)
    ]
    for aggregate_id in sorted(now.keys() & then):
        if now[aggregate_id] != then[aggregate_id]:
            _, first, last, chain = then[aggregate_id]
            found.append(f"{day}: {aggregate_id} versions {first}..{last} ending in {chain[:16]}… are not what the "
                         f"log holds now (versions {now[aggregate_id][1]}..{now[aggregate_id][2]} ending in "
                         f"{now[aggregate_id][3][:16]}…)")  # fmt: skip
    if not found and root(list(then.values())) != kept["root"]:
        found.append(f"{day}: the digest's root does not match its own heads: the file was changed")
    return found


def load(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as file:
        kept: dict[str, Any] = json.load(file)
    return kept
