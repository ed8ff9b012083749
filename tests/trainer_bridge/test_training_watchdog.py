"""The training watchdog: runs whose worker went silent are queued again or failed with their log
tail, command jobs that stopped reporting are failed, lost messages and lost stores sent again."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.factories import ModelVersionFactory
from trainer_bridge.models import TrainingRun
from trainer_bridge.training_events import run_claim
from trainer_bridge.training_watchdog import training_runs_sweep

pytestmark = pytest.mark.django_db


class Sent:
    def __init__(self) -> None:
        self.runs: list[int] = []
        self.stores: list[int] = []

    def sweep(self, **kwargs):
        return training_runs_sweep(
            send_run=self.runs.append, send_store=self.stores.append, **kwargs
        )


@pytest.fixture
def policy(db):
    return ModelVersionFactory(name="some-policy")


@pytest.fixture
def make_running(project, policy):
    def make(*, backend="local", silent_for=0, attempts=1, **fields) -> TrainingRun:
        run = TrainingRun.objects.create(
            project=project, stage="rm", base_model=policy, backend=backend
        )
        TrainingRun.objects.filter(pk=run.pk).update(attempts=attempts - 1)
        assert run_claim(run.pk, worker="gone:1") is not None
        TrainingRun.objects.filter(pk=run.pk).update(
            heartbeat_at=timezone.now() - timedelta(seconds=silent_for),
            log_tail="epoch 1 of 3\nstep 40 loss 0.31\n",
            **fields,
        )
        return TrainingRun.objects.get(pk=run.pk)

    return make


def test_a_silent_local_run_is_queued_again_then_failed_with_its_log_tail(make_running, settings):
    settings.PARLEY["TRAINING"]["MAX_ATTEMPTS"] = 2
    fresh = make_running(silent_for=5)
    silent = make_running(silent_for=600)
    sent = Sent()

    swept = sent.sweep()

    assert (swept.requeued, swept.failed) == (1, 0) and sent.runs == [silent.pk]
    silent.refresh_from_db()
    assert silent.state == "queued" and "stopped answering; queued again" in silent.log_tail
    assert TrainingRun.objects.get(pk=fresh.pk).state == "running"

    # The second attempt's worker dies too: the limit is reached.
    assert run_claim(silent.pk, worker="gone:2").attempts == 2
    TrainingRun.objects.filter(pk=silent.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=600)
    )
    swept = Sent().sweep()
    assert swept.failed == 1
    silent.refresh_from_db()
    assert silent.state == "failed" and "stopped answering (gone:2), 2 times" in silent.error
    assert "step 40 loss 0.31" in silent.log_tail and silent.finished_at is not None


def test_a_command_job_is_failed_after_its_long_silence_never_started_twice(make_running, settings):
    settings.PARLEY["TRAINING"]["COMMAND_STALE_SECONDS"] = 3600
    waiting = make_running(backend="command", silent_for=1800)
    lost = make_running(backend="command", silent_for=4000)
    sent = Sent()

    swept = sent.sweep()

    assert swept.failed == 1 and swept.requeued == 0 and sent.runs == []
    assert TrainingRun.objects.get(pk=waiting.pk).state == "running"
    lost.refresh_from_db()
    assert lost.state == "failed" and "sent no report for 1 h" in lost.error


def test_a_reported_success_whose_store_was_lost_is_stored_again(make_running):
    run = make_running(backend="command", silent_for=600, finish_reported_at=timezone.now())
    sent = Sent()
    assert sent.sweep().stores_resent == 1 and sent.stores == [run.pk]
    assert TrainingRun.objects.get(pk=run.pk).state == "running"


def test_queued_runs_whose_message_was_lost_are_sent_again(project, policy, mocker):
    mocker.patch("trainer_bridge.training_watchdog.queue_depth", return_value=0)
    old = TrainingRun.objects.create(project=project, stage="rm", base_model=policy)
    TrainingRun.objects.filter(pk=old.pk).update(queued_at=timezone.now() - timedelta(hours=1))
    TrainingRun.objects.create(project=project, stage="rm", base_model=policy)
    sent = Sent()
    assert sent.sweep().resent == 1 and sent.runs == [old.pk]

    mocker.patch("trainer_bridge.training_watchdog.queue_depth", return_value=3)
    assert Sent().sweep().resent == 0  # messages wait in the queue: none was lost
