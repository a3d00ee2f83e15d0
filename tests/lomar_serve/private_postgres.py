"""A PostgreSQL of one test's own, which the test stops and starts again (a store outage): the session's shared
one (conftest.py `postgres_url`) must stay up for every other test.

It runs pgserver's binaries with `initdb` and `pg_ctl` directly, on a free TCP port of 127.0.0.1 that stays the
same across restarts, so a store URL made before an outage works after it. As root (PostgreSQL refuses to run as
root) it runs as pgserver's system user, in a folder outside pytest's temporary root, which pytest keeps private.

    server = PrivatePostgres.create()
    url = server.new_database()
    server.stop(); ...; server.start()
    server.remove()
"""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlunsplit

from tests.lomar_serve.processes import free_port

SYSTEM_USER = "pgserver"  # the user pgserver itself runs PostgreSQL as, when run as root


def _binaries() -> Path:
    import pgserver
    return Path(pgserver.__file__).parent / "pginstall" / "bin"


class PrivatePostgres:
    """One PostgreSQL server in its own folder, started and stopped on demand."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder = folder
        self.port = port
        self.data = folder / "data"
        self.log = folder / "server.log"
        self._as: dict[str, Any] = {}
        if os.geteuid() == 0:
            from pgserver.utils import ensure_user_exists
            entry = ensure_user_exists(SYSTEM_USER)
            os.chown(folder, entry.pw_uid, entry.pw_gid)
            self._as = {"user": entry.pw_uid, "group": entry.pw_gid}

    @classmethod
    def create(cls) -> PrivatePostgres:
        """A new, initialised and running server."""
        server = cls(Path(tempfile.mkdtemp(prefix="lomar-pg-own-")), free_port())
        server._run("initdb", "-D", str(server.data), "--auth=trust", "--encoding=utf8", "-U", "postgres")
        server.start()
        return server

    @property
    def url(self) -> str:
        """The server's maintenance database."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def new_database(self) -> str:
        """An empty database on this server; its URL."""
        import psycopg
        name = f"lifecycle_{secrets.token_hex(4)}"
        with psycopg.connect(self.url, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        return urlunsplit(("postgresql", f"postgres@127.0.0.1:{self.port}", f"/{name}", "", ""))

    def start(self) -> None:
        """Start it and wait until it accepts connections."""
        self._pg_ctl("start", "-l", str(self.log), "-o",
                     f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1")

    def stop(self) -> None:
        """Stop it at once (`-m fast`: open connections are cut, as when a database goes away)."""
        self._pg_ctl("stop", "-m", "fast")

    def running(self) -> bool:
        return subprocess.run([str(_binaries() / "pg_ctl"), "status", "-D", str(self.data)], capture_output=True,
                              **self._as).returncode == 0

    def remove(self) -> None:
        if self.data.is_dir() and self.running():
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def _pg_ctl(self, action: str, *args: str) -> None:
        self._run("pg_ctl", action, "-D", str(self.data), "-w", "-t", "60", *args)

    def _run(self, program: str, *args: str) -> None:
        result = subprocess.run([str(_binaries() / program), *args], capture_output=True, text=True, cwd=self.folder,
                                timeout=120, **self._as)
        if result.returncode != 0:
            raise RuntimeError(f"{program} {' '.join(args)} failed ({result.returncode}): {result.stdout}"
                               f"{result.stderr}\n{self.log_tail()}")
