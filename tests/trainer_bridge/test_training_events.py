"""What a running attempt reports: claiming it, its token, events checked and recorded (metrics
merged per step, a bounded log), the report endpoint a command job posts to, and storing and
registering the model it trained."""

from __future__ import annotations

import shutil

import pytest

from annotations.models import ModelVersion
from trainer_bridge.loading import load_reward_model, resolve_source
from trainer_bridge.models import TrainingMetric, TrainingRun
from trainer_bridge.training_events import (
    append_log,
    events_apply,
    parse_events,
    run_claim,
    run_store_result,
    run_token_issue,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def running(project, tiny_models, engineer, preferences_snapshot):
    """An RM run claimed by a worker for its first attempt."""
    policy, _ = tiny_models
    run = TrainingRun.objects.create(
        project=project, stage="rm", base_model=policy, started_by=engineer
    )
    run.snapshots.set([preferences_snapshot])
    claimed = run_claim(run.pk, worker="host:1")
    assert claimed is not None and claimed.state == "running" and claimed.attempts == 1
    return claimed


@pytest.fixture
def preferences_snapshot(signal_data, snapshot_of):
    signal_data(sets=3, prompts=2)
    return snapshot_of("preferences")


def report(client, run, token, events):
    return client.post(
        f"/api/v1/training-runs/{run.pk}/report/",
        {"events": events},
        format="json",
        HTTP_AUTHORIZATION=f"RunToken {token}",
    )


def test_a_claimed_run_is_not_claimed_twice(running):
    assert run_claim(running.pk, worker="host:2") is None  # its worker is alive
    running.refresh_from_db()
    assert running.attempts == 1 and running.worker == "host:1"
    assert "Attempt 1 started on host:1" in running.log_tail


def test_metrics_of_one_step_are_merged_and_the_log_is_bounded(running, settings):
    events = parse_events(
        [
            {"type": "started", "stage": "rm", "rows": {"train": 10, "dropped_too_long": 2}},
            {"type": "metrics", "step": 5, "values": {"loss": 0.7, "learning_rate": 1e-3}},
            {"type": "log", "message": "epoch 1"},
        ]
    )
    assert events_apply(run_id=running.pk, attempt=1, events=events).accepted
    events_apply(
        run_id=running.pk,
        attempt=1,
        events=parse_events([{"type": "metrics", "step": 5, "values": {"accuracy": 0.9}}]),
    )
    metric = TrainingMetric.objects.get(run=running)
    assert metric.values == {"loss": 0.7, "learning_rate": 1e-3, "accuracy": 0.9}
    running.refresh_from_db()
    assert running.rows == {"train": 10, "dropped_too_long": 2}
    assert "10 train, 2 dropped too long" in running.log_tail and "epoch 1" in running.log_tail

    tail = ""
    for i in range(1000):
        tail = append_log(tail, f"line {i:04d} " + "x" * 40, limit=2000)
    assert (
        len(tail) <= 2000
        and tail.startswith("line ")
        and tail.endswith("line 0999 " + "x" * 40 + "\n")
    )


def test_a_stale_attempt_and_a_cancelled_run_take_no_events(running):
    events = parse_events([{"type": "log", "message": "late"}])
    assert not events_apply(run_id=running.pk, attempt=2, events=events).accepted
    TrainingRun.objects.filter(pk=running.pk).update(state="cancelled")
    applied = events_apply(run_id=running.pk, attempt=1, events=events)
    assert not applied.accepted and applied.state == "cancelled"
    assert "late" not in TrainingRun.objects.get(pk=running.pk).log_tail


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"type": "metrics", "step": -1, "values": {"loss": 1}}, "events[1].step"),
        ({"type": "metrics", "step": True, "values": {"loss": 1}}, "events[1].step"),
        ({"type": "metrics", "step": 3, "values": {"loss": "low"}}, "events[1].values.loss"),
        ({"type": "metrics", "step": 3, "values": {}}, "events[1].values"),
        ({"type": "reboot"}, "events[1].type"),
        ({"type": "log", "message": 7}, "events[1].message"),
        ({"type": "finished", "state": "maybe"}, "events[1].state"),
        ("started", "events[1]"),
    ],
)
def test_the_report_endpoint_refuses_a_bad_event_naming_it(
    event, field, running, api_client_for, engineer
):
    from rest_framework.test import APIClient

    token = run_token_issue(run_id=running.pk, attempt=1)
    good = {"type": "log", "message": "fine"}
    response = report(APIClient(), running, token, [good, event])
    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()
    running.refresh_from_db()
    assert "fine" not in running.log_tail  # nothing of a refused report is kept


def test_reports_need_the_current_token_of_that_run(running, project, tiny_models):
    from rest_framework.test import APIClient

    client = APIClient()
    token = run_token_issue(run_id=running.pk, attempt=1)
    other = TrainingRun.objects.create(project=project, stage="rm", base_model=tiny_models[0])
    log = [{"type": "log", "message": "hello"}]
    assert report(client, running, "wrong", log).status_code == 401
    assert report(client, other, token, log).status_code == 401  # another run's id
    missing = client.post(
        f"/api/v1/training-runs/{running.pk}/report/", {"events": log}, format="json"
    )
    assert missing.status_code == 401 and missing["WWW-Authenticate"] == "RunToken"

    response = report(
        client, running, token, log + [{"type": "metrics", "step": 1, "values": {"loss": None}}]
    )
    assert response.status_code == 200 and response.json() == {"accepted": True, "state": "running"}
    assert TrainingMetric.objects.get(run=running).values == {"loss": None}

    # A new attempt's token replaces the old one.
    new_token = run_token_issue(run_id=running.pk, attempt=1)
    assert report(client, running, token, log).status_code == 401
    assert report(client, running, new_token, log).status_code == 200

    TrainingRun.objects.filter(pk=running.pk).update(state="cancelled")
    stopped = report(client, running, new_token, log)
    assert stopped.status_code == 409 and stopped.json()["state"] == "cancelled"


def test_a_reported_failure_fails_the_run(running, mocker):
    from rest_framework.test import APIClient

    store = mocker.patch("trainer_bridge.tasks.train_store_reported.delay")
    token = run_token_issue(run_id=running.pk, attempt=1)
    response = report(
        APIClient(), running, token, [{"type": "finished", "state": "failed", "error": "CUDA OOM"}]
    )
    assert response.status_code == 200 and response.json()["state"] == "failed"
    running.refresh_from_db()
    assert running.state == "failed" and running.error == "CUDA OOM" and running.finished_at
    store.assert_not_called()


def test_a_reported_success_queues_the_storing(running, mocker, django_capture_on_commit_callbacks):
    from rest_framework.test import APIClient

    store = mocker.patch("trainer_bridge.tasks.train_store_reported.delay")
    token = run_token_issue(run_id=running.pk, attempt=1)
    finished = {
        "type": "finished",
        "state": "succeeded",
        "output": "/x",
        "summary": {"validation_accuracy": 0.97},
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = report(APIClient(), running, token, [finished])
    assert response.status_code == 200 and response.json()["state"] == "running"
    store.assert_called_once_with(running.pk)
    running.refresh_from_db()
    assert running.finish_reported_at is not None
    assert running.summary == {"validation_accuracy": 0.97}


def test_a_stored_model_is_registered_with_its_lineage_and_loads(
    running, tiny_model_paths, tmp_path, media_root
):
    output = tmp_path / "output"
    shutil.copytree(tiny_model_paths.reward, output)

    run = run_store_result(run_id=running.pk, attempt=1, output_dir=output)

    assert run.state == "succeeded" and run.finished_at is not None
    model = run.result_model
    assert model.name == f"alpha-rm-run-{run.pk}" and model.kind == ModelVersion.Kind.REWARD
    assert model.parent == running.base_model
    assert model.source == f"storage:training/alpha/run-{run.pk}/attempt-1/model"
    assert model.training_run == run
    assert list(model.training_run.snapshots.all()) == list(running.snapshots.all())
    # Stored through the storage API, and loadable from there as every worker loads models.
    folder = resolve_source(model.source)
    assert str(folder).startswith(str(media_root)) and (folder / "config.json").is_file()
    tokenizer, scorer = load_reward_model(model.source)
    assert scorer.config.num_labels == 1 and tokenizer.pad_token is not None


def test_a_success_without_a_model_fails_the_run(running, tmp_path):
    run = run_store_result(run_id=running.pk, attempt=1, output_dir=tmp_path / "nothing")
    assert run.state == "failed" and "left no model" in run.error
