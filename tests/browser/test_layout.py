"""Every page fits the width of a phone, a laptop and a wide screen: no sideways scrolling of the
page (a wide table scrolls in its own box), and Log out always in reach."""

import pytest

from accounts import services
from tests.factories import AccountFactory, UserFactory
from tests.support import WIDTHS, at_every_width, log_in


@pytest.mark.parametrize("role", ["teller", "supervisor", "auditor"])
def test_every_page_fits_each_width_and_keeps_log_out_in_reach(page, shot, role):
    UserFactory(username="sam", role=role)
    account = AccountFactory(owner="Zoë Holmes-Ferreira de Albuquerque", initial_deposit=123_456_789, with_history=3)
    AccountFactory(owner="Zoe Lima"), AccountFactory(owner="Zoé Costa")
    frozen = AccountFactory(owner="Frozen Customer")
    services.freeze(account_id=frozen.id, reason="suspected fraud")
    log_in(page, "sam")
    pages = {
        "dashboard": "/", "accounts": "/accounts/?q=zoe", "account": f"/accounts/{account.id}/",
        "frozen": f"/accounts/{frozen.id}/", "past view": f"/accounts/{account.id}/?version=2", "audit": "/audit/",
        "approvals": "/approvals/",
    }  # fmt: skip
    if role != "auditor":
        pages["open"] = "/accounts/open/"
    for name, path in pages.items():
        page.goto(path)
        fits_every_width(page, shot, name)
    if role == "auditor":  # reads only: no command forms
        return
    page.goto(f"/accounts/{account.id}/")  # a recipient several accounts match: the form comes back with a chooser
    page.fill("#id_transfer-to_account", "zoe")
    page.fill("#id_transfer-amount", "12.50")
    page.fill("#id_transfer-reference", "rent")
    page.click("form[action$='/transfer/'] button[type=submit]")
    page.wait_for_selector("text=Several accounts match")
    fits_every_width(page, shot, "chooser")
    page.check("input[type=radio] >> nth=0")
    page.click("form[action$='/transfer/'] button[type=submit]")
    page.wait_for_selector("text=Nothing has been done yet")
    fits_every_width(page, shot, "review")


def fits_every_width(page, shot, name):
    """No sideways scrolling at any width, and Log out in reach at each."""

    def log_out_in_reach(width):
        log_out = page.locator("form[action='/logout/'] button")
        box = log_out.bounding_box()
        assert log_out.is_visible() and box is not None and box["x"] + box["width"] <= width, f"{name} at {width}"

    at_every_width(page, shot, name, log_out_in_reach)


@pytest.mark.parametrize("width", WIDTHS)
def test_the_login_page_fits_the_width(page, shot, width):
    page.set_viewport_size({"width": width, "height": 900})
    page.goto("/login/")
    shot(page, f"login-{width}")
    assert page.evaluate("document.documentElement.scrollWidth") <= width


@pytest.mark.parametrize("width", WIDTHS)
def test_the_navigation_folds_into_a_menu_on_a_narrow_screen(page, width):
    UserFactory(username="sam", role="supervisor")
    page.set_viewport_size({"width": width, "height": 900})
    log_in(page, "sam")
    menu, audit = page.locator("#menu-button"), page.locator("#site-nav >> text=Audit log")
    if width > 720:
        assert not menu.is_visible() and audit.is_visible()
        return
    assert menu.is_visible() and not audit.is_visible() and menu.get_attribute("aria-expanded") == "false"
    menu.click()
    assert audit.is_visible() and menu.get_attribute("aria-expanded") == "true"
    audit.click()
    page.wait_for_url("**/audit/")


def test_the_stale_replica_banner_fits_every_width_and_stops_no_one(page, shot, monkeypatch):
    """As a page read from a replica 12 s behind shows it (the replica itself: tests/test_replicas.py)."""
    from axe_playwright_python.sync_playwright import Axe

    from eventstore import db, replicas

    monkeypatch.setattr(replicas, "aliases", lambda: ["replica_1"])
    monkeypatch.setattr(replicas, "choose", lambda after=None: replicas.Reading(db.PRIMARY, behind=12.4))
    monkeypatch.setattr(replicas, "primary_position", lambda: 0)
    UserFactory(username="staff", role="teller")
    account = AccountFactory(owner="Zoë Holmes", initial_deposit=100_000)
    log_in(page, "staff")
    page.goto(f"/accounts/{account.id}/")
    banner = page.locator(".stale-banner")
    assert banner.inner_text().startswith("This page shows the bank as it stood about 12 seconds ago")
    at_every_width(page, shot, "stale-banner", check=lambda width: banner.is_visible())
    violations = Axe().run(page).response["violations"]
    assert [v["id"] for v in violations if v["impact"] in ("serious", "critical")] == []


def test_the_page_of_an_export_that_could_not_start_fits_every_width_and_leads_back(page, shot, monkeypatch):
    """As staff see it when the database fails before a CSV's first row (tests/accounts: the failure itself)."""
    from axe_playwright_python.sync_playwright import Axe
    from django.db import OperationalError

    from accounts import exports

    def failing_chunks(*args, **kwargs):
        raise OperationalError("the database did not answer")
        yield  # a generator: it fails at its first read, as the export's first query would

    monkeypatch.setattr(exports, "_chunks", failing_chunks)
    UserFactory(username="staff", role="auditor")
    account = AccountFactory(owner="Zoë Holmes", initial_deposit=100_000)
    log_in(page, "staff")
    response = page.goto(f"/accounts/{account.id}/transactions.csv")
    assert response.status == 503
    back = page.get_by_role("link", name="Back to the account")
    at_every_width(page, shot, "export-failed", check=lambda width: back.is_visible())
    violations = Axe().run(page).response["violations"]
    assert [v["id"] for v in violations if v["impact"] in ("serious", "critical")] == []
