"""Logs: every request once, every line with the request id, correlation id and actor in force."""

import json
import logging
import os
import subprocess
import sys

import pytest
from pythonjsonlogger.json import JsonFormatter

from accounts import services
from config import logs
from eventstore.context import metadata_context
from eventstore.models import Event
from tests.factories import AccountFactory, UserFactory
from tests.support import ROOT

pytestmark = pytest.mark.django_db(transaction=True)


def test_each_request_is_logged_once_with_its_request_id_and_actor(caplog, client):
    account = AccountFactory(initial_deposit=100)
    client.force_login(UserFactory(role="teller"))
    with caplog.at_level(logging.INFO, logger="bank.requests"):
        response = client.get(f"/accounts/{account.id}/", {"form": "x"})
    (record,) = [record for record in caplog.records if record.name == "bank.requests"]
    assert (record.method, record.path, record.status) == ("GET", f"/accounts/{account.id}/", response.status_code)
    assert record.request_id == record.correlation_id == response["X-Request-ID"]
    assert record.actor == response.wsgi_request.user.get_username()
    assert record.ms >= 0


def test_a_commands_log_line_and_its_events_share_the_correlation_id(caplog):
    account = AccountFactory(initial_deposit=100)
    with caplog.at_level(logging.INFO), metadata_context(correlation_id="c-42", actor="ann"):
        services.deposit(account_id=account.id, amount=5, source="cash")
        logging.getLogger("bank.test").info("deposited")
    (record,) = [record for record in caplog.records if record.name == "bank.test"]
    assert (record.correlation_id, record.actor, record.request_id) == ("c-42", "ann", None)
    latest = Event.objects.filter(aggregate_id=account.id).order_by("-version").first()
    assert latest.metadata["correlation_id"] == "c-42"


def test_a_json_line_has_the_time_level_logger_message_and_context():
    settings_of_json = dict(logs.config("json", "INFO")["formatters"]["json"])
    settings_of_json.pop("()")
    formatter = JsonFormatter(**settings_of_json)
    record = logging.LogRecord("bank.requests", logging.WARNING, __file__, 1, "%s went %s", ("it", "wrong"), None)
    with metadata_context(request_id="r-1", correlation_id="c-1", actor="bob"):
        logs.WithContext().filter(record)
    line = json.loads(formatter.format(record))
    assert {key: line[key] for key in ("level", "logger", "message", "request_id", "correlation_id", "actor")} == {
        "level": "WARNING", "logger": "bank.requests", "message": "it went wrong",
        "request_id": "r-1", "correlation_id": "c-1", "actor": "bob",
    }  # fmt: skip
    assert line["time"].endswith("+00:00")


def test_a_log_format_other_than_json_or_text_is_refused_by_name():
    with pytest.raises(ValueError, match="LOG_FORMAT must be json or text, not 'xml'"):
        logs.config("xml", "INFO")


def test_staff_logins_are_logged_without_their_passwords(caplog, client):
    user = UserFactory(username="logged_teller", role="teller")
    with caplog.at_level(logging.DEBUG):
        client.post("/login/", {"username": user.username, "password": "correct horse battery staple"})
    assert "correct horse" not in caplog.text


def test_a_management_command_that_goes_well_writes_nothing_to_the_log():
    # Libraries' start-up chatter (django-axes' version, the embedded server's commands) stays out.
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and result.stderr == ""
