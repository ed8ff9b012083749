"""Lease reaping: expired claims go back to the pool, by the service and through a real worker."""

from datetime import timedelta

import pytest
from django.utils import timezone

from labelling.models import Task
from labelling.services import task_leases_expire
from labelling.tasks import expire_task_leases
from tests.conftest import wait_for


def _assigned_task(project, user, *, expires_in: timedelta, autosave=None) -> Task:
    return Task.objects.create(
        project=project,
        kind=Task.Kind.DEMONSTRATION,
        state=Task.State.ASSIGNED,
        assignee=user,
        assigned_at=timezone.now() - timedelta(hours=1),
        lease_expires_at=timezone.now() + expires_in,
        autosave=autosave or {},
        autosaved_at=timezone.now() if autosave else None,
    )


@pytest.mark.django_db
def test_expired_leases_return_to_the_pool(project, trainer):
    expired = _assigned_task(project, trainer, expires_in=-timedelta(seconds=5), autosave={"t": 1})
    live = _assigned_task(project, trainer, expires_in=timedelta(minutes=5))

    assert task_leases_expire() == 1
    expired.refresh_from_db()
    live.refresh_from_db()
    assert expired.state == "open" and expired.assignee is None and expired.lease_expires_at is None
    assert expired.autosave == {}  # the project does not hand autosaves on
    assert live.state == "assigned" and live.assignee == trainer
    assert task_leases_expire() == 0


@pytest.mark.django_db
def test_autosave_kept_when_the_project_says_so(project, trainer):
    project.keep_autosave_on_expiry = True
    project.save(update_fields=["keep_autosave_on_expiry"])
    task = _assigned_task(project, trainer, expires_in=-timedelta(seconds=1), autosave={"t": "x"})
    task_leases_expire()
    task.refresh_from_db()
    assert task.state == "open" and task.autosave == {"t": "x"}


@pytest.mark.worker
def test_a_real_worker_reaps_leases_from_the_broker(celery_worker, project, trainer):
    task = _assigned_task(project, trainer, expires_in=-timedelta(seconds=5))
    expire_task_leases.delay()
    wait_for(
        lambda: Task.objects.get(pk=task.pk).state == "open",
        timeout=60,
        message="the worker did not process expire_task_leases",
    )
    assert Task.objects.get(pk=task.pk).assignee is None
