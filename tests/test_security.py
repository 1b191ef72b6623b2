"""Security of every page: headers, throttled logins, production cookies, and no URL left unchecked."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[1]


def test_pages_carry_the_security_headers():
    client = Client()
    client.force_login(UserFactory(role="auditor"))
    response = client.get("/")
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy and "unsafe-eval" not in policy
    login = Client().get("/login/")
    assert "Content-Security-Policy" in login and login["X-Frame-Options"] == "DENY"


def test_logins_are_throttled_after_five_failures_even_with_the_right_password():
    UserFactory(username="victim")
    client = Client(REMOTE_ADDR="203.0.113.9")
    for _ in range(4):
        response = client.post("/login/", {"username": "victim", "password": "wrong"})
        assert response.status_code == 200 and "Please enter a correct username" in response.content.decode()
    assert client.post("/login/", {"username": "victim", "password": "wrong"}).status_code == 429
    locked = client.post("/login/", {"username": "victim", "password": PASSWORD})
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.content.decode()
    assert "_auth_user_id" not in client.session


def failures_after_four_failures_and_a_success():
    """Fail four times, log in, then fail four more times; the statuses of the last four."""
    UserFactory(username="forgetful")
    wrong = {"username": "forgetful", "password": "wrong"}
    right = {"username": "forgetful", "password": PASSWORD}
    client = Client(REMOTE_ADDR="203.0.113.10")
    assert [client.post("/login/", wrong).status_code for _ in range(4)] == [200, 200, 200, 200]
    assert client.post("/login/", right).status_code == 302
    again = Client(REMOTE_ADDR="203.0.113.10")  # logged out, from the same address
    return [again.post("/login/", wrong).status_code for _ in range(4)]


def test_a_successful_login_before_the_limit_resets_the_count():
    assert failures_after_four_failures_and_a_success() == [200, 200, 200, 200]


def test_without_the_reset_on_success_the_fifth_failure_overall_locks_out(settings):
    settings.AXES_RESET_ON_SUCCESS = False
    assert failures_after_four_failures_and_a_success() == [429, 429, 429, 429]


def test_production_cookies_are_secure_and_http_only_and_https_is_enforced():
    env = {
        **{k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"},
        "DJANGO_SETTINGS_MODULE": "config.production",
        "SECRET_KEY": "x" * 60,
        "ALLOWED_HOSTS": "bank.example",
        "EVENTSTORE_SIGNING_KEYS": "k1:" + "y" * 40,
    }
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.SESSION_COOKIE_SECURE, s.SESSION_COOKIE_HTTPONLY, s.CSRF_COOKIE_SECURE, "
        "s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS > 0, s.DEBUG)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.stdout.split() == ["True", "True", "True", "True", "True", "False"], result.stderr


CHECKED = {
    # every URL name of the site, and the test that checks who may use it and how
    "login", "logout",
    "healthz", "readyz",  # test_health.py: open to all, show no data
    "accounts:dashboard", "accounts:list", "accounts:open", "accounts:detail", "accounts:command",
    "accounts:review",
    "accounts:approvals", "accounts:approval", "accounts:approval_command",  # test_approval_pages.py
    "accounts:audit", "accounts:audit_csv", "accounts:statement_csv", "accounts:transactions_csv",
}  # fmt: skip


def _names(resolver, namespace=""):
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            if pattern.namespace == "admin":
                continue  # Django's admin: checked by tests/accounts/test_admin.py
            yield from _names(pattern, f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace)
        elif isinstance(pattern, URLPattern) and pattern.name:
            yield namespace + pattern.name


def test_every_url_of_the_site_is_in_the_permission_matrix():
    assert set(_names(get_resolver())) == CHECKED
