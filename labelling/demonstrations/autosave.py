"""Storing a demonstration's work in progress, as the page autosaves it."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from labelling.assignment import TaskConflict, task_autosave, task_for_member
from labelling.demonstrations.dialogue import KIND, _as_id, parse_turns, state_from_autosave
from labelling.models import Task

# ---------------------------------------------------------------- autosave


def parse_state(data) -> dict:
    """An autosave from the page, checked for shape; work in progress need not be valid yet."""
    if not isinstance(data, dict):
        raise ValidationError({"data": "Autosaved data must be an object."})
    turns = parse_turns(data.get("turns", []))
    editor, writer = data.get("editor", ""), data.get("writer", "")
    errors = {}
    if not isinstance(editor, str):
        errors["editor"] = "The editor text must be a string."
    if not isinstance(writer, str) or len(writer) > 100:
        errors["writer"] = "writer must be a short string."
    for key in ("editor_draft_id", "version"):
        if data.get(key) is not None and _as_id(data.get(key)) is None:
            errors[key] = f"{key} must be a whole number."
    if errors:
        raise ValidationError(errors)
    return {
        "turns": [t._asdict() for t in turns],
        "editor": editor,
        "editor_draft_id": _as_id(data.get("editor_draft_id")),
        "version": _as_id(data.get("version")) or 0,
        "writer": writer,
    }


@transaction.atomic
def demonstration_autosave(*, task_id: int, user: AbstractBaseUser, data: dict) -> Task:
    """Store the page's work in progress, refusing to overwrite newer work from another window.

    Each page load is a `writer` and sends `base`, the version it last loaded or saved. A save
    from another writer than the last one must start from the stored version; a late save from
    the same writer that is older than the stored one is dropped.
    """
    state = parse_state(data)
    task = task_for_member(task_id=task_id, user=user, lock=True)
    if task.kind != KIND:
        raise ValidationError({"task": "This is not a demonstration task."})
    stored = task.autosave if isinstance(task.autosave, dict) else {}
    held = task.state == Task.State.ASSIGNED and task.assignee_id == user.pk
    if held and stored:
        stored_version = state_from_autosave(stored)["version"]
        if state["writer"] and stored.get("writer") == state["writer"]:
            if state["version"] < stored_version:
                return task
        elif _as_id(data.get("base")) != stored_version:
            raise TaskConflict(
                "This task was changed in another window. Reload the page to continue from the "
                "latest version.",
                code="autosave_conflict",
            )
    return task_autosave(task_id=task_id, user=user, data=state)
