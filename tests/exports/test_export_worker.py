"""Exports through a real Celery worker on the configured broker (Redis in CI), and the
watchdog that takes over an export whose worker died."""

import datetime as dt

import pytest
from django.utils import timezone

from exports.choices import ExportChoices
from exports.models import ExportSnapshot
from exports.services import export_build, exports_requeue_stuck
from tests.conftest import wait_for
from tests.exports.conftest import sha256

LONG_AGO = dt.timedelta(hours=1)


def _state(pk: int) -> str:
    return ExportSnapshot.objects.get(pk=pk).state


def _stuck(project, user, *, attempts: int) -> ExportSnapshot:
    """A snapshot a worker took and then died on: running, no heartbeat for an hour."""
    then = timezone.now() - LONG_AGO
    return ExportSnapshot.objects.create(
        project=project,
        kind="prompts",
        choices=ExportChoices().to_json(),
        created_by=user,
        state=ExportSnapshot.State.RUNNING,
        attempts=attempts,
        started_at=then,
        heartbeat_at=then,
        rows_expected=100,
        rows_written=40,
    )


@pytest.mark.worker
def test_an_export_asked_for_by_the_api_is_built_by_a_worker(
    start_celery_worker, api_client_for, oasst_project, engineer, media_root
):
    start_celery_worker(MEDIA_ROOT=str(media_root))
    client = api_client_for(engineer)
    payload = {"kind": "preferences", "choices": {"validation": 0.1, "seed": 2}}
    response = client.post("/api/v1/projects/alpha/exports/", payload, format="json")
    assert response.status_code == 201 and response.json()["state"] == "queued"
    pk = response.json()["id"]

    wait_for(lambda: _state(pk) in ("done", "failed"), timeout=90, message="never finished")
    body = client.get(f"/api/v1/exports/{pk}/").json()
    assert body["state"] == "done", body["error"]
    assert body["attempts"] == 1 and body["progress"] == 1.0
    for split, entry in body["manifest"]["splits"].items():
        download = client.get(body["downloads"][split])
        assert download.status_code == 200
        assert sha256(b"".join(download.streaming_content)) == entry["sha256"]


@pytest.mark.worker
def test_a_dead_workers_export_is_requeued_and_finished_or_failed_at_the_limit(
    start_celery_worker, oasst_project, engineer, media_root, settings
):
    limit = settings.PARLEY["EXPORTS"]["MAX_ATTEMPTS"]
    orphan = _stuck(oasst_project, engineer, attempts=1)
    exhausted = _stuck(oasst_project, engineer, attempts=limit)
    start_celery_worker(MEDIA_ROOT=str(media_root))

    assert exports_requeue_stuck() == (1, 1)  # the beat task's work, run here
    assert _state(orphan.pk) == "queued"
    wait_for(lambda: _state(orphan.pk) == "done", timeout=90, message="never picked up again")
    orphan.refresh_from_db()
    assert orphan.attempts == 2 and orphan.manifest["rows"] == orphan.rows_written == 100

    exhausted.refresh_from_db()
    assert exhausted.state == "failed" and exhausted.finished_at is not None
    assert f"{limit} times (the limit is {limit})" in exhausted.error


def test_the_watchdog_leaves_a_live_export_alone(oasst_project, engineer):
    snapshot = _stuck(oasst_project, engineer, attempts=1)
    ExportSnapshot.objects.filter(pk=snapshot.pk).update(heartbeat_at=timezone.now())
    assert exports_requeue_stuck() == (0, 0)
    # A duplicate delivery while it is being written does nothing either.
    assert export_build(snapshot_id=snapshot.pk) is None
    assert _state(snapshot.pk) == "running"


def test_a_redelivered_message_takes_over_a_dead_workers_export(oasst_project, engineer):
    snapshot = _stuck(oasst_project, engineer, attempts=1)
    built = export_build(snapshot_id=snapshot.pk)
    assert built.state == "done" and built.attempts == 2
    # Once done, running it again changes nothing.
    assert export_build(snapshot_id=snapshot.pk) is None
