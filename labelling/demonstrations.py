"""Demonstration tasks: a trainer writes both sides of a dialogue, with model drafts on request.

Work in progress lives in `Task.autosave` as {"turns": [{"role", "text", "draft_id"}],
"editor", "editor_draft_id", "version", "writer"}; the submission is {"turns": [...]}. The turns
continue the task's anchor (`Task.message`): a seed prompt from the pool, the last turn of a
conversation being continued, or nothing for a blank task, whose first turn is the user's.

Drafts need their context stored as messages, so asking for one stores the turns written so far
as *scratch* messages, marked `meta["scratch_for_task"] = task id`, on the branch the
demonstration will be stored on: under the anchor in its conversation, or in a new conversation
(marked the same way) for a blank task. The draft is a model-written child of the last scratch
turn. On submit the scratch turns holding the submitted ones become the stored dialogue (markers
removed, authored by the submitter), so every draft, taken or not, stays a model-written sibling
of the reply the trainer wrote; scratch the submission did not use (earlier versions of edited
turns, with their drafts) is deleted. A skip deletes the task's scratch unless the
project hands autosaves on; after an expired lease it stays marked until the task is next
claimed (page or API), which deletes it unless the autosave was handed on too. Exports must
leave out anything marked `scratch_for_task`.
"""

from __future__ import annotations

from typing import NamedTuple

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet

from annotations.models import Conversation, GenerationRequest, Message, Project
from annotations.selectors import prompt_pool, thread_to
from annotations.services import check_text, conversation_start, message_add
from labelling.assignment import (
    TaskConflict,
    TaskKind,
    register_task_kind,
    task_autosave,
    task_for_member,
    task_renew,
)
from labelling.models import PromptReport, Task
from labelling.reviews import KEEPS_OUT, reported_prompt_ids
from trainer_bridge.generation import generation_request_create

KIND = Task.Kind.DEMONSTRATION
SCRATCH_KEY = "scratch_for_task"
USER, ASSISTANT = Message.Role.USER, Message.Role.ASSISTANT
ROLES = (USER, ASSISTANT)
MAX_AUTOSAVED_TURNS = 1000


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions of one character each).

    Bit-parallel (Myers 1999, Hyyrö 2001): one pass over `a` with integers as bit vectors over
    `b`, so two 8000-character texts take milliseconds rather than a 64-million-cell table.
    """
    if a == b:
        return 0
    limit = min(len(a), len(b))
    start = 0
    while start < limit and a[start] == b[start]:
        start += 1
    end = 0
    while end < limit - start and a[-1 - end] == b[-1 - end]:
        end += 1
    a, b = a[start : len(a) - end], b[start : len(b) - end]
    if len(a) < len(b):
        a, b = b, a
    m = len(b)
    if m == 0:
        return len(a)
    full, top = (1 << m) - 1, 1 << (m - 1)
    match: dict[str, int] = {}
    for i, char in enumerate(b):
        match[char] = match.get(char, 0) | (1 << i)
    plus, minus, score = full, 0, m  # vertical deltas of the current column: +1 / -1
    for char in a:
        eq = match.get(char, 0)
        xv = eq | minus
        xh = (((eq & plus) + plus) ^ plus) | eq
        h_plus = minus | (~(xh | plus) & full)
        h_minus = plus & xh
        if h_plus & top:
            score += 1
        elif h_minus & top:
            score -= 1
        h_plus = ((h_plus << 1) | 1) & full
        h_minus = (h_minus << 1) & full
        plus = h_minus | (~(xv | h_plus) & full)
        minus = h_plus & xv
    return score


class Turn(NamedTuple):
    role: str
    text: str
    draft_id: int | None = None


# ---------------------------------------------------------------- reading a task


def anchor_thread(task: Task) -> list[Message]:
    """The stored turns the demonstration continues (empty for a blank task)."""
    return thread_to(task.message) if task.message_id else []


def first_role(task: Task) -> str:
    """Who speaks first: the assistant after a user turn, otherwise the user."""
    return ASSISTANT if task.message_id and task.message.role == USER else USER


def next_role(task: Task, turns: list[Turn]) -> str:
    if not turns:
        return first_role(task)
    return USER if turns[-1].role == ASSISTANT else ASSISTANT


def turns_allowed(task: Task) -> int:
    """How many turns the trainer may write: the project's limit counts the anchor's thread too."""
    used = task.message.depth + 1 if task.message_id else 0
    return max(task.project.max_turns - used, 0)


def _as_id(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def state_from_autosave(autosave: dict | None) -> dict:
    """The autosaved work in a fixed shape, whatever was stored (the API accepts any object)."""
    data = autosave if isinstance(autosave, dict) else {}
    raw_turns = data.get("turns") if isinstance(data.get("turns"), list) else []
    turns = [
        {"role": raw["role"], "text": raw["text"], "draft_id": _as_id(raw.get("draft_id"))}
        for raw in raw_turns
        if isinstance(raw, dict) and raw.get("role") in ROLES and isinstance(raw.get("text"), str)
    ]
    editor = data.get("editor")
    writer = data.get("writer")
    return {
        "turns": turns,
        "editor": editor if isinstance(editor, str) else "",
        "editor_draft_id": _as_id(data.get("editor_draft_id")),
        "version": max(_as_id(data.get("version")) or 0, 0),
        "writer": writer if isinstance(writer, str) else "",
    }


def parse_turns(raw, *, field: str = "turns") -> list[Turn]:
    """Turns from a client, checked for shape only (content is checked by `turn_errors`)."""
    if not isinstance(raw, list):
        raise ValidationError({field: "Send the turns as a list of {role, text, draft_id}."})
    if len(raw) > MAX_AUTOSAVED_TURNS:
        raise ValidationError({field: f"At most {MAX_AUTOSAVED_TURNS} turns."})
    turns: list[Turn] = []
    errors: dict[str, str] = {}
    for i, item in enumerate(raw):
        key = f"{field}[{i}]"
        if not isinstance(item, dict):
            errors[key] = "Each turn is an object with role, text and draft_id."
            continue
        role, text, draft_id = item.get("role"), item.get("text"), item.get("draft_id")
        if role not in ROLES:
            errors[f"{key}.role"] = f"The role must be user or assistant, not {role!r}."
        if not isinstance(text, str):
            errors[f"{key}.text"] = "The text must be a string."
        if draft_id is not None and _as_id(draft_id) is None:
            errors[f"{key}.draft_id"] = "draft_id must be a message id or null."
        turns.append(Turn(role, text if isinstance(text, str) else "", _as_id(draft_id)))
    if errors:
        raise ValidationError(errors)
    return turns


def turn_errors(*, task: Task, turns: list[Turn], complete: bool) -> dict[str, str]:
    """What is wrong with the dialogue: roles, empty or long turns, length; keyed by field."""
    errors: dict[str, str] = {}
    for i, turn in enumerate(turns):
        key = f"turns[{i}]"
        wanted = next_role(task, turns[:i])
        if turn.role != wanted:
            errors[f"{key}.role"] = (
                f"This must be a {wanted} turn: user and assistant take turns"
                + (f", and this dialogue starts with the {wanted}." if i == 0 else ".")
            )
        try:
            check_text(project=task.project, text=turn.text, field=f"{key}.text")
        except ValidationError as exc:
            errors.update({k: " ".join(v) for k, v in exc.message_dict.items()})
        if turn.draft_id is not None and turn.role != ASSISTANT:
            errors[f"{key}.draft_id"] = "Only assistant turns start from a model draft."
    allowed = turns_allowed(task)
    if len(turns) > allowed:
        errors["turns"] = (
            f"The dialogue has {len(turns)} new turns; this project allows {allowed} here "
            f"({task.project.max_turns} messages in all)."
        )
    elif complete and not turns:
        errors["turns"] = "Write the dialogue first: it must end with an assistant turn."
    elif complete and turns[-1].role != ASSISTANT:
        errors["turns"] = "The dialogue must end with an assistant turn."
    return errors


# ---------------------------------------------------------------- drafts and scratch turns


def _is_project_draft(message: Message, task: Task) -> bool:
    request = message.generation_request
    return (
        message.role == ASSISTANT
        and message.author_model_id is not None
        and request is not None
        and request.purpose == GenerationRequest.Purpose.DRAFT
        and request.project_id == task.project_id
    )


def _drafts(task: Task, ids: list[int]) -> dict[int, Message]:
    found = Message.objects.filter(pk__in=ids).select_related("generation_request")
    return {m.pk: m for m in found if _is_project_draft(m, task)}


def _scratch(task: Task) -> Q:
    return Q(**{f"meta__{SCRATCH_KEY}": task.pk})


def _scratch_turn(task: Task, parent: Message | None, turn: Turn) -> Message | None:
    """The task's scratch message holding `turn` under `parent` (a scratch root when None)."""
    same = Message.objects.filter(_scratch(task), role=turn.role, text=turn.text)
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
    drafts = _drafts(task, [t.draft_id for t in turns if t.draft_id is not None])
    parent: Message | None = task.message if task.message_id else None
    path: list[Message] = []
    for i, turn in enumerate(turns):
        found = _scratch_turn(task, parent, turn)
        if found is None and not create:
            return None
        if found is None and parent is None:
            _, found = conversation_start(
                project=task.project,
                text=turn.text,
                created_by=user,
                meta={SCRATCH_KEY: task.pk},
            )
            found.meta = {SCRATCH_KEY: task.pk}
            found.save(update_fields=["meta"])
        elif found is None:
            draft = drafts.get(turn.draft_id) if turn.draft_id is not None else None
            if turn.draft_id is not None and (draft is None or draft.parent_id != parent.pk):
                raise ValidationError(
                    {f"turns[{i}].draft_id": "That draft was written for another dialogue."}
                )
            found = _add_turn(parent, turn, user=user, draft=draft, meta={SCRATCH_KEY: task.pk})
        path.append(found)
        parent = found
    return path


def scratch_prune(task: Task, *, keep: list[Message] = ()) -> None:
    """Delete the task's scratch turns (and the drafts under them) except those in `keep`."""
    kept = [m.pk for m in keep]
    Message.objects.filter(_scratch(task)).exclude(pk__in=kept).delete()
    conversations = Conversation.objects.filter(**{f"meta__{SCRATCH_KEY}": task.pk})
    conversations.exclude(messages__pk__in=kept).delete()


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
        .order_by("-queued_at", "-id")
    )


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

    The turns so far are stored as scratch (see the module docstring). A request already queued
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


# ---------------------------------------------------------------- the task kind


def demonstration_submit(*, task: Task, user: AbstractBaseUser, data: dict) -> dict:
    """Store the dialogue (runs inside task_submit's transaction: an error stores nothing)."""
    turns = parse_turns(data.get("turns"))
    errors = turn_errors(task=task, turns=turns, complete=True)
    drafts = _drafts(task, [t.draft_id for t in turns if t.draft_id is not None])
    for i, turn in enumerate(turns):
        if turn.draft_id is not None and turn.draft_id not in drafts:
            errors.setdefault(f"turns[{i}].draft_id", "No such model draft in this project.")
    if errors:
        raise ValidationError(errors)
    reused = _reused_chain(task=task, turns=turns, drafts=drafts)
    anchor = task.message if task.message_id else None
    parent = reused[-1] if reused else anchor
    written = list(reused)
    for turn in turns[len(reused) :]:
        draft = drafts.get(turn.draft_id) if turn.draft_id is not None else None
        if parent is None:
            _, parent = conversation_start(project=task.project, text=turn.text, created_by=user)
        else:
            parent = _add_turn(parent, turn, user=user, draft=draft)
        written.append(parent)
    for message in reused:
        message.meta = {k: v for k, v in message.meta.items() if k != SCRATCH_KEY}
        message.author_user = user
    Message.objects.bulk_update(reused, ["meta", "author_user"])
    conversation = written[0].conversation
    if (conversation.meta or {}).get(SCRATCH_KEY) == task.pk:
        conversation.meta = {k: v for k, v in conversation.meta.items() if k != SCRATCH_KEY}
        conversation.created_by = user
        conversation.save(update_fields=["meta", "created_by"])
    scratch_prune(task, keep=written)
    return {"conversation": conversation.pk, "messages": [m.pk for m in written]}


def _reused_chain(*, task: Task, turns: list[Turn], drafts: dict[int, Message]) -> list[Message]:
    """The scratch turns the submission keeps, from the anchor down, as far as they match.

    The chain the last draft replies to must hold exactly the submitted turns before it, and every
    earlier draft must hang from that chain (raises ValidationError naming the turn otherwise).
    Beyond it, scratch turns that match are kept too, so drafts that were offered and not taken
    stay as model-written siblings of the reply the trainer wrote instead.
    """
    anchor = task.message if task.message_id else None
    with_draft = [i for i, t in enumerate(turns) if t.draft_id is not None]
    kept: list[Message] = []
    if with_draft:
        last = with_draft[-1]
        anchor_ids = [m.pk for m in anchor_thread(task)]
        chain = thread_to(drafts[turns[last].draft_id].parent)
        head, kept = [m.pk for m in chain[: len(anchor_ids)]], chain[len(anchor_ids) :]
        matches = head == anchor_ids and len(kept) == last
        for message, turn in zip(kept, turns, strict=False):
            matches = matches and (
                (message.meta or {}).get(SCRATCH_KEY) == task.pk
                and (message.role, message.text, message.draft_id) == tuple(turn)
            )
        ids = anchor_ids + [m.pk for m in kept]
        errors = {
            f"turns[{i}].draft_id": "This draft was written for another version of the dialogue "
            "(an earlier turn has changed since). Remove it or ask for a new one."
            for i in with_draft
            if not matches or drafts[turns[i].draft_id].parent_id != ids[len(anchor_ids) + i - 1]
        }
        if errors:
            raise ValidationError(errors)
    parent = kept[-1] if kept else anchor
    for turn in turns[len(kept) :]:
        found = _scratch_turn(task, parent, turn)
        if found is None:
            break
        kept.append(found)
        parent = found
    return kept


def demonstration_describe(task: Task) -> dict:
    draft_model = task.project.draft_model
    return {
        "context": [{"id": m.pk, "role": m.role, "text": m.text} for m in anchor_thread(task)],
        "first_role": first_role(task),
        "max_new_turns": turns_allowed(task),
        "max_message_chars": task.project.max_message_chars,
        "draft_model": draft_model.name if draft_model else None,
    }


def demonstration_eligible(queryset: QuerySet[Task], user: AbstractBaseUser) -> QuerySet[Task]:
    """Open demonstration tasks, oldest first, leaving out prompts a report keeps out."""
    reports = PromptReport.objects.filter(state__in=KEEPS_OUT)
    message_reported = Exists(reports.filter(message=OuterRef("message")))
    root_reported = Exists(
        reports.filter(message__conversation=OuterRef("conversation"), message__parent=None)
    )
    unreported = queryset.exclude(message_reported).exclude(root_reported)
    return unreported.order_by("created_at", "id")


def demonstration_supply(project: Project, user: AbstractBaseUser) -> Task:
    """A task for the next unclaimed, unreported pool prompt, or a blank one if none is left.

    The prompt row is locked with SKIP LOCKED, so two trainers claiming at once take different
    prompts; after the lock the check that no task exists is repeated, since under READ COMMITTED
    the first query may have run before a concurrent claim of the same prompt committed.
    """
    has_task = Task.objects.filter(kind=KIND, conversation=OuterRef("conversation"))
    pool = (
        prompt_pool(project=project)
        .exclude(Exists(has_task))
        .exclude(pk__in=reported_prompt_ids(project))
        .order_by("pk")
        .select_for_update(skip_locked=True, of=("self",))
    )
    passed: list[int] = []
    while (prompt := pool.exclude(pk__in=passed).first()) is not None:
        if not Task.objects.filter(kind=KIND, conversation_id=prompt.conversation_id).exists():
            return Task.objects.create(
                project=project, kind=KIND, conversation_id=prompt.conversation_id, message=prompt
            )
        passed.append(prompt.pk)
    return Task.objects.create(project=project, kind=KIND)


def demonstration_on_skip(
    *, task: Task, user: AbstractBaseUser, reason: str, report: str | None = None
) -> None:
    """File a report on the prompt if asked; drop scratch turns nobody will continue."""
    if report:
        if report not in PromptReport.Reason.values:
            choices = ", ".join(PromptReport.Reason.values)
            raise ValidationError({"report": f"Unknown reason {report!r}; use one of {choices}."})
        if not task.message_id:
            raise ValidationError(
                {"report": "This task starts blank: there is no prompt to report."}
            )
        PromptReport.objects.create(
            project=task.project,
            message_id=task.message_id,
            reporter=user,
            reason=report,
            note=reason[:1000],
        )
    if not task.project.keep_autosave_on_expiry:
        scratch_prune(task)


def _add_turn(parent: Message, turn, *, user, draft: Message | None, meta: dict | None = None):
    """A human-written turn under `parent`, keeping the draft it started from and the edit
    distance between the two."""
    return message_add(
        parent=parent,
        role=turn.role,
        text=turn.text,
        author_user=user,
        draft=draft,
        draft_edit_distance=edit_distance(draft.text, turn.text) if draft else None,
        meta=meta,
    )


def demonstration_on_claim(task: Task) -> None:
    """Drop scratch turns an earlier holder left, unless their autosave was handed on with them.

    Without the autosave nobody can continue those turns; with it, the new holder resumes them.
    """
    if not task.autosave:
        scratch_prune(task)


register_task_kind(
    TaskKind(
        kind=KIND,
        eligible=demonstration_eligible,
        submit=demonstration_submit,
        describe=demonstration_describe,
        supply=demonstration_supply,
        on_skip=demonstration_on_skip,
        on_claim=demonstration_on_claim,
    )
)
