"""Loading the models a stage starts from, and saving its result with the record Parley reads.

A model is a local directory or a hub id; the entry point runs offline, so a hub id must be in
the local cache already (machines here reach no hub). The output directory
gets `save_pretrained` weights and tokenizer plus `parley-training.json`:

    {"format": "parley-training", "version": 1, "stage": "rm",
     "padding_side": "left", "pad_token": "<|pad|>", "end_of_turn_token": "<|end|>",
     "added_pad_token": false, "base": "...", "reward_model": null,
     "hyperparameters": {...}, "summary": {...}, "versions": {"torch": ..., ...}}

`padding_side` is what the tokenizer must be set to when loaded (Parley's loader and the stages
set it; a saved tokenizer may not keep it), `end_of_turn_token` the token that ends a reply in
every stage's rendering.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainer_bridge.training.events import finite_json
from trainer_bridge.training.tokens import PADDING_SIDE, end_of_turn_id, prepare_tokenizer

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

RECORD_FILE = "parley-training.json"
RECORD_FORMAT = "parley-training"
RECORD_VERSION = 1


def looks_like_path(source: str) -> bool:
    """Whether `source` is meant as a directory rather than a hub id such as `org/name`."""
    return source.startswith(("/", "./", "../", "~")) or source in (".", "..")


def model_source(source: Path | str, *, what: str = "model") -> str:
    """An existing local directory, or a hub id (resolved from the local cache when offline).

    A path that names no directory is a FileNotFoundError saying which model is missing.
    """
    text = str(source)
    directory = Path(text).expanduser()
    if directory.is_dir():
        return str(directory)
    if looks_like_path(text) or directory.exists():
        raise FileNotFoundError(f"the {what} directory {directory} does not exist")
    return text


def _local_only(source: str) -> bool:
    return Path(source).is_dir()


def load_tokenizer(path: Path | str) -> tuple[PreTrainedTokenizerBase, bool]:
    """The directory's tokenizer with a distinct pad token and left padding; and whether a pad
    token had to be added."""
    from transformers import AutoTokenizer

    source = model_source(path)
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=_local_only(source))
    return tokenizer, prepare_tokenizer(tokenizer)


def fit_to_tokenizer(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Grow the embeddings for tokens the tokenizer gained, and tell the model its pad token."""
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    generation_config = getattr(model, "generation_config", None)
    if generation_config is not None:
        generation_config.pad_token_id = tokenizer.pad_token_id


def load_causal_lm(
    path: Path | str, tokenizer: PreTrainedTokenizerBase, *, dtype: torch.dtype | None = None
) -> PreTrainedModel:
    import torch
    from transformers import AutoModelForCausalLM

    source = model_source(path)
    model = AutoModelForCausalLM.from_pretrained(
        source, local_files_only=_local_only(source), dtype=dtype or torch.float32
    )
    fit_to_tokenizer(model, tokenizer)
    return model


def load_scorer(
    path: Path | str, tokenizer: PreTrainedTokenizerBase, *, dtype: torch.dtype | None = None
) -> PreTrainedModel:
    """A sequence-classification model with one output: a reward or value model.

    From a causal LM's directory the trunk is loaded and a new scoring head initialised.
    """
    import torch
    from transformers import AutoModelForSequenceClassification

    source = model_source(path)
    model = AutoModelForSequenceClassification.from_pretrained(
        source, local_files_only=_local_only(source), num_labels=1, dtype=dtype or torch.float32
    )
    fit_to_tokenizer(model, tokenizer)
    return model


def read_record(path: Path | str) -> dict[str, Any] | None:
    """What a stage's output directory says about itself, or None if it holds no record."""
    try:
        record = json.loads((Path(path) / RECORD_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        return None
    return record


def save_tokenizer(tokenizer: PreTrainedTokenizerBase, output: Path) -> None:
    tokenizer.padding_side = PADDING_SIDE
    tokenizer.save_pretrained(output)


def write_record(
    output: Path,
    *,
    stage: str,
    tokenizer: PreTrainedTokenizerBase,
    added_pad_token: bool,
    base: str,
    reward_model: str | None,
    hyperparameters: dict[str, Any],
    summary: dict[str, Any],
) -> None:
    import torch
    import transformers

    try:
        import trl

        trl_version = trl.__version__
    except ImportError:
        trl_version = None
    record = {
        "format": RECORD_FORMAT,
        "version": RECORD_VERSION,
        "stage": stage,
        "padding_side": PADDING_SIDE,
        "pad_token": tokenizer.pad_token,
        "end_of_turn_token": tokenizer.convert_ids_to_tokens(end_of_turn_id(tokenizer)),
        "added_pad_token": added_pad_token,
        "base": base,
        "reward_model": reward_model,
        "hyperparameters": hyperparameters,
        "summary": finite_json(summary),
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "trl": trl_version,
        },
    }
    (output / RECORD_FILE).write_text(json.dumps(record, indent=2, allow_nan=False) + "\n")
