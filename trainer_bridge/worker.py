"""What a gpu worker does with one message: claim a batch, sample it, store or fail each request.

A batch is every queued request for the same model that fits the token budget, whatever their
sampling settings. When the device runs out of memory, or sampling raises any other error, the
batch is split in halves and each half retried; a single request that still fails fails alone
with the reason, and the rest of the batch is stored. One bad request never takes its batch-mates
(other projects' requests included) down with it. The batch's results are stored in one
transaction.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.exceptions import ValidationError

from trainer_bridge.backends import (
    GenerationOutOfMemory,
    LoadedGenerator,
    Row,
    Sample,
    model_cache,
)
from trainer_bridge.batches import (
    ClaimedRequest,
    GenerationResult,
    generation_batch_claim,
    generation_request_fail,
    generation_results_store_batch,
)
from trainer_bridge.models import GenerationRequest
from trainer_bridge.sampling_params import SamplingParams

logger = logging.getLogger(__name__)


@dataclass
class BatchReport:
    requests: int = 0
    done: int = 0
    failed: int = 0
    rows: int = 0
    completion_tokens: int = 0
    splits: int = 0


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def request_cost(item: ClaimedRequest) -> int:
    """Tokens a request occupies in a batch: (prompt + new tokens) for each of its n samples."""
    try:
        new_tokens = SamplingParams.from_json(item.params).max_new_tokens
    except ValidationError:
        new_tokens = 0  # the worker fails it before sampling, at no cost
    return item.n * (len(item.prompt_ids) + new_tokens)


def failure_reason(exc: BaseException) -> str:
    """What a request that failed alone tells its requester: the exception's type and message."""
    if isinstance(exc, ValidationError) and hasattr(exc, "error_dict"):
        detail = "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
        return f"Invalid request: {detail}"
    return f"{type(exc).__name__}: {exc}"


def process_generation(request_id: int) -> BatchReport:
    """Run `request_id` and whatever else is queued for its model, as one batch."""
    config = settings.PARLEY["GENERATION"]
    request = (
        GenerationRequest.objects.select_related("model_version").filter(pk=request_id).first()
    )
    if request is None or request.state != GenerationRequest.State.QUEUED:
        return BatchReport()
    generator = model_cache().get(
        request.model_version, device=settings.PARLEY["GENERATION_DEVICE"]
    )
    claimed = generation_batch_claim(
        request_id=request_id,
        worker=worker_name(),
        encode=generator.encode_chats,
        cost=request_cost,
        token_budget=config["TOKEN_BUDGET"],
        max_requests=config["MAX_BATCH_REQUESTS"],
    )
    return run_batch(generator, claimed, faults=config.get("FAULTS") or {})


def run_batch(
    generator: LoadedGenerator, claimed: list[ClaimedRequest], *, faults: dict
) -> BatchReport:
    report = BatchReport(requests=len(claimed))
    if not claimed:
        return report
    samples: dict[int, list[Sample]] = {item.id: [] for item in claimed}
    failures: dict[int, str] = {}
    # Rows of any sampling settings share one batch: the backend samples each row its own way.
    rows: list[tuple[ClaimedRequest, Row]] = []
    for item in claimed:
        try:
            # Checked again: a request stored before today's rules may hold anything.
            sampling = SamplingParams.from_json(item.params)
            ids = item.prompt_ids or generator.encode_chat(item.messages)
        except SoftTimeLimitExceeded:
            raise
        except Exception as exc:
            failures[item.id] = failure_reason(exc)
            continue
        rows.extend(
            (item, Row(prompt_ids=ids, sampling=sampling, sample_index=index))
            for index in range(item.n)
        )
    prompt_tokens = {item.id: len(row.prompt_ids) for item, row in rows}
    report.rows = len(rows)

    def run(chunk: list[tuple[ClaimedRequest, Row]]) -> None:
        # Rows of a request that already failed elsewhere in the batch are not worth sampling.
        chunk = [pair for pair in chunk if pair[0].id not in failures]
        if not chunk:
            return
        try:
            outputs = generator.generate([row for _, row in chunk], faults=faults)
        except SoftTimeLimitExceeded:
            raise
        except Exception as exc:
            # Out of memory: a smaller batch may fit. Anything else: one request may be at
            # fault, so halve until it is alone and fail only it.
            out_of_memory = isinstance(exc, GenerationOutOfMemory)
            # Fewer rows may fit in memory; but one request's rows share one prompt and one way
            # of sampling, so for other errors a chunk of a single request has nothing to split.
            alone = len(chunk) == 1 or (
                not out_of_memory and len({item.id for item, _ in chunk}) == 1
            )
            if alone:
                failures[chunk[0][0].id] = (
                    f"Out of memory even for a single sample: {exc}"
                    if out_of_memory
                    else failure_reason(exc)
                )
                return
            report.splits += 1
            half = len(chunk) // 2
            logger.warning(
                "%s on %d rows; retrying as %d + %d",
                "Out of memory" if out_of_memory else failure_reason(exc),
                len(chunk), half, len(chunk) - half,
            )  # fmt: skip
            run(chunk[:half])
            run(chunk[half:])
            return
        for (item, _), sample in zip(chunk, outputs, strict=True):
            samples[item.id].append(sample)

    run(rows)

    results: list[GenerationResult] = []
    for item in claimed:
        if item.id in failures:
            generation_request_fail(
                request_id=item.id, attempt=item.attempt, error=failures[item.id]
            )
            report.failed += 1
            continue
        results.append(
            GenerationResult(
                request_id=item.id,
                attempt=item.attempt,
                texts=[s.text for s in samples[item.id]],
                prompt_tokens=prompt_tokens[item.id],
                completion_tokens=sum(s.completion_tokens for s in samples[item.id]),
            )
        )
    stored = generation_results_store_batch(results=results)
    for result in results:
        if result.request_id in stored:
            report.done += 1
            report.completion_tokens += result.completion_tokens
    return report
