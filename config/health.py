"""What the monitoring and the load balancer ask each web server, with no login and no data.

/healthz (the monitoring): 200 when the database answers, the projection runners
keep up and every streaming replica answers within REPLICA_MAX_LAG_SECONDS of the
primary; 503 otherwise, with the reason (django-health-check's view, as HTML,
text or JSON by the Accept header or ?format=). 503, not the library's 500.

/readyz (the load balancer): 200 when this server can serve pages and commands,
that is when the primary database answers. A stopped runner or a lagging replica
is the same for every web server, and pages go on without them (lists lag, reads
move to the primary): were the load balancer to ask /healthz, it would take every
server out of the rotation at once and stop the bank over a late statement.

Nothing here writes: a health check is asked every few seconds.
"""

from __future__ import annotations

import contextvars
import dataclasses
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connections
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from health_check.base import HealthCheck
from health_check.exceptions import ServiceUnavailable
from health_check.views import HealthCheckView

from eventstore import db, projections, replicas
from eventstore.models import ProjectionCheckpoint
from eventstore.store import START, backlog

_WAITED = {db.LOCK_NOT_AVAILABLE: "lock timeout", db.QUERY_CANCELED: "statement timeout"}


@dataclasses.dataclass
class ProjectionsCurrent(HealthCheck):
    """Every asynchronous projection is running close behind the log: not stopped at an event,
    fewer than HEALTH_PROJECTION_LAG_EVENTS events waiting for it, and none of them waiting
    longer than HEALTH_PROJECTION_LAG_SECONDS. Staff would otherwise see stale lists and statements."""

    def run(self) -> None:
        try:
            self._check()
        except DatabaseError as error:  # a lock held over the checkpoints, say: said without the driver's words
            why = _WAITED.get(db.sqlstate(error) or "", type(error.__cause__ or error).__name__)
            raise ServiceUnavailable(f"the runners' progress could not be read ({why})") from error

    def _check(self) -> None:
        names = [projection.name for projection in projections.asynchronous()]
        rows = {row.name: row for row in ProjectionCheckpoint.objects.filter(name__in=names)}
        most, longest = settings.HEALTH_PROJECTION_LAG_EVENTS, settings.HEALTH_PROJECTION_LAG_SECONDS
        for name in names:
            row = rows.get(name)
            if row is not None and row.failed_event_id is not None:
                raise ServiceUnavailable(f"{name} stopped at event {row.failed_event_id}")
            waiting, oldest = backlog(projections.position_of(row) if row else START, limit=most)
            if waiting >= most:
                raise ServiceUnavailable(f"{name} has {most:,} or more events to apply")
            if oldest is not None and (age := (timezone.now() - oldest).total_seconds()) > longest:
                raise ServiceUnavailable(f"{name} has had events waiting for {age:.0f} s")


@dataclasses.dataclass
class ReplicasCurrent(HealthCheck):
    """Every replica REPLICA_DATABASE_URLS names answers and is no more than REPLICA_MAX_LAG_SECONDS
    behind the primary. Pages then read from the primary, which serves, but carries their load too."""

    def run(self) -> None:
        problems = [f"{state.alias} {state.problem}" for state in replicas.states() if state.problem]
        if problems:
            raise ServiceUnavailable("; ".join(problems))


class _ClosingThreads(ThreadPoolExecutor):
    """Runs each check in a thread of its own that closes the database connections it opened when the
    check ends: Django's connections are per thread, and a check asked every few seconds must leave
    no session behind. The thread runs in the request's context, so that its connections get the
    web's lock and statement timeouts too: a check stuck behind a lock would hold a worker."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        def closing() -> Any:
            try:
                return fn(*args, **kwargs)
            finally:
                connections.close_all()

        return super().submit(contextvars.copy_context().run, closing)


class Health(HealthCheckView):
    checks: tuple[str, ...] = (
        "health_check.checks.Database",
        "config.health.ProjectionsCurrent",
        "config.health.ReplicasCurrent",
    )

    def get_executor(self) -> ThreadPoolExecutor:
        return _ClosingThreads(max_workers=len(self.checks))

    async def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response: HttpResponse = await super().get(request, *args, **kwargs)
        if response.status_code == 500:
            response.status_code = 503
        return response


class Ready(Health):
    checks = ("health_check.checks.Database",)
