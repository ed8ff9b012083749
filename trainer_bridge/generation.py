"""Generation requests: creating and validating them, claiming batches, storing results.

The state machine is queued -> running -> done | failed. A worker claims queued requests under
row locks (SKIP LOCKED on PostgreSQL), so two workers never run the same request; results are
stored only by the attempt that claimed the request, and at most once per output index, so a
redelivered Celery message never duplicates messages.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Case, F, IntegerField, Value, When
from django.utils import timezone

from annotations.models import Conversation, GenerationRequest, Message, ModelVersion, Project
from annotations.queueing import queue_depth, send_after_commit
from annotations.services import conversation_start, message_add
from trainer_bridge.selectors import messages_by_request

State = GenerationRequest.State

# Sampling parameters a request may carry: the type each must have, its range, and that range
# in words. Every bound is finite and small enough for the sampler's tensors (64-bit ints): a
# value that passes here can never overflow in a worker and take its batch-mates down with it.
TOP_K_MAX = 1_000_000  # above any vocabulary; 0 means no top-k cut
PARAM_RULES: dict[str, tuple[type, Callable[[float], bool], Callable[[], str]]] = {
    "temperature": (float, lambda v: 0 <= v <= 5, lambda: "between 0 and 5"),
    "top_p": (float, lambda v: 0 < v <= 1, lambda: "greater than 0 and at most 1"),
    "top_k": (int, lambda v: 0 <= v <= TOP_K_MAX, lambda: f"between 0 and {TOP_K_MAX}"),
    "max_new_tokens": (
        int,
        lambda v: 1 <= v <= generation_settings()["MAX_NEW_TOKENS"],
        lambda: f"between 1 and {generation_settings()['MAX_NEW_TOKENS']}",
    ),
    "repetition_penalty": (float, lambda v: 0 < v <= 10, lambda: "greater than 0 and at most 10"),
    "seed": (int, lambda v: 0 <= v < 2**32, lambda: "between 0 and 2**32 - 1"),
}


def generation_settings() -> dict:
    return settings.PARLEY["GENERATION"]


def sampling_params_check(params: dict) -> dict:
    """`params` with each value checked against PARAM_RULES and typed; errors name the key.

    Used on the way in (with the project's defaults merged) and again by the worker on what it
    reads back, so a request stored before a rule existed fails alone instead of its batch.
    """
    if not isinstance(params, dict):
        raise ValidationError({"params": "Sampling parameters must be an object."})
    cleaned: dict = {}
    errors: dict[str, str] = {}
    for key, value in params.items():
        field = f"params.{key}"
        rule = PARAM_RULES.get(key)
        if rule is None:
            errors[field] = f"Unknown sampling parameter; use {', '.join(PARAM_RULES)}."
            continue
        kind, check, meaning = rule
        # bool is an int to Python, never a sampling value.
        if isinstance(value, bool) or not isinstance(value, int | float):
            errors[field] = f"Must be a number, not {value!r}."
            continue
        if isinstance(value, float) and not math.isfinite(value):
            errors[field] = f"Must be a finite number, not {value}."
            continue
        if kind is int and value != int(value):
            errors[field] = "Must be a whole number."
            continue
        try:
            value = kind(value)
        except OverflowError:  # an int too large for a float
            valid = False
        else:
            valid = check(value)
        if not valid:
            errors[field] = f"{value} is out of range; must be {meaning()}."
            continue
        cleaned[key] = value
    if errors:
        raise ValidationError(errors)
    return cleaned


def sampling_params_clean(*, project: Project, params: dict | None) -> dict:
    """The project's sampling defaults overlaid with `params`, each checked; errors name the key."""
    if params is not None and not isinstance(params, dict):
        raise ValidationError({"params": "Sampling parameters must be an object."})
    cleaned = sampling_params_check({**(project.sampling or {}), **(params or {})})
    cleaned.setdefault("max_new_tokens", 256)
    cleaned.setdefault("temperature", 1.0)
    return cleaned


@transaction.atomic
def generation_request_create(
    *,
    project: Project,
    context: Message,
    model_version: ModelVersion,
    purpose: str,
    n: int = 1,
    params: dict | None = None,
    requested_by: AbstractBaseUser | None = None,
) -> GenerationRequest:
    """A queued request for `n` assistant replies after `context`, sent to the gpu queue."""
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
        cleaned = sampling_params_clean(project=project, params=params)
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
        params=cleaned,
        requested_by=requested_by,
    )
    _enqueue_after_commit(request.pk)
    return request


@transaction.atomic
def generation_request_from_messages(
    *,
    project: Project,
    messages: list[dict],
    model_version: ModelVersion,
    purpose: str,
    n: int = 1,
    params: dict | None = None,
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


def _enqueue_after_commit(request_id: int) -> None:
    from trainer_bridge.tasks import generate

    send_after_commit(lambda: generate.delay(request_id), what=f"generation {request_id}")


@dataclass(frozen=True)
class ClaimedRequest:
    """A request as a worker runs it: its id, the attempt it claimed, and what to generate."""

    id: int
    attempt: int
    n: int
    params: dict
    messages: list[dict]
    # The prompt as the model's token ids, encoded once while claiming.
    prompt_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class GenerationResult:
    """What one claimed attempt produced, ready to store."""

    request_id: int
    attempt: int
    texts: list[str]
    prompt_tokens: int
    completion_tokens: int


@transaction.atomic
def generation_batch_claim(
    *,
    request_id: int,
    worker: str,
    encode: Callable[[list[list[dict]]], list[tuple[int, ...]]],
    cost: Callable[[ClaimedRequest], int],
    token_budget: int,
    max_requests: int,
) -> list[ClaimedRequest]:
    """Claim `request_id` and other queued requests for the same model, within the token budget.

    `encode` turns the candidates' conversations into prompt token ids (all in one call), which
    `cost` can use and the worker samples from. Returns [] when the request is not queued any
    more (done, failed, or running elsewhere): that is how a redelivered message becomes a no-op.
    """
    # Only the requests are locked ("self"), not the context messages joined in.
    locked = GenerationRequest.objects.select_for_update(skip_locked=True, of=("self",))
    first = locked.select_related("context").filter(pk=request_id, state=State.QUEUED).first()
    if first is None:
        return []
    candidates = [first] + list(
        locked.select_related("context")
        .filter(state=State.QUEUED, model_version_id=first.model_version_id)
        .exclude(pk=first.pk)
        .order_by("queued_at", "id")[: max_requests - 1]
    )
    threads = messages_by_request(candidates)
    prompts = _encode_each_if_needed(encode, [threads[request.pk] for request in candidates])
    now = timezone.now()
    claimed: list[ClaimedRequest] = []
    spent = 0
    for request, prompt_ids in zip(candidates, prompts, strict=True):
        item = ClaimedRequest(
            id=request.pk,
            attempt=request.attempts + 1,
            n=request.n,
            params=request.params,
            messages=threads[request.pk],
            prompt_ids=prompt_ids,
        )
        item_cost = cost(item)
        # The first request always runs, even alone over budget: the OOM path splits it further.
        if claimed and spent + item_cost > token_budget:
            continue
        spent += item_cost
        claimed.append(item)
    # One UPDATE for the whole batch; the rows are locked, so attempts + 1 is what was read + 1.
    GenerationRequest.objects.filter(pk__in=[item.id for item in claimed]).update(
        state=State.RUNNING,
        attempts=F("attempts") + 1,
        started_at=now,
        finished_at=None,
        worker=worker,
        error="",
    )
    return claimed


def _encode_each_if_needed(
    encode: Callable[[list[list[dict]]], list[tuple[int, ...]]], conversations: list[list[dict]]
) -> list[tuple[int, ...]]:
    """All prompts in one call; if that fails, one by one, leaving () for those that fail.

    A conversation the tokenizer refuses must not stop the others from being claimed: the
    worker encodes an empty prompt again and fails that request alone with the reason.
    """
    try:
        return encode(conversations)
    except Exception:
        prompts: list[tuple[int, ...]] = []
        for conversation in conversations:
            try:
                prompts.extend(encode([conversation]))
            except Exception:
                prompts.append(())
        return prompts


@transaction.atomic
def generation_results_store_batch(*, results: list[GenerationResult]) -> set[int]:
    """Store each result's replies as model-written siblings under its context, in one go.

    Returns the ids of the requests stored. Only the attempt that holds a request may finish it:
    a worker that was presumed dead and whose request has been requeued or finished by another
    finds it changed and stores nothing for it (the others in the batch are still stored).
    """
    if not results:
        return set()
    wanted = {result.request_id: result for result in results}
    requests = list(
        GenerationRequest.objects.select_for_update(of=("self",))
        .select_related("context")
        .filter(pk__in=wanted, state=State.RUNNING)
        .order_by("pk")
    )
    ours = [r for r in requests if r.attempts == wanted[r.pk].attempt]
    if not ours:
        return set()
    now = timezone.now()
    messages: list[Message] = []
    for request in ours:
        context = request.context
        messages.extend(
            Message(
                conversation_id=context.conversation_id,
                parent=context,
                role=Message.Role.ASSISTANT,
                text=text,
                lang=context.lang,
                depth=context.depth + 1,
                author_model_id=request.model_version_id,
                is_synthetic=True,
                generation_request=request,
                output_index=index,
            )
            for index, text in enumerate(wanted[request.pk].texts)
        )
    Message.objects.bulk_create(messages)
    stored = {request.pk for request in ours}
    GenerationRequest.objects.filter(pk__in=stored).update(
        state=State.DONE,
        finished_at=now,
        prompt_tokens=_value_by_pk({pk: wanted[pk].prompt_tokens for pk in stored}),
        completion_tokens=_value_by_pk({pk: wanted[pk].completion_tokens for pk in stored}),
    )
    return stored


def _value_by_pk(values: dict[int, int]) -> Case:
    """A CASE giving each row its value, one WHEN per distinct value (token counts repeat)."""
    by_value: dict[int, list[int]] = {}
    for pk, value in values.items():
        by_value.setdefault(value, []).append(pk)
    return Case(
        *(When(pk__in=pks, then=Value(value)) for value, pks in by_value.items()),
        output_field=IntegerField(),
    )


def generation_results_store(
    *,
    request_id: int,
    attempt: int,
    texts: list[str],
    prompt_tokens: int,
    completion_tokens: int,
) -> bool:
    """Store one request's replies (see `generation_results_store_batch`); False if not ours."""
    stored = generation_results_store_batch(
        results=[
            GenerationResult(
                request_id=request_id,
                attempt=attempt,
                texts=texts,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
            )
        ]
    )
    return request_id in stored


@transaction.atomic
def generation_request_fail(*, request_id: int, attempt: int, error: str) -> bool:
    """Mark the request failed with `error`, if this attempt still holds it."""
    updated = GenerationRequest.objects.filter(
        pk=request_id, state=State.RUNNING, attempts=attempt
    ).update(state=State.FAILED, error=error[:5000], finished_at=timezone.now())
    return bool(updated)


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
    _enqueue_after_commit(locked.pk)
    return locked


@transaction.atomic
def generations_requeue_stuck(*, now=None) -> tuple[int, int]:
    """Requests running past the timeout go back to the queue, or fail after the last attempt.

    A worker killed mid-batch leaves its requests running; this (a beat task) finds them.
    Returns (requeued, failed).
    """
    config = generation_settings()
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=config["RUNNING_TIMEOUT_SECONDS"])
    stuck = list(
        GenerationRequest.objects.select_for_update(skip_locked=True).filter(
            state=State.RUNNING, started_at__lt=cutoff
        )
    )
    requeued = failed = 0
    for request in stuck:
        if request.attempts >= config["MAX_ATTEMPTS"]:
            request.state = State.FAILED
            request.finished_at = now
            request.error = (
                f"No result after {request.attempts} attempts; the last worker "
                f"({request.worker or 'unknown'}) stopped answering."
            )
            failed += 1
        else:
            request.state = State.QUEUED
            request.started_at = None
            requeued += 1
            _enqueue_after_commit(request.pk)
    GenerationRequest.objects.bulk_update(stuck, ["state", "finished_at", "error", "started_at"])
    return requeued, failed


GENERATION_QUEUE = "gpu"


def generations_resend_lost(*, now=None) -> int:
    """Send queued requests again whose broker message was lost; returns how many.

    The database says what is queued; the broker only carries the wake-up call, and a Redis
    restart without persistence (or a send while it was down) loses it. A request queued for
    QUEUED_RESEND_SECONDS while the gpu queue holds no message at all has no message left:
    it is sent again (a second delivery of one that was still on its way does nothing).
    """
    config = generation_settings()
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=config.get("QUEUED_RESEND_SECONDS", 120))
    lost = list(
        GenerationRequest.objects.filter(state=State.QUEUED, queued_at__lt=cutoff)
        .order_by("queued_at")
        .values_list("pk", flat=True)
    )
    if not lost or queue_depth(GENERATION_QUEUE) != 0:
        return 0
    from trainer_bridge.tasks import generate

    for request_id in lost:
        generate.delay(request_id)
    return len(lost)
