"""Export files with the upbeat-reply signal, and the stages trained on them once per session.

The reward model and the PPO policy are trained by the entry point in a subprocess, as a
backend runs it; several test modules read the same runs.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.trainer_bridge.training.entry_runs import EntryRun, run_entry
from tests.trainer_bridge.training.preference_signal import (
    PPO_PRESET,
    RM_PRESET,
    UPBEAT_OPENINGS,
    preference_rows,
    prompt_rows,
    ranking_sets,
    sft_rows,
    write_jsonl,
)

# Preference rows made longer than RM_PRESET["max_length"] tokens: the stage must drop and count
# exactly these.
OVERLONG_ROWS = 5


@dataclass(frozen=True)
class SignalFiles:
    preferences_train: Path
    preferences_validation: Path
    prompts_train: Path
    prompts_validation: Path
    sft_train: Path
    sft_validation: Path
    preference_train_rows: int
    preference_validation_rows: int


def _overlong_rows(count: int) -> list[dict[str, Any]]:
    sets = ranking_sets(count, seed=99)
    rows = []
    for ranked in sets:
        row = preference_rows([ranked])[0]
        long_reply = " ".join(ranked.replies * 12)  # ~40 words a reply: hundreds of tokens
        row["chosen"] = [{"role": "assistant", "content": f"{UPBEAT_OPENINGS[0]} {long_reply}"}]
        rows.append(row)
    return rows


@pytest.fixture(scope="session")
def signal_files(tmp_path_factory) -> SignalFiles:
    folder = tmp_path_factory.mktemp("signal-exports")
    sets = ranking_sets(150, seed=0)
    train = preference_rows(sets[:120])
    # Over-long rows spread through the file, as an export would have them.
    for offset, row in enumerate(_overlong_rows(OVERLONG_ROWS)):
        train.insert(offset * 60 + 7, row)
    validation = preference_rows(sets[120:], first_group=120)
    prompts = prompt_rows(232, seed=0)
    return SignalFiles(
        preferences_train=write_jsonl(folder / "preferences-train.jsonl", train),
        preferences_validation=write_jsonl(folder / "preferences-validation.jsonl", validation),
        prompts_train=write_jsonl(folder / "prompts-train.jsonl", prompts[:200]),
        prompts_validation=write_jsonl(folder / "prompts-validation.jsonl", prompts[200:]),
        sft_train=write_jsonl(folder / "sft-train.jsonl", sft_rows(48)),
        sft_validation=write_jsonl(folder / "sft-validation.jsonl", sft_rows(16, seed=5)),
        preference_train_rows=len(train),
        preference_validation_rows=len(validation),
    )


@pytest.fixture(scope="session")
def trained_reward_model(tmp_path_factory, tiny_model_paths, signal_files) -> EntryRun:
    """The rm stage on the signal's preferences (with over-long rows), from the tiny policy."""
    return run_entry(
        tmp_path_factory.mktemp("rm-run"),
        stage="rm",
        train=signal_files.preferences_train,
        validation=signal_files.preferences_validation,
        base=tiny_model_paths.policy,
        hyperparameters=RM_PRESET,
    )


@pytest.fixture(scope="session")
def reward_model_dir(trained_reward_model) -> Path:
    assert trained_reward_model.returncode == 0, trained_reward_model.stderr[-4000:]
    return trained_reward_model.output


@pytest.fixture(scope="session")
def trained_policy(tmp_path_factory, tiny_model_paths, signal_files, reward_model_dir) -> EntryRun:
    """The ppo stage from the tiny policy against the trained reward model."""
    return run_entry(
        tmp_path_factory.mktemp("ppo-run"),
        stage="ppo",
        train=signal_files.prompts_train,
        validation=signal_files.prompts_validation,
        base=tiny_model_paths.policy,
        reward_model=reward_model_dir,
        hyperparameters=PPO_PRESET,
    )


@dataclass
class EventsServer:
    """A stand-in for Parley's events API: records each POST, answers with `statuses` in turn."""

    url: str
    statuses: list[int] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)

    def posted_events(self, *, accepted_only: bool = True) -> list[dict[str, Any]]:
        return [
            event
            for request in self.requests
            if request["status"] < 300 or not accepted_only
            for event in request["body"]["events"]
        ]


@pytest.fixture
def events_server():
    state: dict[str, EventsServer] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the name http.server calls
            server = state["server"]
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            status = server.statuses.pop(0) if server.statuses else 202
            server.requests.append(
                {
                    "path": self.path,
                    "authorization": self.headers.get("Authorization"),
                    "body": body,
                    "status": status,
                }
            )
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state["server"] = EventsServer(url=f"http://127.0.0.1:{httpd.server_port}/api/v1/runs/7/events")
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state["server"]
    finally:
        httpd.shutdown()
        httpd.server_close()
