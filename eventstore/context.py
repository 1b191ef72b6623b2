"""Who did it, why, and as part of what: the metadata stored with every event.

A context variable carries it, so services never take it as an argument: the
middleware fills it for each request, a management command for itself, and an
explicit `metadata_context(...)` overrides either for the code inside it.
"""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
    from django.http import HttpRequest, HttpResponseBase

KEYS = ("correlation_id", "causation_id", "actor_id", "actor", "client_address", "request_id")

_metadata: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "event_metadata", default=MappingProxyType({})
)


def current() -> dict[str, Any]:
    """The metadata in force, with a fresh correlation id if none was set."""
    values = dict(_metadata.get())
    if "correlation_id" not in values:  # not setdefault: a uuid4 per call costs a command a few percent
        values["correlation_id"] = str(uuid.uuid4())
    return values


def in_force() -> Mapping[str, Any]:
    """The metadata in force as it is, for a log line (which must not mint a correlation id)."""
    return _metadata.get()


@contextmanager
def metadata_context(**values: Any) -> Iterator[None]:
    """Lay `values` over the metadata in force for the code inside the block."""
    unknown = set(values) - set(KEYS)
    if unknown:
        raise TypeError(f"unknown event metadata: {', '.join(sorted(unknown))}")
    token = _metadata.set({**_metadata.get(), **{k: v for k, v in values.items() if v is not None}})
    try:
        yield
    finally:
        _metadata.reset(token)


def system_actor(name: str) -> str:
    """The actor recorded for work no person started, such as a management command."""
    return f"system:{name}"


class EventMetadataMiddleware:
    """Fills the metadata context for every request (after AuthenticationMiddleware).

    Each request is its own correlation; the request id is also sent back in the
    X-Request-ID header so staff can quote it when reporting a problem.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        request_id = str(uuid.uuid4())
        request.request_id = request_id  # type: ignore[attr-defined]  # our own attribute: no stub can declare it
        user: AbstractBaseUser | AnonymousUser | None = getattr(request, "user", None)
        signed_in = user if user is not None and user.is_authenticated else None
        with metadata_context(
            request_id=request_id,
            correlation_id=request_id,
            actor_id=signed_in.pk if signed_in is not None else None,
            actor=signed_in.get_username() if signed_in is not None else "anonymous",
            client_address=request.META.get("REMOTE_ADDR"),
        ):
            response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response
