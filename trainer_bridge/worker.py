"""What a gpu worker does with one message: claim a batch, sample it, store or fail each request.

A batch is every queued request for the same model that fits the token budget, whatever their
sampling settings. When the device runs out of memory the batch is split in halves and each half
retried; a single request that still does not fit fails with the reason. The batch's results are
stored in one transaction.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass

from django.conf import settings

from annotations.models import GenerationRequest
from trainer_bridge.backends import (
    GenerationOutOfMemory,
    LoadedGenerator,
    Row,
    Sample,
    SamplingParams,
    model_cache,
)
from trainer_bridge.generation import (
    ClaimedRequest,
    GenerationResult,
    generation_batch_claim,
    generation_request_fail,
    generation_results_store_batch,
)

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
    return item.n * (len(item.prompt_ids) + int(item.params.get("max_new_tokens", 256)))


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
    # Rows of any sampling settings share one batch: the backend samples each row its own way.
    rows: list[tuple[ClaimedRequest, Row]] = []
    for item in claimed:
        ids = item.prompt_ids or generator.encode_chat(item.messages)
        sampling = SamplingParams.from_request(item.params)
        rows.extend(
            (item, Row(prompt_ids=ids, sampling=sampling, sample_index=index))
            for index in range(item.n)
        )
    prompt_tokens = {item.id: len(row.prompt_ids) for item, row in rows}
    report.rows = len(rows)

    samples: dict[int, list[Sample]] = {item.id: [] for item in claimed}
    failures: dict[int, str] = {}

    def run(chunk: list[tuple[ClaimedRequest, Row]]) -> None:
        try:
            outputs = generator.generate([row for _, row in chunk], faults=faults)
        except GenerationOutOfMemory as exc:
            if len(chunk) == 1:
                failures[chunk[0][0].id] = f"Out of memory even for a single sample: {exc}"
                return
            report.splits += 1
            half = len(chunk) // 2
            logger.warning(
                "Out of memory on %d rows; retrying as %d + %d", len(chunk), half, len(chunk) - half
            )
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
