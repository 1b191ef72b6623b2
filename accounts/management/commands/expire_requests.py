"""expire_requests: write Expired for every approval request past its time (the runner does it too)."""

from django.core.management.base import BaseCommand

from accounts import services
from eventstore.context import metadata_context, system_actor


class Command(BaseCommand):
    help = (
        "Write Expired for every approval request still pending past its time (APPROVAL_EXPIRES_AFTER_HOURS). "
        "The pages already show such a request as expired and refuse to approve it; this writes it down. "
        "run_projections does the same every minute."
    )

    def handle(self, *args, **options):
        with metadata_context(actor=system_actor("expire_requests")):
            expired = services.expire_requests()
        self.stdout.write(self.style.SUCCESS(f"{expired} request{'s' if expired != 1 else ''} expired"))
