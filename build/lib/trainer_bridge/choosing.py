"""Choosing each row's next token from a forward's logits, with the row's own settings.

The settings, random draws and tokens seen of every row live in the engine's per-slot state
(trainer_bridge.slots). A row's repetition penalty, temperature, top-k and top-p apply as
transformers applies them, and its draw for a step is its own uniform for that step, so a
seeded row draws the same tokens whatever its batch. In static mode (CUDA graphs) the choice has
no host decision: rows the graph-safe sampler could not settle within its width keep their
logits, and the host draws them again over the whole vocabulary (`settle`).

torch is imported inside the methods; nothing here touches Django.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from trainer_bridge.sampling import sample_tokens, sample_tokens_static

if TYPE_CHECKING:
    import torch

    from trainer_bridge.decoding import Row
    from trainer_bridge.slots import SlotState


@dataclass(frozen=True)
class SamplerFlags:
    """What the rows of one forward need, known on the host: eager steps skip the rest."""

    penalized: bool = True
    all_greedy: bool = False
    any_greedy: bool = True

    @classmethod
    def of_rows(cls, rows: list[Row]) -> SamplerFlags:
        return cls(
            penalized=any(r.sampling.repetition_penalty != 1.0 for r in rows),
            all_greedy=all(r.sampling.temperature <= 0 for r in rows),
            any_greedy=any(r.sampling.temperature <= 0 for r in rows),
        )

    @classmethod
    def of_slots(cls, state: SlotState, rows: int) -> SamplerFlags:
        """The flags of slots [0, rows), from the host's copies."""
        greedy = state.host_greedy[:rows]
        return cls(
            penalized=bool(state.host_penalized[:rows].any()),
            all_greedy=bool(greedy.all()),
            any_greedy=bool(greedy.any()),
        )


# A graph serves every batch: it checks for everything.
GRAPH_FLAGS = SamplerFlags()


class TokenChooser:
    """A model's token choice: its end tokens, its vocabulary, and how widely it sorts."""

    def __init__(self, *, eos: torch.Tensor, vocab: int, width: int, candidates: int) -> None:
        self.eos = eos
        self.vocab = vocab
        self.width = width  # tokens the graph-safe sampler sorts
        self.candidates = candidates  # tokens the eager sampler sorts before sorting them all

    def is_eos(self, tokens: torch.Tensor) -> torch.Tensor:
        # A comparison with each end token: shapes fixed, no host decision (graph-safe).
        return (tokens.unsqueeze(-1) == self.eos).any(-1)

    def choose(
        self,
        state: SlotState,
        logits: torch.Tensor,
        index,
        seen: torch.Tensor,
        steps: torch.Tensor,
        *,
        length: int,
        static: bool,
        flags: SamplerFlags,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The next token of each row (`index`: a slice or tensor of slots, rows of `length`
        tokens), and in static mode which rows are unsettled (their logits are kept in the
        state for `settle`)."""
        import torch

        st = state
        logits = logits.float()
        if flags.penalized:
            # As transformers does: a seen token's logit is divided by the penalty if positive,
            # multiplied if negative (a penalty of 1 leaves it exactly as it was).
            penalty = st.penalty[index].unsqueeze(-1)
            scores = logits.gather(-1, seen)
            scores = torch.where(scores < 0, scores * penalty, scores / penalty)
            logits = logits.scatter(-1, seen, scores)
        if flags.all_greedy:
            return logits.argmax(-1), None
        probs = torch.softmax(logits / st.temperature[index].unsqueeze(-1), dim=-1)
        steps = steps.clamp(max=length - 1).unsqueeze(-1)
        uniforms = st.uniforms[index].gather(1, steps).squeeze(-1)
        unsettled = None
        if static:
            tokens, unsettled = sample_tokens_static(
                probs, top_k=st.top_k[index], top_p=st.top_p[index], uniforms=uniforms,
                width=self.width,
            )  # fmt: skip
            if st.logits is not None:
                st.logits[index] = logits
        else:
            tokens = sample_tokens(
                probs, top_k=st.top_k[index], top_p=st.top_p[index], uniforms=uniforms,
                candidates=self.candidates,
            )  # fmt: skip
        if flags.any_greedy:
            greedy = st.greedy[index]
            tokens = torch.where(greedy, logits.argmax(-1), tokens)
            if unsettled is not None:
                unsettled = unsettled & ~greedy
        return tokens, unsettled

    def settle(self, state: SlotState, slots: torch.Tensor, *, length: int) -> None:
        """Draw again, with the whole vocabulary sorted, the rows the graph could not settle."""
        import torch

        st = state
        steps = st.step[slots] - 1
        probs = torch.softmax(st.logits[slots] / st.temperature[slots].unsqueeze(-1), dim=-1)
        uniforms = st.uniforms[slots].gather(1, steps.unsqueeze(-1)).squeeze(-1)
        tokens = sample_tokens(
            probs, top_k=st.top_k[slots], top_p=st.top_p[slots], uniforms=uniforms,
            candidates=self.vocab,
        )  # fmt: skip
        st.generated[slots, steps] = tokens
        st.seen[slots, st.pos[slots].clamp(max=length - 1)] = tokens
        st.last_token[slots] = tokens
        st.finished[slots] = self.is_eos(tokens) | (st.step[slots] >= st.max_new[slots])
        st.unsettled[slots] = False
