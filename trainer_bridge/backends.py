"""The transformers generation backend: loaded models kept per worker process, batched sampling.

torch and transformers are imported lazily, inside the functions that need them, so the web
process never pays for them.

Sampling runs our own decoding loop rather than `model.generate`: every row carries its own
sampling parameters and random stream, so one padded batch can hold requests with different
settings and seeds, and finished rows leave the batch at once instead of decoding padding until
the longest row ends.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from trainer_bridge.loading import load_policy, quiet_progress_bars
from trainer_bridge.sampling import DEFAULT_CANDIDATES, row_seed, sample_tokens
from trainer_bridge.sampling_params import SamplingParams

if TYPE_CHECKING:
    import torch

    from annotations.models import ModelVersion


class GenerationOutOfMemory(RuntimeError):
    """The device ran out of memory for this batch; a smaller batch may fit."""


@dataclass(frozen=True)
class Row:
    """One sequence to sample: a prompt (token ids), how to sample it, and which sample it is.

    With a seed, (seed, sample_index) fixes the row's random stream: the n samples of a request
    differ from each other, and none depends on what else is in the batch.
    """

    prompt_ids: tuple[int, ...]
    sampling: SamplingParams
    sample_index: int = 0


@dataclass(frozen=True)
class Sample:
    text: str
    completion_tokens: int


class _Batch:
    """The rows still decoding: their original positions, sampling settings and random draws."""

    def __init__(self, rows: list[Row], *, device: str, max_steps: int) -> None:
        import torch

        params = [row.sampling for row in rows]
        self.active = torch.arange(len(rows), device=device)
        self.greedy = torch.tensor([p.temperature <= 0 for p in params], device=device)
        self.temperature = torch.tensor(
            [p.temperature if p.temperature > 0 else 1.0 for p in params], device=device
        )
        self.top_p = torch.tensor([p.top_p for p in params], device=device)
        self.top_k = torch.tensor([p.top_k for p in params], device=device)
        self.penalty = torch.tensor([p.repetition_penalty for p in params], device=device)
        self.max_new = torch.tensor([p.max_new_tokens for p in params], device=device)
        self.uniforms = self._uniforms(rows, device=device, max_steps=max_steps)

    @staticmethod
    def _uniforms(rows: list[Row], *, device: str, max_steps: int) -> torch.Tensor:
        """One uniform per row and step, drawn ahead: seeded rows from their own generator."""
        import torch

        uniforms = torch.rand((len(rows), max_steps), device=device)
        for index, row in enumerate(rows):
            if row.sampling.seed is None or row.sampling.temperature <= 0:
                continue
            generator = torch.Generator(device=device)
            generator.manual_seed(row_seed(row.sampling.seed, row.sample_index))
            steps = row.sampling.max_new_tokens
            uniforms[index, :steps] = torch.rand(steps, generator=generator, device=device)
        return uniforms

    def keep(self, index: torch.Tensor) -> None:
        for name in ("active", "greedy", "temperature", "top_p", "top_k", "penalty", "max_new"):
            setattr(self, name, getattr(self, name)[index])
        self.uniforms = self.uniforms[index]


class LoadedGenerator:
    """A policy model and its tokenizer on one device, ready to sample chat replies."""

    def __init__(
        self,
        tokenizer,
        model,
        *,
        device: str,
        chat_template: str = "",
        candidates: int = DEFAULT_CANDIDATES,
    ):
        self.tokenizer = tokenizer
        self.model = model
        self.device = device
        self.candidates = candidates
        if chat_template:
            self.tokenizer.chat_template = chat_template
        config = model.generation_config
        eos = config.eos_token_id if config.eos_token_id is not None else tokenizer.eos_token_id
        self.eos_ids = sorted(set(eos if isinstance(eos, list) else [eos]))
        self.pad_id = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_ids[0]
        )
        # The prompt pass needs logits for its last position only, where the model allows it.
        accepted = inspect.signature(model.forward).parameters
        self._last_logits_only = {"logits_to_keep": 1} if "logits_to_keep" in accepted else {}

    def encode_chat(self, messages: list[dict]) -> tuple[int, ...]:
        """Token ids of the conversation followed by the assistant's generation prompt."""
        return self.encode_chats([messages])[0]

    def encode_chats(self, conversations: list[list[dict]]) -> list[tuple[int, ...]]:
        """`encode_chat` for many conversations, tokenized in one call."""
        if not conversations:
            return []
        texts = [
            self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            for messages in conversations
        ]
        encoded = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [tuple(ids) for ids in encoded]

    def generate(self, rows: list[Row], *, faults: dict | None = None) -> list[Sample]:
        """A sample per row, in order, from one padded batch whatever the rows' settings.

        `faults` (from settings, for tests and drills) can slow a batch down, make batches
        above a size fail as if the GPU ran out of memory, or make any batch holding a row with
        top_k above a limit raise, as a request the sampler cannot take would.
        """
        faults = faults or {}
        if faults.get("sleep_seconds"):
            time.sleep(float(faults["sleep_seconds"]))
        top_k_limit = faults.get("fail_when_top_k_above")
        if top_k_limit is not None and any(r.sampling.top_k > int(top_k_limit) for r in rows):
            raise OverflowError(f"injected: a row's top_k is above {top_k_limit}")
        limit = faults.get("oom_above_rows")
        if limit is not None and len(rows) > int(limit):
            raise GenerationOutOfMemory(
                f"CUDA out of memory (injected: batch of {len(rows)} rows > {limit})"
            )
        if not rows:
            return []
        import torch

        out_of_memory = ""
        try:
            with torch.inference_mode():
                tokens = self._decode_batch(rows)
        except torch.cuda.OutOfMemoryError as exc:
            out_of_memory = str(exc) or "CUDA out of memory"
        if out_of_memory:
            # Raised outside the handler, so the failed batch's frames (its KV cache) are gone
            # and their memory is free before the caller retries with smaller batches.
            if str(self.device).startswith("cuda"):
                torch.cuda.empty_cache()
            raise GenerationOutOfMemory(out_of_memory)
        texts = self.tokenizer.batch_decode(tokens, skip_special_tokens=True)
        return [
            Sample(text=text.strip(), completion_tokens=len(ids))
            for text, ids in zip(texts, tokens, strict=True)
        ]

    def _decode_batch(self, rows: list[Row]) -> list[list[int]]:
        """The new tokens of each row, up to (not including) its end-of-turn token."""
        import torch
        from transformers import DynamicCache

        device = self.device
        width = max(len(row.prompt_ids) for row in rows)
        max_steps = max(row.sampling.max_new_tokens for row in rows)
        # Left padding: every prompt ends at the same position, where generation starts.
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, width - len(row.prompt_ids) :] = torch.tensor(row.prompt_ids)
            attention[i, width - len(row.prompt_ids) :] = 1
        input_ids, attention = input_ids.to(device), attention.to(device)
        # Positions count real tokens only, so a padded prompt is encoded as it would be alone.
        positions = (attention.cumsum(-1) - 1).clamp_(min=0)
        next_position = attention.sum(-1)

        batch = _Batch(rows, device=device, max_steps=max_steps)
        eos = torch.tensor(self.eos_ids, device=device)
        generated = torch.full((len(rows), max_steps), self.pad_id, dtype=torch.long, device=device)
        lengths = torch.zeros(len(rows), dtype=torch.long, device=device)
        # Tokens each row has seen, for the repetition penalty; padding shows the last prompt
        # token (already in the set) so a row is not penalised for its batch-mates' lengths.
        penalised = bool((batch.penalty != 1.0).any())
        seen = torch.where(attention.bool(), input_ids, input_ids[:, -1:]) if penalised else None

        cache = DynamicCache(config=self.model.config)
        logits = self.model(
            input_ids=input_ids,
            attention_mask=attention,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            **self._last_logits_only,
        ).logits[:, -1, :]
        for step in range(max_steps):
            tokens = self._next_tokens(logits, batch, step=step, seen=seen)
            generated[batch.active, step] = tokens
            finished = torch.isin(tokens, eos) | (batch.max_new <= step + 1)
            if bool(finished.any()):
                ended = batch.active[finished]
                lengths[ended] = step + 1 - torch.isin(tokens[finished], eos).long()
                running = (~finished).nonzero().squeeze(-1)
                if running.numel() == 0:
                    break
                batch.keep(running)
                cache.batch_select_indices(running)
                attention, tokens = attention[running], tokens[running]
                next_position = next_position[running]
                if seen is not None:
                    seen = seen[running]
            attention = torch.cat([attention, attention.new_ones((attention.shape[0], 1))], -1)
            if seen is not None:
                seen = torch.cat([seen, tokens.unsqueeze(-1)], -1)
            logits = self.model(
                input_ids=tokens.unsqueeze(-1),
                attention_mask=attention,
                position_ids=next_position.unsqueeze(-1),
                past_key_values=cache,
                use_cache=True,
            ).logits[:, -1, :]
            next_position = next_position + 1
        return [
            row[:length] for row, length in zip(generated.tolist(), lengths.tolist(), strict=True)
        ]

    def _next_tokens(
        self, logits: torch.Tensor, batch: _Batch, *, step: int, seen: torch.Tensor | None
    ) -> torch.Tensor:
        import torch

        logits = logits.float()
        if seen is not None:
            # As transformers does: a seen token's logit is divided by the penalty if positive,
            # multiplied if negative.
            scores = logits.gather(-1, seen)
            penalty = batch.penalty.unsqueeze(-1)
            scores = torch.where(scores < 0, scores * penalty, scores / penalty)
            logits = logits.scatter(-1, seen, scores)
        if bool(batch.greedy.all()):
            return logits.argmax(-1)
        probs = torch.softmax(logits / batch.temperature.unsqueeze(-1), dim=-1)
        tokens = sample_tokens(
            probs,
            top_k=batch.top_k,
            top_p=batch.top_p,
            uniforms=batch.uniforms[:, step],
            candidates=self.candidates,
        )
        if bool(batch.greedy.any()):
            tokens = torch.where(batch.greedy, logits.argmax(-1), tokens)
        return tokens


_torch_threads_applied = False


def apply_torch_threads(threads: int) -> None:
    """Set torch's intra-op threads once per process; 0 leaves torch's default."""
    global _torch_threads_applied
    if _torch_threads_applied:
        return
    _torch_threads_applied = True
    if threads > 0:
        import torch

        torch.set_num_threads(threads)


class ModelCache:
    """The models one worker process has loaded, least recently used evicted first."""

    def __init__(
        self, *, capacity: int, candidates: int = DEFAULT_CANDIDATES, torch_threads: int = 0
    ) -> None:
        self.capacity = max(1, capacity)
        self.candidates = candidates
        self.torch_threads = torch_threads
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
            apply_torch_threads(self.torch_threads)
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
                candidates=self.candidates,
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

        config = settings.PARLEY["GENERATION"]
        _cache = ModelCache(
            capacity=config["MAX_LOADED_MODELS"],
            candidates=config.get("TOP_P_CANDIDATES", DEFAULT_CANDIDATES),
            torch_threads=config.get("TORCH_THREADS", 0),
        )
    return _cache
