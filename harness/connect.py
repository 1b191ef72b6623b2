"""How a process reaches the scratch database: as a URL, and with Django set up on it.

Worker processes are spawned: each starts a fresh interpreter, so it sets
Django up again, on the database named by the libpq connection kwargs its
parent hands it.
"""

import os
from urllib.parse import quote

import django


def database_url(conninfo) -> str:
    """The DATABASE_URL that config.settings reads, for libpq connection kwargs."""
    user = quote(conninfo.get("user", ""))
    password = f":{quote(conninfo['password'])}" if conninfo.get("password") else ""
    host, port, name = conninfo.get("host", ""), conninfo.get("port", 5432), conninfo["dbname"]
    if host.startswith("/"):  # a Unix socket directory, as the embedded server uses
        return f"postgresql://{user}{password}@/{name}?host={quote(host)}&port={port}"
    return f"postgresql://{user}{password}@{host}:{port}/{name}"


def setup_django(conninfo=None):
    """Set Django up: on the database `conninfo` names (a spawned worker), else on the configured one."""
    if conninfo is not None:
        os.environ["DATABASE_URL"] = database_url(conninfo)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
