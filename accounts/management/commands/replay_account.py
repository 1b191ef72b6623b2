"""replay_account: an account's state and history, now or as it was."""

from django import forms
from django.core.management.base import BaseCommand, CommandError

from accounts import selectors, services
from accounts.domain import DomainError, amount, stated_reason
from accounts.forms import MomentField
from accounts.money import format_money
from eventstore.models import MAX_VERSION


class Command(BaseCommand):
    help = (
        "Replay one account from its events alone (never a snapshot) and print its state and history, "
        "now, as of a time, or at a version."
    )

    def create_parser(self, prog_name, subcommand, **kwargs):
        # Our --version is an account version; it replaces Django's "print Django's version".
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser):
        parser.add_argument("account_id")
        when = parser.add_mutually_exclusive_group()
        when.add_argument("--as-of", help="A moment, ISO 8601 (e.g. 2026-11-27T10:00:00Z; UTC if no zone).")
        when.add_argument("--version", type=int, help=f"A version, 1 (the opening) to {MAX_VERSION}.")

    def handle(self, *args, account_id, as_of, version, **options):
        moment = None
        if as_of:
            try:
                # The pages' field, so that a moment means the same typed here or there.
                moment = MomentField().clean(as_of)
            except forms.ValidationError as error:
                raise CommandError(f"--as-of: {' '.join(error.messages)}") from None
        if version is not None and not 1 <= version <= MAX_VERSION:
            raise CommandError(f"--version must be a whole number from 1 to {MAX_VERSION}, not {version}.")
        try:
            account = services.get_account(account_id, as_of=moment, version=version, from_events_only=True)
        except DomainError as error:
            raise CommandError(str(error)) from None
        if account is None:
            raise CommandError(f"account {account_id} did not exist then (or does not exist).")
        self.stdout.write(
            f"account {account.id}\nowner    {account.owner}\nstatus   {account.status}\n"
            f"balance  {format_money(account.balance, account.currency)}\nversion  {account.version}\n"
        )
        for event in selectors.events_between(account.id, 0, account.version):
            moved = amount(event.event_type, event.data)  # the account replayed, so every event reads
            money = format_money(moved, account.currency) if moved is not None else ""
            metadata = event.metadata or {}
            self.stdout.write(
                f"{event.version:>6}  {event.created_at:%Y-%m-%d %H:%M:%S}  {event.event_type:<17} {money:>18}  "
                f"{metadata.get('actor', ''):<20} {stated_reason(event.data, metadata)}"
            )
