"""What the generation engine works with: rows to sample, samples, settings, and its errors.

Plain values, shared by the engine (trainer_bridge.engine), the continuous-batching session
(trainer_bridge.continuous) and the backend that uses them; nothing here imports torch or Django.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from trainer_bridge.attention import STEP_ATTENTION
from trainer_bridge.kv_cache import DEFAULT_PREFILL_TOKENS
from trainer_bridge.sampling import DEFAULT_CANDIDATES

# The static sampler sorts the whole vocabulary up to this size (exact, never a fallback); a
# larger vocabulary sorts `candidates` tokens in the graph and the rare unsettled row on the host.
FULL_SORT_VOCAB = 32768


class GenerationOutOfMemory(RuntimeError):
    """The device ran out of memory for this batch; a smaller batch may fit."""


class UnsupportedModel(ValueError):
    """The model's attention cannot run on the engine's KV cache."""


class RowSampling(Protocol):
    """How a row is sampled (trainer_bridge.sampling_params.SamplingParams is one)."""

    temperature: float
    top_p: float
    top_k: int
    max_new_tokens: int
    repetition_penalty: float
    seed: int | None


@dataclass(frozen=True)
class Row:
    """One sequence to sample: a prompt (token ids), how to sample it, and which sample it is.

    With a seed, (seed, sample_index) fixes the row's random stream: the n samples of a request
    differ from each other, and none depends on what else is in the batch. A draft row is one a
    trainer waits for: it is taken before candidate rows.
    """

    prompt_ids: tuple[int, ...]
    sampling: RowSampling
    sample_index: int = 0
    draft: bool = False

    @property
    def tokens_needed(self) -> int:
        return len(self.prompt_ids) + self.sampling.max_new_tokens


@dataclass(frozen=True)
class Sample:
    text: str
    completion_tokens: int


@dataclass(frozen=True)
class EngineSettings:
    """How a loaded model decodes: its cache size (0: from memory, see kv_cache.plan_cache),
    CUDA graphs, and how drafts share the device with candidates."""

    candidates: int = DEFAULT_CANDIDATES
    token_budget: int = 0
    max_rows: int = 0
    memory_fraction: float = 0.85
    cuda_graphs: bool = True
    # Bucketed steps with the graph-safe sampler; None: on CUDA only (tests set it on the CPU).
    static_steps: bool | None = None
    prefill_tokens: int = DEFAULT_PREFILL_TOKENS
    full_sort_vocab: int = FULL_SORT_VOCAB
    # Draft-only steps per step of the whole batch while both run; 0: from measured step times.
    draft_steps_per_bulk_step: int = 0
    # Prompt tokens of candidates joining before one step of the whole batch while a draft
    # runs; 0: what the measured prefill rate encodes in one such step.
    draft_prefill_tokens: int = 0
    # How a decoding step attends: "sdpa" (PyTorch's fused kernel) or "matmul" (batched
    # products); see trainer_bridge.attention.
    step_attention: str = "sdpa"

    def __post_init__(self) -> None:
        if self.step_attention not in STEP_ATTENTION:
            raise ValueError(
                f"step_attention (PARLEY_GENERATION_STEP_ATTENTION) must be one of "
                f"{', '.join(STEP_ATTENTION)}, not {self.step_attention!r}"
            )


@dataclass(frozen=True)
class WarmUp:
    """CUDA graphs captured for one session length."""

    length: int
    graphs: int
    seconds: float
    error: str = ""
