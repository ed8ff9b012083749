"""Running generation requests: claiming a batch, storing its results, failing a request.

The state machine is queued -> running -> done | failed. A worker claims queued requests under
row locks (SKIP LOCKED on PostgreSQL), so two workers never run the same request; results are
stored only by the attempt that claimed the request, and at most once per output index, so a
redelivered Celery message never duplicates messages. Drafts (a trainer is waiting) are claimed
before candidates, and a running batch claims more requests for its model as rows leave it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Case, F, IntegerField, QuerySet, Value, When
from django.utils import timezone

from annotations.services import GeneratedReplies, generated_replies_add
from trainer_bridge.models import GenerationOutput, GenerationRequest
from trainer_bridge.selectors import messages_by_request

State = GenerationRequest.State
Purpose = GenerationRequest.Purpose


@dataclass(frozen=True)
class ClaimedRequest:
    """A request as a worker runs it: its id, the attempt it claimed, and what to generate."""

    id: int
    attempt: int
    n: int
    # The sampling parameters as stored (SamplingParams JSON), read by the worker.
    params: dict
    messages: list[dict]
    # The prompt as the model's token ids, encoded once while claiming.
    prompt_ids: tuple[int, ...] = ()
    purpose: str = Purpose.CANDIDATES

    @property
    def is_draft(self) -> bool:
        return self.purpose == Purpose.DRAFT


@dataclass(frozen=True)
class JoinClaim:
    """What a running batch claimed, and whether a draft it could not take is waiting."""

    claimed: list[ClaimedRequest]
    draft_left_waiting: bool


@dataclass(frozen=True)
class GenerationResult:
    """What one claimed attempt produced, ready to store."""

    request_id: int
    attempt: int
    texts: list[str]
    prompt_tokens: int
    completion_tokens: int


def _queued_for_model(model_version_id: int) -> QuerySet[GenerationRequest]:
    """Queued requests for a model, locked as they are read (skipping locked ones), drafts
    first, then in the order they were queued."""
    # Only the requests are locked ("self"), not the context messages joined in.
    return (
        GenerationRequest.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("context")
        .filter(state=State.QUEUED, model_version_id=model_version_id)
        .order_by(
            Case(When(purpose=Purpose.DRAFT, then=Value(0)), default=Value(1)),
            "queued_at",
            "id",
        )
    )


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
    `cost` can use and the worker samples from. Drafts come before candidates. Returns [] when
    the request is not queued any more (done, failed, or running elsewhere): that is how a
    redelivered message becomes a no-op.
    """
    first = (
        GenerationRequest.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("context")
        .filter(pk=request_id, state=State.QUEUED)
        .first()
    )
    if first is None:
        return []
    others = list(
        _queued_for_model(first.model_version_id).exclude(pk=first.pk)[: max_requests - 1]
    )
    # The request whose message this is always runs, even alone over budget: the worker fails
    # it with the reason if it never fits.
    claimed, _ = _take(
        [first, *others], encode=encode, cost=cost, budget=token_budget, first_always=True
    )
    _mark_running(claimed, worker=worker)
    return claimed


def generation_batch_join(
    *,
    model_version_id: int,
    worker: str,
    encode: Callable[[list[list[dict]]], list[tuple[int, ...]]],
    cost: Callable[[ClaimedRequest], int],
    token_budget: int,
    row_budget: int,
    max_requests: int,
    fits: Callable[[ClaimedRequest], bool],
) -> JoinClaim:
    """Claim queued requests for a model that a running batch can take: drafts first, within
    `token_budget` (in `cost`'s units) and `row_budget` (n of each), and only those that
    `fits` accepts.

    `draft_left_waiting` says a queued draft did not fit (too long for the running batch): the
    worker then lets its batch end, so that the draft's own message starts one that fits it.
    """
    nothing = JoinClaim(claimed=[], draft_left_waiting=False)
    if token_budget <= 0 or row_budget <= 0 or max_requests <= 0:
        return nothing
    # Most polls find nothing: one unlocked look first, outside a transaction.
    queued = GenerationRequest.objects.filter(state=State.QUEUED, model_version_id=model_version_id)
    if not queued.exists():
        return nothing
    with transaction.atomic():
        candidates = list(_queued_for_model(model_version_id)[:max_requests])
        if not candidates:
            return nothing
        claimed, left = _take(
            candidates,
            encode=encode,
            cost=cost,
            budget=token_budget,
            row_budget=row_budget,
            fits=fits,
        )
        _mark_running(claimed, worker=worker)
    return JoinClaim(claimed=claimed, draft_left_waiting=any(item.is_draft for item in left))


def _take(
    requests: list[GenerationRequest],
    *,
    encode: Callable[[list[list[dict]]], list[tuple[int, ...]]],
    cost: Callable[[ClaimedRequest], int],
    budget: int,
    row_budget: int | None = None,
    first_always: bool = False,
    fits: Callable[[ClaimedRequest], bool] | None = None,
) -> tuple[list[ClaimedRequest], list[ClaimedRequest]]:
    """The requests (in order) that fit within the budgets, and those that did not."""
    threads = messages_by_request(requests)
    prompts = _encode_each_if_needed(encode, [threads[request.pk] for request in requests])
    claimed: list[ClaimedRequest] = []
    left: list[ClaimedRequest] = []
    spent = rows = 0
    for request, prompt_ids in zip(requests, prompts, strict=True):
        item = ClaimedRequest(
            id=request.pk,
            attempt=request.attempts + 1,
            n=request.n,
            params=request.params,
            messages=threads[request.pk],
            prompt_ids=prompt_ids,
            purpose=request.purpose,
        )
        item_cost = cost(item)
        over = spent + item_cost > budget or (row_budget is not None and rows + item.n > row_budget)
        if not (first_always and not claimed) and (over or (fits and not fits(item))):
            left.append(item)
            continue
        spent += item_cost
        rows += item.n
        claimed.append(item)
    return claimed, left


def _mark_running(claimed: list[ClaimedRequest], *, worker: str) -> None:
    """One UPDATE for the whole batch; the rows are locked, so attempts + 1 is what was read + 1."""
    if not claimed:
        return
    GenerationRequest.objects.filter(pk__in=[item.id for item in claimed]).update(
        state=State.RUNNING,
        attempts=F("attempts") + 1,
        started_at=timezone.now(),
        finished_at=None,
        worker=worker,
        error="",
    )


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
    # The messages are annotations' (its service writes them); which output each is, is ours.
    stored_replies = generated_replies_add(
        replies=[
            GeneratedReplies(
                context=request.context,
                model_version_id=request.model_version_id,
                texts=wanted[request.pk].texts,
            )
            for request in ours
        ]
    )
    GenerationOutput.objects.bulk_create(
        GenerationOutput(request=request, message=message, output_index=index)
        for request, messages in zip(ours, stored_replies, strict=True)
        for index, message in enumerate(messages)
    )
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
