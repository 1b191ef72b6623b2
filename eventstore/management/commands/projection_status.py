"""projection_status: where each projection stands, and how far behind the log it is."""

from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand
from django.utils import timezone

from eventstore import projections
from eventstore.models import ProjectionCheckpoint
from eventstore.store import backlog


class Command(BaseCommand):
    help = (
        "Show each projection's position, the events it has still to apply, and its lag in seconds; "
        "under a projection stopped at an event it cannot apply, that event and why."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        now = timezone.now()
        self.stdout.write(
            f"{'projection':<28} {'mode':<7} {'position':<24} {'applied':>10} {'behind':>10} {'lag s':>8}"
        )
        for projection in projections.registry.values():
            if projection.inline:
                self.stdout.write(
                    f"{projection.name:<28} {'inline':<7} {'(with every command)':<24} {'-':>10} {0:>10} {0:>8}"
                )
                continue
            self._row(projection.name, "async", now)
        for row in ProjectionCheckpoint.objects.filter(name__endswith="__rebuild"):
            self._row(row.name, "rebuild", now)

    def _row(self, name: str, mode: str, now: datetime) -> None:
        # Read only (a runner that never started has no row yet): the application's role may run this.
        row = ProjectionCheckpoint.objects.filter(name=name).first() or ProjectionCheckpoint(name=name)
        behind, oldest = backlog(projections.position_of(row))
        lag = (now - oldest).total_seconds() if oldest else 0.0
        position = f"({row.transaction_id}, {row.event_id})"
        self.stdout.write(f"{name:<28} {mode:<7} {position:<24} {row.events_applied:>10} {behind:>10} {lag:>8.1f}")
        if row.failed_event_id is not None:
            assert row.failed_at is not None  # recorded with the stop (projections._record_stop)
            self.stdout.write(f"{name} FAILED: {row.failure} (since {row.failed_at.isoformat(timespec='seconds')})")
