"""Four eyes: large withdrawals and transfers, every close and every unfreeze wait for a second person."""

import io
import logging
import threading

import pytest
from django.core.management import call_command

from accounts import services
from accounts.approvals import (
    APPROVED,
    CANCELLED,
    EXPIRED,
    FAILED,
    PENDING,
    REJECTED,
    ApprovalPending,
    NotTheMaker,
    OwnRequest,
    RequestNotPending,
)
from accounts.domain import InsufficientFunds
from accounts.models import Approval
from eventstore import context
from eventstore.store import EventStore
from tests.factories import AccountFactory
from tests.support import run_threads

pytestmark = pytest.mark.django_db

LARGE = 1_000_000  # 10,000.00 EUR: APPROVAL_AT's default for EUR


def as_staff(name):
    return context.metadata_context(actor=name)


def asked(call):
    """Run a command that must wait; return the request it stored."""
    with pytest.raises(ApprovalPending) as pending:
        call()
    return pending.value.request


def events_of(account_id):
    return EventStore().load(account_id)


def test_a_withdrawal_from_approval_at_waits_and_moves_nothing_while_a_smaller_one_runs_at_once():
    account = AccountFactory(initial_deposit=5_000_000)
    with as_staff("tina"):
        assert services.withdraw(account_id=account.id, amount=LARGE - 1, reason="rent").balance == 4_000_001
        request = asked(lambda: services.withdraw(account_id=account.id, amount=LARGE, reason="car"))
    assert (request.state, request.command, request.maker, request.amount) == (PENDING, "withdraw", "tina", LARGE)
    assert (request.account_version, request.balance_seen) == (2, 4_000_001)
    assert services.get_account(account.id).balance == 4_000_001 and len(events_of(account.id)) == 2
    row = Approval.objects.get(request_id=request.id)
    assert (row.state, row.account_id, row.amount, row.currency, row.maker) == (
        PENDING,
        account.id,
        LARGE,
        "EUR",
        "tina",
    )


@pytest.mark.parametrize("command", ["close_account", "unfreeze"])
def test_closing_and_unfreezing_always_wait_for_a_second_person(command):
    account = AccountFactory(initial_deposit=0)
    services.freeze(account_id=account.id, reason="check") if command == "unfreeze" else None
    before = services.get_account(account.id)
    with as_staff("sam"):
        request = asked(lambda: getattr(services, command)(account_id=account.id, reason="customer asked"))
    assert request.command == command and request.reason == "customer asked"
    assert services.get_account(account.id) == before


def test_a_command_the_rules_refuse_is_refused_at_once_never_sent_for_approval():
    account = AccountFactory(initial_deposit=100)
    with pytest.raises(InsufficientFunds):
        services.withdraw(account_id=account.id, amount=LARGE, reason="more than there is")
    assert not Approval.objects.exists()


def test_the_message_of_a_waiting_command_names_the_account_and_says_nothing_moved():
    account = AccountFactory(owner="Zoë Holmes", initial_deposit=5_000_000)
    with pytest.raises(ApprovalPending) as pending:
        services.withdraw(account_id=account.id, amount=2_000_000, reason="car")
    assert str(pending.value) == (
        "Withdrawal of 20,000.00 EUR from the account of Zoë Holmes is waiting for a second person's approval. "
        "Nothing has been done yet."
    )


def test_a_second_person_approves_and_the_command_runs_with_both_names_in_its_metadata():
    payer, payee = AccountFactory(initial_deposit=5_000_000), AccountFactory(initial_deposit=0)
    with as_staff("tina"):
        request = asked(lambda: services.transfer(from_account_id=payer.id, to_account_id=payee.id,
                                                  amount=2_000_000, reference="house"))  # fmt: skip
    with as_staff("sam"):
        approved = services.approve(request_id=request.id)
    assert (approved.state, approved.checker) == (APPROVED, "sam")
    assert services.get_account(payer.id).balance == 3_000_000 and services.get_account(payee.id).balance == 2_000_000
    for account in (payer, payee):
        metadata = events_of(account.id)[-1].metadata
        assert metadata["approval_request_id"] == str(request.id)
        assert (metadata["maker"], metadata["checker"], metadata["actor"]) == ("tina", "sam", "sam")
    assert Approval.objects.get(request_id=request.id).state == APPROVED


def test_the_maker_can_never_approve_or_reject_their_own_request():
    account = AccountFactory(initial_deposit=5_000_000)
    with as_staff("sam"):
        request = asked(lambda: services.withdraw(account_id=account.id, amount=LARGE, reason="car"))
        with pytest.raises(OwnRequest):
            services.approve(request_id=request.id)
        with pytest.raises(OwnRequest):
            services.reject(request_id=request.id, reason="changed my mind")
    assert services.get_request(request.id).state == PENDING
    assert services.get_account(account.id).balance == 5_000_000


def test_an_approval_after_the_balance_dropped_fails_with_the_reason_and_moves_nothing():
    account = AccountFactory(initial_deposit=1_500_000)
    with as_staff("tina"):
        request = asked(lambda: services.withdraw(account_id=account.id, amount=LARGE, reason="car"))
        services.withdraw(account_id=account.id, amount=900_000, reason="rent")
    with as_staff("sam"):
        failed = services.approve(request_id=request.id)
    assert failed.state == FAILED and "Insufficient funds: balance 6,000.00 EUR" in failed.outcome
    assert services.get_account(account.id).balance == 600_000
    assert Approval.objects.get(request_id=request.id).state == FAILED


def test_an_approval_after_the_account_was_frozen_fails_and_moves_nothing():
    account = AccountFactory(initial_deposit=5_000_000)
    with as_staff("tina"):
        request = asked(lambda: services.withdraw(account_id=account.id, amount=LARGE, reason="car"))
    services.freeze(account_id=account.id, reason="fraud check")
    with as_staff("sam"):
        assert services.approve(request_id=request.id).state == FAILED
    assert services.get_account(account.id).balance == 5_000_000


@pytest.mark.django_db(transaction=True)
def test_two_supervisors_approving_at_the_same_moment_run_the_command_once():
    account = AccountFactory(initial_deposit=5_000_000)
    with as_staff("tina"):
        request = asked(lambda: services.withdraw(account_id=account.id, amount=LARGE, reason="car"))
    results, start = [], threading.Barrier(2)

    def approve(index):
        start.wait()
        with as_staff(f"supervisor{index}"):
            try:
                results.append(services.approve(request_id=request.id).state)
            except RequestNotPending as refused:
                results.append(str(refused))

    run_threads(approve, 2)
    assert results.count(APPROVED) == 1 and any("This request was approved by supervisor" in r for r in results)
    assert services.get_account(account.id).balance == 4_000_000
    assert [e.event_type for e in events_of(account.id)].count("Withdrawn") == 1


def test_approving_twice_with_one_key_answers_the_first_approval():
    account = AccountFactory(initial_deposit=5_000_000)
    with as_staff("tina"):
        request = asked(lambda: services.withdraw(account_id=account.id, amount=LARGE, reason="car"))
    with as_staff("sam"):
        first = services.approve(request_id=request.id, idempotency_key="approve-once")
        again = services.approve(request_id=request.id, idempotency_key="approve-once")
    assert first.state == again.state == APPROVED and services.get_account(account.id).balance == 4_000_000


def test_submitting_the_same_form_twice_stores_one_request():
    account = AccountFactory(initial_deposit=5_000_000)
    with as_staff("tina"):
        first = asked(lambda: services.withdraw(account_id=account.id, amount=LARGE, reason="car", idempotency_key="f"))
        again = asked(lambda: services.withdraw(account_id=account.id, amount=LARGE, reason="car", idempotency_key="f"))
    assert first.id == again.id and Approval.objects.count() == 1


def test_the_maker_cancels_a_pending_request_and_nobody_else_can():
    account = AccountFactory(initial_deposit=5_000_000)
    with as_staff("tina"):
        request = asked(lambda: services.withdraw(account_id=account.id, amount=LARGE, reason="car"))
    with as_staff("sam"), pytest.raises(NotTheMaker):
        services.cancel(request_id=request.id, reason="not mine to cancel")
    with as_staff("tina"):
        assert services.cancel(request_id=request.id, reason="customer changed plans").state == CANCELLED
    with as_staff("sam"), pytest.raises(RequestNotPending, match="cancelled"):
        services.approve(request_id=request.id)
    assert services.get_account(account.id).balance == 5_000_000


def test_a_checker_rejects_with_a_reason_and_nothing_moves():
    account = AccountFactory(initial_deposit=5_000_000)
    with as_staff("tina"):
        request = asked(lambda: services.withdraw(account_id=account.id, amount=LARGE, reason="car"))
    with as_staff("sam"):
        rejected = services.reject(request_id=request.id, reason="no ID shown")
    assert (rejected.state, rejected.checker, rejected.outcome) == (REJECTED, "sam", "no ID shown")
    assert Approval.objects.get(request_id=request.id).outcome == "no ID shown"
    assert services.get_account(account.id).balance == 5_000_000


def test_a_request_past_its_time_cannot_be_approved_and_expire_requests_writes_it_down(settings):
    settings.APPROVAL_EXPIRES_AFTER_HOURS = 0  # expired the moment it is asked
    account = AccountFactory(initial_deposit=5_000_000)
    with as_staff("tina"):
        request = asked(lambda: services.withdraw(account_id=account.id, amount=LARGE, reason="car"))
    assert request.state == PENDING and request.state_at(request.expires_at) == EXPIRED  # shown expired, not written
    with as_staff("sam"), pytest.raises(RequestNotPending, match="expired"):
        services.approve(request_id=request.id)
    assert services.expire_requests() == 1 and services.expire_requests() == 0
    assert services.get_request(request.id).state == EXPIRED
    assert Approval.objects.get(request_id=request.id).state == EXPIRED
    assert services.get_account(account.id).balance == 5_000_000


@pytest.mark.django_db(transaction=True)
def test_the_runner_and_expire_requests_write_expired_and_the_read_model_rebuilds_and_verifies(settings, caplog):
    settings.APPROVAL_EXPIRES_AFTER_HOURS = 0
    account = AccountFactory(initial_deposit=5_000_000)
    with as_staff("tina"):
        waited = asked(lambda: services.withdraw(account_id=account.id, amount=LARGE, reason="car"))
        approved = asked(lambda: services.close_account(account_id=AccountFactory(initial_deposit=0).id, reason="r"))
    with caplog.at_level(logging.INFO, logger="eventstore.runner"):
        call_command("run_projections", "--once")
    assert "expired approval requests: 2" in caplog.text
    assert services.get_request(waited.id).state == services.get_request(approved.id).state == EXPIRED
    out = io.StringIO()
    call_command("expire_requests", stdout=out)
    assert "0 requests expired" in out.getvalue()
    out = io.StringIO()
    call_command("verify_projections", "approvals", stdout=out)
    assert "approvals: ok" in out.getvalue()
    Approval.objects.filter(request_id=waited.id).update(state=PENDING)  # drift, as the owner could make
    call_command("rebuild_projections", "approvals", stdout=io.StringIO(), stderr=io.StringIO())
    assert Approval.objects.get(request_id=waited.id).state == EXPIRED
