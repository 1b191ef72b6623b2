from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Bank accounts"

    def ready(self) -> None:
        from accounts.services import ACCOUNT
        from eventstore.registry import register_aggregate

        register_aggregate(ACCOUNT)
        import accounts.projections  # noqa: F401  (registers the bank's projections)
        from accounts.checks import TRANSFERS
        from eventstore.verification import register_check

        register_check(*TRANSFERS)
