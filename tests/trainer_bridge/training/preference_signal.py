"""A preference signal the tiny reward model can learn and the tiny policy can chase.

Trainers prefer *upbeat* replies: replies that open with one of `UPBEAT_OPENINGS` ("Sure.",
"Good question,", "Yes,", "Well done!", "One tip:"). The tiny model's corpus opens a third of
its replies that way, so the tiny policy samples both kinds, a reward model learns the
difference from a few hundred pairs, and PPO can raise the share of upbeat replies. Each
ranking puts the upbeat replies first, as one tied group, and the others after, as another
(a preferences export with `ties: skip` then holds only upbeat-over-other pairs).

Shared by the training stage tests and the end-to-end test of the training runs.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer_bridge.tiny_model import tiny_dialogues

UPBEAT_OPENINGS = ("Sure.", "Good question,", "Yes,", "Well done!", "One tip:")

# Hyper-parameters with which, on two CPU cores and the tiny model, the reward model reaches
# >= 0.9 validation accuracy on `preference_rows(ranking_sets(120))` in ~10 s of training, and
# PPO raises the held-out mean reward in 24 steps (~30 s).
RM_PRESET: dict[str, Any] = {
    "learning_rate": 1e-3,
    "epochs": 2,
    "batch_size": 16,
    "max_length": 128,
    "logging_steps": 5,
    "center_rewards_coefficient": 0.01,
}
PPO_PRESET: dict[str, Any] = {
    "learning_rate": 3e-4,
    "steps": 24,
    "batch_size": 16,
    "ppo_epochs": 2,
    "response_length": 24,
    "max_length": 128,
    "temperature": 1.0,
    "kl_coef": 0.02,
}


def is_upbeat(text: str) -> bool:
    return text.startswith(UPBEAT_OPENINGS)


@dataclass(frozen=True)
class SignalSet:
    """A ranking set's context, its K replies, and the consensus as tie groups, best first."""

    prompt: list[dict[str, str]]
    replies: list[str]
    consensus: list[list[int]]


def _pools(seed: int) -> tuple[list[list[dict[str, str]]], list[str], list[str]]:
    prompts, upbeat, other = [], [], []
    for dialogue in tiny_dialogues(seed, 1500):
        cut = next(i for i, m in enumerate(dialogue) if m["role"] == "assistant")
        prompts.append(dialogue[:cut])
        for message in dialogue:
            if message["role"] == "assistant":
                (upbeat if is_upbeat(message["content"]) else other).append(message["content"])
    return prompts, upbeat, other


def ranking_sets(count: int, *, k: int = 4, seed: int = 0) -> list[SignalSet]:
    """`count` ranking sets of `k` replies, about half upbeat (at least one of each kind)."""
    rng = random.Random(seed)
    prompts, upbeat, other = _pools(seed + 1000)
    sets = []
    for _ in range(count):
        good = rng.randint(1, k - 1)
        replies = rng.sample(upbeat, good) + rng.sample(other, k - good)
        rng.shuffle(replies)
        consensus = [
            [i for i, r in enumerate(replies) if is_upbeat(r)],
            [i for i, r in enumerate(replies) if not is_upbeat(r)],
        ]
        sets.append(SignalSet(prompt=rng.choice(prompts), replies=replies, consensus=consensus))
    return sets


def preference_rows(sets: list[SignalSet], *, first_group: int = 0) -> list[dict[str, Any]]:
    """A preferences export of `sets`: one row per (upbeat, other) pair, as Parley writes it."""
    rows = []
    for number, ranked in enumerate(sets, start=first_group):
        better, worse = ranked.consensus
        for b in better:
            for w in worse:
                rows.append(
                    {
                        "prompt": ranked.prompt,
                        "chosen": [{"role": "assistant", "content": ranked.replies[b]}],
                        "rejected": [{"role": "assistant", "content": ranked.replies[w]}],
                        "meta": {"group_id": f"set-{number}", "margin": 1.0},
                    }
                )
    return rows


def prompt_rows(count: int, *, seed: int = 0) -> list[dict[str, Any]]:
    """A prompts export: `count` conversations that end where the assistant speaks."""
    prompts, _, _ = _pools(seed + 2000)
    return [{"prompt": p, "meta": {"source": "synthetic"}} for p in prompts[:count]]


def sft_rows(count: int, *, seed: int = 0) -> list[dict[str, Any]]:
    """An sft export of `count` demonstrations whose last (assistant) turn is upbeat.

    The tiny policy opens two replies in three otherwise, so fine-tuning on these has something
    to learn that shows in the validation loss.
    """
    rows = []
    for dialogue in tiny_dialogues(seed + 3000, count * 6):
        cut = max(i for i, m in enumerate(dialogue) if m["role"] == "assistant")
        if is_upbeat(dialogue[cut]["content"]):
            rows.append({"messages": dialogue[: cut + 1], "meta": {"source": "synthetic"}})
        if len(rows) == count:
            break
    return rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path
