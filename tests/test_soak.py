"""A short soak inside make test: load, killed connections, cancelled statements; no violation."""

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from soak.checks import check
from tests.factories import AccountFactory

ROOT = Path(__file__).resolve().parents[1]


def run_soak(*args):
    """Run `python -m soak ARGS`; return its result and the figures it printed."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    result = subprocess.run(
        [sys.executable, "-m", "soak", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    print(result.stdout)
    figures = {
        name.strip(): int(value.replace(",", ""))
        for name, value in (line.rsplit(None, 1) for line in result.stdout.splitlines() if line.startswith("  "))
        if value.replace(",", "").isdigit()
    }
    return result, figures


@pytest.mark.slow
def test_a_short_soak_under_faults_breaks_no_invariant():
    result, figures = run_soak("--seconds", "8", "--workers", "3", "--accounts", "20", "--seed", "11")
    assert result.returncode == 0, result.stdout + result.stderr
    assert figures["violations"] == 0
    assert figures["attempted"] > 0 and figures["succeeded"] > 0 and figures["invariants checked"] == 15
    assert "with 0 violations" in result.stdout


@pytest.mark.slow
def test_a_soak_shorter_than_its_workers_take_to_start_still_runs_commands():
    # Spawned workers take about a second to import Django: a clock started with them would end first.
    result, figures = run_soak("--seconds", "0.5", "--workers", "2", "--accounts", "10", "--seed", "5")
    assert result.returncode == 0, result.stdout + result.stderr
    assert figures["attempted"] > 0 and figures["succeeded"] > 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "totals, message",
    [
        (Counter(), "no command was attempted"),
        (Counter({"attempted": 5, "refused by rules": 5}), "5 commands attempted, none succeeded"),
    ],
)
def test_a_soak_that_did_no_work_is_a_violation(totals, message, capsys):
    assert check(totals, {}) >= 1
    assert f"VIOLATION commands were attempted and some succeeded: {message}" in capsys.readouterr().out


def test_a_soak_without_cold_accounts_is_refused_before_it_starts():
    result, _ = run_soak("--seconds", "1", "--accounts", "4", "--hot", "4")
    assert result.returncode == 2 and "--accounts > --hot" in result.stderr


@pytest.mark.django_db(transaction=True)
def test_an_account_whose_events_break_a_rule_is_a_violation_not_a_crash(tamper, capsys):
    account = AccountFactory(initial_deposit=100)
    tamper(account.id, "Withdrawn", {"amount": 500, "reason": "planted", "schema_version": 2})
    assert check(Counter({"attempted": 1, "succeeded": 1}), {}) >= 1
    printed = capsys.readouterr().out
    assert f"VIOLATION every account replays: Version 2 of account {account.id} (Withdrawn) cannot be read" in printed
    assert "the balance would go below zero" in printed
