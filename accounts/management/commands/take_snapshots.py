"""take_snapshots: store accounts' current states as snapshots, so they load fast."""

from django.core.management.base import BaseCommand, CommandError

from accounts import services
from accounts.domain import DomainError
from accounts.models import Account


class Command(BaseCommand):
    help = "Snapshot the named accounts, or every account with --all. Snapshots are a cache: they change no answer."

    def add_arguments(self, parser):
        parser.add_argument("account_ids", nargs="*", help="Account ids.")
        parser.add_argument("--all", action="store_true", help="Every account in the read model.")

    def handle(self, *args, account_ids, all, **options):
        if bool(account_ids) == bool(all):
            raise CommandError("give account ids, or --all.")
        ids = Account.objects.values_list("account_id", flat=True).iterator() if all else account_ids
        taken = 0
        for account_id in ids:
            try:
                account = services.take_snapshot(account_id)
            except DomainError as error:
                raise CommandError(str(error)) from None
            taken += 1
            if not all:
                self.stdout.write(f"{account.id}: snapshot at version {account.version}")
        self.stdout.write(self.style.SUCCESS(f"{taken} snapshots taken"))
