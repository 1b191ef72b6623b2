"""projection_status: where each projection stands, and how far behind the log it is; and each
streaming replica's position and lag."""

from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand
from django.utils import timezone

from eventstore import projections, replicas
from eventstore.models import ProjectionCheckpoint
from eventstore.store import backlog

# How long a replica behind the primary is given to replay the primary's position: how long it
# took is its lag. Pages skip a replica by what each web process has seen over a longer time.
SETTLE_S = 1.0


class Command(BaseCommand):
    help = (
        "Show each projection's position, the events it has still to apply, and its lag in seconds; "
        "under a projection stopped at an event it cannot apply, that event and why; then each streaming "
        "replica's lag behind the primary, measured by WAL position, and whether pages read from it."
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
        if found := replicas.states(settle=SETTLE_S):
            self.stdout.write(f"\n{'replica':<12} {'replayed':>18} {'bytes behind':>14} {'lag s':>8}  state")
        for state in found:
            if state.replayed is None:
                why = f"{state.problem}: {state.detail}" if state.detail else state.problem
                self.stdout.write(f"{state.alias:<12} {'-':>18} {'-':>14} {'-':>8}  SKIPPED: {why}")
                continue
            assert state.bytes_behind is not None and state.seconds_behind is not None
            if state.problem:
                said = f"SKIPPED: {state.problem}"
            else:
                said = "current" if state.caught_up else f"behind: not caught up within {SETTLE_S:.0f} s"
            lag = f"{state.seconds_behind:.2f}" if state.caught_up else f">{state.seconds_behind:.1f}"
            replayed = replicas.lsn_text(state.replayed)
            self.stdout.write(f"{state.alias:<12} {replayed:>18} {state.bytes_behind:>14} {lag:>8}  {said}")

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
