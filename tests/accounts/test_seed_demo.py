"""seed_demo makes a demo bank once; running it again changes nothing."""

import io

import pytest
from django.contrib.auth import authenticate
from django.core.management import CommandError, call_command
from django.test import RequestFactory

from accounts.models import Account
from eventstore.models import Event

pytestmark = pytest.mark.django_db


def test_seed_demo_is_idempotent_and_prints_a_login_per_role():
    out = io.StringIO()
    call_command("seed_demo", accounts=6, stdout=out)
    events, accounts = Event.objects.count(), Account.objects.count()
    assert accounts == 6 and events > accounts
    for role in ("teller", "supervisor", "auditor"):
        assert f"user {role}" in out.getvalue()
        user = authenticate(RequestFactory().post("/login/"), username=role, password=f"{role}-demo-2026")
        assert user is not None and user.groups.filter(name=role).exists()

    again = io.StringIO()
    call_command("seed_demo", accounts=6, stdout=again)
    assert "already present" in again.getvalue()
    assert (Event.objects.count(), Account.objects.count()) == (events, accounts)


@pytest.mark.parametrize("count", [1, 2, 30])
def test_seed_demo_works_for_sizes_whose_random_freezes_hit_the_last_account(count):
    """With the default seed, 30 accounts once froze the account that takes the final deposit."""
    call_command("seed_demo", accounts=count, stdout=io.StringIO())
    assert Account.objects.count() == count
    assert Account.objects.filter(status="frozen").exists() == (count == 30)


def test_seed_demo_refuses_a_silly_size():
    with pytest.raises(CommandError, match="between 1 and 100000"):
        call_command("seed_demo", accounts=0)
