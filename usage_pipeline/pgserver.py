"""A throwaway PostgreSQL server: initdb + pg_ctl in a temp dir, on loopback only.

Used by the test suite (a real server, never mocked) and the benchmark. It runs the binaries
as the `postgres` user when we are root, trusts connections on 127.0.0.1 only, and switches
durability off (fsync, synchronous_commit, full_page_writes) because the data is thrown away.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path


class ThrowawayPostgres:
    """Start with `with ThrowawayPostgres() as server:`; every database dies with it."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="usage_pg_"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._as_postgres = os.geteuid() == 0

    def __enter__(self) -> ThrowawayPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        command = ["runuser", "-u", "postgres", "--", *args] if self._as_postgres else list(args)
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    def start(self) -> None:
        for binary in ("initdb", "pg_ctl"):
            if shutil.which(binary) is None:
                raise RuntimeError(
                    f"PostgreSQL binary {binary!r} not found on PATH: install PostgreSQL 15 "
                    "(Debian: apt-get install postgresql); a real server is needed, nothing is skipped"
                )
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        result = self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed: {result.stderr.strip()[-800:]}")
        options = (f"-c port={self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 "
                   "-c max_wal_size=4GB")
        result = self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "-t", "60", "start")
        if result.returncode != 0:
            log = (self.root / "log").read_text() if (self.root / "log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {result.stderr.strip()[-400:]} {log[-800:]}")

    def stop(self) -> None:
        if self.data.exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def conninfo(self, database: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={database}"

    def create_database(self, *, template: str | None = None, name: str | None = None) -> str:
        """A new database (a copy of `template` when given); returns its SQLAlchemy URL."""
        import psycopg

        name = name or f"b_{uuid.uuid4().hex[:12]}"
        clause = f" template {template}" if template else ""
        with psycopg.connect(self.conninfo(), autocommit=True) as connection:
            connection.execute(f"create database {name}{clause}")
        return self.url(name)

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.conninfo(), autocommit=True) as connection:
            connection.execute(f"drop database if exists {name} with (force)")

    def version(self) -> str:
        import psycopg

        with psycopg.connect(self.conninfo()) as connection:
            return str(connection.execute("show server_version").fetchone()[0])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
