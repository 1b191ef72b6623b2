"""grant_app_role: the database role the application runs as, which cannot rewrite history.

Triggers stop UPDATE, DELETE and TRUNCATE on events for everyone, but a table's
owner (or a superuser) can disable triggers. So the application must not run as
the owner: this command gives a role exactly what the bank needs, with SELECT
and INSERT only on the events table, and nothing that lets it disable a trigger
(ALTER TABLE needs ownership; session_replication_role needs a superuser).

Run it as the owner of the schema, after `migrate`, and point the application's
DATABASE_URL at the role. Migrations and rebuild_projections (which create and
swap tables) keep running as the owner.
"""

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from psycopg import sql

APP_TABLES = "SELECT, INSERT, UPDATE, DELETE"


class Command(BaseCommand):
    help = "Grant ROLE what the application needs: SELECT and INSERT only on events; read and write on read models."

    def add_arguments(self, parser):
        parser.add_argument("role", help="The database role the application connects as.")
        parser.add_argument("--create", action="store_true", help="Create the role (LOGIN, no password) if it is missing.")

    def handle(self, *args, role, create, **options):
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
            exists = cursor.fetchone() is not None
            cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", [role])
            if exists and cursor.fetchone()[0]:
                raise CommandError(f"{role} is a superuser: a superuser can disable triggers; use an ordinary role.")
        if not exists and not create:
            raise CommandError(f"there is no role {role}; create it, or pass --create.")
        statements = [
            *([sql.SQL("CREATE ROLE {} LOGIN")] if not exists else []),
            sql.SQL("GRANT USAGE ON SCHEMA public TO {}"),
            sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {}"),
            sql.SQL(f"GRANT {APP_TABLES} ON ALL TABLES IN SCHEMA public TO {{}}"),
            sql.SQL("REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON events FROM {}"),
            sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {}"),
        ]
        with transaction.atomic(), connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement.format(sql.Identifier(role)).as_string(connection.connection))
        self.stdout.write(self.style.SUCCESS(f"{role}: SELECT, INSERT on events; {APP_TABLES} on the other tables"))
