"""Reads of conversation trees and project data."""

from django.db.models import QuerySet
from django.utils import timezone

from annotations.models import AnnotatorExclusion, Conversation, Message, Project


def thread_to(message: Message) -> list[Message]:
    """The messages from the root down to `message`, in order, in one query (none for a root)."""
    if message.parent_id is None:
        return [message]
    by_id = {
        m.pk: m
        for m in Message.objects.filter(
            conversation_id=message.conversation_id, depth__lte=message.depth
        )
    }
    chain: list[Message] = []
    current: Message | None = by_id.get(message.pk, message)
    while current is not None:
        chain.append(current)
        current = by_id.get(current.parent_id) if current.parent_id else None
    chain.reverse()
    return chain


def prompt_pool(*, project: Project) -> QuerySet[Message]:
    """First user turns of the project's prompt pool."""
    return Message.objects.filter(
        conversation__project=project, conversation__source="prompt", parent__isnull=True
    )


def conversation_external_ids(*, project: Project, prefix: str = "") -> QuerySet:
    """The project's conversations' external ids (those set), as a flat values list; with
    `prefix`, only those that start with it."""
    conversations = Conversation.objects.filter(project=project)
    if prefix:
        conversations = conversations.filter(external_id__startswith=prefix)
    else:
        conversations = conversations.exclude(external_id="")
    return conversations.values_list("external_id", flat=True)


def exclusion_covering(*, project_id: int, annotator_id: int | None) -> AnnotatorExclusion | None:
    """The lead's standing exclusion of `annotator_id` in the project that has begun (the one
    begun first, if several), which excludes a ranking they store now; None if there is none."""
    if annotator_id is None:
        return None
    return (
        AnnotatorExclusion.objects.filter(
            project_id=project_id,
            annotator_id=annotator_id,
            lifted_at__isnull=True,
            since__lte=timezone.now(),
        )
        .order_by("since", "pk")
        .first()
    )


def exclusion_standing(*, project_id: int, annotator_id: int | None) -> bool:
    """Whether a ranking `annotator_id` stores in the project now is excluded at once (a lead's
    exclusion of them stands and has begun)."""
    return exclusion_covering(project_id=project_id, annotator_id=annotator_id) is not None
