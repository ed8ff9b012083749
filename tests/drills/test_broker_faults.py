"""Fault drill on the broker: a Redis of its own restarted (without persistence) while
generation requests wait in its queue. The database is the record of what is queued; the
watchdog sends again what the restart lost, a real worker then runs each request once, and while
Redis is down the API still answers at once (requests wait in the database, rate limits let
calls through)."""

import contextlib
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

import pytest
import redis
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

from annotations.queueing import queue_depth
from annotations.services import conversation_start
from config.celery import app as celery_app
from tests.conftest import wait_for
from tests.factories import ModelVersionFactory
from trainer_bridge.generation import generation_request_create
from trainer_bridge.models import GenerationRequest
from trainer_bridge.tasks import generate
from trainer_bridge.watchdog import GENERATION_QUEUE, generations_resend_lost

pytestmark = pytest.mark.worker


@dataclass
class RedisServer:
    """A Redis of the drill's own on a free port, so that stopping it never takes down the
    machine's shared Redis (other tests' broker, other processes' caches)."""

    port: int
    log: Path
    host: str = "127.0.0.1"
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host=self.host, port=self.port, socket_connect_timeout=2)

    def up(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        with contextlib.suppress(redis.ConnectionError):  # it closes the connection as it goes
            self.client().shutdown(nosave=True)
        if self.process is not None:
            self.process.wait(timeout=20)
        wait_for(lambda: not self.up(), timeout=20, message="Redis did not stop")

    def start(self) -> None:
        with self.log.open("a") as out:
            self.process = subprocess.Popen(
                [shutil.which("redis-server"), "--bind", self.host, "--port", str(self.port),
                 "--save", "", "--appendonly", "no"],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_for(self.up, timeout=20, message=f"Redis did not start:\n{self.log.read_text()}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def redis_server(transactional_db, monkeypatch):
    """A private Redis that the test process's Celery app and its workers use as the broker."""
    if urlparse(settings.CELERY_BROKER_URL).scheme != "redis":
        pytest.skip("the drill needs a Redis broker (set CELERY_BROKER_URL to redis://...)")
    if not shutil.which("redis-server"):
        pytest.skip("the drill starts a Redis of its own with redis-server, which is not installed")
    server = RedisServer(port=free_port(), log=Path(settings.VAR_DIR) / "drill-redis.log")
    server.start()
    shared_broker = celery_app.conf.broker_url
    # Celery reads CELERY_BROKER_URL from the environment before its configuration.
    monkeypatch.setenv("CELERY_BROKER_URL", server.url)
    celery_app.conf.broker_url = server.url
    _forget_broker_connections()
    yield server
    celery_app.conf.broker_url = shared_broker
    _forget_broker_connections()
    server.stop()


def _forget_broker_connections() -> None:
    """Drop the connections and producers Celery pooled for the broker it used so far.

    `close()` forgets the connection pool but not the producer pool, which keeps publishing to
    the old broker once any earlier test of the process has sent a task.
    """
    celery_app.close()
    celery_app.amqp._producer_pool = None


def test_a_redis_restart_loses_no_queued_generation(
    redis_server, start_celery_worker, project, engineer, api_client_for, tiny_model_paths
):
    model = ModelVersionFactory(name="tiny-policy", source=str(tiny_model_paths.policy))
    project.candidate_models.add(model)
    project.max_generations_per_request = 4
    project.save()
    requests = []
    for text in ("Name a fruit.", "Name a river.", "Name a tree."):
        _, root = conversation_start(project=project, text=text)
        requests.append(
            generation_request_create(
                project=project,
                context=root,
                model_version=model,
                purpose="candidates",
                n=2,
                params={"max_new_tokens": 6, "seed": 1},
            )  # fmt: skip
        )
    assert queue_depth(GENERATION_QUEUE) == 3

    redis_server.stop()
    # With the broker (and the rate limits' cache) down, the API answers at once: the request
    # is stored as queued, and its wake-up call waits for the watchdog.
    cache = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://{redis_server.host}:{redis_server.port}/1",
        }
    }
    with override_settings(CACHES=cache):
        started = time.monotonic()
        response = api_client_for(engineer).post(
            f"/api/v1/projects/{project.slug}/generations/",
            {"model_version": model.name, "n": 2, "params": {"max_new_tokens": 6, "seed": 2},
             "messages": [{"role": "user", "content": "Name a colour."}]},
            format="json",
        )  # fmt: skip
        elapsed = time.monotonic() - started
    assert response.status_code == 201, response.content
    assert elapsed < 15, f"the API took {elapsed:.1f} s with Redis down"
    requests.append(GenerationRequest.objects.get(pk=response.json()["id"]))
    assert {r.state for r in GenerationRequest.objects.all()} == {"queued"}

    redis_server.start()  # empty: the restart lost the three messages
    assert queue_depth(GENERATION_QUEUE) == 0
    assert (
        generations_resend_lost(send=generate.delay) == 0
    )  # not yet: they might still be on their way
    assert (
        generations_resend_lost(now=timezone.now() + timedelta(minutes=5), send=generate.delay) == 4
    )
    assert (
        generations_resend_lost(now=timezone.now() + timedelta(minutes=5), send=generate.delay) == 0
    )  # sent once

    start_celery_worker(CELERY_BROKER_URL=redis_server.url)
    ids = [r.pk for r in requests]
    wait_for(
        lambda: (
            set(GenerationRequest.objects.filter(pk__in=ids).values_list("state", flat=True))
            == {"done"}
        ),
        timeout=120,
        message="the requests the restart lost were never run",
    )
    for request in GenerationRequest.objects.filter(pk__in=ids):
        assert request.attempts == 1
        assert sorted(request.outputs.values_list("output_index", flat=True)) == [0, 1]
