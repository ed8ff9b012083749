"""The transformers generation backend: loaded models kept per worker process, and their sampling.

torch and transformers are imported lazily, inside the functions that need them, so the web
process never pays for them.

Sampling runs our own decoding engine rather than `model.generate`: every row carries its own
sampling parameters and random stream, so one batch can hold requests with different settings
and seeds, each reproducible alone or batched; finished rows leave the batch at once and
waiting rows join it between steps (trainer_bridge.continuous), on a preallocated KV cache with
CUDA graphs on CUDA (trainer_bridge.engine).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from trainer_bridge.continuous import DecodeSession
from trainer_bridge.decoding import EngineSettings, GenerationOutOfMemory, Row, Sample
from trainer_bridge.engine import DecodeEngine
from trainer_bridge.kv_cache import CachePlan
from trainer_bridge.loading import load_policy, quiet_progress_bars
from trainer_bridge.sampling import DEFAULT_CANDIDATES

if TYPE_CHECKING:
    from annotations.models import ModelVersion

logger = logging.getLogger(__name__)

# Names the worker, the tests and the benchmark take from here.
__all__ = [
    "GenerationOutOfMemory",
    "LoadedGenerator",
    "ModelCache",
    "Row",
    "Sample",
    "model_cache",
]


class LoadedGenerator:
    """A policy model and its tokenizer on one device, ready to sample chat replies."""

    def __init__(
        self,
        tokenizer,
        model,
        *,
        device: str,
        chat_template: str = "",
        settings: EngineSettings | None = None,
    ):
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
        self.engine = DecodeEngine(
            model, device=device, eos_ids=self.eos_ids, pad_id=self.pad_id, settings=settings
        )

    @property
    def plan(self) -> CachePlan:
        """How many rows of how many tokens this model decodes at once."""
        return self.engine.plan

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

    def decode_texts(self, token_ids: list[list[int]]) -> list[str]:
        return self.tokenizer.batch_decode(token_ids, skip_special_tokens=True)

    def session(
        self,
        *,
        length: int,
        faults: dict | None = None,
        interrupts: tuple[type[BaseException], ...] = (),
    ) -> DecodeSession:
        """A continuous-batching session for rows of up to `length` tokens (use it in `with`);
        `interrupts` are exceptions that end it instead of failing a row."""
        return DecodeSession(
            self.engine,
            length=length,
            decode=self.decode_texts,
            faults=faults,
            interrupts=interrupts,
        )

    def generate(self, rows: Sequence[Row], *, faults: dict | None = None) -> list[Sample]:
        """A sample per row, in order, from one batch whatever the rows' settings.

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
            samples = self._generate_batch(rows)
        except torch.cuda.OutOfMemoryError as exc:
            out_of_memory = str(exc) or "CUDA out of memory"
        if out_of_memory:
            # Raised outside the handler, so the failed batch's frames are gone and their
            # memory is free before the caller retries with smaller batches.
            if str(self.device).startswith("cuda"):
                torch.cuda.empty_cache()
            raise GenerationOutOfMemory(out_of_memory)
        return samples

    def _generate_batch(self, rows: Sequence[Row]) -> list[Sample]:
        session = DecodeSession(
            self.engine,
            length=max(row.tokens_needed for row in rows),
            decode=self.decode_texts,
            strict=True,
            rows=len(rows),
        )
        samples: dict[int, Sample] = {}
        with session:
            session.add(enumerate(rows))
            while session.busy():
                for finished in session.step().finished:
                    samples[finished.tag] = finished.sample
        return [samples[index] for index in range(len(rows))]


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
        self, *, capacity: int, settings: EngineSettings | None = None, torch_threads: int = 0
    ) -> None:
        self.capacity = max(1, capacity)
        self.settings = settings or EngineSettings()
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
            while len(self._models) >= self.capacity:
                # Evicted first, so the new model and its cache plan see the memory freed.
                self._models.popitem(last=False)
                _free_device_memory(device)
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
                settings=self.settings,
            )
            logger.info("Loaded %s on %s: %s", model_version, device, generator.plan.describe())
            self._models[key] = generator
            self.loads += 1
            return generator


def _free_device_memory(device: str) -> None:
    if str(device).startswith("cuda"):
        import gc

        import torch

        gc.collect()
        torch.cuda.empty_cache()


_cache: ModelCache | None = None


def model_cache() -> ModelCache:
    """This process's cache, sized from settings on first use."""
    global _cache
    if _cache is None:
        from django.conf import settings

        config = settings.PARLEY["GENERATION"]
        capacity = max(1, config["MAX_LOADED_MODELS"])
        _cache = ModelCache(
            capacity=capacity,
            settings=EngineSettings(
                candidates=config.get("TOP_P_CANDIDATES", DEFAULT_CANDIDATES),
                max_rows=config.get("MAX_ROWS", 0),
                # Each model a worker may keep loaded gets its share of the device.
                memory_fraction=config.get("MEMORY_FRACTION", 0.85) / capacity,
                cuda_graphs=config.get("CUDA_GRAPHS", True),
                step_attention=config.get("STEP_ATTENTION", "sdpa"),
            ),
            torch_threads=config.get("TORCH_THREADS", 0),
        )
    return _cache
