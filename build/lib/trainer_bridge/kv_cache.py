"""The generation engine's preallocated KV cache, and how many rows of how many tokens fit in it.

The cache is allocated once per loaded model, as one flat buffer per layer for keys and one for
values, and viewed as [slots, kv heads, length, head dim] for whatever batch shape a session
uses: memory is reserved once, and CUDA graphs captured on a view stay valid while the buffers
live. Each slot holds one row from column 0, written at the row's own position, so rows of any
length join and leave the batch independently.

The arithmetic (bytes per token, rows that fit) is plain Python on the model's config; torch is
imported inside the functions that allocate, so importing this module costs nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# Rows (slots) start at column 0 and a session's length is a multiple of this.
LENGTH_QUANTUM = 64
# The per-slot bookkeeping the engine keeps beside the cache, per token of slot length: the
# tokens a row has seen (int64, for the repetition penalty), the tokens it generated (int64) and
# its random draws (float32).
STATE_BYTES_PER_TOKEN = 8 + 8 + 4
# Working memory of one decoding step, per row and vocabulary entry: the logits in the model's
# dtype and as float32, the probabilities, the sorted values and their int64 indices, their
# cumulative sum and the keep mask (an estimate that errs high).
STEP_BYTES_PER_VOCAB_ENTRY = 40
# Per row and hidden unit (and per intermediate unit of the MLP): the activations one layer
# holds at once during a step, in the model's dtype.
STEP_HIDDEN_COPIES = 8
STEP_INTERMEDIATE_COPIES = 3
# Prompt tokens a prefill forward takes at once: its activations are the other working memory.
DEFAULT_PREFILL_TOKENS = 16384
# Defaults where nothing else decides: the CPU keeps today's batch size; on CUDA the rows are
# capped so the bucketed CUDA graphs stay few.
CPU_TOKEN_BUDGET = 32768
CPU_MAX_ROWS = 1024
CUDA_MAX_ROWS = 4096


@dataclass(frozen=True)
class KvShape:
    """What one token costs a model in KV cache, and the sizes its step's working memory follows."""

    layers: int
    kv_heads: int
    head_dim: int
    dtype_bytes: int
    vocab: int
    hidden: int
    intermediate: int

    @classmethod
    def from_config(cls, config: Any, *, dtype_bytes: int) -> KvShape:
        """The shape of a transformers config (the text config of a multimodal one)."""
        if hasattr(config, "get_text_config"):
            config = config.get_text_config()
        heads = config.num_attention_heads
        hidden = config.hidden_size
        head_dim = getattr(config, "head_dim", None) or hidden // heads
        return cls(
            layers=config.num_hidden_layers,
            kv_heads=getattr(config, "num_key_value_heads", None) or heads,
            head_dim=head_dim,
            dtype_bytes=dtype_bytes,
            vocab=config.vocab_size,
            hidden=hidden,
            intermediate=getattr(config, "intermediate_size", None) or 4 * hidden,
        )

    @property
    def bytes_per_token(self) -> int:
        """Keys and values of every layer for one token."""
        return 2 * self.layers * self.kv_heads * self.head_dim * self.dtype_bytes

    @property
    def query_heads(self) -> int:
        return max(1, self.hidden // self.head_dim)

    @property
    def token_bytes(self) -> int:
        """What each token of a row's slot costs: its keys and values, the engine's bookkeeping,
        and its float32 attention score in every query head during a step."""
        return self.bytes_per_token + STATE_BYTES_PER_TOKEN + 4 * self.query_heads

    @property
    def step_bytes_per_row(self) -> int:
        """Working memory one row adds to a decoding step, whatever its length."""
        activations = (
            STEP_HIDDEN_COPIES * self.hidden + STEP_INTERMEDIATE_COPIES * self.intermediate
        ) * self.dtype_bytes
        return activations + STEP_BYTES_PER_VOCAB_ENTRY * self.vocab

    def row_bytes(self, length: int) -> int:
        """All one row of `length` tokens costs: its cache slot, bookkeeping and step memory."""
        return length * self.token_bytes + self.step_bytes_per_row

    def prefill_bytes(self, tokens: int) -> int:
        """Working memory of a prefill forward over `tokens` prompt tokens (one layer at a time)."""
        per_token = (
            STEP_HIDDEN_COPIES * self.hidden + STEP_INTERMEDIATE_COPIES * self.intermediate
        ) * self.dtype_bytes
        return tokens * per_token


def rows_that_fit(shape: KvShape, *, free_bytes: int, length: int) -> int:
    """How many rows of `length` tokens `free_bytes` holds, cache and step memory included."""
    if length < 1:
        raise ValueError("length must be at least 1")
    return max(0, free_bytes // shape.row_bytes(length))


def length_bucket(tokens: int) -> int:
    """The session length for rows of up to `tokens` tokens: 64, 128, 256, ... (powers of two)."""
    if tokens <= LENGTH_QUANTUM:
        return LENGTH_QUANTUM
    return LENGTH_QUANTUM * 2 ** math.ceil(math.log2(tokens / LENGTH_QUANTUM))


def batch_buckets(max_rows: int) -> list[int]:
    """Batch sizes decoding steps are padded to: powers of two and their midpoints, up to
    `max_rows` (which is always the last), so a padded step wastes at most a third."""
    sizes = {1, 2, 4, 8}
    size = 16
    while size < max_rows:
        sizes.update((size, size * 3 // 2))
        size *= 2
    return sorted(s for s in sizes if s < max_rows) + [max_rows]


def bucket_for(rows: int, buckets: list[int]) -> int:
    """The smallest bucket that holds `rows`."""
    for size in buckets:
        if size >= rows:
            return size
    raise ValueError(f"{rows} rows are more than the largest bucket ({buckets[-1]})")


@dataclass(frozen=True)
class CachePlan:
    """How much a loaded model may decode at once: KV cache tokens and rows, and why.

    `tokens` is the cache's capacity (all slots together); a session of rows up to `length`
    tokens decodes `slots(length)` rows at once.
    """

    tokens: int
    max_rows: int
    bytes_per_token: int
    source: str  # how the figures were decided, for logs and the benchmark

    def slots(self, length: int) -> int:
        return min(self.max_rows, self.tokens // length)

    def describe(self) -> str:
        gib = self.tokens * self.bytes_per_token / 2**30
        return (
            f"KV cache of {self.tokens:,} tokens ({gib:.2f} GiB, "
            f"{self.bytes_per_token:,} bytes a token), at most {self.max_rows:,} rows "
            f"({self.source}); rows at once by length: "
            + ", ".join(
                f"{length}: {self.slots(length):,}"
                for length in (64, 128, 256, 512, 1024, 2048)
                if self.slots(length) > 0
            )
        )


def plan_cache(
    shape: KvShape,
    *,
    free_bytes: int | None,
    memory_fraction: float,
    token_budget: int = 0,
    max_rows: int = 0,
    prefill_tokens: int = DEFAULT_PREFILL_TOKENS,
) -> CachePlan:
    """The cache for a model: from the settings where they are given, else from free memory.

    `free_bytes` is the device's free memory after the model loaded (None on the CPU, where
    the defaults are today's batch sizes). Of it, `memory_fraction` is spent: first on the
    working memory of a prefill and of a step over the most rows, then on cache tokens; the
    rows are then capped at what the cache holds at the shortest length.
    """
    if free_bytes is None:
        tokens = token_budget or CPU_TOKEN_BUDGET
        rows = max_rows or CPU_MAX_ROWS
        source = "settings" if token_budget and max_rows else "CPU defaults"
        return CachePlan(tokens, rows, shape.bytes_per_token, source)
    budget = int(free_bytes * memory_fraction)
    rows = max_rows or CUDA_MAX_ROWS
    if token_budget:
        tokens = token_budget
    else:
        working = shape.prefill_bytes(prefill_tokens) + rows * shape.step_bytes_per_row
        tokens = max(0, (budget - working) // shape.token_bytes)
    if not max_rows:
        rows = max(1, min(rows, tokens // LENGTH_QUANTUM))
    source = (
        f"{memory_fraction:.0%} of {free_bytes / 2**30:.1f} GiB free"
        + (", token budget from settings" if token_budget else "")
        + (", rows from settings" if max_rows else "")
    )
    return CachePlan(tokens, rows, shape.bytes_per_token, source)


class SlotCache:
    """The KV cache the model writes during the engine's forwards (transformers calls `update`).

    Before each forward the engine says what it is: a prefill of right-padded prompts into some
    slots, each from column 0 (attention runs on the prompts themselves), or a decoding step of
    the first `rows` slots, each writing its new key and value at its own position and
    attending to the first `length` columns.
    """

    def __init__(self, shape: KvShape, *, tokens: int, dtype: torch.dtype, device: str) -> None:
        import torch

        self.shape = shape
        self.tokens = tokens
        self.dtype = dtype
        width = shape.kv_heads * shape.head_dim
        self._keys = [
            torch.zeros(tokens * width, dtype=dtype, device=device) for _ in range(shape.layers)
        ]
        self._values = [
            torch.zeros(tokens * width, dtype=dtype, device=device) for _ in range(shape.layers)
        ]
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.slots = 0
        self.length = 0
        self._mode: tuple[Any, ...] = ()

    def layout(self, *, slots: int, length: int) -> None:
        """View the buffers as `slots` rows of `length` tokens (contents are not kept)."""
        if slots * length > self.tokens:
            raise ValueError(
                f"{slots} rows of {length} tokens need {slots * length} tokens; "
                f"the cache holds {self.tokens}"
            )
        shape = (slots, self.shape.kv_heads, length, self.shape.head_dim)
        size = slots * length * self.shape.kv_heads * self.shape.head_dim
        self.keys = [flat[:size].view(shape) for flat in self._keys]
        self.values = [flat[:size].view(shape) for flat in self._values]
        self.slots, self.length = slots, length

    def per_slot_tensors(self) -> list[torch.Tensor]:
        """Every tensor indexed by slot, for moving rows between slots."""
        return [*self.keys, *self.values]

    def prefill(self, slot_ids: torch.Tensor) -> None:
        """The next forward is a prefill into `slot_ids` of prompts right-padded from column 0."""
        self._mode = ("prefill", slot_ids)

    def decode(self, *, rows: int, length: int, row_ids: torch.Tensor, positions: torch.Tensor):
        """The next forwards are decoding steps of slots [0, rows), writing at `positions`."""
        self._mode = ("decode", rows, length, row_ids, positions)

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        """Store a layer's new keys and values; return those attention should look at."""
        mode = self._mode
        if not mode:
            raise RuntimeError("The engine's KV cache was used outside a prefill or a step.")
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        if key_states.shape[1] != keys.shape[1] or key_states.shape[-1] != keys.shape[-1]:
            raise RuntimeError(
                f"Layer {layer_idx} gives keys of {tuple(key_states.shape)}, but the model's "
                f"config describes {keys.shape[1]} kv heads of {keys.shape[-1]}: the generation "
                "engine cannot cache this model's attention."
            )
        if mode[0] == "prefill":
            slot_ids = mode[1]
            width = key_states.shape[2]
            keys[slot_ids, :, :width] = key_states
            values[slot_ids, :, :width] = value_states
            return key_states, value_states
        _, rows, length, row_ids, positions = mode
        keys, values = keys[:rows], values[:rows]
        keys[row_ids, :, positions] = key_states[:, :, 0]
        values[row_ids, :, positions] = value_states[:, :, 0]
        return keys[:, :, :length], values[:, :, :length]
