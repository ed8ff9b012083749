"""Shared fixtures: members of a project in each role, API clients, a live Celery worker."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotations.models import Membership
from tests.factories import MembershipFactory, ProjectFactory, UserFactory
from trainer_bridge.tiny_model import TinyModelPaths, build_tiny_model

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny_model_paths(tmp_path_factory: pytest.TempPathFactory) -> TinyModelPaths:
    """The tiny local model, built once per test session (tests must not write into it)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"), seed=0)


@pytest.fixture
def project(db):
    return ProjectFactory(slug="alpha", name="Alpha")


@pytest.fixture
def trainer(project):
    return MembershipFactory(
        project=project, user=UserFactory(username="tina"), role="trainer"
    ).user


@pytest.fixture
def lead(project):
    return MembershipFactory(project=project, user=UserFactory(username="lee"), role="lead").user


@pytest.fixture
def engineer(project):
    return MembershipFactory(
        project=project, user=UserFactory(username="eve"), role=Membership.Role.ENGINEER
    ).user


@pytest.fixture
def outsider(db):
    return UserFactory(username="olga")


@pytest.fixture
def world(db):
    """Two projects with one object of every admin-registered model each, and a staff lead of
    the first (tests/annotations/admin_world.py)."""
    from tests.annotations.admin_world import build_world

    return build_world()


@pytest.fixture
def lead_client(client, world):
    """A test client logged in as the world's staff lead."""
    client.force_login(world.lead)
    return client


@pytest.fixture
def api_client_for():
    def make(user) -> APIClient:
        client = APIClient()
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return make


def _worker_env(**overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "config.settings.test"
    env["PARLEY_WORKER_USES_TEST_DB"] = "1"
    env.update(overrides)
    return env


@pytest.fixture
def start_celery_worker(transactional_db):
    """Start real `celery worker` processes on the configured broker, serving every queue.

    They share the test database (committed data only, hence transactional_db); extra keyword
    arguments become environment variables of the worker (e.g. fault injection). Every worker
    still running at the end of the test is stopped.
    """
    env = _worker_env()
    celery = [sys.executable, "-m", "celery", "-A", "config"]
    subprocess.run(
        [*celery, "purge", "-f", "-Q", "default,gpu,train"],
        env=env, cwd=ROOT, check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    started: list[subprocess.Popen] = []

    def start(name: str = "w1", **env_overrides: str) -> subprocess.Popen:
        log = Path(settings.VAR_DIR) / f"test-worker-{name}.log"
        with log.open("w") as out:
            proc = subprocess.Popen(
                [*celery, "worker", "-Q", "default,gpu,train", "--pool", "solo",
                 "--loglevel", "INFO", "--hostname", f"{name}-{os.getpid()}@%h",
                 "--without-heartbeat", "--without-mingle", "--without-gossip"],
                env=_worker_env(**env_overrides), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        started.append(proc)
        proc.log_path = log
        deadline = time.monotonic() + 60
        while "ready." not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"Celery worker did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
def celery_worker(start_celery_worker):
    """One real worker serving every queue for the length of the test."""
    return start_celery_worker()


def wait_for(condition, *, timeout: float = 30.0, interval: float = 0.1, message: str = ""):
    """Poll `condition` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    pytest.fail(message or f"condition not met within {timeout}s")
