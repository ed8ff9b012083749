"""What each slot of a decoding batch holds besides its keys and values.

A slot is one row's place in the engine's KV cache (trainer_bridge.kv_cache). Per slot the
engine keeps, on the device, the row's sampling settings, its position and step, the tokens it
has seen and generated and its random draws; and on the host a copy of what the host decides
with (positions, which slots run, which rows are greedy or penalised), so it never waits for the
device to learn them. Everything here is indexed by slot, so rows move between slots together.
"""

from __future__ import annotations

from itertools import chain
from typing import TYPE_CHECKING

from trainer_bridge.sampling import row_seed

if TYPE_CHECKING:
    import torch

    from trainer_bridge.decoding import Row


def seen_tokens(prompts: list[list[int]], length: int) -> torch.Tensor:
    """The tokens each joining row has seen, [rows, length] on the CPU: its prompt from column
    0, then the prompt's last token again up to `length` (already counted by the repetition
    penalty). Built from one flat tensor of the prompts' tokens, whatever their number."""
    import torch

    lengths = torch.tensor([len(p) for p in prompts])
    flat = torch.tensor(list(chain.from_iterable(prompts)), dtype=torch.long)
    ends = lengths.cumsum(0)
    seen = flat[ends - 1].unsqueeze(1).repeat(1, length)
    rows = torch.repeat_interleave(torch.arange(len(prompts)), lengths)
    columns = torch.arange(flat.numel()) - torch.repeat_interleave(ends - lengths, lengths)
    seen[rows, columns] = flat
    return seen


class SlotEntry:
    """A row as the engine holds it: the row, and the slot it occupies (None while waiting)."""

    __slots__ = ("row", "slot")

    def __init__(self, row: Row, slot: int | None = None) -> None:
        self.row = row
        self.slot = slot


class SlotState:
    """Everything the engine keeps per slot besides the cache, on the device, with host copies
    of what the host decides with (so it never waits for the device to learn it)."""

    def __init__(self, *, rows: int, tokens: int, vocab: int, logits: bool, device: str) -> None:
        import torch

        def zeros(*shape, dtype=torch.long, on=device):
            return torch.zeros(shape, dtype=dtype, device=on)

        self.rows, self.tokens = rows, tokens
        self.last_token = zeros(rows)
        self.pos = zeros(rows)  # where the row's next key and value go, and its position
        self.step = zeros(rows)  # tokens generated so far
        self.max_new = zeros(rows)
        self.top_k = zeros(rows)
        self.greedy = zeros(rows, dtype=torch.bool)
        self.active = zeros(rows, dtype=torch.bool)
        self.finished = zeros(rows, dtype=torch.bool)
        self.unsettled = zeros(rows, dtype=torch.bool)
        self.temperature = torch.ones(rows, device=device)
        self.top_p = torch.ones(rows, device=device)
        self.penalty = torch.ones(rows, device=device)
        self.any_flag = zeros(1, dtype=torch.bool)
        self.live_rows = zeros(1)  # rows [0, live_rows) of a step decode; the rest wait
        self.row_ids = torch.arange(rows, device=device)
        self._seen = zeros(tokens)
        self._generated = zeros(tokens)
        self._uniforms = zeros(tokens, dtype=torch.float32)
        self.logits = zeros(rows, vocab, dtype=torch.float32) if logits else None
        self.host_pos = zeros(rows, on="cpu")
        self.host_active = zeros(rows, dtype=torch.bool, on="cpu")
        self.host_greedy = zeros(rows, dtype=torch.bool, on="cpu")
        self.host_penalized = zeros(rows, dtype=torch.bool, on="cpu")
        self.columns = torch.arange(0, device=device)
        self.seen = self.generated = self.uniforms = self._seen[:0].view(0, 0)

    def layout(self, *, slots: int, length: int, device: str) -> None:
        import torch

        size = slots * length
        self.seen = self._seen[:size].view(slots, length)
        self.generated = self._generated[:size].view(slots, length)
        self.uniforms = self._uniforms[:size].view(slots, length)
        self.columns = torch.arange(length, device=device)
        self.reset()

    def reset(self) -> None:
        for tensor in (self.active, self.finished, self.unsettled, self.host_active):
            tensor.zero_()
        for tensor in (self.pos, self.step, self.host_pos, self.last_token):
            tensor.zero_()

    def admit(
        self,
        slots: torch.Tensor,
        host_slots: torch.Tensor,
        rows: list[Row],
        *,
        seen: torch.Tensor,
        length: int,
        device: str,
    ) -> None:
        """Each row's sampling settings, tokens `seen` and random draws, into its slot (`slots`
        on the device, `host_slots` for the host's copies), positioned at its last prompt token
        with no token generated yet."""
        import torch

        params = [row.sampling for row in rows]
        self.max_new[slots] = torch.tensor([p.max_new_tokens for p in params], device=device)
        greedy = [p.temperature <= 0 for p in params]
        self.greedy[slots] = torch.tensor(greedy, device=device)
        self.temperature[slots] = torch.tensor(
            [p.temperature if p.temperature > 0 else 1.0 for p in params], device=device
        )
        self.top_p[slots] = torch.tensor([float(p.top_p) for p in params], device=device)
        self.top_k[slots] = torch.tensor([int(p.top_k) for p in params], device=device)
        self.penalty[slots] = torch.tensor(
            [float(p.repetition_penalty) for p in params], device=device
        )
        positions = [len(row.prompt_ids) - 1 for row in rows]
        self.pos[slots] = torch.tensor(positions, device=device)
        self.step[slots] = 0
        self.finished[slots] = False
        self.unsettled[slots] = False
        self.seen[slots] = seen
        # One uniform per step, drawn ahead: seeded rows from their own generator, so their
        # draws do not depend on the batch (nor on the device: drawn on the CPU, then moved).
        uniforms = torch.rand((len(rows), length))
        generator = torch.Generator()
        for i, row in enumerate(rows):
            sampling = row.sampling
            if sampling.seed is None or sampling.temperature <= 0:
                continue
            generator.manual_seed(row_seed(sampling.seed, row.sample_index))
            steps = sampling.max_new_tokens
            uniforms[i, :steps] = torch.rand(steps, generator=generator)
        self.uniforms[slots] = uniforms.to(device)
        self.host_pos[host_slots] = torch.tensor(positions)
        self.host_greedy[host_slots] = torch.tensor(greedy)
        self.host_penalized[host_slots] = torch.tensor(
            [p.repetition_penalty != 1.0 for p in params]
        )

    def device_per_slot(self) -> list[torch.Tensor]:
        tensors = [
            self.last_token, self.pos, self.step, self.max_new, self.top_k, self.greedy,
            self.active, self.finished, self.unsettled, self.temperature, self.top_p,
            self.penalty, self.seen, self.generated, self.uniforms,
        ]  # fmt: skip
        return tensors

    def host_per_slot(self) -> list[torch.Tensor]:
        return [self.host_pos, self.host_active, self.host_greedy, self.host_penalized]
