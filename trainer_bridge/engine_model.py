"""A causal LM as the decoding engine calls it.

What the engine needs to know of a transformers model (the shape of its KV cache, its
vocabulary, the longest row it decodes exactly, how its forward takes a cache) and the two
forwards it makes: a step over the cache with a mask, and a causal prefill of right-padded
prompts that computes logits only at each row's last prompt token. Both run the engine's own
attention (trainer_bridge.attention). A model the engine cannot run exactly is refused here,
with the reason.

torch is imported inside the functions; nothing here touches Django.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

from trainer_bridge.attention import engine_attention, register
from trainer_bridge.decoding import UnsupportedModel
from trainer_bridge.kv_cache import KvShape

if TYPE_CHECKING:
    import torch

ATTENTION_IMPLEMENTATIONS = ("sdpa", "eager")


class EngineModel:
    """A causal LM, checked once, and its forwards as the engine makes them."""

    def __init__(self, model, *, step_attention: str) -> None:
        import torch

        self.model = model
        self.step_attention = step_attention
        config = model.config
        if hasattr(config, "get_text_config"):
            config = config.get_text_config()
        self.attention = getattr(config, "_attn_implementation", None) or "eager"
        _check_supported(config, model, self.attention)
        # The forwards run the engine's attention; `config` is where the model's layers read
        # which attention to call.
        register()
        self.config = config
        self.dtype = next(model.parameters()).dtype
        itemsize = torch.empty((), dtype=self.dtype).element_size()
        self.shape = KvShape.from_config(config, dtype_bytes=itemsize)
        output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        self.vocab = int(output.weight.shape[0]) if output is not None else self.shape.vocab
        self.max_length = _sliding_window(config)
        accepted = inspect.signature(model.forward).parameters
        self._cache_keyword = "cache" if "cache" in accepted else "past_key_values"
        self._last_logits_only = {"logits_to_keep": 1} if "logits_to_keep" in accepted else {}
        # The output layer, where the prefill passes only the columns it needs; None where the
        # model could not keep only those (each prompt's last token is then its first step).
        self.head = output if self._last_logits_only else None

    def forward(
        self, cache, input_ids, positions, mask, step_attention: str | None = None, **extra
    ) -> torch.Tensor:
        """The model's logits [rows, columns kept, vocabulary] over `cache`; `mask` (True:
        attend) None for a causal prefill of right-padded prompts."""
        with engine_attention(self.config, step_attention or self.step_attention):
            output = self.model(
                input_ids=input_ids,
                position_ids=positions,
                attention_mask=mask,
                use_cache=True,
                **{self._cache_keyword: cache},
                **extra,
            )
        return output.logits

    def prefill(self, cache, input_ids, positions, lengths: list[int]) -> torch.Tensor | None:
        """A causal prefill of right-padded prompts (`lengths`: their lengths in `input_ids`)
        into `cache`: the logits at each row's last column [rows, vocabulary], or None where
        the model has no `head` (the columns were encoded, and no logits are needed).

        The model keeps the columns from the leftmost last token on (`logits_to_keep`), and a
        hook on its output layer passes that layer only each row's own column, so the logits
        are computed for one column a row, and whatever the model does after its output layer
        (capping, scaling) still applies.
        """
        import torch

        if self.head is None:
            self.forward(cache, input_ids, positions, None, **self._last_logits_only)
            return None
        width = input_ids.shape[1]
        kept = width - min(lengths) + 1
        index = torch.tensor([n - 1 - (width - kept) for n in lengths], device=input_ids.device)
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        picked = []

        def pick(module, args):
            picked.append(True)
            return (args[0][rows, index].unsqueeze(1), *args[1:])

        handle = self.head.register_forward_pre_hook(pick)
        try:
            logits = self.forward(cache, input_ids, positions, None, logits_to_keep=kept)
        finally:
            handle.remove()
        # A model that computes its logits without calling its output layer kept them all.
        return logits[:, 0] if picked else logits[rows, index]


def _check_supported(config, model, attention: str) -> None:
    if getattr(config, "is_encoder_decoder", False):
        raise UnsupportedModel("Encoder-decoder models are not supported by the engine.")
    if any(hasattr(module, "sinks") for module in model.modules()):
        raise UnsupportedModel(
            "The model's attention has sinks, which the generation engine does not run."
        )
    if attention not in ATTENTION_IMPLEMENTATIONS:
        raise UnsupportedModel(
            f"The model uses {attention!r} attention; the generation engine runs "
            f"{' or '.join(ATTENTION_IMPLEMENTATIONS)} (load it with one of them)."
        )


def _sliding_window(config) -> int | None:
    """The longest row the engine can decode exactly: a sliding window, if one applies."""
    window = getattr(config, "sliding_window", None)
    if not window or getattr(config, "use_sliding_window", True) is False:
        return None
    layer_types = getattr(config, "layer_types", None)
    if layer_types and "sliding_attention" not in layer_types:
        return None
    return int(window)
