"""Models a generation worker loads and warms up as it starts (PARLEY_GENERATION_PRELOAD)."""

from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.utils import timezone

from annotations.services import conversation_start
from tests.factories import ModelVersionFactory, ProjectFactory
from tests.trainer_bridge.test_generation import generation_settings
from trainer_bridge import preload as preloading
from trainer_bridge.backends import ModelCache
from trainer_bridge.models import GenerationRequest
from trainer_bridge.preload import (
    QUEUES_VARIABLE,
    PreloadError,
    on_worker_init,
    on_worker_process_init,
    preload,
    preload_targets,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def project():
    return ProjectFactory(slug="preload")


def _requested(project, model, *, prompt_tokens, max_new_tokens=64, days_ago=0):
    _, root = conversation_start(project=project, text="Where is the kettle?")
    request = GenerationRequest.objects.create(
        project=project,
        context=root,
        model_version=model,
        purpose="candidates",
        params={"max_new_tokens": max_new_tokens, "temperature": 0.8},
        state="done",
        prompt_tokens=prompt_tokens,
    )
    queued = timezone.now() - timedelta(days=days_ago)
    GenerationRequest.objects.filter(pk=request.pk).update(queued_at=queued)


def test_recent_takes_the_most_requested_models_of_the_week_and_their_session_lengths(project):
    busy, quiet, stale = (ModelVersionFactory(name=n) for n in ("busy", "quiet", "stale"))
    _requested(project, busy, prompt_tokens=100, max_new_tokens=100)  # 200 tokens: 256
    _requested(project, busy, prompt_tokens=100, max_new_tokens=100)
    _requested(project, busy, prompt_tokens=30, max_new_tokens=20)  # 50 tokens: 64
    _requested(project, busy, prompt_tokens=None)  # never encoded: no length to learn from
    _requested(project, quiet, prompt_tokens=None)
    for _ in range(6):
        _requested(project, stale, prompt_tokens=10, days_ago=8)

    targets = preload_targets("recent", capacity=2, max_new_tokens=1024)

    assert [t.model_version for t in targets] == [busy, quiet]
    assert targets[0].lengths == [64, 256]
    # Nothing to learn from: a prompt of 256 tokens and the most new tokens a request may ask.
    assert targets[1].lengths == [2048]
    assert preload_targets("recent", capacity=1, max_new_tokens=1024)[0].model_version == busy
    assert preload_targets("", capacity=2, max_new_tokens=1024) == []


def test_ids_name_models_in_their_order_and_a_wrong_spec_says_what_is_wrong():
    first, second = ModelVersionFactory(), ModelVersionFactory()
    targets = preload_targets(f"{second.pk}, {first.pk}", capacity=2, max_new_tokens=64)
    assert [t.model_version for t in targets] == [second, first]
    assert targets[0].lengths == [512]  # 256 + 64 tokens

    with pytest.raises(PreloadError, match="'recent' or model version ids"):
        preload_targets("latest", capacity=2, max_new_tokens=64)
    with pytest.raises(PreloadError, match="no model version 999999"):
        preload_targets(f"{first.pk},999999", capacity=2, max_new_tokens=64)
    with pytest.raises(PreloadError, match="names 3 models; a worker keeps at most 2"):
        preload_targets(f"{first.pk},{second.pk},999999", capacity=2, max_new_tokens=64)


def test_preloading_loads_through_the_worker_s_cache_and_warms_up(tiny_model_paths, mocker):
    cache = ModelCache(capacity=2)
    mocker.patch.object(preloading, "model_cache", return_value=cache)
    tiny = ModelVersionFactory(name="tiny-preloaded", source=str(tiny_model_paths.policy))
    broken = ModelVersionFactory(name="missing", source=str(tiny_model_paths.policy / "nowhere"))

    done = preload(f"{broken.pk},{tiny.pk}", device="cpu")

    assert [p.model for p in done] == ["missing", "tiny-preloaded"]
    assert done[0].error and done[0].describe().startswith("Could not preload missing: ")
    assert not done[1].error and done[1].load_seconds > 0
    assert done[1].describe().startswith("Preloaded tiny-preloaded in ")
    assert "warmed up for sessions of 2048 tokens" in done[1].describe()
    assert cache.loads == 1
    generator = cache.get(tiny, device="cpu")  # what a request gets: no second load
    assert cache.loads == 1
    # The warm-up allocated the cache a session of 2,048 tokens needs.
    assert generator.engine.cache is not None
    assert generator.engine.cache.tokens >= generator.engine.slots_for(2048) * 2048 > 0


def test_only_a_worker_that_generates_preloads(monkeypatch, mocker):
    model = ModelVersionFactory()
    ran = mocker.patch.object(preloading, "preload", return_value=[])
    monkeypatch.setenv(QUEUES_VARIABLE, "")  # and taken away again after the test
    with generation_settings(PRELOAD=str(model.pk), PRELOAD_TIMEOUT_SECONDS=300.0):
        conf = SimpleNamespace(worker_proc_alive_timeout=4.0)
        on_worker_init(options={"queues": ["default", "train"]}, conf=conf)
        on_worker_process_init()
        assert conf.worker_proc_alive_timeout == 4.0 and not ran.called

        on_worker_init(options={"queues": "default,gpu"}, conf=conf)
        on_worker_process_init()
        # Its processes have time to preload before Celery counts them as failed to start.
        assert conf.worker_proc_alive_timeout == 300.0
        ran.assert_called_once_with(str(model.pk), device="cpu")

    ran.reset_mock()
    on_worker_init(options={"queues": ["gpu"]}, conf=conf)
    on_worker_process_init()  # PRELOAD unset: nothing
    assert not ran.called


def test_a_worker_starts_without_preloading_when_it_cannot_tell_what_to_load(mocker, caplog):
    from django.db import OperationalError

    mocker.patch.object(
        preloading, "preload_targets", side_effect=OperationalError("server closed the connection")
    )
    assert preload("recent", device="cpu") == []
    assert "nothing was preloaded" in caplog.text and "server closed the connection" in caplog.text
    mocker.patch.object(preloading, "preload_targets", side_effect=PreloadError("no model 7."))
    assert preload("7", device="cpu") == []
    assert "no model 7. Nothing was preloaded." in caplog.text
