"""The attention the generation engine runs its forwards with (registered with transformers).

The engine's forwards are of two shapes only, and each gets the kernel that suits it:

- a prefill: prompts right-padded from column 0, attending causally to themselves. No mask is
  passed, so PyTorch runs its causal kernel (flash attention on CUDA) with grouped key/value
  heads as they are, never repeated;
- a decoding step: one query per row over the row's slot of the KV cache, with a mask of the
  columns the row has filled. The query heads that share a key/value head are attended as that
  head's queries, so the cache is read once and never repeated per query head; by PyTorch's
  fused kernel, or (`step_attention="matmul"`) by two batched matrix products, which may read
  the cache faster for one query a row (the benchmark's floor section times both).

The engine switches a model to this attention only for its own forwards (`engine_attention`),
so anything else that uses the same model (transformers' `generate` in the benchmark) keeps the
model's own. torch and transformers are imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

ENGINE_ATTENTION = "parley_engine"
# How a step attends (EngineSettings.step_attention): PyTorch's fused kernel with the mask, or
# two batched matrix products around a softmax (a matrix-vector product per row and head).
STEP_ATTENTION = {"sdpa": ENGINE_ATTENTION, "matmul": f"{ENGINE_ATTENTION}_matmul"}

_registered = False


def slot_attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    *,
    step: str = "sdpa",
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention over [batch, heads, queries, dim] tensors; returns [batch, queries, heads, dim].

    `attention_mask` is None for a causal prefill, or a boolean mask (True: attend) that
    broadcasts to [batch, 1, queries, keys]. `step` says how a step (one query a row) attends:
    "sdpa" by PyTorch's fused kernel, "matmul" by two batched products around a softmax.
    """
    import torch
    import torch.nn.functional as F

    if kwargs.get("s_aux") is not None or kwargs.get("sinks") is not None:
        raise ValueError("The generation engine does not run attention sinks.")
    softcap = kwargs.get("softcap")
    batch, heads, queries, dim = query.shape
    kv_heads = key.shape[1]
    groups = heads // kv_heads
    # A step: the `groups` query heads of each key/value head become that head's queries.
    grouped = query.reshape(batch, kv_heads, groups, dim) if queries == 1 else None
    if softcap is not None:
        output = _capped_attention(query, key, value, attention_mask, scaling, softcap)
    elif grouped is not None and step == "matmul" and attention_mask is not None:
        scale = scaling if scaling is not None else dim**-0.5
        scores = torch.matmul(grouped, key.transpose(-1, -2)).float() * scale
        scores = scores.masked_fill(~attention_mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1).to(value.dtype)
        output = torch.matmul(weights, value).reshape(batch, heads, 1, dim)
    elif grouped is not None:
        output = F.scaled_dot_product_attention(
            grouped, key, value, attn_mask=attention_mask, scale=scaling
        ).reshape(batch, heads, 1, dim)
    else:
        output = F.scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask=attention_mask,
            is_causal=attention_mask is None,
            scale=scaling,
            enable_gqa=groups > 1,
        )
    return output.transpose(1, 2).contiguous(), None


def _capped_attention(query, key, value, mask, scaling, softcap) -> torch.Tensor:
    """Attention with tanh-capped scores (Gemma 2's), which PyTorch's kernels do not have."""
    import torch

    groups = query.shape[1] // key.shape[1]
    key = key.repeat_interleave(groups, dim=1)
    value = value.repeat_interleave(groups, dim=1)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    scores = torch.matmul(query, key.transpose(-1, -2)).float() * scale
    scores = torch.tanh(scores / softcap) * softcap
    if mask is None:
        queries, keys = scores.shape[-2:]
        mask = torch.ones(queries, keys, dtype=torch.bool, device=scores.device).tril(
            keys - queries
        )
    scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1).to(value.dtype)
    return torch.matmul(weights, value)


def register() -> None:
    """Make the engine's attention known to transformers (once per process)."""
    global _registered
    if _registered:
        return
    from transformers import AttentionInterface

    for step, name in STEP_ATTENTION.items():
        AttentionInterface.register(name, partial(slot_attention, step=step))
    _registered = True


@contextmanager
def engine_attention(config: Any, step: str = "sdpa") -> Iterator[None]:
    """Run the model of `config` (its text config) with the engine's attention meanwhile,
    its steps attended as `step` says (a key of STEP_ATTENTION)."""
    previous = config._attn_implementation
    config._attn_implementation = STEP_ATTENTION[step]
    try:
        yield
    finally:
        config._attn_implementation = previous
