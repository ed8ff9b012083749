"""Storing a demonstration's work in progress, as the page autosaves it."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from labelling.autosave import PageSave, parse_page_position, task_page_autosave
from labelling.demonstrations.dialogue import KIND, parse_state
from labelling.leases import task_for_member


@transaction.atomic
def demonstration_autosave(
    *, task_id: int, user: AbstractBaseUser, data: dict, take_over: bool | None = None
) -> PageSave:
    """Store the page's work in progress unless it would wind back newer work.

    The page sends its page number and the save's sequence number with the state; see
    `task_page_autosave` for which saves are stored. `take_over` (the submit) stores it anyway.
    """
    state = parse_state(data)
    if take_over:  # the submit: stored whatever page it comes from
        page, seq, asked = data.get("page"), data.get("seq"), True
        page, seq = (page, seq) if isinstance(page, int) and isinstance(seq, int) else (None, None)
    else:
        page, seq, asked = parse_page_position(data)
    task = task_for_member(task_id=task_id, user=user, lock=True)
    if task.kind != KIND:
        raise ValidationError({"task": "This is not a demonstration task."})
    return task_page_autosave(
        task_id=task_id,
        user=user,
        data=state,
        page=page,
        seq=seq,
        take_over=asked if take_over is None else take_over,
    )
