"""Fault drills: the site served by a real gunicorn, a client that retries as ours should.

The web server runs in processes of its own on the test database (committed data only, hence
`transactional_db`) with production's persistent database connections, so a drill can kill its
workers or restart the database under it.
"""

import http.client
import json
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection, connections
from rest_framework.authtoken.models import Token

from tests.conftest import ROOT, worker_env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Gunicorn:
    process: subprocess.Popen
    port: int
    log_path: Path

    def workers(self) -> list[int]:
        """Process ids of the master's workers right now."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()]

    def wait_for_workers(self, count: int, *, timeout: float = 30) -> list[int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            workers = self.workers()
            if len(workers) >= count:
                return workers
            time.sleep(0.1)
        pytest.fail(f"gunicorn never had {count} workers:\n{self.log_path.read_text()[-3000:]}")


@pytest.fixture
def gunicorn(transactional_db):
    """gunicorn serving the site with 2 workers on a free port; stopped after the test."""
    port = free_port()
    log = Path(settings.VAR_DIR) / "test-gunicorn.log"
    env = worker_env(CONN_MAX_AGE="60")
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "config.wsgi:application",
             "--bind", f"127.0.0.1:{port}", "--workers", "2", "--timeout", "30",
             "--graceful-timeout", "3", "--access-logfile", "-"],
            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    server = Gunicorn(process=process, port=port, log_path=log)
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"gunicorn did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
    server.wait_for_workers(2)
    yield server
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


# A dropped connection, as a client meets a killed worker or a server that went away.
DROPPED = (ConnectionError, http.client.HTTPException, TimeoutError, OSError)


@dataclass
class Answer:
    status: int
    body: dict | None
    headers: dict[str, str]


@dataclass
class RetryingClient:
    """A JSON API client that retries a 503 (after its Retry-After) and a dropped connection,
    as the pages' scripts and a well-behaved API client do, and counts what it met."""

    port: int
    token: str
    tries: int = 20
    met: Counter = field(default_factory=Counter)
    not_json: list[str] = field(default_factory=list)

    def once(self, method: str, path: str, body: dict | None = None) -> Answer:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            headers = {"Authorization": f"Token {self.token}", "Accept": "application/json"}
            if payload is not None:
                headers["Content-Type"] = "application/json"
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            raw = response.read()
            try:
                parsed = json.loads(raw) if raw else None
            except ValueError:
                self.not_json.append(f"{method} {path} -> {response.status}: {raw[:200]!r}")
                parsed = None
            return Answer(response.status, parsed, dict(response.getheaders()))
        finally:
            connection.close()

    def call(self, method: str, path: str, body: dict | None = None) -> Answer:
        for _ in range(self.tries):
            try:
                answer = self.once(method, path, body)
            except DROPPED as exc:
                self.met[f"dropped ({type(exc).__name__})"] += 1
                time.sleep(0.3)
                continue
            self.met[str(answer.status)] += 1
            if answer.status != 503:
                return answer
            assert answer.body and answer.body.get("code") == "database_unavailable", answer
            time.sleep(min(float(answer.headers.get("Retry-After", "1")), 2.0))
        pytest.fail(f"{method} {path} got no answer in {self.tries} tries: {dict(self.met)}")


@pytest.fixture
def retrying_client(gunicorn):
    def make(user) -> RetryingClient:
        token, _ = Token.objects.get_or_create(user=user)
        return RetryingClient(port=gunicorn.port, token=token.key)

    return make


@dataclass(frozen=True)
class PostgresCluster:
    version: str
    name: str = "main"

    def restart(self) -> float:
        """Restart the server (fast mode: sessions are cut, as in a crash or a failover);
        returns the seconds it took."""
        started = time.monotonic()
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", "--mode", "fast",
             self.version, self.name, "restart"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        # The restart cut this thread's connection too: the next query opens a new one.
        connections.close_all()
        return time.monotonic() - started


@pytest.fixture
def postgres_cluster(transactional_db) -> PostgresCluster:
    """The local PostgreSQL cluster the tests run on, which a drill may restart."""
    if connection.vendor != "postgresql":
        pytest.skip("restarting the database is a PostgreSQL drill; these tests run on SQLite")
    if connection.settings_dict.get("HOST") not in ("127.0.0.1", "localhost", ""):
        pytest.skip("the drill restarts a PostgreSQL on this machine; the tests use a remote one")
    clusters = Path("/etc/postgresql")
    versions = sorted(p.name for p in clusters.iterdir()) if clusters.is_dir() else []
    if not versions or not shutil.which("pg_ctlcluster"):
        pytest.skip("needs pg_ctlcluster (Debian's postgresql-common) to restart PostgreSQL")
    return PostgresCluster(version=versions[-1])
