"""What every web request gets around its view: NUL bytes refused, database waits bounded, a log line.

* A NUL byte cannot be stored in PostgreSQL text, so one in the address, the
  query string or a form reaches the database as an error. Forms refuse it
  field by field; this refuses it for every page at once, the admin's filters
  and object addresses included, with a 400 that says what was wrong.
* A member of staff should not wait behind another transaction for minutes:
  the web's connections get a lock timeout and a statement timeout
  (WEB_LOCK_TIMEOUT_MS, WEB_STATEMENT_TIMEOUT_MS). A command that waits too long
  for its account's lock is refused with "the account is busy; nothing was
  done". Management commands and projection runners keep the server's defaults:
  a rebuild may rightly run for an hour.
* Each request is logged once it is answered (method, path, status, milliseconds),
  inside its event metadata, so the line carries the request id, correlation id
  and actor that a command's events carry too (config/logs.py). The path only:
  a query string may hold a customer's name, and the database its reads came from.
* With streaming replicas, a page reads the bank's data from one of them, and a
  command's maker reads their own writes (ReplicaReadsMiddleware, eventstore.replicas).
"""

from __future__ import annotations

import contextvars
import logging
import time

from django.conf import settings
from django.contrib.messages.storage import default_storage
from django.db.backends.signals import connection_created
from django.dispatch import receiver
from django.shortcuts import render

from eventstore import db, replicas

log = logging.getLogger("bank.requests")
_serving_request: contextvars.ContextVar[bool] = contextvars.ContextVar("serving_request", default=False)


def _has_nul(request) -> bool:
    if "\x00" in request.path:
        return True
    for data in (request.GET, request.POST):
        for key, values in data.lists():
            if "\x00" in key or any("\x00" in value for value in values):
                return True
    return False


class RefuseNulMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if _has_nul(request):
            return render(
                request,
                "400.html",
                {"reason": "The address or the form contained a NUL character (%00), which no field accepts."},
                status=400,
            )
        return self.get_response(request)


class RequestLogMiddleware:
    """After EventMetadataMiddleware, so that the line is written inside the request's metadata."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        ms = round((time.perf_counter() - started) * 1000, 1)
        reading = getattr(request, "reading", None)
        log.info(
            "%s %s %s %.1f ms", request.method, request.path, response.status_code, ms,
            extra={"method": request.method, "path": request.path, "status": response.status_code, "ms": ms,
                   "reads": reading.alias if reading else db.PRIMARY},
        )  # fmt: skip
        return response


READ_AFTER = "read_after_lsn"  # the session's key for the primary's position after its last command
READS = ("GET", "HEAD")


class ReplicaReadsMiddleware:
    """Where a request reads the bank's data: a staff member's page from a replica that has replayed
    their last command (eventstore.replicas.choose), a form's POST from the primary it decides on.
    After a POST, the session keeps the primary's position, for the pages that follow.

    A page whose replica fails mid-way (it stopped, or cancelled a query in a conflict with
    recovery) is read again from the primary. Its views only read the bank's data, but a page may
    take something out of the session (a form sent back with its refusal, read once) or queue a
    message: the second run starts from the session and messages the first one started from.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not replicas.aliases() or not request.user.is_authenticated:
            return self.get_response(request)
        if request.method in READS:
            request.reading = replicas.choose(after=request.session.get(READ_AFTER))
            request.session_before = dict(request.session.items())  # for a second run (process_exception)
        else:
            request.reading = replicas.Reading(db.PRIMARY)
        with db.reading_from(request.reading.alias):
            response = self.get_response(request)
        if request.method not in READS and request.user.is_authenticated and response.status_code < 500:
            request.session[READ_AFTER] = replicas.primary_position()
        return response

    def process_exception(self, request, exception):
        reading = getattr(request, "reading", None)
        if reading is None or reading.alias == db.PRIMARY or not replicas.is_replica_failure(exception):
            return None
        replicas.failed(reading.alias, exception)
        request.session.clear()
        request.session.update(request.session_before)
        request._messages = default_storage(request)  # as MessageMiddleware made it: what the first run queued goes
        request.reading = replicas.Reading(db.PRIMARY)
        db.read_from(db.PRIMARY)  # for the rest of this request: __call__'s reading_from restores it after
        match = request.resolver_match
        return match.func(request, *match.args, **match.kwargs)


def reading(request) -> dict:
    """For the pages' banner: how far behind the primary the page's data is, once that is noticeable."""
    found = getattr(request, "reading", None)
    behind = found.behind if found else 0.0
    return {"read_behind": behind if behind >= settings.REPLICA_STALE_AFTER_SECONDS else None}


class DatabaseTimeoutsMiddleware:
    """Marks the request so that the connections it opens get the web's timeouts."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = _serving_request.set(True)
        try:
            return self.get_response(request)
        finally:
            _serving_request.reset(token)


@receiver(connection_created)
def _bound_waits(sender, connection, **kwargs):
    # Django opens a connection lazily, inside the request that first needs it.
    if _serving_request.get():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('lock_timeout', %s, false), set_config('statement_timeout', %s, false)",
                [f"{settings.WEB_LOCK_TIMEOUT_MS}ms", f"{settings.WEB_STATEMENT_TIMEOUT_MS}ms"],
            )
