"""Asking for generation: creating and validating requests, and queueing a failed one again.

These are the services the doors call (the API, the generations page, labelling's drafts and
comparisons); each request is sent to the gpu queue once its transaction commits. What a worker
does with a request is in trainer_bridge.worker and trainer_bridge.batches.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from annotations.models import Conversation, Message, ModelVersion, Project
from annotations.services import conversation_start, message_add
from trainer_bridge.models import GenerationRequest
from trainer_bridge.sampling_params import SamplingParams
from trainer_bridge.tasks import generation_send

State = GenerationRequest.State


@transaction.atomic
def generation_request_create(
    *,
    project: Project,
    context: Message,
    model_version: ModelVersion,
    purpose: str,
    n: int = 1,
    params: SamplingParams | Mapping[str, Any] | None = None,
    requested_by: AbstractBaseUser | None = None,
) -> GenerationRequest:
    """A queued request for `n` assistant replies after `context`, sent to the gpu queue.

    `params` is either a SamplingParams a caller already settled (the comparisons), or the
    parameters a person sent (a JSON object, from the API or a form), laid over the project's
    sampling settings. Every error is reported at once, each under its field's name.
    """
    errors: dict[str, str] = {}
    if context.conversation.project_id != project.pk:
        errors["context"] = "The context belongs to another project."
    elif context.role != Message.Role.USER:
        errors["context"] = "Replies are generated after a user turn; the context ends otherwise."
    if model_version.kind != ModelVersion.Kind.POLICY:
        errors["model_version"] = f"{model_version} is a {model_version.kind} model, not a policy."
    if purpose not in GenerationRequest.Purpose.values:
        errors["purpose"] = f"Unknown purpose {purpose!r}; use draft or candidates."
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        errors["n"] = "n must be a whole number of at least 1."
    elif n > project.max_generations_per_request:
        errors["n"] = (
            f"n is {n}; this project allows at most {project.max_generations_per_request}."
        )
    try:
        if isinstance(params, SamplingParams):
            sampling = params
            sampling.clean()
        else:
            sampling = SamplingParams.for_project(project.sampling, params)
    except ValidationError as exc:
        errors.update({k: " ".join(v) for k, v in exc.message_dict.items()})
    if errors:
        raise ValidationError(errors)
    request = GenerationRequest.objects.create(
        project=project,
        context=context,
        model_version=model_version,
        purpose=purpose,
        n=n,
        params=sampling.to_json(),
        requested_by=requested_by,
    )
    generation_send(request.pk)
    return request


@transaction.atomic
def generation_request_from_messages(
    *,
    project: Project,
    messages: list[dict],
    model_version: ModelVersion,
    purpose: str,
    n: int = 1,
    params: Mapping[str, Any] | None = None,
    requested_by: AbstractBaseUser | None = None,
) -> GenerationRequest:
    """Store `messages` ([{role, content}], ending with a user turn) as a conversation, then ask."""
    if not isinstance(messages, list) or not messages:
        raise ValidationError({"messages": "Give at least one message, ending with a user turn."})
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise ValidationError({f"messages[{index}]": "Each message needs role and content."})
    try:
        _, node = conversation_start(
            project=project,
            text=messages[0]["content"],
            role=messages[0].get("role", ""),
            source=Conversation.Source.API,
            created_by=requested_by,
        )
        for message in messages[1:]:
            node = message_add(
                parent=node,
                role=message.get("role", ""),
                text=message["content"],
                author_user=requested_by,
            )
    except ValidationError as exc:
        raise ValidationError({"messages": " ".join(exc.messages)}) from exc
    return generation_request_create(
        project=project,
        context=node,
        model_version=model_version,
        purpose=purpose,
        n=n,
        params=params,
        requested_by=requested_by,
    )


@transaction.atomic
def generation_request_retry(*, request: GenerationRequest) -> GenerationRequest:
    """Queue a failed request again (the retry button), with a fresh count of attempts."""
    locked = GenerationRequest.objects.select_for_update().get(pk=request.pk)
    if locked.state != State.FAILED:
        raise ValidationError(
            {"state": f"Only failed requests can be retried; this one is {locked.state}."}
        )
    locked.state = State.QUEUED
    locked.attempts = 0
    locked.error = ""
    locked.started_at = None
    locked.finished_at = None
    locked.queued_at = timezone.now()
    locked.save(
        update_fields=["state", "attempts", "error", "started_at", "finished_at", "queued_at"]
    )
    generation_send(locked.pk)
    return locked
