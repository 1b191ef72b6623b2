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


class UserFactory(factory.django.DjangoModelFactory):
    """A member of staff; `role` puts them in that group (teller, supervisor, auditor)."""

    class Meta:
        model = "auth.User"
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"staff{n}")
    password = factory.PostGenerationMethodCall("set_password", "correct horse battery staple")

    @factory.post_generation
    def role(user, create, extracted, **kwargs):
        if extracted:
            from django.contrib.auth.models import Group

            from accounts.roles import ensure_roles

            ensure_roles()  # a transactional test's flush may have emptied the groups
            user.groups.add(Group.objects.get(name=extracted))
        user.save()
