"""Running the training entry point as a subprocess, as a backend does, and reading its events."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
ENTRY_MODULE = "trainer_bridge.training.entry"
# Warnings that are errors in a training subprocess: transformers 5 renamed the training argument
# `gradient_checkpointing` to `activation_checkpointing` (removing the old name in v6), and the
# stages pass the name the installed transformers reads. Only TrainingArguments' warning is
# matched: TRL 1.12's own PPO loop still calls the deprecated model methods, which we cannot change.
DEPRECATED_ARGUMENTS = ["error:`gradient_checkpointing` is deprecated:FutureWarning"]


@dataclass
class EntryRun:
    returncode: int
    events: list[dict[str, Any]]
    output: Path
    stderr: str

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["type"] == kind]

    @property
    def finished(self) -> dict[str, Any]:
        (finished,) = self.of_type("finished")
        return finished

    def metrics(self, name: str) -> list[tuple[int, float]]:
        """(step, value) of every metrics event that has `name`."""
        return [
            (event["step"], event["values"][name])
            for event in self.of_type("metrics")
            if name in event["values"]
        ]


def subprocess_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a training subprocess gets in tests.

    One torch thread unless the caller's environment says otherwise: on a shared two-core
    machine, two OpenMP threads per process spin against each other and the other test
    processes, and a PPO run that takes 20 s alone took over 5 minutes that way.

    The training arguments' old checkpointing name fails the run (see `DEPRECATED_ARGUMENTS`).
    """
    environment = {"OMP_NUM_THREADS": "1", **os.environ, "PYTHONPATH": str(ROOT), **(extra or {})}
    environment.pop("RANK", None)
    environment["PYTHONWARNINGS"] = ",".join(
        filter(None, [environment.get("PYTHONWARNINGS"), *DEPRECATED_ARGUMENTS])
    )
    return environment


def read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_entry(
    work: Path,
    *,
    stage: str,
    train: Path,
    base: Path | str,
    validation: Path | None = None,
    reward_model: Path | None = None,
    hyperparameters: dict[str, Any] | None = None,
    launcher: list[str] | None = None,
    extra: list[str] | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> EntryRun:
    """Run one stage into `work/output`, its events into `work/events.jsonl`."""
    work.mkdir(parents=True, exist_ok=True)
    events = work / "events.jsonl"
    output = work / "output"
    command = [*(launcher or [sys.executable, "-m"]), ENTRY_MODULE]
    command += ["--stage", stage, "--train", str(train), "--base", str(base)]
    command += ["--output", str(output), "--events", str(events)]
    command += ["--hyperparameters", json.dumps(hyperparameters or {})]
    if validation is not None:
        command += ["--validation", str(validation)]
    if reward_model is not None:
        command += ["--reward-model", str(reward_model)]
    command += extra or []
    environment = subprocess_environment(env)
    result = subprocess.run(
        command,
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return EntryRun(
        returncode=result.returncode,
        events=read_events(events),
        output=output,
        stderr=result.stderr,
    )
