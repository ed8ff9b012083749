"""The life of a training run once a backend has it: claiming an attempt, the per-run token, the
events a trainer reports (started, metrics, log, finished), signs of life, and the end: the
model stored and registered, or the run failed.

Both backends end here: the local backend feeds the events file of the process it watches, the
command backend's job posts the same events to the API. Every write names the attempt it belongs
to, so an attempt the watchdog gave up on (or a cancelled run) changes nothing any more.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from annotations.models import ModelVersion
from trainer_bridge.model_storage import storage_source, store_model_folder
from trainer_bridge.models import TrainingMetric, TrainingRun
from trainer_bridge.services import model_version_register

State = TrainingRun.State

EVENT_TYPES = ("started", "metrics", "log", "finished")
MAX_EVENTS_PER_BATCH = 1000
MAX_METRIC_KEYS = 32
MAX_LOG_MESSAGE = 10_000
MAX_SUMMARY_CHARS = 20_000


def training_settings() -> dict[str, Any]:
    return settings.PARLEY["TRAINING"]


# ---------------------------------------------------------------- attempts and tokens


@transaction.atomic
def run_claim(run_id: int, *, worker: str) -> TrainingRun | None:
    """Take a queued run for a new attempt (None when there is nothing to do).

    A run already finished is left alone, and so is one another worker runs (a recent sign of
    life). A running one whose worker went silent is taken over, like the watchdog would, up to
    the attempt limit; past it the run fails with the reason.
    """
    run = (
        TrainingRun.objects.select_for_update(of=("self",))
        .select_related("project", "base_model", "reward_model")
        .filter(pk=run_id)
        .first()
    )
    if run is None or run.is_finished:
        return None
    config = training_settings()
    now = timezone.now()
    if run.state == State.RUNNING:
        stale = now - timedelta(seconds=_stale_seconds(run))
        if run.heartbeat_at and run.heartbeat_at > stale:
            return None
    if run.attempts >= config["MAX_ATTEMPTS"]:
        run.state = State.FAILED
        run.error = (
            f"The worker running this stopped {run.attempts} times (the limit is "
            f"{config['MAX_ATTEMPTS']}); it was not started again."
        )
        run.finished_at = now
        run.save(update_fields=["state", "error", "finished_at"])
        return None
    run.state = State.RUNNING
    run.attempts += 1
    run.started_at = now
    run.heartbeat_at = now
    run.finish_reported_at = None
    run.worker = worker[:200]
    run.token_hash = ""
    run.error = ""
    run.log_tail = append_log(run.log_tail, f"Attempt {run.attempts} started on {worker}.")
    run.save(
        update_fields=[
            "state", "attempts", "started_at", "heartbeat_at", "finish_reported_at", "worker",
            "token_hash", "error", "log_tail",
        ]
    )  # fmt: skip
    return run


def _stale_seconds(run: TrainingRun) -> int:
    config = training_settings()
    if run.backend == TrainingRun.Backend.COMMAND:
        return config["COMMAND_STALE_SECONDS"]
    return config["STALE_SECONDS"]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def run_token_issue(*, run_id: int, attempt: int) -> str:
    """A fresh token for this attempt (only its hash is kept); an earlier attempt's stops
    working, so a job given up for lost cannot report into the new one."""
    token = secrets.token_urlsafe(32)
    TrainingRun.objects.filter(pk=run_id, attempts=attempt).update(token_hash=hash_token(token))
    return token


def run_for_token(pk: int, token: str) -> TrainingRun | None:
    """The run whose current token this is, else None (the same for an unknown run)."""
    run = TrainingRun.objects.filter(pk=pk).first()
    expected = run.token_hash if run is not None else ""
    if not expected or not token:
        hmac.compare_digest(hash_token(token or "-"), "0" * 64)
        return None
    return run if hmac.compare_digest(hash_token(token), expected) else None


# ---------------------------------------------------------------- events


def _finite(value: Any) -> float | int | None:
    if value is None:
        return None  # a trainer writes a NaN as null: strict JSON has no NaN
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError
    if isinstance(value, float) and not math.isfinite(value):
        return None  # a NaN loss is worth a point on the chart, as a gap
    return value


def parse_events(raw: Any) -> list[dict[str, Any]]:
    """The events of a report, checked and normalised; a bad one raises ValidationError naming
    it (`events[2].step`)."""
    if not isinstance(raw, list):
        raise ValidationError({"events": "Give a list of events."})
    if len(raw) > MAX_EVENTS_PER_BATCH:
        raise ValidationError({"events": f"At most {MAX_EVENTS_PER_BATCH} events a report."})
    return [parse_event(item, where=f"events[{i}]") for i, item in enumerate(raw)]


def parse_event(item: Any, *, where: str = "event") -> dict[str, Any]:
    if not isinstance(item, Mapping):
        raise ValidationError({where: "An event is a JSON object."})
    kind = item.get("type")
    if kind not in EVENT_TYPES:
        raise ValidationError(
            {f"{where}.type": f"Unknown event type {str(kind)[:30]!r}; use one of: "
             f"{', '.join(EVENT_TYPES)}."}
        )  # fmt: skip
    if kind == "started":
        rows = item.get("rows") or {}
        if not isinstance(rows, Mapping) or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
            for k, v in rows.items()
        ):
            raise ValidationError({f"{where}.rows": "Counts of rows: names to whole numbers."})
        return {"type": kind, "rows": {k[:40]: v for k, v in list(rows.items())[:16]}}
    if kind == "metrics":
        step = item.get("step")
        if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step < 2**31:
            raise ValidationError({f"{where}.step": "A whole number of steps, 0 or more."})
        values = item.get("values")
        if not isinstance(values, Mapping) or not values:
            raise ValidationError({f"{where}.values": "An object of metric names to numbers."})
        if len(values) > MAX_METRIC_KEYS:
            raise ValidationError({f"{where}.values": f"At most {MAX_METRIC_KEYS} metrics."})
        clean: dict[str, float | int | None] = {}
        for name, value in values.items():
            if not isinstance(name, str) or not 0 < len(name) <= 64:
                raise ValidationError({f"{where}.values": "Metric names are short strings."})
            try:
                clean[name] = _finite(value)
            except TypeError:
                raise ValidationError({f"{where}.values.{name}": "Not a number."}) from None
        return {"type": kind, "step": step, "values": clean}
    if kind == "log":
        message = item.get("message")
        if not isinstance(message, str):
            raise ValidationError({f"{where}.message": "A log message is a string."})
        return {"type": kind, "message": message[:MAX_LOG_MESSAGE]}
    state = item.get("state")
    if state not in ("succeeded", "failed"):
        raise ValidationError({f"{where}.state": "A finished run succeeded or failed."})
    summary = item.get("summary") or {}
    if not isinstance(summary, Mapping) or len(repr(summary)) > MAX_SUMMARY_CHARS:
        raise ValidationError({f"{where}.summary": "A (small) JSON object."})
    error = item.get("error") or ""
    if not isinstance(error, str):
        raise ValidationError({f"{where}.error": "A string."})
    if state == "failed" and not error:
        error = "The trainer reported a failure without a reason."
    return {
        "type": kind,
        "state": state,
        "summary": _json_safe(summary),
        "error": error[:MAX_LOG_MESSAGE],
        "output": str(item.get("output") or "")[:500],
    }


def _json_safe(value: Any) -> Any:
    """Non-finite floats become null: PostgreSQL's JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def append_log(tail: str, text: str, *, limit: int | None = None) -> str:
    """`tail` with `text` appended as lines, cut to the last `limit` characters (at a line)."""
    if limit is None:
        limit = training_settings()["LOG_TAIL_CHARS"]
    if not text:
        return tail
    joined = tail + text + ("" if text.endswith("\n") else "\n")
    if len(joined) <= limit:
        return joined
    cut = joined[-limit:]
    newline = cut.find("\n")
    return cut[newline + 1 :] if 0 <= newline < len(cut) - 1 else cut


@dataclass(frozen=True)
class Applied:
    """What a batch of events did: whether the run took them, and how it ended if it did."""

    accepted: bool
    state: str
    succeeded: bool = False
    failed: bool = False


def _started_line(rows: Mapping[str, int]) -> str:
    if not rows:
        return "Training started."
    parts = [f"{n} {name.replace('_', ' ')}" for name, n in rows.items()]
    return "Training started: rows " + ", ".join(parts) + "."


@transaction.atomic
def events_apply(
    *, run_id: int, attempt: int, events: Iterable[Mapping[str, Any]], log_text: str = ""
) -> Applied:
    """Record checked events (and `log_text`, output of the process) on the run's `attempt`.

    A run that is no longer running this attempt (cancelled, failed, taken over) takes none of
    them. Metrics of one step reported in pieces (training loss, then evaluation accuracy) are
    merged into one row. A `finished` success only marks the run as finishing: the caller stores
    the model (`run_store_result`); a failure fails it at once.
    """
    run = (
        TrainingRun.objects.select_for_update()
        .filter(pk=run_id)
        .only("pk", "state", "attempts", "log_tail", "rows", "summary", "finish_reported_at")
        .first()
    )
    if run is None:
        return Applied(accepted=False, state="missing")
    if run.state != State.RUNNING or run.attempts != attempt:
        return Applied(accepted=False, state=run.state)
    now = timezone.now()
    lines: list[str] = [log_text] if log_text else []
    metrics: dict[int, dict[str, Any]] = {}
    fields = {"heartbeat_at"}
    succeeded = failed = False
    for event in events:
        kind = event["type"]
        if kind == "started":
            run.rows = dict(event["rows"])
            fields.add("rows")
            lines.append(_started_line(run.rows))
        elif kind == "metrics":
            metrics.setdefault(event["step"], {}).update(event["values"])
        elif kind == "log":
            lines.append(event["message"])
        elif event["state"] == "succeeded":
            run.summary = event["summary"]
            if run.finish_reported_at is None:
                run.finish_reported_at = now
            fields |= {"summary", "finish_reported_at"}
            lines.append("Training finished; storing the model.")
            succeeded = True
        else:
            run.summary = event["summary"] or run.summary
            run.state = State.FAILED
            run.error = event["error"]
            run.finished_at = now
            fields |= {"summary", "state", "error", "finished_at"}
            lines.append(f"Failed: {event['error']}")
            failed = True
            break
    if metrics:
        _metrics_merge(run, metrics)
    if lines:
        run.log_tail = append_log(run.log_tail, "\n".join(line.rstrip("\n") for line in lines))
        fields.add("log_tail")
    run.heartbeat_at = now
    run.save(update_fields=sorted(fields))
    return Applied(accepted=True, state=run.state, succeeded=succeeded, failed=failed)


def _metrics_merge(run: TrainingRun, metrics: dict[int, dict[str, Any]]) -> None:
    """Upsert one row per step (the caller holds the run's row lock, which every writer of its
    metrics takes first, so no two writers race on a step)."""
    existing = {m.step: m for m in TrainingMetric.objects.filter(run=run, step__in=list(metrics))}
    new = []
    for step, values in metrics.items():
        if step in existing:
            existing[step].values = {**existing[step].values, **values}
        else:
            new.append(TrainingMetric(run=run, step=step, values=values))
    if existing:
        TrainingMetric.objects.bulk_update(list(existing.values()), ["values"])
    if new:
        TrainingMetric.objects.bulk_create(new)


def run_beat(*, run_id: int, attempt: int, log_text: str = "") -> bool:
    """A sign of life of the worker running `attempt` (with new log output); False once the run
    is no longer that attempt's to run (cancelled, or given up and taken over)."""
    if log_text:
        return events_apply(run_id=run_id, attempt=attempt, events=(), log_text=log_text).accepted
    return bool(
        TrainingRun.objects.filter(pk=run_id, state=State.RUNNING, attempts=attempt).update(
            heartbeat_at=timezone.now()
        )
    )


def run_fail(*, run_id: int, attempt: int, error: str, log_text: str = "") -> bool:
    """Fail the attempt with `error` (the log tail stays); False if it was no longer running."""
    with transaction.atomic():
        run = (
            TrainingRun.objects.select_for_update()
            .filter(pk=run_id, state=State.RUNNING, attempts=attempt)
            .only("pk", "log_tail")
            .first()
        )
        if run is None:
            return False
        text = "\n".join(part for part in (log_text.rstrip("\n"), f"Failed: {error}") if part)
        run.log_tail = append_log(run.log_tail, text)
        run.state = State.FAILED
        run.error = error[:MAX_LOG_MESSAGE]
        run.finished_at = timezone.now()
        run.save(update_fields=["log_tail", "state", "error", "finished_at"])
    return True


def result_model_name(run: TrainingRun) -> str:
    return f"{run.project.slug}-{run.stage}-run-{run.pk}"


def run_store_result(*, run_id: int, attempt: int, output_dir: Path) -> TrainingRun | None:
    """Store a finished attempt's model folder and register it as a ModelVersion: parent the
    base model, lineage the run (and through it the snapshots and metrics). Returns the run, or
    None when the attempt is no longer the run's (the files then stay unregistered)."""
    run = (
        TrainingRun.objects.select_related("project", "base_model")
        .filter(pk=run_id, state=State.RUNNING, attempts=attempt)
        .first()
    )
    if run is None:
        return None
    if not (output_dir / "config.json").is_file():
        run_fail(
            run_id=run_id,
            attempt=attempt,
            error=f"The trainer reported success but left no model in {output_dir}.",
        )
        return TrainingRun.objects.get(pk=run_id)
    prefix = f"training/{run.project.slug}/run-{run.pk}/attempt-{attempt}/model"
    count = store_model_folder(
        output_dir, prefix, each_file=lambda: run_beat(run_id=run_id, attempt=attempt)
    )
    with transaction.atomic():
        run = (
            TrainingRun.objects.select_for_update(of=("self",))
            .select_related("project", "base_model")
            .filter(pk=run_id, state=State.RUNNING, attempts=attempt)
            .first()
        )
        if run is None:
            return None
        snapshots = ", ".join(f"#{pk}" for pk in run.snapshots.values_list("pk", flat=True))
        model_version = model_version_register(
            name=result_model_name(run),
            source=storage_source(prefix),
            kind=ModelVersion.Kind.REWARD if run.stage == "rm" else ModelVersion.Kind.POLICY,
            parent=run.base_model,
            notes=(
                f"Trained by {run.get_stage_display()} run {run.pk} of {run.project.slug} "
                f"from {run.base_model.name} on snapshot(s) {snapshots}."
            ),
        )
        run.result_model = model_version
        run.result_folder = prefix
        run.state = State.SUCCEEDED
        run.finished_at = timezone.now()
        run.heartbeat_at = run.finished_at
        run.log_tail = append_log(
            run.log_tail, f"Stored {count} files; registered as model version {model_version}."
        )
        run.save(
            update_fields=[
                "result_model", "result_folder", "state", "finished_at", "heartbeat_at",
                "log_tail",
            ]
        )  # fmt: skip
    return run


def run_store_failed(*, run_id: int, attempt: int, exc: BaseException) -> None:
    run_fail(
        run_id=run_id,
        attempt=attempt,
        error=f"Storing the trained model failed: {type(exc).__name__}: {exc}"[:2000],
    )


__all__ = [
    "Applied",
    "append_log",
    "events_apply",
    "parse_event",
    "parse_events",
    "run_beat",
    "run_claim",
    "run_fail",
    "run_for_token",
    "run_store_failed",
    "run_store_result",
    "run_token_issue",
]
