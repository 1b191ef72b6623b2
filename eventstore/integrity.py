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

import json
import uuid
from datetime import datetime
from typing import Any, NamedTuple

from eventstore import signing


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
        self._signed: list[Row] = []

    def follow(self, row: Row) -> dict[str, Any]:
        """Check that `row` links onto the chain; return its payload, parsed as stored."""
        try:
            data = json.loads(row.payload or "null")
            metadata = None if row.metadata is None else json.loads(row.metadata)
            assert row.event_type is not None and row.aggregate_type is not None and row.at is not None
            content = signing.event_content(self.aggregate_id, row.aggregate_type, row.version, row.event_type,
                                            data, metadata, row.at)  # fmt: skip
        except (AssertionError, ValueError) as error:
            raise IntegrityHold(self.aggregate_id, row.version, f"its fields cannot be read ({error})") from None
        head = signing.link(self.head, content)
        if row.chain_hash is None:
            self._unsigned(row, head)
        elif head != row.chain_hash:
            raise IntegrityHold(self.aggregate_id, row.version, "it is not the event that was signed at this place")
        else:
            self._signed.append(row)
        self.head, self.version = head, row.version
        return data  # type: ignore[no-any-return]  # a payload is whatever JSON the row holds

    def _unsigned(self, row: Row, head: bytes) -> None:
        """An event stored before signing: only the seal can vouch for it."""
        seal = self.seal
        if seal is None or row.version > seal.version or self._signed:
            raise IntegrityHold(self.aggregate_id, row.version, "it is not signed")
        if row.version == seal.version:
            assert seal.chain_hash is not None and seal.aggregate_type is not None
            content = seal_content(self.aggregate_id, seal.aggregate_type, seal.version, bytes(seal.chain_hash))
            if head != seal.chain_hash or not signing.keys().verifies(signing.SEAL, content, seal.key_id, seal.mac):
                raise IntegrityHold(self.aggregate_id, row.version, "the history up to it is not the one sealed")

    def close(self) -> bytes:
        """Check the MAC of the last signed event followed (and, if it fails, name the first bad one)."""
        keys = signing.keys()
        if self._signed and not _verifies(keys, self._signed[-1]):
            first = next(row for row in self._signed if not _verifies(keys, row))
            raise IntegrityHold(self.aggregate_id, first.version, "its signature is not valid")
        return self.head


def _verifies(keys: signing.Keys, row: Row) -> bool:
    return keys.verifies(signing.EVENT, bytes(row.chain_hash or b""), row.key_id, row.mac)
