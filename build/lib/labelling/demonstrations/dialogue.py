"""The turns of a demonstration: their shape, who speaks when, how many fit, what is wrong; the
shape of its work in progress; the stored turns it continues or submitted."""

from __future__ import annotations

from typing import NamedTuple

from django.core.exceptions import ValidationError

from annotations.models import Message
from annotations.selectors import thread_to
from annotations.services import check_text
from annotations.text import MAX_INT, MIN_INT
from labelling.models import Task

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
    """One written turn, in the message shape of every API body (`role`, `content`)."""

    role: str
    content: str
    draft_id: int | None = None


def _turn_content(raw: dict) -> object:
    """A turn's `content`; a turn saved before the shape was `{"role", "content"}` says `text`."""
    return raw["content"] if "content" in raw else raw.get("text")


# ---------------------------------------------------------------- reading a task


def anchor_thread(task: Task) -> list[Message]:
    """The stored turns the demonstration continues (empty for a blank task)."""
    return thread_to(task.message) if task.message_id else []


def submitted_thread(task: Task) -> list[Message]:
    """The dialogue a done task stored, from its conversation's first turn (empty if none)."""
    ids = (task.result or {}).get("messages") or []
    last = Message.objects.filter(pk__in=ids[-1:]).first()
    return thread_to(last) if last else []


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
    """`value` if it is a whole number that fits an id column (64 bits), else None."""
    if isinstance(value, int) and not isinstance(value, bool) and MIN_INT <= value <= MAX_INT:
        return value
    return None


def state_from_autosave(autosave: dict | None) -> dict:
    """The autosaved work in a fixed shape, whatever was stored (the API accepts any object)."""
    data = autosave if isinstance(autosave, dict) else {}
    raw_turns = data.get("turns") if isinstance(data.get("turns"), list) else []
    turns = [
        {
            "role": raw["role"],
            "content": _turn_content(raw),
            "draft_id": _as_id(raw.get("draft_id")),
        }
        for raw in raw_turns
        if isinstance(raw, dict)
        and raw.get("role") in ROLES
        and isinstance(_turn_content(raw), str)
    ]
    editor = data.get("editor")
    return {
        "turns": turns,
        "editor": editor if isinstance(editor, str) else "",
        "editor_draft_id": _as_id(data.get("editor_draft_id")),
    }


def parse_state(data) -> dict:
    """An autosave from the page, checked for shape; work in progress need not be valid yet."""
    if not isinstance(data, dict):
        raise ValidationError({"data": "Autosaved data must be an object."})
    turns = parse_turns(data.get("turns", []))
    editor = data.get("editor", "")
    errors = {}
    if not isinstance(editor, str):
        errors["editor"] = "The editor text must be a string."
    if data.get("editor_draft_id") is not None and _as_id(data.get("editor_draft_id")) is None:
        errors["editor_draft_id"] = "editor_draft_id must be a whole number."
    if errors:
        raise ValidationError(errors)
    return {
        "turns": [t._asdict() for t in turns],
        "editor": editor,
        "editor_draft_id": _as_id(data.get("editor_draft_id")),
    }


def parse_turns(raw, *, field: str = "turns") -> list[Turn]:
    """Turns from a client, checked for shape only (content is checked by `turn_errors`)."""
    if not isinstance(raw, list):
        raise ValidationError({field: "Send the turns as a list of {role, content, draft_id}."})
    if len(raw) > MAX_AUTOSAVED_TURNS:
        raise ValidationError({field: f"At most {MAX_AUTOSAVED_TURNS} turns."})
    turns: list[Turn] = []
    errors: dict[str, str] = {}
    for i, item in enumerate(raw):
        key = f"{field}[{i}]"
        if not isinstance(item, dict):
            errors[key] = "Each turn is an object with role, content and draft_id."
            continue
        role, content, draft_id = item.get("role"), _turn_content(item), item.get("draft_id")
        if role not in ROLES:
            errors[f"{key}.role"] = f"The role must be user or assistant, not {role!r}."
        if not isinstance(content, str):
            errors[f"{key}.content"] = "The content must be a string."
        if draft_id is not None and _as_id(draft_id) is None:
            errors[f"{key}.draft_id"] = "draft_id must be a message id or null."
        turns.append(Turn(role, content if isinstance(content, str) else "", _as_id(draft_id)))
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
            check_text(project=task.project, text=turn.content, field=f"{key}.content")
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
