"""Writes to conversation trees: starting conversations and adding turns in the right order."""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from annotations.models import Conversation, Message, ModelVersion, Project
from annotations.text import check_storable_text

# Which role may follow which: a dialogue alternates user and assistant after an optional
# system prompt. The database cannot check this across rows, so every write goes through here.
NEXT_ROLES: dict[str | None, frozenset[str]] = {
    None: frozenset({Message.Role.SYSTEM, Message.Role.USER}),
    Message.Role.SYSTEM: frozenset({Message.Role.USER}),
    Message.Role.USER: frozenset({Message.Role.ASSISTANT}),
    Message.Role.ASSISTANT: frozenset({Message.Role.USER}),
}


def a_turn(role: str) -> str:
    """A role's turn with its article, for messages: "a user turn", "an assistant turn"."""
    # By sound, not spelling: "a user", "a system", "an assistant".
    return f"{'an' if role == Message.Role.ASSISTANT else 'a'} {role} turn"


def check_role_follows(*, parent_role: str | None, role: str) -> None:
    allowed = NEXT_ROLES.get(parent_role)
    if allowed is None or role not in allowed:
        after = f"after {a_turn(parent_role)}" if parent_role else "as the first turn"
        expected = " or ".join(sorted(allowed or []))
        raise ValidationError(
            {"role": f"{a_turn(role).capitalize()} cannot come {after}; expected {expected}."}
        )


def check_text(*, project: Project, text: str, field: str = "text") -> str:
    """A message's text: not blank, within the project's length, storable (see annotations.text)."""
    stripped = text.strip()
    if not stripped:
        raise ValidationError({field: "The text is empty."})
    if len(text) > project.max_message_chars:
        limit = project.max_message_chars
        raise ValidationError(
            {field: f"The text has {len(text)} characters; the limit is {limit}."}
        )
    return check_storable_text(text, field)


@transaction.atomic
def conversation_start(
    *,
    project: Project,
    text: str,
    role: str = Message.Role.USER,
    source: str = Conversation.Source.DEMONSTRATION,
    created_by: AbstractBaseUser | None = None,
    lang: str = "en",
    external_id: str = "",
    meta: dict | None = None,
    message_meta: dict | None = None,
) -> tuple[Conversation, Message]:
    """A new conversation with its first message (a user turn or a system prompt).

    `meta` is the conversation's, `message_meta` its first message's.
    """
    check_role_follows(parent_role=None, role=role)
    check_text(project=project, text=text)
    conversation = Conversation.objects.create(
        project=project,
        source=source,
        created_by=created_by,
        external_id=external_id,
        meta=meta or {},
    )
    root = Message.objects.create(
        conversation=conversation,
        parent=None,
        role=role,
        text=text,
        lang=lang,
        depth=0,
        author_user=created_by,
        meta=message_meta or {},
    )
    return conversation, root


@transaction.atomic
def message_add(
    *,
    parent: Message,
    role: str,
    text: str,
    author_user: AbstractBaseUser | None = None,
    author_model: ModelVersion | None = None,
    lang: str | None = None,
    draft: Message | None = None,
    draft_edit_distance: int | None = None,
    meta: dict | None = None,
) -> Message:
    """A reply under `parent`, checked for role order, length and a single author."""
    if author_user is not None and author_model is not None:
        raise ValidationError("A message has one author: a person or a model version, not both.")
    check_role_follows(parent_role=parent.role, role=role)
    project = parent.conversation.project
    check_text(project=project, text=text)
    if parent.depth + 1 >= project.max_turns:
        limit = project.max_turns
        raise ValidationError(
            {"parent": f"The dialogue already has the project's limit of {limit} turns."}
        )
    if draft is not None and draft.parent_id != parent.pk:
        raise ValidationError({"draft": "The draft was written for another point of the dialogue."})
    return Message.objects.create(
        conversation_id=parent.conversation_id,
        parent=parent,
        role=role,
        text=text,
        lang=lang if lang is not None else parent.lang,
        depth=parent.depth + 1,
        author_user=author_user,
        author_model=author_model,
        is_synthetic=author_model is not None,
        draft=draft,
        draft_edit_distance=draft_edit_distance if draft is not None else None,
        meta=meta or {},
    )


@dataclass(frozen=True)
class GeneratedReplies:
    """Replies one model wrote after one context message, in the order it wrote them."""

    context: Message
    model_version_id: int
    texts: Sequence[str]


@transaction.atomic
def generated_replies_add(*, replies: Sequence[GeneratedReplies]) -> list[list[Message]]:
    """Store model-written replies as assistant children of their contexts, all in one INSERT.

    Returns each entry's messages in the order of its texts. The text is stored as the model
    wrote it: the context was checked when the replies were asked for, and one reply refused here
    would take every other reply of a worker's batch down with it.
    """
    messages = [
        Message(
            conversation_id=entry.context.conversation_id,
            parent=entry.context,
            role=Message.Role.ASSISTANT,
            text=text,
            lang=entry.context.lang,
            depth=entry.context.depth + 1,
            author_model_id=entry.model_version_id,
            is_synthetic=True,
        )
        for entry in replies
        for text in entry.texts
    ]
    Message.objects.bulk_create(messages)
    stored: list[list[Message]] = []
    start = 0
    for entry in replies:
        stored.append(messages[start : start + len(entry.texts)])
        start += len(entry.texts)
    return stored


# ---------------------------------------------------------------- work in progress
# Turns a person is still writing can be stored as messages marked `meta[key] = value` (a
# demonstration's scratch turns, marked with its task): exports leave them out, and in the end
# they are kept (unmarked) or deleted.


@transaction.atomic
def marked_messages_keep(
    *, messages: Sequence[Message], key: str, value, author_user: AbstractBaseUser | None
) -> None:
    """Make marked work in progress permanent: `messages` lose the mark `key` and get
    `author_user` as their author; so does (as `created_by`) each of their conversations that
    is marked `meta[key] == value`."""
    for message in messages:
        message.meta = {k: v for k, v in message.meta.items() if k != key}
        message.author_user = author_user
    Message.objects.bulk_update(messages, ["meta", "author_user"])
    marked = Conversation.objects.filter(
        pk__in={m.conversation_id for m in messages}, **{f"meta__{key}": value}
    )
    for conversation in marked:
        conversation.meta = {k: v for k, v in conversation.meta.items() if k != key}
        conversation.created_by = author_user
        conversation.save(update_fields=["meta", "created_by"])


@transaction.atomic
def marked_messages_delete(*, key: str, value, keep: Iterable[Message] = ()) -> None:
    """Delete the messages marked `meta[key] == value`, with their replies, except those in
    `keep`; and the conversations so marked that hold none of `keep`."""
    kept = [m.pk for m in keep]
    Message.objects.filter(**{f"meta__{key}": value}).exclude(pk__in=kept).delete()
    conversations = Conversation.objects.filter(**{f"meta__{key}": value})
    conversations.exclude(messages__pk__in=kept).delete()
