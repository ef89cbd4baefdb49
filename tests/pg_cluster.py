"""PostgreSQL servers a test starts itself, from the installed binaries: a primary in a
temporary directory, streaming standbys of it, and what happens to servers in production
(a clean stop, a SIGKILL of the whole server, a promotion).

The shared server on 127.0.0.1:5432 (tests/databases.py) is for tests that need a database;
these are for tests that need to take one away: an outage, a failover. Each server is its
own cluster (initdb) on a free port of 127.0.0.1 with trust authentication, sized small
(several run at once on a busy machine) but with durability as in production: fsync and
synchronous commit stay on, the failover test's figures depend on them.

PostgreSQL refuses to run as root; run as root, the servers run as the `postgres` user
(runuser) in a directory it owns.

    with PgClusters() as pg:
        primary = pg.primary()
        standby = pg.standby(primary, "standby1")
        primary.configure(synchronous_standby_names="standby1")
        ...
        primary.kill()
        standby.promote()
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import pytest

# Production durability; small memory. Written into postgresql.conf, so standbys copy it.
SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "40",
    "shared_buffers": "'16MB'",
    "wal_level": "replica",
    "max_wal_senders": "6",
    "max_replication_slots": "6",
    "hot_standby": "on",
    "wal_keep_size": "'128MB'",
    "fsync": "on",
    "synchronous_commit": "on",
    "log_min_messages": "warning",
}
START_TIMEOUT_S = 60


@cache
def bindir() -> Path | None:
    """The newest installed server's binaries (Debian keeps them off PATH)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                   else 0)
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@cache
def _server_user() -> str | None:
    """Whom the servers run as: `postgres` when this process is root, else this user."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "missing"
    return "postgres"


def clusters_problem() -> str | None:
    """Why a test cannot start its own PostgreSQL here, or None."""
    if bindir() is None:
        return "no PostgreSQL server binaries (initdb) installed"
    if _server_user() == "missing":
        return "running as root, and there is no postgres user to run a server as"
    return None


def require_clusters() -> None:
    problem = clusters_problem()
    if problem is None:
        return
    if os.environ.get("TILLPOINT_REQUIRE_POSTGRES"):
        pytest.fail(problem)
    pytest.skip(problem)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd: Sequence[str], timeout: float = 120) -> str:
    user = _server_user()
    full = ["runuser", "-u", user, "--", *cmd] if user else list(cmd)
    done = subprocess.run(full, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "LC_ALL": "C", "PGTZ": "UTC"},
                          stdin=subprocess.DEVNULL, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n"
                           f"{done.stdout}\n{done.stderr}")
    return done.stdout


def _alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie nobody reaped yet."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


class PgCluster:
    """One PostgreSQL server: its data directory, port and log, under a PgClusters root."""

    def __init__(self, root: Path, name: str, port: int) -> None:
        self.root = root
        self.name = name
        self.port = port
        self.datadir = root / name
        self.log = root / f"{name}.log"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str, timeout: float = START_TIMEOUT_S) -> str:
        return _run([str(bindir() / "pg_ctl"), "-D", str(self.datadir), *args],
                    timeout=timeout + 10)

    def _append_config(self, settings: dict[str, str], file: str = "postgresql.auto.conf",
                       ) -> None:
        path = self.datadir / file
        with path.open("a") as f:  # root may write it; the server only reads it
            f.write("".join(f"{k} = {v}\n" for k, v in settings.items()))

    # -- what an operator (or a fault) does to a server -------------------------------------

    def start(self) -> None:
        self._ctl("start", "-w", "-t", str(START_TIMEOUT_S), "-l", str(self.log))

    def stop(self, mode: str = "fast") -> None:
        """A clean stop (`fast`: sessions are ended, the checkpoint written) or `immediate`."""
        self._ctl("stop", "-w", "-m", mode, "-t", str(START_TIMEOUT_S))

    def kill(self, timeout: float = 30) -> None:
        """SIGKILL to the server and every backend at once, as a lost machine: nothing is
        flushed or said goodbye to. pg_ctl made the postmaster leader of its own process
        group, which its backends share."""
        pid = self.pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while _alive(pid):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} (pid {pid}) survived SIGKILL")
            time.sleep(0.05)

    def promote(self) -> None:
        """A standby becomes a primary (and takes writes) once this returns."""
        self._ctl("promote", "-w", "-t", str(START_TIMEOUT_S))

    def pid(self) -> int | None:
        """The postmaster's pid while it runs."""
        try:
            pid = int((self.datadir / "postmaster.pid").read_text().split()[0])
        except (FileNotFoundError, IndexError, ValueError):
            return None
        return pid if _alive(pid) else None

    @property
    def running(self) -> bool:
        return self.pid() is not None

    # -- SQL ------------------------------------------------------------------------------

    def sql(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement as the superuser, in autocommit; its rows, if any."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            cur = conn.execute(statement, params)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description is not None else []

    def configure(self, **settings: str) -> None:
        """ALTER SYSTEM each setting (written as SQL literals' text) and reload."""
        for name, value in settings.items():
            self.sql(f"ALTER SYSTEM SET {name} = '{value}'")
        self.sql("SELECT pg_reload_conf()")

    def in_recovery(self) -> bool:
        return bool(self.sql("SELECT pg_is_in_recovery()")[0][0])

    def receiver_pid(self) -> int | None:
        """A standby's WAL receiver process (SIGSTOP it to make the standby fall silent)."""
        rows = self.sql("SELECT pid FROM pg_stat_wal_receiver")
        return int(rows[0][0]) if rows else None

    def replayed_all_received(self) -> bool:
        """A standby has applied all the WAL it holds: queries on it see all of it."""
        return bool(self.sql("SELECT pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn()"
                             )[0][0])

    def replicas(self) -> dict[str, tuple[str, str]]:
        """The standbys streaming from this server: name -> (state, sync_state)."""
        return {name: (state, sync) for name, state, sync in self.sql(
            "SELECT application_name, state, sync_state FROM pg_stat_replication")}


class PgClusters:
    """Owns the servers it creates: at exit every one still running is killed and the
    directory removed, also after a failed test."""

    def __init__(self) -> None:
        require_clusters()
        # Not pytest's tmp_path: that is root's alone, and the server runs as postgres.
        self.root = Path(tempfile.mkdtemp(prefix="tillpoint-pg-"))
        user = _server_user()
        if user:
            entry = pwd.getpwnam(user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.clusters: list[PgCluster] = []

    def __enter__(self) -> PgClusters:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for cluster in self.clusters:
            with contextlib.suppress(Exception):
                cluster.kill()
        shutil.rmtree(self.root, ignore_errors=True)

    def _new(self, name: str) -> PgCluster:
        cluster = PgCluster(self.root, name, _free_port())
        self.clusters.append(cluster)
        return cluster

    def primary(self, name: str = "primary", start: bool = True,
                **settings: str) -> PgCluster:
        """A new cluster, started unless `start` is False. `settings` go into its
        postgresql.conf after SETTINGS (copied to standbys made of it)."""
        cluster = self._new(name)
        _run([str(bindir() / "initdb"), "-D", str(cluster.datadir), "-U", "postgres",
              "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"])
        cluster._append_config({**SETTINGS, "unix_socket_directories": f"'{self.root}'",
                                **settings}, "postgresql.conf")
        cluster._append_config({"port": str(cluster.port), "cluster_name": f"'{name}'"})
        if start:
            cluster.start()
        return cluster

    def standby(self, of: PgCluster, name: str, start: bool = True) -> PgCluster:
        """A streaming standby of `of`, copied by pg_basebackup; it reports as `name` (its
        cluster_name) to the primary, which is what synchronous_standby_names lists."""
        cluster = self._new(name)
        _run([str(bindir() / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(of.port),
              "-U", "postgres", "-D", str(cluster.datadir), "-R", "-X", "stream",
              "-c", "fast", "--no-sync"])
        # Its own port and name; and no synchronous standby of its own, whatever the primary
        # had when copied: once promoted it would wait for one that does not exist.
        cluster._append_config({"port": str(cluster.port), "cluster_name": f"'{name}'",
                                "synchronous_standby_names": "''"})
        if start:
            cluster.start()
        return cluster


def multi_host_url(*clusters: PgCluster, **params: str) -> str:
    """One libpq URL naming every server, tried in order; `target_session_attrs` picks the
    one that takes writes, so a client finds a promoted standby by itself."""
    hosts = ",".join(f"127.0.0.1:{c.port}" for c in clusters)
    query = "&".join(f"{k}={v}" for k, v in
                     {"target_session_attrs": "read-write", **params}.items())
    return f"postgresql://postgres@{hosts}/postgres?{query}"
