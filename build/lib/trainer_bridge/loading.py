"""Loading a ModelVersion's source (hub id or local directory) with `from_pretrained`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from trainer_bridge.model_storage import is_storage_source, local_model_folder

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

DTYPES = ("auto", "float32", "float16", "bfloat16")


class LoadedModel(NamedTuple):
    tokenizer: PreTrainedTokenizerBase
    model: PreTrainedModel


def source_looks_like_path(source: str) -> bool:
    """Whether `source` is meant as a filesystem path rather than a hub id like `org/name`."""
    return source.startswith(("/", "./", "../", "~")) or source in (".", "..")


def resolve_source(source: str, *, model_dir: Path | None = None) -> str | Path:
    """The local directory `source` names, or `source` unchanged when it is a hub id.

    A relative name that is a directory under the model directory (`settings.PARLEY
    ["MODEL_DIR"]` unless given) wins over a hub id of the same spelling, so built models can be
    registered as e.g. `tiny/policy` and moved with the model directory. `storage:<path>` names
    a folder in Django's storage (a trained model; see trainer_bridge.model_storage).
    """
    if is_storage_source(source):
        return local_model_folder(source, model_dir=model_dir)
    if source_looks_like_path(source):
        return Path(source).expanduser().resolve()
    if model_dir is None:
        model_dir = _settings_model_dir()
    if model_dir is not None and source and (Path(model_dir) / source).is_dir():
        return (Path(model_dir) / source).resolve()
    return source


def _settings_model_dir() -> Path | None:
    from django.conf import settings

    if not settings.configured:
        return None
    model_dir = getattr(settings, "PARLEY", {}).get("MODEL_DIR")
    return Path(model_dir) if model_dir else None


def torch_dtype(dtype: str) -> torch.dtype | str:
    """The torch dtype for a ModelVersion.dtype string; "auto" stays "auto" for transformers."""
    if dtype not in DTYPES:
        raise ValueError(f"Unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}.")
    if dtype == "auto":
        return "auto"
    import torch

    return getattr(torch, dtype)


def _pretrained_kwargs(source: str | Path, revision: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if isinstance(source, Path):
        # A local directory must never fall through to a hub lookup on a missing file.
        kwargs["local_files_only"] = True
    if revision:
        kwargs["revision"] = revision
    return kwargs


def _load(
    auto_class_name: str,
    source: str,
    *,
    revision: str,
    dtype: str,
    device: str,
    model_dir: Path | None,
) -> LoadedModel:
    import transformers
    from transformers import AutoTokenizer

    resolved = resolve_source(source, model_dir=model_dir)
    if isinstance(resolved, Path) and not resolved.is_dir():
        raise FileNotFoundError(f"Model directory {resolved} does not exist.")
    kwargs = _pretrained_kwargs(resolved, revision)
    tokenizer = AutoTokenizer.from_pretrained(resolved, **kwargs)
    auto_class = getattr(transformers, auto_class_name)
    model = auto_class.from_pretrained(resolved, dtype=torch_dtype(dtype), **kwargs)
    model.to(device)
    model.eval()
    return LoadedModel(tokenizer=tokenizer, model=model)


def load_policy(
    source: str,
    *,
    revision: str = "",
    dtype: str = "auto",
    device: str = "cpu",
    model_dir: Path | None = None,
) -> LoadedModel:
    """Tokenizer and causal LM (in eval mode, on `device`) for a policy ModelVersion's source."""
    return _load(
        "AutoModelForCausalLM",
        source,
        revision=revision,
        dtype=dtype,
        device=device,
        model_dir=model_dir,
    )


def load_reward_model(
    source: str,
    *,
    revision: str = "",
    dtype: str = "auto",
    device: str = "cpu",
    model_dir: Path | None = None,
) -> LoadedModel:
    """Tokenizer and sequence-classification model (one logit) for a reward ModelVersion."""
    return _load(
        "AutoModelForSequenceClassification",
        source,
        revision=revision,
        dtype=dtype,
        device=device,
        model_dir=model_dir,
    )


@contextlib.contextmanager
def quiet_progress_bars() -> Iterator[None]:
    """Silence transformers' per-shard progress bars (noise in commands and logs), then restore."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
