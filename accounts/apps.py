from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Bank accounts"

    def ready(self) -> None:
        from accounts.services import ACCOUNT, REQUEST, expire_requests
        from eventstore.registry import register_aggregate, register_chore

        register_aggregate(ACCOUNT)
        register_aggregate(REQUEST)
        register_chore("expired approval requests", expire_requests, every_seconds=60)
        import accounts.projections  # noqa: F401  (registers the bank's projections)
        from accounts.checks import TRANSFERS
        from eventstore.verification import register_check

        register_check(*TRANSFERS)
