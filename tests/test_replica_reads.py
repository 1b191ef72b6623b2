"""ReplicaReadsMiddleware's second run, without servers of its own (tests/test_replicas.py has those):
a page whose replica fails mid-way is read again from the primary, as the first run found it."""

import contextlib
import uuid

import pytest
from django.db import OperationalError
from django.test import Client
from django.urls import reverse

from accounts import selectors
from eventstore import db, replicas
from tests.factories import AccountFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_a_refused_form_sent_back_survives_its_pages_replica_failing_mid_way(monkeypatch):
    account = AccountFactory(initial_deposit=1_000)
    teller = Client()
    teller.force_login(UserFactory(role="teller"))
    refused = teller.post(reverse("accounts:command", args=[account.id, "withdraw"]), {
        "withdraw-amount": "50.00", "withdraw-reason": "more than there is",
        "withdraw-idempotency_key": str(uuid.uuid4()), "withdraw-expected_version": account.version,
        "withdraw-confirmed": "1",
    })  # fmt: skip
    assert refused.status_code == 302

    # The page is to read from replica_1 (the test database stands in for it), which fails once
    # the page has taken the refused form out of the session.
    monkeypatch.setattr(replicas, "aliases", lambda: ["replica_1"])
    monkeypatch.setattr(replicas, "choose", lambda after=None: replicas.Reading("replica_1"))
    monkeypatch.setattr(db, "reading_from", lambda alias: contextlib.nullcontext())
    sidelined = []
    monkeypatch.setattr(replicas, "failed", lambda alias, error: sidelined.append(alias))
    statement = selectors.month_statement

    def cancelled_once(*args, **kwargs):
        if not sidelined:
            raise OperationalError("canceling statement due to conflict with recovery")
        return statement(*args, **kwargs)

    monkeypatch.setattr(selectors, "month_statement", cancelled_once)
    page = teller.get(refused["Location"])
    assert sidelined == ["replica_1"] and page.status_code == 200
    shown = page.content.decode()
    assert shown.count("Insufficient funds") == 1  # the refusal, once, at the top of the form sent back
    assert 'value="more than there is"' in shown  # with what the teller typed
