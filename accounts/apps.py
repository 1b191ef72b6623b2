from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Bank accounts"

    def ready(self):
        from accounts.domain import AGGREGATE_TYPE, EVENT_TYPES, STATE_SCHEMA, UPCASTERS, BankAccount
        from eventstore.registry import Aggregate, register_aggregate

        register_aggregate(
            Aggregate(
                type=AGGREGATE_TYPE,
                event_types=frozenset(EVENT_TYPES),
                fold=BankAccount.from_events,
                to_snapshot=BankAccount.to_snapshot,
                from_snapshot=BankAccount.from_snapshot,
                state_schema=STATE_SCHEMA,  # snapshots every EVENTSTORE_SNAPSHOT_EVERY events
                upcasters=UPCASTERS,
                url_name="accounts:detail",
            )
        )
        import accounts.projections  # noqa: F401  (registers the bank's projections)
