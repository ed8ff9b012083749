"""Model drafts of the next assistant turn, and the scratch messages that hold their context."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet

from annotations.models import Message
from annotations.services import (
    conversation_start,
    marked_messages_delete,
    marked_messages_keep,
    message_add,
)
from labelling.demonstrations.dialogue import (
    ASSISTANT,
    KIND,
    SCRATCH_KEY,
    USER,
    Turn,
    edit_distance,
    next_role,
    state_from_autosave,
    turn_errors,
    turns_allowed,
)
from labelling.leases import task_renew
from labelling.models import Task
from trainer_bridge.generation import generation_request_create
from trainer_bridge.models import GenerationRequest
from trainer_bridge.selectors import ordered_outputs

# ---------------------------------------------------------------- drafts and scratch turns


def _is_project_draft(message: Message, task: Task) -> bool:
    output = getattr(message, "generation_output", None)  # None: not a model's output
    request = output.request if output is not None else None
    return (
        message.role == ASSISTANT
        and message.author_model_id is not None
        and request is not None
        and request.purpose == GenerationRequest.Purpose.DRAFT
        and request.project_id == task.project_id
    )


def task_drafts(task: Task, ids: list[int]) -> dict[int, Message]:
    """The model drafts among `ids` that were made for the task's project, by id."""
    found = Message.objects.filter(pk__in=ids).select_related("generation_output__request")
    return {m.pk: m for m in found if _is_project_draft(m, task)}


def _scratch(task: Task) -> Q:
    return Q(**{f"meta__{SCRATCH_KEY}": task.pk})


def scratch_turn(task: Task, parent: Message | None, turn: Turn) -> Message | None:
    """The task's scratch message holding `turn` under `parent` (a scratch root when None)."""
    same = Message.objects.filter(_scratch(task), role=turn.role, text=turn.content)
    if parent is None:
        same = same.filter(parent=None, **{f"conversation__meta__{SCRATCH_KEY}": task.pk})
    else:
        same = same.filter(parent=parent, draft_id=turn.draft_id)
    return same.order_by("pk").first()


def _scratch_path(
    *, task: Task, user: AbstractBaseUser, turns: list[Turn], create: bool
) -> list[Message] | None:
    """The task's scratch messages holding `turns` under the anchor, made where missing.

    With create=False, None when some turn has no scratch message yet.
    """
    drafts = task_drafts(task, [t.draft_id for t in turns if t.draft_id is not None])
    parent: Message | None = task.message if task.message_id else None
    path: list[Message] = []
    for i, turn in enumerate(turns):
        found = scratch_turn(task, parent, turn)
        if found is None and not create:
            return None
        if found is None and parent is None:
            _, found = conversation_start(
                project=task.project,
                text=turn.content,
                created_by=user,
                meta={SCRATCH_KEY: task.pk},
                message_meta={SCRATCH_KEY: task.pk},
            )
        elif found is None:
            draft = drafts.get(turn.draft_id) if turn.draft_id is not None else None
            if turn.draft_id is not None and (draft is None or draft.parent_id != parent.pk):
                raise ValidationError(
                    {f"turns[{i}].draft_id": "That draft was written for another dialogue."}
                )
            found = turn_add(parent, turn, user=user, draft=draft, meta={SCRATCH_KEY: task.pk})
        path.append(found)
        parent = found
    return path


def turn_add(parent: Message, turn, *, user, draft: Message | None, meta: dict | None = None):
    """A human-written turn under `parent`, keeping the draft it started from and the edit
    distance between the two."""
    return message_add(
        parent=parent,
        role=turn.role,
        text=turn.content,
        author_user=user,
        draft=draft,
        draft_edit_distance=edit_distance(draft.text, turn.content) if draft else None,
        meta=meta,
    )


def scratch_prune(task: Task, *, keep: list[Message] = ()) -> None:
    """Delete the task's scratch turns (and the drafts under them) except those in `keep`."""
    marked_messages_delete(key=SCRATCH_KEY, value=task.pk, keep=keep)


def scratch_keep(task: Task, messages: list[Message], *, user: AbstractBaseUser) -> None:
    """Make the task's scratch `messages` (and a new conversation they start) part of the
    stored dialogue: unmarked, and written by `user`."""
    marked_messages_keep(messages=messages, key=SCRATCH_KEY, value=task.pk, author_user=user)


def current_draft(task: Task, turns: list[Turn]) -> GenerationRequest | None:
    """The latest draft request for the point the dialogue has reached, if one was made."""
    if not turns and not task.message_id:
        return None
    path = _scratch_path(task=task, user=None, turns=turns, create=False)
    if path is None:
        return None
    context = path[-1] if path else task.message
    if context.role != USER:
        return None
    return _draft_requests(context).first()


def _draft_requests(context: Message) -> QuerySet[GenerationRequest]:
    return (
        GenerationRequest.objects.filter(context=context, purpose=GenerationRequest.Purpose.DRAFT)
        .select_related("model_version", "context")
        .prefetch_related(ordered_outputs())
        .order_by("-queued_at", "-id")
    )


def task_draft_request(task: Task, pk: int) -> GenerationRequest | None:
    """The draft request `pk`, if it was made for this task (by any of its holders)."""
    generation = (
        GenerationRequest.objects.select_related("model_version", "context")
        .prefetch_related(ordered_outputs())
        .filter(pk=pk)
        .first()
    )
    if generation is None or not draft_belongs_to_task(generation, task):
        return None
    return generation


def draft_belongs_to_task(generation: GenerationRequest, task: Task) -> bool:
    """Whether a draft request was made for this task (by any of its holders)."""
    if generation.purpose != GenerationRequest.Purpose.DRAFT:
        return False
    if generation.project_id != task.project_id:
        return False
    context = generation.context
    return context.pk == task.message_id or (context.meta or {}).get(SCRATCH_KEY) == task.pk


@transaction.atomic
def demonstration_draft_request(
    *, task_id: int, user: AbstractBaseUser, reuse: bool = False
) -> GenerationRequest:
    """Ask the draft model for the next assistant turn of the autosaved dialogue.

    The turns so far are stored as scratch (see the package docstring). A request already queued
    or running for the same point is returned instead of a second one; with `reuse`, so is the
    latest one that did not fail (the page asks this way when it reaches an assistant turn).
    """
    task = task_renew(task_id=task_id, user=user)
    if task.kind != KIND:
        raise ValidationError({"task": "Drafts are for demonstration tasks."})
    project = task.project
    if project.draft_model_id is None:
        raise ValidationError({"draft_model": "This project has no draft model."})
    turns = [Turn(**t) for t in state_from_autosave(task.autosave)["turns"]]
    errors = turn_errors(task=task, turns=turns, complete=False)
    if errors:
        raise ValidationError(errors)
    if next_role(task, turns) != ASSISTANT:
        raise ValidationError({"turns": "Drafts are for assistant turns; the user speaks next."})
    if len(turns) >= turns_allowed(task):
        raise ValidationError({"turns": "The dialogue has reached the project's limit of turns."})
    path = _scratch_path(task=task, user=user, turns=turns, create=True)
    context = path[-1] if path else task.message
    requests = _draft_requests(context)
    states = [GenerationRequest.State.QUEUED, GenerationRequest.State.RUNNING]
    if reuse:
        states.append(GenerationRequest.State.DONE)
    existing = requests.filter(state__in=states).first()
    if existing is not None:
        return existing
    return generation_request_create(
        project=project,
        context=context,
        model_version=project.draft_model,
        purpose=GenerationRequest.Purpose.DRAFT,
        requested_by=user,
    )
