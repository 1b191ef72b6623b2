from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Bank accounts"

    def ready(self):
        from accounts.domain import AGGREGATE_TYPE, EVENT_TYPES, STATE_SCHEMA, UPCASTERS, BankAccount
        from eventstore.registry import SnapshotReplay, register_aggregate
        from eventstore.upcasting import upcasters

        for (event_type, from_schema), step in UPCASTERS.items():
            upcasters.register(event_type, from_schema, step)
        register_aggregate(
            AGGREGATE_TYPE,
            types=EVENT_TYPES,
            url_name="accounts:detail",
            snapshot=SnapshotReplay(STATE_SCHEMA, lambda i, events: BankAccount.from_events(i, events).to_snapshot()),
        )
        import accounts.projections  # noqa: F401  (registers the bank's projections)
