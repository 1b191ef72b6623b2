"""What makes the log prove itself: each event's chain hash and MAC, each snapshot's MAC.

An event's chain hash is SHA-256 over the previous event's chain hash (32 zero
bytes before version 1) and the event's canonical content: its aggregate id and
type, version, event type, payload, metadata and created_at, as canonical JSON
(sorted keys, no whitespace, UTF-8, the time in UTC ISO 8601 to the microsecond).
The content is computed from the parsed values, never from the stored text,
because jsonb keeps neither key order nor spacing. The MAC is an HMAC-SHA256 of
the chain hash under one of the application's keys, stored with the key's id.

Someone holding the application's database role but not its keys can append a
row, but cannot make its MAC: the load refuses such a row (an integrity hold, see
eventstore.integrity). Someone who also edits rows (the owner, with the triggers
off) breaks the chain at the row they changed.

Keys come from settings.EVENTSTORE_SIGNING_KEYS, "id:secret,id:secret": the
first signs, every one verifies, so a key is rotated by putting a new one first
and removing the old one only once nothing it signed must still be checked
(which, for an audit trail, is never).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

GENESIS = bytes(32)  # the "previous hash" of version 1
MIN_SECRET_LENGTH = 32
_KEY_ID = re.compile(r"[A-Za-z0-9_.-]{1,32}")

# Each kind of MAC says what it is over, so that one can never pass for another.
EVENT, SNAPSHOT, SEAL = b"eventstore/event\0", b"eventstore/snapshot\0", b"eventstore/seal\0"


class UnsignableValue(ValueError):
    """A value the canonical form cannot hold exactly (a float, NaN, a lone surrogate)."""


def canonical(value: Any) -> bytes:
    """`value` as canonical JSON bytes: what json.dumps(sort_keys=True, separators=(",", ":"),
    ensure_ascii=False) gives, in UTF-8. orjson makes the same bytes ten times faster, and
    hands over to the standard library for what it cannot hold (an integer past 64 bits)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        pass
    try:
        return _encode(value).encode()
    except (TypeError, ValueError, UnicodeEncodeError) as error:
        raise UnsignableValue(str(error)) from None


_encode = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode

# Reading a stored payload or metadata to check it: orjson, for the same Python values as json.loads.
parse = orjson.loads


def refuse_floats(value: Any) -> None:
    """A writer's check before it signs: jsonb does not give a float back as written (1e16 comes
    back as 10000000000000000), so a signed float would never verify. Readers need not check:
    a float in a stored row simply fails its chain."""
    if isinstance(value, float):
        raise UnsignableValue(f"{value!r} is a float; store numbers as integers (money in minor units)")
    if isinstance(value, dict):
        for item in value.values():
            refuse_floats(item)
    elif isinstance(value, list | tuple):
        for item in value:
            refuse_floats(item)


def utc(moment: datetime) -> str:
    """The moment as UTC ISO 8601 to the microsecond (a naive one is taken as UTC, as the database takes it)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    elif moment.utcoffset():
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="microseconds")


def event_content(aggregate_id: Any, aggregate_type: str, version: int, event_type: str,
                  data: Any, metadata: Any, created_at: datetime | str) -> bytes:  # fmt: skip
    """The canonical content of an event: what its chain hash covers (`created_at` as a moment, or
    already as `utc` writes it: the loads have the server write it so)."""
    return canonical({
        "aggregate_id": aggregate_id if isinstance(aggregate_id, str) else str(aggregate_id),
        "aggregate_type": aggregate_type,
        "version": version,
        "event_type": event_type,
        "data": data,
        "metadata": metadata,
        "created_at": created_at if isinstance(created_at, str) else utc(created_at),
    })  # fmt: skip


def link(previous: bytes, content: bytes) -> bytes:
    """The chain hash of an event whose predecessor's chain hash is `previous`."""
    return hashlib.sha256(previous + content).digest()


def sign_event(
    keys: Keys,
    previous: bytes,
    aggregate_id: Any,
    aggregate_type: str,
    version: int,
    event_type: str,
    data: Any,
    metadata: Any,
    created_at: datetime,
) -> tuple[bytes, str, bytes]:
    """(chain hash, key id, MAC) of an event whose predecessor's chain hash is `previous`."""
    refuse_floats(data)
    refuse_floats(metadata)
    content = event_content(aggregate_id, aggregate_type, version, event_type, data, metadata, created_at)
    chain_hash = link(previous, content)
    key_id, mac = keys.sign(EVENT, chain_hash)
    return chain_hash, key_id, mac


def snapshot_content(aggregate_id: Any, version: int, schema: int, state: Any, chain_hash: bytes) -> bytes:
    """What a snapshot's MAC covers: whose state, at which version and schema, and the log it came from."""
    return canonical({
        "aggregate_id": str(aggregate_id),
        "version": version,
        "schema": schema,
        "state": state,
        "chain_hash": chain_hash.hex(),
    })  # fmt: skip


@dataclass(frozen=True)
class Keys:
    """The application's signing keys: `signing` signs, every one verifies."""

    signing: str
    secrets: Mapping[str, bytes]

    def sign(self, kind: bytes, message: bytes) -> tuple[str, bytes]:
        """(key id, MAC) of `message` as a `kind` (EVENT, SNAPSHOT, SEAL)."""
        return self.signing, hmac.digest(self.secrets[self.signing], kind + message, "sha256")

    def verifies(self, kind: bytes, message: bytes, key_id: str | None, mac: bytes | None) -> bool:
        """Whether `mac` is `message`'s MAC as a `kind` under the key `key_id` (an unknown key never verifies)."""
        secret = self.secrets.get(key_id or "")
        if secret is None or mac is None:
            return False
        return hmac.compare_digest(hmac.digest(secret, kind + message, "sha256"), bytes(mac))


def keys() -> Keys:
    """The keys settings.EVENTSTORE_SIGNING_KEYS names (parsed once per value)."""
    return parse_keys(settings.EVENTSTORE_SIGNING_KEYS)


@lru_cache(maxsize=4)
def parse_keys(value: str) -> Keys:
    """Keys from "id:secret,id:secret"; ImproperlyConfigured, saying what is wrong, for anything else."""
    secrets: dict[str, bytes] = {}
    for item in (value or "").split(","):
        key_id, colon, secret = item.strip().partition(":")
        if not colon or not _KEY_ID.fullmatch(key_id):
            raise ImproperlyConfigured(
                "EVENTSTORE_SIGNING_KEYS must be id:secret pairs separated by commas, each id of letters, "
                "digits, '_', '.' or '-' (at most 32)."
            )
        if len(secret) < MIN_SECRET_LENGTH:
            raise ImproperlyConfigured(
                f"EVENTSTORE_SIGNING_KEYS: the secret of key {key_id!r} must be at least {MIN_SECRET_LENGTH} "
                "characters (for example: python -c 'import secrets; print(secrets.token_urlsafe(48))')."
            )
        if key_id in secrets:
            raise ImproperlyConfigured(f"EVENTSTORE_SIGNING_KEYS names key {key_id!r} twice.")
        secrets[key_id] = secret.encode()
    return Keys(signing=next(iter(secrets)), secrets=secrets)
