"""Factories: accounts made the only way accounts are made, through the services."""

import factory

from accounts import services


class AccountFactory(factory.Factory):
    """`AccountFactory()` opens an account and returns its BankAccount state."""

    class Meta:
        model = dict

    owner = factory.Faker("name")
    initial_deposit = 100_000
    currency = "EUR"

    @classmethod
    def _create(cls, model_class, **kwargs):
        return services.open_account(**kwargs)
