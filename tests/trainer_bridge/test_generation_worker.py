"""Generation through a real Celery worker on the configured broker (Redis in CI)."""

import os
import signal
from datetime import timedelta

import pytest
from django.utils import timezone

from annotations.models import Message
from annotations.services import conversation_start
from tests.conftest import wait_for
from tests.factories import ModelVersionFactory, ProjectFactory
from trainer_bridge.generation import generation_request_create
from trainer_bridge.models import GenerationRequest
from trainer_bridge.tasks import generate, generation_send
from trainer_bridge.watchdog import generations_requeue_stuck

pytestmark = pytest.mark.worker


@pytest.fixture
def queued_request(transactional_db, tiny_model_paths):
    def make(
        text: str = "What should I cook tonight?", *, model=None, purpose: str = "candidates"
    ) -> GenerationRequest:
        project = ProjectFactory(slug="gen-worker")
        if model is None:
            model = ModelVersionFactory(name="tiny-policy", source=str(tiny_model_paths.policy))
        _, root = conversation_start(project=project, text=text)
        return generation_request_create(
            project=project,
            context=root,
            model_version=model,
            purpose=purpose,
            n=1 if purpose == "draft" else 3,
            params={"max_new_tokens": 10, "temperature": 0.8, "seed": 3},
        )

    return make


def _state(request_id: int) -> str:
    return GenerationRequest.objects.get(pk=request_id).state


def test_a_duplicated_delivery_stores_the_results_once(start_celery_worker, queued_request):
    worker = start_celery_worker()
    request = queued_request()  # queued once on commit...
    generate.delay(request.pk)  # ...and delivered again, as after a broker redelivery
    generate.delay(request.pk)
    wait_for(lambda: _state(request.pk) == "done", timeout=90, message="request never finished")
    # All three deliveries ran through the worker before we count.
    wait_for(
        lambda: worker.log_path.read_text().count("succeeded in") >= 3,
        timeout=60,
        message="the duplicate deliveries were not processed",
    )
    request.refresh_from_db()
    assert request.attempts == 1
    assert Message.objects.filter(generation_output__request=request).count() == 3
    assert sorted(request.outputs.values_list("output_index", flat=True)) == [0, 1, 2]


def test_a_killed_workers_request_is_picked_up_again(start_celery_worker, queued_request):
    # The first worker takes the request and hangs in the batch until it is killed.
    doomed = start_celery_worker("doomed", PARLEY_GENERATION_FAULTS='{"sleep_seconds": 120}')
    request = queued_request()
    wait_for(lambda: _state(request.pk) == "running", timeout=60, message="never started")
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait(timeout=10)
    assert _state(request.pk) == "running"

    start_celery_worker("rescuer")
    # The beat watchdog finds the request running past its timeout and queues it again.
    later = timezone.now() + timedelta(hours=1)
    assert generations_requeue_stuck(now=later, send=generation_send) == (1, 0)
    wait_for(lambda: _state(request.pk) == "done", timeout=90, message="never picked up again")
    request.refresh_from_db()
    assert request.attempts == 2
    assert request.outputs.count() == 3


def test_a_worker_told_to_preload_loads_its_model_before_it_takes_a_task(
    start_celery_worker, queued_request, tiny_model_paths
):
    model = ModelVersionFactory(name="tiny-preloaded", source=str(tiny_model_paths.policy))
    worker = start_celery_worker("preloading", PARLEY_GENERATION_PRELOAD=str(model.pk))
    started = worker.log_path.read_text()
    preloaded = started.index("Preloaded tiny-preloaded in ")
    assert preloaded < started.index("ready.")
    assert "warmed up for sessions of 2048 tokens" in started[preloaded:]

    request = queued_request("Which plants like shade?", model=model, purpose="draft")
    wait_for(lambda: _state(request.pk) == "done", timeout=90, message="request never finished")
    # The request found the model loaded: it was loaded once, as the worker started.
    assert worker.log_path.read_text().count("Loaded tiny-preloaded on cpu") == 1
