"""grant_app_role: give the application's or the runner's database role exactly its privileges.

Triggers stop UPDATE, DELETE and TRUNCATE on events for everyone, but a table's
owner (or a superuser) can disable triggers. So neither the web nor the runner
may connect as the owner, and each gets only what settings.DATABASE_GRANTS
lists for it (config/grants.py: table by table, every table of schema public).

In one transaction the command revokes everything the role holds on the schema's
tables, columns and sequences, then grants exactly the list; so it is
idempotent, and re-running it removes anything granted by hand. It refuses, and
changes nothing, when a table has no entry in the list (a migration added one:
decide who may touch it), or when the role is a superuser or may act as the
owner of a table. Run it as the owner after every migrate, which may add
tables. A rebuild needs no re-run: the swapped-in table keeps the grants of the
table it replaces.
"""

import re
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction
from psycopg import sql

# "SELECT", or "INSERT (a, b)": a privilege, optionally limited to some columns.
PRIVILEGE = re.compile(r"^(SELECT|INSERT|UPDATE|DELETE|USAGE)(?: \((\w+(?:, \w+)*)\))?$")

RELATIONS = """
SELECT c.relname, c.relkind = 'S' FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
"""
# A member of an owner's role can do what the owner can: ALTER TABLE ... DISABLE TRIGGER.
OWNED = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND pg_has_role(%s, c.relowner, 'MEMBER') ORDER BY 1 LIMIT 1
"""


class Command(BaseCommand):
    help = (
        "Grant ROLE exactly the application's privileges (or, with --runner, the projection runner's), "
        "table by table as config/grants.py lists them, after revoking everything else. Run after every migrate."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("role", help="The database role the application (or the runner) connects as.")
        parser.add_argument("--runner", action="store_true", help="Grant the run_projections runner's privileges.")
        parser.add_argument(
            "--create", action="store_true", help="Create the role (LOGIN, no password) if it is missing."
        )

    def handle(self, *args: Any, role: str, runner: bool, create: bool, **options: Any) -> None:
        party = "runner" if runner else "application"
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", [role])
            found = cursor.fetchone()
            if found and found[0]:
                raise CommandError(f"{role} is a superuser: a superuser can disable triggers; use an ordinary role.")
            if found:
                cursor.execute(OWNED, [role])
                if owned := cursor.fetchone():
                    raise CommandError(
                        f"{role} owns (or may act as the owner of) {owned[0]}; use a role that owns nothing."
                    )
            elif not create:
                raise CommandError(f"there is no role {role}; create it, or pass --create.")
            cursor.execute(RELATIONS)
            name = sql.Identifier(role)
            grants = self._grants(party, dict(cursor.fetchall()), name)
            statements = [
                *([sql.SQL("CREATE ROLE {} LOGIN").format(name)] if not found else []),
                sql.SQL("REVOKE ALL ON SCHEMA public FROM {}").format(name),
                sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(name),
                # Table-level REVOKE ALL takes the column-level privileges with it.
                sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {}").format(name),
                sql.SQL("REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {}").format(name),
                *grants,
            ]
            for statement in statements:
                cursor.execute(statement.as_string(connection.connection))
        self.stdout.write(f"{role}: the {party} role's privileges (config/grants.py)")
        listed = settings.DATABASE_GRANTS[party]
        for table, privileges in listed.items():
            if privileges:
                self.stdout.write(f"  {table}: {', '.join(privileges)}")
        self.stdout.write(f"  nothing on the {sum(not privileges for privileges in listed.values())} other tables")
        self.stdout.write(self.style.SUCCESS(f"{role}: granted"))

    def _grants(self, party: str, relations: dict[str, bool], role: sql.Identifier) -> list[sql.Composed]:
        """The GRANT statements of `party`'s list; refuses a list that misses a table."""
        wanted = settings.DATABASE_GRANTS[party]
        missing = sorted(name for name, is_sequence in relations.items() if not is_sequence and name not in wanted)
        if missing:
            raise CommandError(
                f"no entry for {', '.join(missing)} in the {party} role's list (DATABASE_GRANTS, config/grants.py): "
                "say what the role may do there, even if nothing. Nothing was changed."
            )
        unknown = sorted(name for name in wanted if name not in relations)
        if unknown:
            raise CommandError(
                f"the {party} role's list names {', '.join(unknown)}, not in schema public. Nothing was changed."
            )
        statements: list[sql.Composed] = []
        for table, privileges in wanted.items():
            kind = sql.SQL("SEQUENCE" if relations[table] else "TABLE")
            for privilege in privileges:
                match = PRIVILEGE.match(privilege)
                if not match:
                    raise CommandError(
                        f"{party} role, {table}: {privilege!r} is not a privilege such as 'SELECT' or 'INSERT (a, b)'."
                    )
                columns: sql.Composable = sql.SQL("")
                if match[2]:
                    columns = sql.SQL(" ({})").format(sql.SQL(", ").join(map(sql.Identifier, match[2].split(", "))))
                statements.append(
                    sql.SQL("GRANT {}{} ON {} {} TO {}").format(
                        sql.SQL(match[1]), columns, kind, sql.Identifier(table), role
                    )
                )
        return statements
