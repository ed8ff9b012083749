"""Training backends: where a run's stage actually runs, and how the train worker watches it.

- `local`: the train worker starts `accelerate launch [--config_file F] -m
  trainer_bridge.training.entry ...` in a subprocess (one CPU, one GPU, several GPUs or DeepSpeed,
  as the accelerate config says), follows its events file and output into the run, and ends it
  when the run is cancelled.
- `command`: the worker runs a configured command template (an `sbatch` script, a Kubernetes
  Job, or anything that runs the same entry point) with the run's paths; the job reports its
  events to the API with the run's token. A template that runs the entry point in the
  foreground is watched like a local run until it exits.

Both go through trainer_bridge.training_guard, so a worker that dies takes its training
processes with it; the watchdog then queues the run again or fails it.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.urls import reverse

from exports.models import ExportSnapshot
from exports.services import export_lines
from trainer_bridge.loading import resolve_source
from trainer_bridge.models import TrainingRun
from trainer_bridge.training_events import (
    events_apply,
    parse_event,
    run_beat,
    run_claim,
    run_fail,
    run_store_failed,
    run_store_result,
    run_token_issue,
    training_settings,
)

logger = logging.getLogger(__name__)

ENTRY_MODULE = "trainer_bridge.training.entry"
TEMPLATE_FIELDS = (
    "run_id", "stage", "train_path", "validation_path", "base_path", "reward_model_path",
    "output_dir", "hyperparameters_json", "events_path", "report_url", "work_dir",
)  # fmt: skip
BEAT_SECONDS = 1.0
# A trainer that reported its end but does not exit is ended after this long.
FINISH_GRACE_SECONDS = 60.0
MAX_LOG_PER_BEAT = 16_000


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# ---------------------------------------------------------------- the run's folder


@dataclass(frozen=True)
class Workspace:
    """An attempt's folder: its inputs, the trainer's events and output, and the process log."""

    root: Path
    train_path: Path
    validation_path: Path | None
    base_path: str
    reward_model_path: str | None
    output_dir: Path
    events_path: Path
    log_path: Path

    def template_values(self, run: TrainingRun, *, report_url: str) -> dict[str, str]:
        return {
            "run_id": str(run.pk),
            "stage": run.stage,
            "train_path": str(self.train_path),
            "validation_path": str(self.validation_path or ""),
            "base_path": self.base_path,
            "reward_model_path": self.reward_model_path or "",
            "output_dir": str(self.output_dir),
            "hyperparameters_json": json.dumps(run.hyperparameters, sort_keys=True),
            "events_path": str(self.events_path),
            "report_url": report_url,
            "work_dir": str(self.root),
        }


def attempt_root(run_id: int, attempt: int) -> Path:
    return Path(training_settings()["WORK_DIR"]) / f"run-{run_id}" / f"attempt-{attempt}"


def workspace_prepare(run: TrainingRun, *, attempt: int) -> Workspace:
    """A fresh folder for the attempt, with the snapshots' splits copied in as plain JSONL: the
    train splits of every snapshot in one file, their validation splits in another."""
    root = attempt_root(run.pk, attempt)
    if root.exists():
        shutil.rmtree(root)
    inputs = root / "inputs"
    inputs.mkdir(parents=True)
    snapshots = list(run.snapshots.order_by("pk"))
    train = inputs / "train.jsonl"
    validation = inputs / "validation.jsonl"
    train_rows = _concatenate(snapshots, "train", train)
    validation_rows = _concatenate(snapshots, "validation", validation)
    if not train_rows:
        raise ValueError("The snapshots have no training rows.")
    return Workspace(
        root=root,
        train_path=train,
        validation_path=validation if validation_rows else None,
        base_path=str(resolve_source(run.base_model.source)),
        reward_model_path=(
            str(resolve_source(run.reward_model.source)) if run.reward_model else None
        ),
        output_dir=root / "output",
        events_path=root / "events.jsonl",
        log_path=root / "log.txt",
    )


def _concatenate(snapshots: list[ExportSnapshot], split: str, out_path: Path) -> int:
    rows = 0
    with out_path.open("wb") as out:
        for snapshot in snapshots:
            splits = (snapshot.manifest or {}).get("splits", {})
            if not splits.get(split, {}).get("rows"):
                continue
            for line in export_lines(snapshot, split):
                if line.strip():
                    out.write(line if line.endswith(b"\n") else line + b"\n")
                    rows += 1
    if not rows:
        out_path.unlink()
    return rows


def entry_arguments(run: TrainingRun, ws: Workspace, *, report_url: str = "") -> list[str]:
    """The entry point's arguments (trainer_bridge.training.entry) for this attempt."""
    args = [
        "--stage", run.stage,
        "--train", str(ws.train_path),
        "--base", ws.base_path,
        "--output", str(ws.output_dir),
        "--hyperparameters", json.dumps(run.hyperparameters, sort_keys=True),
        "--events", str(ws.events_path),
    ]  # fmt: skip
    if ws.validation_path is not None:
        args += ["--validation", str(ws.validation_path)]
    if ws.reward_model_path:
        args += ["--reward-model", ws.reward_model_path]
    if report_url:
        args += ["--report-url", report_url]
    return args


def local_command(run: TrainingRun, ws: Workspace) -> list[str]:
    launch = [sys.executable, "-m", "accelerate.commands.launch"]
    config_file = training_settings().get("ACCELERATE_CONFIG")
    if config_file:
        launch += ["--config_file", str(config_file)]
    return [*launch, "-m", ENTRY_MODULE, *entry_arguments(run, ws)]


def command_template_problem(template: str) -> str | None:
    """Why a command template cannot be used, or None."""
    if not template.strip():
        return "No command template is configured (PARLEY_TRAINING_COMMAND)."
    try:
        template.format(**dict.fromkeys(TEMPLATE_FIELDS, "x"))
    except (KeyError, IndexError, ValueError) as exc:
        return (
            f"The command template does not format ({type(exc).__name__}: {exc}); it may use "
            f"{', '.join('{' + name + '}' for name in TEMPLATE_FIELDS)}."
        )
    return None


def report_url_for(run_id: int) -> str:
    base = training_settings().get("REPORT_BASE_URL", "").rstrip("/")
    return base + reverse("api-training-run-report", args=[run_id]) if base else ""


def _subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    root = str(settings.BASE_DIR)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("PARLEY_RUN_TOKEN", None)
    threads = training_settings().get("CPU_THREADS", 0)
    if threads > 0:
        env["OMP_NUM_THREADS"] = str(threads)  # accelerate launch passes it on as it is
    env.update(extra)
    return env


def _guarded(command: list[str]) -> list[str]:
    return [sys.executable, "-m", "trainer_bridge.training_guard", "--", *command]


# ---------------------------------------------------------------- watching a process


@dataclass
class _Tail:
    """New bytes of a growing file since the last read; whole lines only when `lines`."""

    path: Path
    offset: int = 0
    partial: bytes = b""

    def read(self) -> bytes:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return b""
        self.offset += len(data)
        return data

    def lines(self, *, final: bool = False) -> list[bytes]:
        data = self.partial + self.read()
        *complete, self.partial = data.split(b"\n")
        if final and self.partial.strip():
            complete.append(self.partial)
            self.partial = b""
        return [line for line in complete if line.strip()]


def _log_text(data: bytes) -> str:
    """Process output for the log tail: progress bars redrawn with carriage returns keep their
    last state, and one beat adds at most MAX_LOG_PER_BEAT characters."""
    text = data.decode("utf-8", errors="replace")
    lines = [line.rsplit("\r", 1)[-1] for line in text.split("\n")]
    text = "\n".join(lines)
    if len(text) > MAX_LOG_PER_BEAT:
        text = "[...]\n" + text[-MAX_LOG_PER_BEAT:]
    return text.strip("\n")


@dataclass
class Watched:
    """How a watched process ended."""

    status: int | None = None
    stopped: bool = False  # the run was cancelled or taken over while it ran
    finished: dict[str, Any] | None = None  # the trainer's `finished` event
    bad_events: int = 0


def watch(
    *, run_id: int, attempt: int, proc: subprocess.Popen, ws: Workspace, events: bool
) -> Watched:
    """Follow the process until it exits: its output into the log tail, its events (when
    `events`) into the run, a heartbeat every second. When the run stops being this attempt's
    (cancelled), the guard's stdin is closed, which ends the training processes."""
    out = Watched()
    log_tail = _Tail(ws.log_path)
    event_tail = _Tail(ws.events_path)
    line_no = 0

    def pump(final: bool = False) -> bool:
        nonlocal line_no
        text = _log_text(log_tail.read())
        batch: list[dict[str, Any]] = []
        if events:
            for raw in event_tail.lines(final=final):
                line_no += 1
                try:
                    event = parse_event(json.loads(raw), where=f"line {line_no}")
                except (ValueError, ValidationError) as exc:
                    out.bad_events += 1
                    reason = "; ".join(getattr(exc, "messages", [str(exc)]))
                    note = f"Ignored event line {line_no} of {ws.events_path.name}: {reason}"
                    text = f"{text}\n{note}" if text else note
                    continue
                batch.append(event)
                if event["type"] == "finished":
                    out.finished = event
        if batch:
            # A success is stored by the caller once the process is gone: the run stays running.
            applied = events_apply(run_id=run_id, attempt=attempt, events=batch, log_text=text)
            return applied.accepted
        return run_beat(run_id=run_id, attempt=attempt, log_text=text)

    ended_at: float | None = None  # when the run stopped taking events
    while True:
        status = proc.poll()
        if status is not None:
            out.status = status
            if not out.stopped and ended_at is None:
                pump(final=True)
            return out
        if not out.stopped and ended_at is None and not pump():
            if out.finished is None:
                out.stopped = True  # cancelled, or given up: end the training now
                _stop(proc)
            else:
                ended_at = time.monotonic()  # it reported its end: let it exit on its own
        elif ended_at is not None and time.monotonic() - ended_at > FINISH_GRACE_SECONDS:
            out.stopped = True
            _stop(proc)
        time.sleep(BEAT_SECONDS)


def _stop(proc: subprocess.Popen) -> None:
    """Closing the guard's stdin makes it end the training's process group."""
    try:
        if proc.stdin is not None:
            proc.stdin.close()
    except OSError:
        pass


def _start(command: list[str], ws: Workspace, log: IO[bytes], env: dict[str, str]):
    return subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
        _guarded(command),
        stdin=subprocess.PIPE,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=str(settings.BASE_DIR),
        env=env,
        start_new_session=True,
    )


# ---------------------------------------------------------------- the two backends


def run_local(run_id: int) -> str | None:
    """Run a queued local run to its end on this worker; returns the state this call ended it
    in (None when there was nothing to run, or a cancel ended it)."""
    run = run_claim(run_id, worker=worker_name())
    if run is None:
        return None
    attempt = run.attempts
    try:
        ws = workspace_prepare(run, attempt=attempt)
    except Exception as exc:
        logger.exception("Training run %s: preparing its inputs failed", run_id)
        run_fail(run_id=run_id, attempt=attempt, error=f"Preparing the inputs failed: {exc}")
        return TrainingRun.State.FAILED
    command = local_command(run, ws)
    with ws.log_path.open("ab") as log:
        log.write(("$ " + shlex.join(command) + "\n").encode())
        log.flush()
        proc = _start(command, ws, log, _subprocess_env())
        watched = watch(run_id=run_id, attempt=attempt, proc=proc, ws=ws, events=True)
    return _conclude(run_id, attempt, ws, watched, store=True)


def run_command(run_id: int) -> str | None:
    """Submit a queued run with the command template, with a fresh run token for its reports.

    A submit command returns at once (sbatch, kubectl): the job reports through the API from
    then on. A template that runs the training in the foreground is watched until it exits.
    """
    run = run_claim(run_id, worker=worker_name())
    if run is None:
        return None
    attempt = run.attempts
    template = training_settings().get("COMMAND_TEMPLATE", "")
    report_url = report_url_for(run_id)
    problem = command_template_problem(template) or (
        None if report_url else "No report URL: set PARLEY_TRAINING_REPORT_BASE_URL."
    )
    if problem:
        run_fail(run_id=run_id, attempt=attempt, error=problem)
        return TrainingRun.State.FAILED
    try:
        ws = workspace_prepare(run, attempt=attempt)
    except Exception as exc:
        logger.exception("Training run %s: preparing its inputs failed", run_id)
        run_fail(run_id=run_id, attempt=attempt, error=f"Preparing the inputs failed: {exc}")
        return TrainingRun.State.FAILED
    values = ws.template_values(run, report_url=report_url)
    command = template.format(**{k: shlex.quote(v) for k, v in values.items()})
    token = run_token_issue(run_id=run_id, attempt=attempt)
    with ws.log_path.open("ab") as log:
        log.write(f"$ {command}\n".encode())
        log.flush()
        proc = _start(["/bin/sh", "-c", command], ws, log, _subprocess_env(PARLEY_RUN_TOKEN=token))
        watched = watch(run_id=run_id, attempt=attempt, proc=proc, ws=ws, events=False)
    with ws.log_path.open("rb") as log:
        head = log.read(8192).decode("utf-8", errors="replace").splitlines()
    # What the submit command printed first: sbatch --parsable's job id, a Job's name.
    submitted = next((line for line in head if line.strip() and not line.startswith("$ ")), "")
    TrainingRun.objects.filter(pk=run_id, attempts=attempt).update(external_id=submitted[:500])
    return _conclude(run_id, attempt, ws, watched, store=False)


def _conclude(run_id: int, attempt: int, ws: Workspace, watched: Watched, *, store: bool):
    """After the process exits: store a local success, fail what ended without one. Returns the
    state this call ended the run in; None where something else ended it (a cancel, the
    trainer's own failure event, the API storing a command job's model) or nothing did yet."""
    run = TrainingRun.objects.filter(pk=run_id).only("state", "attempts").first()
    if run is None or watched.stopped or run.attempts != attempt:
        return None
    if run.state != TrainingRun.State.RUNNING:
        return None
    finished = watched.finished
    if store:
        if watched.status == 0 and finished and finished["state"] == "succeeded":
            try:
                stored = run_store_result(run_id=run_id, attempt=attempt, output_dir=ws.output_dir)
            except Exception as exc:
                logger.exception("Training run %s: storing its model failed", run_id)
                run_store_failed(run_id=run_id, attempt=attempt, exc=exc)
                return TrainingRun.State.FAILED
            return stored.state if stored is not None else None
        if watched.status == 0:
            error = "The training process exited without reporting its end."
        else:
            error = f"The training process exited with status {watched.status}."
        run_fail(run_id=run_id, attempt=attempt, error=error)
        return TrainingRun.State.FAILED
    # command: a non-zero exit before the job reported its end is a failed submission (or run).
    fresh = TrainingRun.objects.filter(pk=run_id).only("finish_reported_at").first()
    if watched.status != 0 and fresh is not None and fresh.finish_reported_at is None:
        run_fail(
            run_id=run_id,
            attempt=attempt,
            error=f"The command exited with status {watched.status}.",
        )
        return TrainingRun.State.FAILED
    return None  # the job runs on (or has reported): its reports finish the run


def run_store_reported(run_id: int) -> str | None:
    """Store the model of a command run whose job reported success (the job wrote it into the
    attempt's output folder, on storage this worker shares with it)."""
    run = TrainingRun.objects.filter(pk=run_id).only("state", "attempts", "finish_reported_at")
    run = run.first()
    if run is None or run.state != TrainingRun.State.RUNNING or run.finish_reported_at is None:
        return None  # stored already (a second delivery), or not reported as a success
    attempt = run.attempts
    try:
        stored = run_store_result(
            run_id=run_id, attempt=attempt, output_dir=attempt_root(run_id, attempt) / "output"
        )
    except Exception as exc:
        logger.exception("Training run %s: storing its model failed", run_id)
        run_store_failed(run_id=run_id, attempt=attempt, exc=exc)
        return TrainingRun.State.FAILED
    return stored.state if stored is not None else None


def run_cancel_command(*, run_id: int, external_id: str) -> None:
    """Run the configured cancel command (e.g. `scancel {external_id}`) for a command run."""
    template = training_settings().get("CANCEL_COMMAND_TEMPLATE", "")
    if not template.strip():
        return
    command = template.format(run_id=shlex.quote(str(run_id)), external_id=shlex.quote(external_id))
    result = subprocess.run(  # noqa: S602 - an operator's configured command
        command, shell=True, capture_output=True, text=True, timeout=120, env=_subprocess_env()
    )
    if result.returncode != 0:
        logger.warning(
            "Cancel command for training run %s exited %s: %s",
            run_id, result.returncode, result.stderr[-2000:],
        )  # fmt: skip
