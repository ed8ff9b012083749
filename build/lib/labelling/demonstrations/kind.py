"""The "demonstration" task kind: which tasks a trainer may claim, what they see, skip, submit."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db.models import Exists, OuterRef, QuerySet

from annotations.models import Message, Project
from annotations.reports import (
    KEEPS_OUT,
    NOTE_MAX_CHARS,
    prompt_report_create,
    prompt_reports_keeping_out,
    reported_prompt_ids,
)
from annotations.selectors import prompt_pool, thread_to
from annotations.services import conversation_start
from labelling.demonstrations.dialogue import (
    KIND,
    SCRATCH_KEY,
    Turn,
    anchor_thread,
    first_role,
    parse_turns,
    turn_errors,
    turns_allowed,
)
from labelling.demonstrations.drafts import (
    scratch_keep,
    scratch_prune,
    scratch_turn,
    task_drafts,
    turn_add,
)
from labelling.models import Task
from labelling.taskkind import ClaimSql, TaskKind

# ---------------------------------------------------------------- the task kind


def demonstration_submit(*, task: Task, user: AbstractBaseUser, data: dict) -> dict:
    """Store the dialogue (runs inside task_submit's transaction: an error stores nothing)."""
    turns = parse_turns(data.get("turns"))
    errors = turn_errors(task=task, turns=turns, complete=True)
    drafts = task_drafts(task, [t.draft_id for t in turns if t.draft_id is not None])
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
            _, parent = conversation_start(project=task.project, text=turn.content, created_by=user)
        else:
            parent = turn_add(parent, turn, user=user, draft=draft)
        written.append(parent)
    scratch_keep(task, reused, user=user)
    scratch_prune(task, keep=written)
    return {"conversation": written[0].conversation_id, "messages": [m.pk for m in written]}


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
        found = scratch_turn(task, parent, turn)
        if found is None:
            break
        kept.append(found)
        parent = found
    return kept


def demonstration_describe(task: Task) -> dict:
    draft_model = task.project.draft_model
    return {
        "context": [{"id": m.pk, "role": m.role, "content": m.text} for m in anchor_thread(task)],
        "first_role": first_role(task),
        "max_new_turns": turns_allowed(task),
        "max_message_chars": task.project.max_message_chars,
        "draft_model": draft_model.name if draft_model else None,
    }


def demonstration_eligible(queryset: QuerySet[Task], user: AbstractBaseUser) -> QuerySet[Task]:
    """Open demonstration tasks, oldest first, leaving out prompts a report keeps out."""
    reports = prompt_reports_keeping_out()
    message_reported = Exists(reports.filter(message=OuterRef("message")))
    root_reported = Exists(
        reports.filter(message__conversation=OuterRef("conversation"), message__parent=None)
    )
    unreported = queryset.exclude(message_reported).exclude(root_reported)
    return unreported.order_by("created_at", "id")


# `demonstration_eligible` for the claim statement on PostgreSQL (labelling.claims): no report
# that keeps prompts out names the task's prompt, or the first message of its conversation.
DEMONSTRATION_CLAIM_SQL = ClaimSql(
    where="""
        NOT EXISTS (
            SELECT FROM annotations_promptreport report
            WHERE report.message_id = task.message_id
                AND report.state IN %(reports_keeping_out)s
        )
        AND NOT EXISTS (
            SELECT FROM annotations_promptreport report
            JOIN annotations_message root ON root.id = report.message_id
            WHERE root.conversation_id = task.conversation_id AND root.parent_id IS NULL
                AND report.state IN %(reports_keeping_out)s
        )
    """,
    order_by="task.created_at, task.id",
    params={"reports_keeping_out": tuple(state.value for state in KEEPS_OUT)},
)


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
        if not task.message_id:
            raise ValidationError(
                {"report": "This task starts blank: there is no prompt to report."}
            )
        try:
            prompt_report_create(
                project=task.project,
                message=task.message,
                reporter=user,
                reason=report,
                note=reason[:NOTE_MAX_CHARS],
            )
        except ValidationError as exc:
            # The skip's `report` field carries the report's reason: name it as the caller did.
            raise ValidationError({"report": exc.messages}) from exc
    if not task.project.keep_autosave_on_expiry:
        scratch_prune(task)


def demonstration_on_claim(task: Task) -> None:
    """Drop scratch turns an earlier holder left, unless their autosave was handed on with them.

    Without the autosave nobody can continue those turns; with it, the new holder resumes them.
    """
    if not task.autosave:
        scratch_prune(task)


DEMONSTRATION = TaskKind(
    kind=KIND,
    eligible=demonstration_eligible,
    claim_sql=DEMONSTRATION_CLAIM_SQL,
    submit=demonstration_submit,
    describe=demonstration_describe,
    supply=demonstration_supply,
    on_skip=demonstration_on_skip,
    on_claim=demonstration_on_claim,
)
