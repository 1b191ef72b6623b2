"""Checking what a load read before anything decides on it: the integrity hold.

A load follows an aggregate's chain from a trusted start (version 0, a snapshot
whose MAC holds, or a state this process committed itself), recomputing each
event's chain hash from its fields, and checks the MAC at the end of what it read.
Since each hash covers the one before it, that one MAC vouches for every event up
to it; only when it fails are the MACs read one by one, to name the first bad
event. Events stored before signing carry no signature: the seal's MAC vouches
for their chain head, checked when a load reaches it.

Any failure is an IntegrityHold: every command on that aggregate is refused until
the owner has looked (and perhaps quarantined a forged row), and its page shows
the first bad version. A read never writes.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, NamedTuple

import orjson

from eventstore import signing
from eventstore.upcasting import upcasters


class IntegrityHold(Exception):
    """An aggregate's stored history failed verification at `version`: nothing may act on it."""

    def __init__(self, aggregate_id: uuid.UUID, version: int, reason: str) -> None:
        self.aggregate_id, self.version, self.reason = aggregate_id, version, reason
        super().__init__(
            f"The history of {aggregate_id} failed its integrity check at version {version}: {reason}. "
            "Nothing was done; every command on it is refused until an administrator investigates."
        )


class Row(NamedTuple):
    """One row of events_load or events_load_after (migration 0013)."""

    kind: str | None  # "clock", "seal", "snapshot", or None for an event
    id: int | None  # an event's id; on the clock row, how many of the aggregate's events are quarantined
    event_type: str | None
    payload: str | None
    version: int
    at: datetime | None
    aggregate_type: str | None
    metadata: str | None
    chain_hash: bytes | None
    key_id: str | None
    mac: bytes | None
    created: str | None  # an event's created_at, as its chain hash covers it (signing.utc)


def seal_content(aggregate_id: Any, aggregate_type: str, version: int, chain_hash: bytes) -> bytes:
    """What a seal's MAC covers: one aggregate's chain head at the moment of sealing."""
    return signing.canonical({
        "aggregate_id": str(aggregate_id),
        "aggregate_type": aggregate_type,
        "version": version,
        "chain_hash": chain_hash.hex(),
    })  # fmt: skip


def snapshot_verifies(aggregate_id: uuid.UUID, schema: int, row: Row, state: Any) -> bool:
    """Whether a snapshot row's MAC holds for its state, version and chain hash."""
    if row.chain_hash is None:
        return False
    content = signing.snapshot_content(aggregate_id, row.version, schema, state, bytes(row.chain_hash))
    return signing.keys().verifies(signing.SNAPSHOT, content, row.key_id, row.mac)


class Chain:
    """An aggregate's chain, followed event by event from a head this process trusts."""

    def __init__(self, aggregate_id: uuid.UUID, head: bytes, version: int, seal: Row | None) -> None:
        self.aggregate_id, self.head, self.version, self.seal = aggregate_id, head, version, seal
        self._id = str(aggregate_id)  # made once: every event's content names it
        self._signed: list[tuple[Any, ...]] = []

    def follow(self, rows: Sequence[tuple[Any, ...]]) -> Iterator[tuple[int, str, Any]]:
        """Check that the event rows (of events_load, in version order) link onto the chain, yielding
        them as the fold takes them: (version, event type, payload upcast to its current schema).

        The loop of every load of a long history: plain tuples, and names bound once. The fold
        consumes each event as it is checked, so a long history's payloads are never all held
        at once (which would cost more in garbage collection than the fold itself).
        Nothing may act on the fold until `close` has checked the signatures.
        """
        parse, dumps, sha256, upcast = signing.parse, orjson.dumps, hashlib.sha256, upcasters.upcast
        head, ident, version, signed = self.head, self._id, self.version, self._signed
        sealed = self.seal.version if self.seal is not None else 0  # unsigned events up to here need no more check
        sign = signed.append
        try:
            for row in rows:
                version, event_type, data, metadata = row[4], row[2], parse(row[3]), row[7]
                content = {
                    "aggregate_id": ident, "aggregate_type": row[6], "version": version, "event_type": event_type,
                    "data": data, "metadata": None if metadata is None else parse(metadata), "created_at": row[11],
                }  # fmt: skip
                try:
                    head = sha256(head + dumps(content, option=orjson.OPT_SORT_KEYS)).digest()
                except TypeError:  # a value orjson cannot hold: the slow path
                    head = sha256(head + signing.canonical(content)).digest()
                chain_hash = row[8]
                if chain_hash is None:
                    if version >= sealed or signed:
                        self._unsigned(version, head)
                elif head != chain_hash:
                    raise IntegrityHold(self.aggregate_id, version, "it is not the event that was signed at this place")
                else:
                    sign(row)
                yield version, event_type, upcast(event_type, data)
        except (TypeError, ValueError) as error:
            raise IntegrityHold(self.aggregate_id, version, f"its fields cannot be read ({error})") from None
        self.head, self.version = head, version

    def _unsigned(self, version: int, head: bytes) -> None:
        """An event stored before signing: only the seal can vouch for it."""
        seal = self.seal
        if seal is None or version > seal.version or self._signed:
            raise IntegrityHold(self.aggregate_id, version, "it is not signed")
        if version == seal.version:
            assert seal.chain_hash is not None and seal.aggregate_type is not None
            content = seal_content(self.aggregate_id, seal.aggregate_type, seal.version, bytes(seal.chain_hash))
            if head != seal.chain_hash or not signing.keys().verifies(signing.SEAL, content, seal.key_id, seal.mac):
                raise IntegrityHold(self.aggregate_id, version, "the history up to it is not the one sealed")

    def close(self) -> bytes:
        """Check the MAC of the last signed event followed (and, if it fails, name the first bad one)."""
        keys = signing.keys()
        if self._signed and not _verifies(keys, self._signed[-1]):
            first = next(row for row in self._signed if not _verifies(keys, row))
            raise IntegrityHold(self.aggregate_id, first[4], "its signature is not valid")
        return self.head


def _verifies(keys: signing.Keys, row: tuple[Any, ...]) -> bool:
    """Whether an event row's MAC (its columns chain_hash, key_id, mac) holds."""
    return keys.verifies(signing.EVENT, bytes(row[8] or b""), row[9], row[10])
