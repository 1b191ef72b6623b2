from django.apps import AppConfig


class EventStoreConfig(AppConfig):
    name = "eventstore"
    verbose_name = "Event store"

    def ready(self) -> None:
        from eventstore import signing

        signing.keys()  # malformed signing keys stop every process at its start, saying what is wrong
