"""Work in progress kept on the server: the API's autosave, and pages' numbered saves.

Every save renews the lease of the task it belongs to, since saving is activity.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from annotations.text import check_storable_json
from labelling.leases import lease_deadline, require_holder, task_for_member
from labelling.models import Task

AUTOSAVE_MAX_BYTES = 256 * 1024


def _check_autosave(data) -> None:
    if not isinstance(data, dict):
        raise ValidationError({"data": "Autosaved data must be an object."})
    check_storable_json(data, "data")
    size = len(json.dumps(data))
    if size > AUTOSAVE_MAX_BYTES:
        raise ValidationError(
            {"data": f"Autosaved data is {size} bytes; the limit is {AUTOSAVE_MAX_BYTES}."}
        )


_AUTOSAVE_FIELDS = [
    "autosave",
    "autosaved_at",
    "lease_expires_at",
    "autosave_page",
    "autosave_seq",
    "autosave_revision",
]


def _store_autosave(task: Task, data: dict, *, page: int, seq: int) -> None:
    task.autosave = data
    task.autosaved_at = timezone.now()
    task.lease_expires_at = lease_deadline(task.project)
    task.autosave_page = page
    task.autosave_seq = seq
    task.autosave_revision += 1
    task.save(update_fields=_AUTOSAVE_FIELDS)


@transaction.atomic
def task_autosave(*, task_id: int, user: AbstractBaseUser, data: dict) -> Task:
    """Keep the trainer's work in progress on the server; it also renews the lease.

    This is the API's save: it always stores. Pages save through `task_page_autosave`.
    """
    _check_autosave(data)
    task = task_for_member(task_id=task_id, user=user, lock=True)
    require_holder(task, user)
    _store_autosave(task, data, page=0, seq=0)
    return task


@transaction.atomic
def task_open_page(*, task_id: int, user: AbstractBaseUser) -> Task:
    """A page of the task is loading: give it the next page number (`task.pages_opened`).

    Opening the page is activity, so it renews the lease too.
    """
    task = task_for_member(task_id=task_id, user=user, lock=True)
    require_holder(task, user)
    task.pages_opened += 1
    task.lease_expires_at = lease_deadline(task.project)
    task.save(update_fields=["pages_opened", "lease_expires_at"])
    return task


@dataclass(frozen=True)
class PageSave:
    """What became of a page's autosave.

    `stored` says whether this save is now the task's autosave. When it is not, either it was
    the page's own older save arriving late (`task.autosave_page == page`: nothing to tell the
    trainer), or a newer page of the same task has written since (`task.autosave` is that
    newer work, to offer to the trainer). `page` is the page number the page goes on with: a
    page that takes over gets a new one, newer than every other page open.
    """

    task: Task
    stored: bool
    page: int


def parse_page_position(data: dict) -> tuple[int | None, int | None, bool]:
    """The (page, seq, take_over) a page sends with its autosave, checked.

    A client that sends neither (a script, an older page) saves as the API does: always stored.
    """
    if data.get("page") is None and data.get("seq") is None:
        return None, None, False
    errors = {}
    values = []
    for key in ("page", "seq"):
        value = data.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**53:
            errors[key] = f"{key} must be a positive whole number."
        values.append(value)
    if errors:
        raise ValidationError(errors)
    return values[0], values[1], data.get("take_over") is True


@transaction.atomic
def task_page_autosave(
    *,
    task_id: int,
    user: AbstractBaseUser,
    data: dict,
    page: int | None,
    seq: int | None,
    take_over: bool = False,
) -> PageSave:
    """Store a page's autosave unless it would wind back newer work; renews the lease.

    Each page load has a number (`task_open_page`) and numbers its saves 1, 2, ... A save is
    stored when it comes from the page that wrote last with a higher sequence number, or from a
    newer page (a reload carrying on). It is not stored when it is an older save of the page
    that wrote last (saves overtaking each other), or when it comes from an older page after a
    newer one wrote: a save still in flight when the trainer reloaded, or a second window that
    has fallen behind, which is told so. `take_over` (the trainer chose this window's version)
    stores it anyway and makes the page the newest.
    """
    _check_autosave(data)
    task = task_for_member(task_id=task_id, user=user, lock=True)
    require_holder(task, user)
    if page is None or seq is None:  # not from a page: stored, as the API's saves are
        _store_autosave(task, data, page=0, seq=0)
        return PageSave(task=task, stored=True, page=0)
    if not take_over and not 0 < page <= task.pages_opened:
        raise ValidationError({"page": "This page is not one of this task's; reload it."})
    if take_over:
        task.pages_opened += 1
        task.save(update_fields=["pages_opened"])
        page = task.pages_opened
    elif page < task.autosave_page or (page == task.autosave_page and seq <= task.autosave_seq):
        task.lease_expires_at = lease_deadline(task.project)
        task.save(update_fields=["lease_expires_at"])
        return PageSave(task=task, stored=False, page=page)
    _store_autosave(task, data, page=page, seq=seq)
    return PageSave(task=task, stored=True, page=page)
