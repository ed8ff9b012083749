"""Scoring replies with a reward model: its agreement with human rankings, and a policy's reward.

`reward_accuracy` scores every completion of ranking sets with a reward model and counts the
ordered pairs of each set's consensus that the model orders the same way (pairs inside a tie
group are not counted; equal scores count as wrong). `policy_rewards` samples replies from a
policy and scores them, as PPO does, to compare a policy with another on held-out prompts.
torch and transformers are imported inside the functions, so the web process can import this.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from trainer_bridge.training.checkpoints import load_scorer, load_tokenizer
from trainer_bridge.training.tokens import Renderer

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from trainer_bridge.training.data import Message


@dataclass(frozen=True)
class RankedSet:
    """A ranking set: the conversation, its K replies' texts and the consensus, best first.

    `consensus` lists completion indices best first (`[2, 0, 1]`), or groups of tied indices
    best first (`[[2], [0, 1]]`), as the rankings export writes it.
    """

    prompt: list[dict]
    completions: list[str]
    consensus: list[int] | list[list[int]]


@dataclass(frozen=True)
class RewardAccuracy:
    sets: int
    pairs: int
    correct: int

    @property
    def accuracy(self) -> float | None:
        """Share of consensus pairs the reward model orders the same way (None without pairs)."""
        return self.correct / self.pairs if self.pairs else None


def consensus_pairs(consensus: Sequence[int] | Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    """(better, worse) index pairs of an order given best first, tie groups not paired inside."""
    groups = [list(item) if isinstance(item, list | tuple) else [item] for item in consensus]
    pairs = []
    for position, better_group in enumerate(groups):
        for worse_group in groups[position + 1 :]:
            pairs.extend((b, w) for b in better_group for w in worse_group)
    return pairs


def _device(device: str | None) -> str:
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def score_sequences(
    model: PreTrainedModel, sequences: Sequence[Sequence[int]], *, batch_size: int = 16
) -> list[float]:
    """The reward model's score of each token sequence (right-padded batches, no gradients)."""
    import torch

    pad = model.config.pad_token_id
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    scores: list[float] = []
    try:
        with torch.no_grad():
            for start in range(0, len(sequences), batch_size):
                chunk = sequences[start : start + batch_size]
                width = max(len(s) for s in chunk)
                ids = torch.full((len(chunk), width), pad, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for row, sequence in enumerate(chunk):
                    ids[row, : len(sequence)] = torch.tensor(list(sequence), dtype=torch.long)
                    mask[row, : len(sequence)] = 1
                logits = model(
                    input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False
                ).logits
                scores.extend(logits[:, 0].float().cpu().tolist())
    finally:
        model.train(was_training)
    return scores


def reward_accuracy(
    reward_model_path: str,
    sets: Iterable[RankedSet],
    *,
    device: str | None = None,
    batch_size: int = 16,
) -> RewardAccuracy:
    """How often the reward model orders the consensus pairs of `sets` as the people did."""
    tokenizer, _ = load_tokenizer(reward_model_path)
    model = load_scorer(reward_model_path, tokenizer).to(_device(device))
    renderer = Renderer(tokenizer)
    set_count = pair_count = correct = 0
    for ranked in sets:
        pairs = consensus_pairs(ranked.consensus)
        set_count += 1
        if not pairs:
            continue
        prompt_ids = renderer.prompt_ids(ranked.prompt)
        sequences = [prompt_ids + renderer.reply_ids(text) for text in ranked.completions]
        scores = score_sequences(model, sequences, batch_size=batch_size)
        pair_count += len(pairs)
        correct += sum(1 for better, worse in pairs if scores[better] > scores[worse])
    return RewardAccuracy(sets=set_count, pairs=pair_count, correct=correct)


def sample_replies(
    policy: PreTrainedModel,
    renderer: Renderer,
    prompts: Sequence[list[Message]],
    *,
    samples_per_prompt: int,
    max_new_tokens: int,
    temperature: float,
    seed: int,
    batch_size: int = 16,
) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, reply ids) for `samples_per_prompt` sampled replies to each prompt.

    Replies are cut after their first end-of-turn token, as PPO cuts them before scoring.
    """
    import torch
    from transformers import GenerationConfig

    tokenizer = renderer.tokenizer
    pad = tokenizer.pad_token_id
    device = next(policy.parameters()).device
    config = GenerationConfig(
        do_sample=True,
        temperature=temperature,
        top_k=0,
        top_p=1.0,
        max_new_tokens=max_new_tokens,
        eos_token_id=renderer.end_of_turn_id,
        pad_token_id=pad,
    )
    rows = [renderer.prompt_ids(p) for p in prompts for _ in range(samples_per_prompt)]
    was_training = policy.training
    policy.eval()
    results = []
    try:
        torch.manual_seed(seed)
        with torch.no_grad():
            for start in range(0, len(rows), batch_size):
                chunk = rows[start : start + batch_size]
                width = max(len(r) for r in chunk)
                ids = torch.full((len(chunk), width), pad, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for row, prompt_ids in enumerate(chunk):
                    ids[row, width - len(prompt_ids) :] = torch.tensor(prompt_ids)
                    mask[row, width - len(prompt_ids) :] = 1
                output = policy.generate(
                    input_ids=ids.to(device),
                    attention_mask=mask.to(device),
                    generation_config=config,
                )
                for row, prompt_ids in enumerate(chunk):
                    sampled = output[row, width:].tolist()
                    results.append((prompt_ids, renderer.reply_from_sample(sampled)))
    finally:
        policy.train(was_training)
    return results


def policy_rewards(
    policy: PreTrainedModel,
    reward_model: PreTrainedModel,
    renderer: Renderer,
    prompts: Sequence[list[Message]],
    *,
    samples_per_prompt: int = 4,
    max_new_tokens: int = 64,
    temperature: float = 0.7,
    seed: int = 0,
    batch_size: int = 16,
) -> list[float]:
    """The reward model's score of each reply sampled from `policy` for `prompts`.

    Policy and reward model must share the renderer's tokenizer (as PPO requires).
    """
    samples = sample_replies(
        policy,
        renderer,
        prompts,
        samples_per_prompt=samples_per_prompt,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        seed=seed,
        batch_size=batch_size,
    )
    sequences = [prompt_ids + reply_ids for prompt_ids, reply_ids in samples]
    return score_sequences(reward_model, sequences, batch_size=batch_size)
