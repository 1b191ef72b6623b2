from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Bank accounts"

    def ready(self):
        from accounts.domain import UPCASTERS
        from eventstore.upcasting import upcasters

        for (event_type, from_schema), step in UPCASTERS.items():
            upcasters.register(event_type, from_schema, step)
