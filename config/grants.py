"""What each database role may do, table by table: read by `manage.py grant_app_role`.

Three parties use the database. The owner (migrate, rebuild_projections, the
verifiers, demo and benchmark loads) owns every table and is not listed here.
The application role (the web, take_snapshots, replay_account,
projection_status, axes_reset_username) and the runner role (run_projections) get
exactly what is listed below and nothing else. Someone who holds either role's
password must not be able to rewrite history or cheat an idempotency key or a
checkpoint, so neither may UPDATE or DELETE an event, delete a command-log row,
or move a checkpoint it does not keep.

The mapping lives in config, the one place that knows every installed app:
`eventstore` must not import `accounts`, and the command only reads
`settings.DATABASE_GRANTS`. Every table in schema public needs an entry for
each role, NOTHING included, so a migration that adds a table makes
grant_app_role stop until someone decides who may touch it. Sequences need an
entry only where a role inserts rows that take the sequence's default; identity
columns (Django's own ids) need no grant on their sequence.

A privilege is "SELECT", "INSERT", "UPDATE", "DELETE" or "USAGE" (sequences),
optionally followed by a column list: "INSERT (a, b)".
"""

NOTHING = ()
READ = ("SELECT",)
READ_WRITE = ("SELECT", "INSERT", "UPDATE", "DELETE")

APPLICATION = {
    # The log: read, and append without choosing the id or the transaction_id
    # (the position that orders the log); never UPDATE or DELETE.
    "events": (
        "SELECT",
        "INSERT (aggregate_id, aggregate_type, event_type, event_data, metadata, version, created_at, "
        "chain_hash, key_id, mac)",
    ),
    # What vouches for the unsigned events of before signing, and the events the owner set
    # aside: both written by the owner alone, read by every load.
    "event_seal": READ,
    "event_quarantine": READ,
    # verify_event_store's findings, which the dashboard shows; written by the owner.
    "integrity_run": READ,
    "integrity_finding": READ,
    # USAGE lets an INSERT take the next id; setval would need UPDATE.
    "events_id_seq": ("USAGE",),
    # A cache the commands upsert.
    "snapshots": ("SELECT", "INSERT", "UPDATE"),
    # Deleting or changing a row would let its idempotency key run twice.
    "command_log": ("SELECT", "INSERT"),
    # The inline read models, upserted by every command.
    "account_read_model": ("SELECT", "INSERT", "UPDATE"),
    "approval_read_model": ("SELECT", "INSERT", "UPDATE"),
    # Kept by the runner: a checkpoint moved ahead would make it skip events. The pages
    # and projection_status only read them.
    "account_daily_statement": READ,
    "bank_totals": READ,
    "bank_totals_account": NOTHING,
    "projection_checkpoints": READ,
    # Django's logins, outside the database threat model (a leaked credential is
    # a breach to rotate): staff are added and put in groups in /admin/.
    "auth_user": READ_WRITE,
    "auth_user_groups": READ_WRITE,
    "auth_user_user_permissions": READ_WRITE,
    "auth_group": READ_WRITE,
    "auth_group_permissions": READ_WRITE,
    "django_session": READ_WRITE,
    "axes_accessattempt": READ_WRITE,
    "axes_accessattemptexpiration": READ_WRITE,
    "axes_accessfailurelog": READ_WRITE,
    "axes_accesslog": READ_WRITE,
    # The admin records what staff did there and shows the latest on its index page.
    "django_admin_log": ("SELECT", "INSERT"),
    # Written only by migrate.
    "auth_permission": READ,
    "django_content_type": READ,
    "django_migrations": READ,
}

RUNNER = {
    # The runner also writes Expired for approval requests past their time: a command like any
    # other, appended signed (never UPDATE or DELETE), which loads the request first.
    "events": APPLICATION["events"],
    "events_id_seq": ("USAGE",),
    "event_seal": READ,
    "event_quarantine": READ,
    "snapshots": READ,
    "approval_read_model": ("SELECT", "UPDATE"),
    "integrity_run": NOTHING,
    "integrity_finding": NOTHING,
    "projection_checkpoints": ("SELECT", "INSERT", "UPDATE"),
    "account_daily_statement": ("SELECT", "INSERT", "UPDATE"),
    "bank_totals": ("SELECT", "INSERT", "UPDATE", "DELETE"),
    "bank_totals_account": ("SELECT", "INSERT", "UPDATE"),
    "command_log": NOTHING,
    "account_read_model": NOTHING,
    "auth_user": NOTHING,
    "auth_user_groups": NOTHING,
    "auth_user_user_permissions": NOTHING,
    "auth_group": NOTHING,
    "auth_group_permissions": NOTHING,
    "django_session": NOTHING,
    "axes_accessattempt": NOTHING,
    "axes_accessattemptexpiration": NOTHING,
    "axes_accessfailurelog": NOTHING,
    "axes_accesslog": NOTHING,
    "django_admin_log": NOTHING,
    "auth_permission": NOTHING,
    "django_content_type": NOTHING,
    "django_migrations": NOTHING,
}

DATABASE_GRANTS = {"application": APPLICATION, "runner": RUNNER}
