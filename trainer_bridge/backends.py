"""The transformers generation backend: loaded models kept per worker process, batched sampling.

torch and transformers are imported lazily, inside the functions that need them, so the web
process never pays for them.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from trainer_bridge.loading import load_policy, quiet_progress_bars

if TYPE_CHECKING:
    from annotations.models import ModelVersion


class GenerationOutOfMemory(RuntimeError):
    """The device ran out of memory for this batch; a smaller batch may fit."""


@dataclass(frozen=True)
class Row:
    """One sequence to sample: a prompt (token ids) and its sampling parameters."""

    prompt_ids: tuple[int, ...]
    params_key: tuple


@dataclass(frozen=True)
class Sample:
    text: str
    completion_tokens: int


def params_key(params: dict) -> tuple:
    return tuple(sorted(params.items()))


class LoadedGenerator:
    """A policy model and its tokenizer on one device, ready to sample chat replies."""

    def __init__(self, tokenizer, model, *, device: str, chat_template: str = ""):
        self.tokenizer = tokenizer
        self.model = model
        self.device = device
        if chat_template:
            self.tokenizer.chat_template = chat_template
        config = model.generation_config
        eos = config.eos_token_id if config.eos_token_id is not None else tokenizer.eos_token_id
        self.eos_ids = sorted(set(eos if isinstance(eos, list) else [eos]))
        self.pad_id = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_ids[0]
        )

    def encode_chat(self, messages: list[dict]) -> tuple[int, ...]:
        """Token ids of the conversation followed by the assistant's generation prompt."""
        text = self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        return tuple(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def generate(self, rows: list[Row], *, faults: dict | None = None) -> list[Sample]:
        """One padded batch per distinct sampling setting; a sample per row, in order.

        `faults` (from settings, for tests and drills) can slow a batch down or make batches
        above a size fail as if the GPU ran out of memory.
        """
        faults = faults or {}
        if faults.get("sleep_seconds"):
            time.sleep(float(faults["sleep_seconds"]))
        limit = faults.get("oom_above_rows")
        if limit is not None and len(rows) > int(limit):
            raise GenerationOutOfMemory(
                f"CUDA out of memory (injected: batch of {len(rows)} rows > {limit})"
            )
        groups: dict[tuple, list[int]] = {}
        for index, row in enumerate(rows):
            groups.setdefault(row.params_key, []).append(index)
        samples: list[Sample | None] = [None] * len(rows)
        for key, indices in groups.items():
            for index, sample in zip(
                indices, self._generate_group([rows[i] for i in indices], dict(key)), strict=True
            ):
                samples[index] = sample
        return samples  # type: ignore[return-value]

    def _generate_group(self, rows: list[Row], params: dict) -> list[Sample]:
        import torch

        width = max(len(r.prompt_ids) for r in rows)
        # Left padding: every prompt ends at the same position, where generation starts.
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, width - len(row.prompt_ids) :] = torch.tensor(row.prompt_ids)
            attention[i, width - len(row.prompt_ids) :] = 1
        temperature = float(params.get("temperature", 1.0))
        kwargs: dict[str, Any] = {
            "max_new_tokens": int(params.get("max_new_tokens", 256)),
            "pad_token_id": self.pad_id,
            "eos_token_id": self.eos_ids,
            "do_sample": temperature > 0,
        }
        if temperature > 0:
            kwargs["temperature"] = temperature
            kwargs["top_p"] = float(params.get("top_p", 1.0))
            kwargs["top_k"] = int(params.get("top_k", 0))
        if "repetition_penalty" in params:
            kwargs["repetition_penalty"] = float(params["repetition_penalty"])
        if "seed" in params:
            torch.manual_seed(int(params["seed"]))
        try:
            with torch.inference_mode():
                output = self.model.generate(
                    input_ids=input_ids.to(self.device),
                    attention_mask=attention.to(self.device),
                    **kwargs,
                )
        except torch.cuda.OutOfMemoryError as exc:
            raise GenerationOutOfMemory(str(exc)) from exc
        new_tokens = output[:, width:].tolist()
        return [self._decode(tokens) for tokens in new_tokens]

    def _decode(self, tokens: list[int]) -> Sample:
        # Stop at the end of the turn; everything after is padding.
        for cut, token in enumerate(tokens):
            if token in self.eos_ids:
                tokens = tokens[:cut]
                break
        else:
            tokens = [t for t in tokens if t != self.pad_id]
        text = self.tokenizer.decode(tokens, skip_special_tokens=True).strip()
        return Sample(text=text, completion_tokens=len(tokens))


class ModelCache:
    """The models one worker process has loaded, least recently used evicted first."""

    def __init__(self, *, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._models: OrderedDict[tuple, LoadedGenerator] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0

    def get(self, model_version: ModelVersion, *, device: str) -> LoadedGenerator:
        key = (
            model_version.source,
            model_version.revision,
            model_version.dtype,
            model_version.chat_template,
            device,
        )
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            with quiet_progress_bars():
                tokenizer, model = load_policy(
                    model_version.source,
                    revision=model_version.revision,
                    dtype=model_version.dtype,
                    device=device,
                )
            tokenizer.padding_side = "left"
            generator = LoadedGenerator(
                tokenizer,
                model,
                device=device,
                chat_template=model_version.chat_template,
            )
            self._models[key] = generator
            self.loads += 1
            while len(self._models) > self.capacity:
                self._models.popitem(last=False)
            return generator


_cache: ModelCache | None = None


def model_cache() -> ModelCache:
    """This process's cache, sized from settings on first use."""
    global _cache
    if _cache is None:
        from django.conf import settings

        _cache = ModelCache(capacity=settings.PARLEY["GENERATION"]["MAX_LOADED_MODELS"])
    return _cache
