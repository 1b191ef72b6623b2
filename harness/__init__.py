"""Shared set-up for benchmarks and the soak: a throw-away migrated database on the
configured server, and how worker processes reach it.

    harness.database   scratch_database(name): create and migrate it, yield, drop it
    harness.connect    database_url(conninfo), setup_django(conninfo) for spawned workers

bench/ and soak/ both use it, so that neither imports the other.
"""
