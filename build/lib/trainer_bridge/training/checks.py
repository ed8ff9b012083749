"""Checks run before a training run is queued: does the model load, do two models share a
tokenizer. Each answers None when all is well, else one line saying what is wrong.

They read configurations, tokenizers and the weight files' headers (the first few kilobytes of
each safetensors file), never the weights, so they are cheap enough for a web request;
transformers is imported inside the functions. A model is a local directory or a hub id (which
is looked up the way transformers does: the local cache, or the hub when online).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import TYPE_CHECKING

from trainer_bridge.training.checkpoints import model_source
from trainer_bridge.training.tokens import TokenizerProblem, end_of_turn_id, prepare_tokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# What the stage builds from its base model: the reward model stage puts a scoring head on a
# causal LM (or retrains a reward model); SFT and PPO train the causal LM itself.
_STAGE_MODEL_KIND = {"sft": "causal-lm", "rm": "sequence-classification", "ppo": "causal-lm"}
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def _load_tokenizer(source: str, *, prepare: bool = True) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=Path(source).is_dir())
    if prepare:
        prepare_tokenizer(tokenizer)
    return tokenizer


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def _safetensors_problem(path: Path) -> str | None:
    """Whether a .safetensors file's header reads (the weights themselves are not loaded)."""
    try:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > 100_000_000:
                return f"{path.name} is not a safetensors file (header of {length} bytes)"
            header = json.loads(handle.read(length))
    except (OSError, struct.error, ValueError) as error:
        return f"{path.name} cannot be read as safetensors ({_first_line(error)})"
    if not isinstance(header, dict) or not any(k != "__metadata__" for k in header):
        return f"{path.name} holds no tensors"
    return None


def _weights_problem(directory: Path) -> str | None:
    present = [name for name in _WEIGHT_FILES if (directory / name).is_file()]
    if not present:
        return f"{directory} has no weights ({' or '.join(_WEIGHT_FILES[::2])})"
    if present[0] == "model.safetensors":
        return _safetensors_problem(directory / "model.safetensors")
    if present[0] == "model.safetensors.index.json":
        try:
            index = json.loads((directory / present[0]).read_text())
            shards = sorted(set(index["weight_map"].values()))
        except (OSError, ValueError, KeyError, AttributeError) as error:
            return f"{present[0]} cannot be read ({_first_line(error)})"
        for shard in shards:
            if not (directory / shard).is_file():
                return f"the weight shard {shard} is missing"
            problem = _safetensors_problem(directory / shard)
            if problem:
                return problem
    return None


def model_load_problem(path: str, stage: str) -> str | None:
    """Why the model at `path` cannot be the base of a `stage` run, or None if it can."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
    )

    if stage not in _STAGE_MODEL_KIND:
        raise ValueError(f"Unknown stage {stage!r}")
    try:
        source = model_source(path)
    except FileNotFoundError as error:
        return str(error)
    local = Path(source).is_dir()
    try:
        config = AutoConfig.from_pretrained(source, local_files_only=local)
    except Exception as error:  # transformers raises many kinds for a bad config
        return f"the model configuration does not load: {_first_line(error)}"
    kind = _STAGE_MODEL_KIND[stage]
    names = (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
        if kind == "causal-lm"
        else MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES
    )
    if config.model_type not in names:
        return f"a {config.model_type!r} model cannot be trained as a {kind} model ({stage} stage)"
    if kind == "causal-lm" and any(
        arch.endswith("ForSequenceClassification") for arch in config.architectures or []
    ):
        return f"{source} is a reward (sequence-classification) model, not a policy"
    # A hub id's files are fetched (or found in the cache) when loaded; a directory must hold them.
    problem = _weights_problem(Path(source)) if local else None
    if problem:
        return problem
    try:
        tokenizer = _load_tokenizer(source, prepare=False)
    except Exception as error:  # a missing or broken tokenizer file raises many kinds
        return f"the tokenizer does not load: {_first_line(error)}"
    vocab_size = getattr(config, "vocab_size", None)
    largest = max(tokenizer.get_vocab().values())
    if vocab_size is not None and largest >= vocab_size:
        return (
            f"the tokenizer has ids up to {largest} but the model's embeddings have "
            f"{vocab_size} rows"
        )
    try:
        prepare_tokenizer(tokenizer)
    except TokenizerProblem as error:
        return str(error)
    return None


def reward_model_problem(path: str) -> str | None:
    """Why the model at `path` cannot serve as PPO's reward model, or None if it can."""
    from transformers import AutoConfig

    problem = model_load_problem(path, "rm")
    if problem:
        return problem
    source = model_source(path)
    config = AutoConfig.from_pretrained(source, local_files_only=Path(source).is_dir())
    if not any(arch.endswith("ForSequenceClassification") for arch in config.architectures or []):
        return f"{source} is not a reward model (no sequence-classification head)"
    if getattr(config, "num_labels", 1) != 1:
        return f"a reward model has one output; this one has {config.num_labels}"
    return None


def loaded_tokenizer_mismatch(
    policy: PreTrainedTokenizerBase, reward: PreTrainedTokenizerBase
) -> str | None:
    """How two loaded (and prepared) tokenizers differ, in words, or None if they are one."""
    differences = []
    policy_vocab, reward_vocab = policy.get_vocab(), reward.get_vocab()
    if policy_vocab != reward_vocab:
        only_policy = sorted(set(policy_vocab) - set(reward_vocab))
        only_reward = sorted(set(reward_vocab) - set(policy_vocab))
        moved = sorted(
            t for t in set(policy_vocab) & set(reward_vocab) if policy_vocab[t] != reward_vocab[t]
        )
        detail = f"vocabularies differ ({len(policy_vocab)} vs {len(reward_vocab)} tokens"
        if only_policy:
            detail += f"; only the policy has {_sample(only_policy)}"
        if only_reward:
            detail += f"; only the reward model has {_sample(only_reward)}"
        if moved:
            detail += f"; {len(moved)} tokens have other ids, e.g. {_sample(moved)}"
        differences.append(detail + ")")
    for name in ("pad_token", "eos_token", "bos_token"):
        a, b = getattr(policy, name), getattr(reward, name)
        if a != b:
            differences.append(f"{name} {a!r} vs {b!r}")
    if not differences:
        policy_end, reward_end = end_of_turn_id(policy), end_of_turn_id(reward)
        if policy_end != reward_end:
            differences.append(
                f"end-of-turn token {policy.convert_ids_to_tokens(policy_end)!r} vs "
                f"{reward.convert_ids_to_tokens(reward_end)!r}"
            )
    if (policy.chat_template or "") != (reward.chat_template or ""):
        differences.append("chat templates differ")
    return "; ".join(differences) or None


def _sample(tokens: list[str], limit: int = 3) -> str:
    shown = ", ".join(repr(t) for t in tokens[:limit])
    return shown + (f" and {len(tokens) - limit} more" if len(tokens) > limit else "")


def tokenizer_mismatch(policy_path: str, reward_path: str) -> str | None:
    """How the two models' tokenizers differ, in words, or None if they share one.

    Compared as the stages use them: each with the pad token the stages would give it.
    """
    loaded = []
    for label, path in (("policy", policy_path), ("reward model", reward_path)):
        try:
            source = model_source(path, what=label)
        except FileNotFoundError as error:
            return str(error)
        try:
            loaded.append(_load_tokenizer(source))
        except Exception as error:  # a missing or broken tokenizer raises many kinds
            return f"the {label}'s tokenizer does not load: {_first_line(error)}"
    return loaded_tokenizer_mismatch(*loaded)
