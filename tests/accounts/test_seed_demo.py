"""seed_demo makes a demo bank once; running it again changes nothing."""

import datetime
import io

import pytest
from django.contrib.auth import authenticate
from django.core.management import CommandError, call_command
from django.test import RequestFactory
from django.utils import timezone

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


def test_seed_demo_spreads_three_months_of_a_real_bank_and_signs_every_event():
    call_command("seed_demo", accounts=60, stdout=io.StringIO())
    events = Event.objects.all()
    times = [event.created_at for event in events]
    assert max(times) - min(times) > datetime.timedelta(days=80) and max(times) <= timezone.now()
    types = set(events.values_list("event_type", flat=True))
    assert {"TransferSent", "TransferReceived", "Frozen", "Closed", "Deposited", "Withdrawn"} <= types
    assert events.filter(event_type="Deposited", event_data__amount__gte=1_500_000).exists()  # large ones
    assert Account.objects.filter(status="frozen").count() >= 2 and Account.objects.filter(status="closed").exists()
    frozen = events.filter(event_type="Frozen").first()
    assert frozen.event_data["reason"] and frozen.metadata["actor"] == "supervisor"
    assert any(not owner.isascii() for owner in Account.objects.values_list("owner", flat=True))  # accents
    out = io.StringIO()
    call_command("verify_event_store", stdout=out)  # signed like any other events; money adds up
    assert "event store ok" in out.getvalue()


@pytest.mark.parametrize("count", [1, 2, 6])
def test_seed_demo_works_for_a_bank_of_any_small_size(count):
    call_command("seed_demo", accounts=count, stdout=io.StringIO())
    assert Account.objects.count() == count
    assert Account.objects.filter(status="frozen").exists() == (count >= 6)


def test_seed_demo_refuses_a_silly_size():
    with pytest.raises(CommandError, match="between 1 and 100000"):
        call_command("seed_demo", accounts=0)
