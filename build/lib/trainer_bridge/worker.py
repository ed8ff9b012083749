"""What a gpu worker does with one message: claim a batch, decode it, store or fail each request.

A batch starts as every queued request for the same model that fits the token budget, drafts
first, whatever their sampling settings. It runs as one continuous-batching session: rows that
finish leave it, and while it runs the worker claims more queued requests for the model
(drafts first) to join it as room frees up. A request's replies are stored once all its n
samples are in: a draft's at once, candidates' together. When the device runs out of memory
while rows join, the joining rows are halved (and wait for room while others run); any other
error halves them until one request is alone and fails with the reason. One bad request never
takes its batch-mates (other projects' requests included) down with it.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.exceptions import ValidationError

from trainer_bridge.backends import GenerationOutOfMemory, LoadedGenerator, Row, model_cache
from trainer_bridge.batches import (
    ClaimedRequest,
    GenerationResult,
    JoinClaim,
    generation_batch_claim,
    generation_batch_join,
    generation_request_fail,
    generation_results_store_batch,
)
from trainer_bridge.continuous import StepOutcome
from trainer_bridge.decoding import Sample
from trainer_bridge.models import GenerationRequest
from trainer_bridge.sampling_params import SamplingParams

logger = logging.getLogger(__name__)

# Requests per claim on the CPU where the setting is 0 (on CUDA: the rows the cache holds).
CPU_BATCH_REQUESTS = 64
# Finished candidates are stored together: when the batch ends, when this many are waiting, or
# when the oldest has waited this long. Drafts are stored as soon as they are done.
STORE_BATCH_REQUESTS = 256
STORE_WAIT_SECONDS = 2.0


@dataclass
class BatchReport:
    requests: int = 0
    done: int = 0
    failed: int = 0
    rows: int = 0
    completion_tokens: int = 0
    splits: int = 0
    joined: int = 0  # requests claimed while the batch was running
    steps: int = 0


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def request_cost(item: ClaimedRequest) -> int:
    """Tokens a request occupies in a batch: (prompt + new tokens) for each of its n samples."""
    return item.n * (len(item.prompt_ids) + _new_tokens(item))


def _new_tokens(item: ClaimedRequest) -> int:
    try:
        return SamplingParams.from_json(item.params).max_new_tokens
    except ValidationError:
        return 0  # the worker fails it before sampling, at no cost


def failure_reason(exc: BaseException) -> str:
    """What a request that failed alone tells its requester: the exception's type and message."""
    if isinstance(exc, ValidationError) and hasattr(exc, "error_dict"):
        detail = "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
        return f"Invalid request: {detail}"
    return f"{type(exc).__name__}: {exc}"


def batch_limits(generator: LoadedGenerator) -> tuple[int, int]:
    """(token budget, requests) of a claim: the settings, or what the model's cache holds."""
    config = settings.PARLEY["GENERATION"]
    plan = generator.plan
    on_cuda = str(generator.device).startswith("cuda")
    tokens = config["TOKEN_BUDGET"] or plan.tokens
    requests = config["MAX_BATCH_REQUESTS"] or (plan.max_rows if on_cuda else CPU_BATCH_REQUESTS)
    return tokens, requests


def process_generation(request_id: int) -> BatchReport:
    """Run `request_id` and whatever else is queued for its model, as one continuous batch."""
    config = settings.PARLEY["GENERATION"]
    request = (
        GenerationRequest.objects.select_related("model_version").filter(pk=request_id).first()
    )
    if request is None or request.state != GenerationRequest.State.QUEUED:
        return BatchReport()
    generator = model_cache().get(
        request.model_version, device=settings.PARLEY["GENERATION_DEVICE"]
    )
    token_budget, max_requests = batch_limits(generator)
    claimed = generation_batch_claim(
        request_id=request_id,
        worker=worker_name(),
        encode=generator.encode_chats,
        cost=request_cost,
        token_budget=token_budget,
        max_requests=max_requests,
    )
    poll_seconds = config.get("JOIN_POLL_SECONDS", 0.05)

    def join(rows: int, tokens: int, fits: Callable[[ClaimedRequest], bool]) -> JoinClaim:
        return generation_batch_join(
            model_version_id=request.model_version_id,
            worker=worker_name(),
            encode=generator.encode_chats,
            cost=request_cost,
            token_budget=token_budget - tokens,
            row_budget=rows,
            max_requests=max_requests,
            fits=fits,
        )

    return run_batch(
        generator,
        claimed,
        faults=config.get("FAULTS") or {},
        join=join if poll_seconds is not None and poll_seconds >= 0 else None,
        poll_seconds=poll_seconds or 0.0,
    )


def run_batch(
    generator: LoadedGenerator,
    claimed: list[ClaimedRequest],
    *,
    faults: dict,
    join: Callable[[int, int, Callable[[ClaimedRequest], bool]], JoinClaim] | None = None,
    poll_seconds: float = 0.0,
) -> BatchReport:
    """Decode `claimed` as one session; while it runs, `join(rows, tokens in flight, fits)`
    claims more requests that fit the room and the token budget."""
    run = _BatchRun(generator)
    if not claimed:
        return run.report
    run.report.requests = len(claimed)
    rows = run.take(claimed)
    if faults.get("sleep_seconds"):
        time.sleep(float(faults["sleep_seconds"]))
    length = max((row.tokens_needed for _, row in rows), default=1)
    try:
        session = generator.session(
            length=length, faults=faults, interrupts=(SoftTimeLimitExceeded,)
        )
    except GenerationOutOfMemory as exc:
        for request_id in {request_id for request_id, _ in rows}:
            run.fail(request_id, f"Out of memory even for a single sample: {exc}")
        run.flush(final=True)
        return run.report

    def fits(item: ClaimedRequest) -> bool:
        return len(item.prompt_ids) + _new_tokens(item) <= session.length

    with session:
        session.add(rows)
        last_poll = time.monotonic()
        draining = False
        while session.busy():
            run.collect(session.step())
            run.flush(final=False)
            if join is None or draining or session.room() <= 0:
                continue
            if time.monotonic() - last_poll < poll_seconds:
                continue
            claim = join(session.room(), run.tokens_in_flight(), fits)
            last_poll = time.monotonic()
            if claim.claimed:
                run.report.requests += len(claim.claimed)
                run.report.joined += len(claim.claimed)
                session.add(run.take(claim.claimed))
            # A draft too long for this batch waits for the next one: let this one end.
            draining = claim.draft_left_waiting
        run.report.splits = session.splits
        run.report.steps = session.steps
    run.flush(final=True)
    return run.report


@dataclass
class _Pending:
    """A request being decoded: its samples by index as they finish."""

    item: ClaimedRequest
    prompt_tokens: int
    samples: dict[int, Sample] = field(default_factory=dict)


class _BatchRun:
    """The requests of one batch: their rows, finished samples and failures, and storing them."""

    def __init__(self, generator: LoadedGenerator) -> None:
        self.generator = generator
        self.report = BatchReport()
        self.running: dict[int, _Pending] = {}
        self.results: list[GenerationResult] = []
        self.results_since = 0.0
        self.draft_done = False
        self.failures: list[tuple[ClaimedRequest, str]] = []

    def take(self, claimed: list[ClaimedRequest]) -> list[tuple[int, Row]]:
        """The rows of `claimed` (tagged with their request); a request that cannot be read
        fails at once."""
        rows: list[tuple[int, Row]] = []
        for item in claimed:
            self.running[item.id] = _Pending(item=item, prompt_tokens=0)
            try:
                # Checked again: a request stored before today's rules may hold anything.
                sampling = SamplingParams.from_json(item.params)
                ids = item.prompt_ids or self.generator.encode_chat(item.messages)
            except SoftTimeLimitExceeded:
                raise
            except Exception as exc:
                self.fail(item.id, failure_reason(exc))
                continue
            self.running[item.id].prompt_tokens = len(ids)
            rows.extend(
                (item.id, Row(ids, sampling, sample_index=i, draft=item.is_draft))
                for i in range(item.n)
            )
            self.report.rows += item.n
        return rows

    def collect(self, outcome: StepOutcome) -> None:
        for failed in outcome.failed:
            reason = str(failed.error) if failed.out_of_memory else failure_reason(failed.error)
            self.fail(failed.tag, reason)
        for finished in outcome.finished:
            pending = self.running.get(finished.tag)
            if pending is None:
                continue
            pending.samples[finished.row.sample_index] = finished.sample
            if len(pending.samples) < pending.item.n:
                continue
            del self.running[finished.tag]
            samples = [pending.samples[i] for i in range(pending.item.n)]
            if not self.results:
                self.results_since = time.monotonic()
            self.results.append(
                GenerationResult(
                    request_id=pending.item.id,
                    attempt=pending.item.attempt,
                    texts=[s.text for s in samples],
                    prompt_tokens=pending.prompt_tokens,
                    completion_tokens=sum(s.completion_tokens for s in samples),
                )
            )
            self.draft_done |= pending.item.is_draft

    def tokens_in_flight(self) -> int:
        return sum(request_cost(pending.item) for pending in self.running.values())

    def fail(self, request_id: int, reason: str) -> None:
        pending = self.running.pop(request_id, None)
        if pending is not None:
            self.failures.append((pending.item, reason))

    def flush(self, *, final: bool) -> None:
        """Store what is ready: failures at once; results when the batch ends, a draft is
        among them, or enough have waited long enough (see STORE_*)."""
        for item, reason in self.failures:
            generation_request_fail(request_id=item.id, attempt=item.attempt, error=reason)
            self.report.failed += 1
        self.failures = []
        if not self.results:
            return
        due = (
            final
            or self.draft_done
            or len(self.results) >= STORE_BATCH_REQUESTS
            or time.monotonic() - self.results_since >= STORE_WAIT_SECONDS
        )
        if not due:
            return
        stored = generation_results_store_batch(results=self.results)
        for result in self.results:
            if result.request_id in stored:
                self.report.done += 1
                self.report.completion_tokens += result.completion_tokens
        self.results = []
        self.draft_done = False
