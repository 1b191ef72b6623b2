"""What staff see around a command: the review step, the recipient chooser, messages in money
and names, the banners of frozen and closed accounts, and a failed CSRF check."""

import re

import pytest
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from accounts import services
from tests.accounts.test_views import COMMANDS, ROLES, client_for, command_post, event_count, landed_on_form
from tests.factories import AccountFactory, UserFactory

pytestmark = pytest.mark.django_db


def post(client, account, command, data, **kwargs):
    return client.post(reverse("accounts:command", args=[account.id, command]),
                       command_post(command, account, data, **kwargs), follow=True)  # fmt: skip


def reviewed(response, account, command):
    """The review step: its own page (reloading it posts nothing), and nothing stored yet."""
    ((url, status),) = response.redirect_chain
    assert status == 302 and url.startswith(reverse("accounts:review", args=[account.id, command]) + "?form=")
    page = response.content.decode()
    assert response.status_code == 200 and "Nothing has been done yet" in page
    return page


def link(account):
    return f'<a href="{reverse("accounts:detail", args=[account.id])}">{escape(account.owner)}</a>'


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("command", list(COMMANDS))
def test_the_review_page_admits_exactly_the_roles_allowed_to_run_its_command(role, command):
    allowed, setup, _ = COMMANDS[command]
    account = AccountFactory(**setup)
    response = client_for(role).get(reverse("accounts:review", args=[account.id, command]), {"form": "x"})
    if role == "anonymous":
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    elif role in allowed:  # nothing was sent to review under that token: back to the account page
        assert response.status_code == 302 and response["Location"].startswith(
            reverse("accounts:detail", args=[account.id]))  # fmt: skip
    else:
        assert response.status_code == 403


def test_a_transfer_is_reviewed_first_with_both_owners_and_the_balance_after_and_nothing_is_stored():
    payer, payee = AccountFactory(initial_deposit=150_000), AccountFactory(owner="Zoë Holmes", initial_deposit=0)
    client = client_for("teller")
    data = {"amount": "1,250.50", "reference": "rent", "to_account": str(payee.id)}
    review = post(client, payer, "transfer", data, confirmed=False)
    page = reviewed(review, payer, "transfer")
    reloaded = client.get(review.redirect_chain[0][0]).content.decode()  # F5 shows the same review, posts nothing
    assert "Nothing has been done yet" in reloaded and "249.50 EUR</strong> after" in reloaded
    assert "1,250.50 EUR" in page and "1,500.00 EUR now" in page and "249.50 EUR</strong> after" in page
    assert link(payee) in page and "EUR · active" in page and link(payer) in page
    assert event_count(payer.id) == event_count(payee.id) == 1
    hidden = dict(re.findall(r'<input type="hidden" name="(transfer-[a-z_]+)" value="([^"]*)"', page))
    assert hidden["transfer-amount"] == "1,250.50" and hidden["transfer-to_account"] == str(payee.id)
    done = client.post(reverse("accounts:command", args=[payer.id, "transfer"]),
                       hidden | {"transfer-confirmed": "1"}, follow=True).content.decode()  # fmt: skip
    assert f"Transferred 1,250.50 EUR from the account of {link(payer)} to the account of {link(payee)}" in done
    assert "; balance 249.50 EUR." in done
    assert services.get_account(payee.id).balance == 125_050


def test_change_goes_back_to_the_form_with_the_values_kept_and_stores_nothing():
    account = AccountFactory(initial_deposit=0)
    client = client_for("supervisor")
    review = reviewed(post(client, account, "close", {"reason": "moved abroad"}, confirmed=False), account, "close")
    assert "active now → <strong>closed</strong> after" in review
    hidden = dict(re.findall(r'<input type="hidden" name="(close-[a-z_]+)" value="([^"]*)"', review))
    back = client.post(reverse("accounts:command", args=[account.id, "close"]), hidden | {"close-change": "1"},
                       follow=True)  # fmt: skip
    page = landed_on_form(back, account, "close")
    assert 'value="moved abroad"' in page and "error-summary" not in page
    assert event_count(account.id) == 1


@pytest.mark.parametrize("command, setup, data", [
    ("freeze", {}, {"reason": "fraud check"}),
    ("unfreeze", {"frozen": True}, {"reason": "cleared"}),
    ("close", {"initial_deposit": 0}, {"reason": "customer left"}),
    ("withdraw", {"initial_deposit": 2_000_000}, {"amount": "10,000.00", "reason": "car"}),
    ("deposit", {}, {"amount": "10000", "source": "inheritance"}),
])  # fmt: skip
def test_irreversible_commands_and_amounts_from_review_at_are_reviewed(command, setup, data):
    account = AccountFactory(**setup)
    reviewed(post(client_for("supervisor"), account, command, data, confirmed=False), account, command)
    assert event_count(account.id) == services.get_account(account.id).version


def test_a_deposit_below_review_at_runs_at_once_and_says_it_in_money_with_the_owner(settings):
    settings.REVIEW_AT = {**settings.REVIEW_AT, "EUR": 500}
    account = AccountFactory(initial_deposit=100)
    page = post(client_for("teller"), account, "deposit", {"amount": "499.99", "source": "cash"},
                confirmed=False).content.decode()  # fmt: skip
    assert f"Deposited 499.99 EUR into the account of {link(account)}; balance 500.99 EUR." in page
    reviewed(post(client_for("teller"), account, "deposit", {"amount": "500", "source": "cash"}, confirmed=False),
             account, "deposit")  # fmt: skip


def test_a_refusal_met_at_the_review_step_goes_back_to_the_form():
    account = AccountFactory(initial_deposit=100)
    other = AccountFactory(currency="USD")
    response = post(client_for("teller"), account, "transfer",
                    {"amount": "0.50", "reference": "x", "to_account": str(other.id)}, confirmed=False)  # fmt: skip
    page = landed_on_form(response, account, "transfer")
    assert f"The account of {link(account)} is in EUR and the account of {link(other)} in USD" in page
    assert "Nothing was done." in page


def test_the_recipient_is_found_by_name_without_accents_or_by_the_start_of_its_id():
    payer = AccountFactory(initial_deposit=10_000)
    zoe = AccountFactory(owner="Zoë Holmes")
    client = client_for("teller")
    for typed in ("holmes zoe", "ZOË", str(zoe.id)[:8]):
        page = reviewed(post(client, payer, "transfer", {"amount": "1.00", "reference": "r", "to_account": typed},
                             confirmed=False), payer, "transfer")  # fmt: skip
        assert link(zoe) in page, typed


def test_several_matches_become_a_chooser_and_none_says_so():
    payer = AccountFactory(initial_deposit=10_000)
    first, second = AccountFactory(owner="Ana Lima"), AccountFactory(owner="Ana Souza")
    AccountFactory(owner="Ana Pereira", currency="USD")  # another currency: not offered
    client = client_for("teller")
    page = landed_on_form(post(client, payer, "transfer", {"amount": "1.00", "reference": "r", "to_account": "ana"}),
                          payer, "transfer")  # fmt: skip
    assert "Several accounts match “ana”: choose the recipient." in page
    assert page.count('type="radio" name="transfer-to_account"') == 2 and "Ana Pereira" not in page
    assert f'value="{first.id}"' in page and f'value="{second.id}"' in page
    page = landed_on_form(post(client, payer, "transfer", {"amount": "1.00", "reference": "r", "to_account": "nobody"}),
                          payer, "transfer")  # fmt: skip
    assert "No other active EUR account matches “nobody”" in page
    assert event_count(payer.id) == 1


def test_a_frozen_account_says_since_when_by_whom_why_what_is_blocked_and_who_can_lift_it():
    account = AccountFactory()
    services.freeze(account_id=account.id, reason="suspected fraud")
    page = client_for("teller").get(reverse("accounts:detail", args=[account.id]), follow=True).content.decode()
    assert "<strong>Frozen</strong> since" in page and "“suspected fraud”" in page
    assert "Blocked: deposits, withdrawals, and transfers in or out." in page
    assert "A member of supervisor can unfreeze it." in page
    assert "Your role can read this account but not change it" not in page


def test_a_closed_account_says_it_is_closed_for_good():
    account = AccountFactory(closed=True)
    page = client_for("supervisor").get(reverse("accounts:detail", args=[account.id]), follow=True).content.decode()
    assert "<strong>Closed</strong> since" in page and "a closed account is never reopened" in page


def test_a_failed_csrf_check_says_nothing_was_done_and_leads_back():
    account = AccountFactory()
    client = Client(enforce_csrf_checks=True)
    client.force_login(UserFactory(role="teller"))
    detail = reverse("accounts:detail", args=[account.id])
    response = client.post(reverse("accounts:command", args=[account.id, "deposit"]),
                           command_post("deposit", account, {"amount": "1.00", "source": "cash"}),
                           HTTP_REFERER=f"http://testserver{detail}?form=x")  # fmt: skip
    page = response.content.decode()
    assert response.status_code == 403 and "Your form was not sent. Nothing was done." in page
    assert f'href="{detail}?form=x"' in page and "CSRF" not in page
    assert event_count(account.id) == 1
    anonymous = Client(enforce_csrf_checks=True).post(reverse("accounts:command", args=[account.id, "deposit"]), {})
    assert anonymous.status_code == 403 and "Your session has ended" in anonymous.content.decode()


def test_account_search_ignores_case_and_accents_takes_words_in_any_order_and_finds_an_id_by_its_start():
    zoe, other = AccountFactory(owner="Zoë Holmes"), AccountFactory(owner="Holm Zoeller-Nagy")
    client = client_for("auditor")

    def found(query):
        page = client.get(reverse("accounts:list"), {"q": query}).content.decode()
        return {account.owner for account in (zoe, other) if escape(account.owner) in page}

    assert found("zoe") == {"Zoë Holmes", "Holm Zoeller-Nagy"}
    assert found("HOLMES zoë") == {"Zoë Holmes"}
    assert found(str(zoe.id)[:6]) >= {"Zoë Holmes"} and found(str(zoe.id).upper()) == {"Zoë Holmes"}
    assert found("nagy holmes") == set()


def test_a_message_kept_in_the_session_is_escaped_again_never_trusted_as_markup():
    """Anyone holding the application's database role can write the sessions table."""
    account = AccountFactory()
    client = client_for("teller")
    session = client.session
    forged = ["<script>alert(1)</script>", {"account": "not an id", "owner": "x"}]
    session["sent_back_form"] = {"account": str(account.id), "command": "deposit", "data": {}, "problem": forged}
    session.save()
    page = client.get(reverse("accounts:detail", args=[account.id]), follow=True).content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert(1)" not in page
