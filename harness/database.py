"""A throw-away migrated database on the configured server, named by its caller.

The caller names it (bank_bench, bank_soak) so that the bench and the soak
never drop each other's database. A database of that name is dropped without
asking: never point DATABASE_URL at the bank's own server.
"""

from contextlib import contextmanager

from harness.connect import setup_django


@contextmanager
def scratch_database(name: str):
    """Create a fresh, migrated database `name`, yield libpq connection kwargs, drop it."""
    setup_django()
    from django.conf import settings
    from django.db import connection

    settings.DEBUG = False  # as in production: no query log kept in memory

    connection.settings_dict["TEST"]["NAME"] = name
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        params = connection.get_connection_params()
        yield {k: params[k] for k in ("dbname", "user", "password", "host", "port") if params.get(k)}
    finally:
        connection.close()
        with connection._nodb_cursor() as cursor:  # a run that failed may leave sessions behind
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                [name],
            )
        connection.creation.destroy_test_db(old_name, verbosity=0)
