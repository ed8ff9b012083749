"""Reads about generation requests: the messages a request continues, its place in the queue,
its outputs."""

from __future__ import annotations

from django.db.models import Prefetch, Q, QuerySet

from annotations.models import Message, ModelVersion, Project
from trainer_bridge.models import GenerationOutput, GenerationRequest

State = GenerationRequest.State


def project_policy_models(project: Project) -> QuerySet[ModelVersion]:
    """The models a project may generate with: its draft model and its candidate models."""
    return ModelVersion.objects.filter(
        Q(draft_projects=project) | Q(candidate_projects=project),
        kind=ModelVersion.Kind.POLICY,
    ).distinct()


def request_messages(request: GenerationRequest) -> list[dict]:
    from annotations.selectors import thread_to

    return [{"role": m.role, "content": m.text} for m in thread_to(request.context)]


def messages_by_request(requests: list[GenerationRequest]) -> dict[int, list[dict]]:
    """`request_messages` for many requests (contexts loaded), by request id, in one query.

    Loads every message of the contexts' conversations down to the deepest context, as
    `thread_to` does for one, and walks each context's parents up to its root.
    """
    if not requests:
        return {}
    contexts = [request.context for request in requests]
    by_id = {
        m.pk: m
        for m in Message.objects.filter(
            conversation_id__in={c.conversation_id for c in contexts},
            depth__lte=max(c.depth for c in contexts),
        )
        .only("id", "parent_id", "role", "text")
        .order_by()
    }
    threads: dict[int, list[dict]] = {}
    for request in requests:
        chain: list[Message] = []
        current: Message | None = by_id.get(request.context_id, request.context)
        while current is not None:
            chain.append(current)
            current = by_id.get(current.parent_id) if current.parent_id else None
        threads[request.pk] = [{"role": m.role, "content": m.text} for m in reversed(chain)]
    return threads


def project_generation_requests(project: Project) -> QuerySet[GenerationRequest]:
    """The project's requests, latest first, with what their status fragments show."""
    return (
        GenerationRequest.objects.filter(project=project)
        .select_related("model_version", "context")
        .prefetch_related(ordered_outputs())
        .order_by("-queued_at", "-id")
    )


def queue_position(request: GenerationRequest) -> int | None:
    """1 for the next request a worker takes; None when the request is not queued."""
    if request.state != State.QUEUED:
        return None
    return (
        GenerationRequest.objects.filter(
            state=State.QUEUED, queued_at__lt=request.queued_at
        ).count()
        + 1
    )


def request_outputs(request: GenerationRequest) -> QuerySet[GenerationOutput]:
    """The request's outputs in order, each with its message."""
    return request.outputs.order_by("output_index")


def ordered_outputs() -> Prefetch:
    """A request's outputs (with their messages) in order, for `prefetch_related`."""
    return Prefetch("outputs", queryset=GenerationOutput.objects.order_by("output_index"))
