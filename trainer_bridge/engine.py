"""The decoding engine of a loaded model: its KV cache, per-slot state, forwards and CUDA graphs.

Rows live in the slots of a `SlotCache`, each from column 0 at its own position. The engine
prefills prompts into free slots and decodes one token for the first `rows` slots at a time;
which rows join, wait or leave is the session's business (trainer_bridge.continuous), and what
the model is and how its forwards are called is `EngineModel`'s (trainer_bridge.engine_model).

On CUDA each step is replayed from a CUDA graph: one per (session length, batch size bucket,
attended length bucket), all captured once per worker the first time a session of that length
starts (logged, and kept in `warmups`). Sampling stays on the device and per row
(`sample_tokens_static`); the host reads one flag per step to learn whether a row finished. On
the CPU the same steps run eagerly on the exact batch, with the sampler that sorts no more
than it must.

torch is imported inside the functions; nothing here touches Django.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from trainer_bridge.choosing import GRAPH_FLAGS, SamplerFlags, TokenChooser
from trainer_bridge.decoding import EngineSettings, GenerationOutOfMemory, WarmUp
from trainer_bridge.engine_model import EngineModel
from trainer_bridge.graphs import StepGraphs
from trainer_bridge.kv_cache import SlotCache, batch_buckets, bucket_for, length_bucket, plan_cache
from trainer_bridge.slots import SlotEntry, SlotState, seen_tokens

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)


class DecodeEngine:
    """A causal LM on one device, with its KV cache, per-slot state and CUDA graphs."""

    def __init__(
        self,
        model,
        *,
        device: str,
        eos_ids: list[int],
        pad_id: int,
        settings: EngineSettings | None = None,
    ) -> None:
        import torch

        self.device = str(device)
        self.settings = settings or EngineSettings()
        self.is_cuda = self.device.startswith("cuda")
        self.lm = EngineModel(model, step_attention=self.settings.step_attention)
        free = torch.cuda.mem_get_info(torch.device(self.device))[0] if self.is_cuda else None
        self.plan = plan_cache(
            self.shape,
            free_bytes=free,
            memory_fraction=self.settings.memory_fraction,
            token_budget=self.settings.token_budget,
            max_rows=self.settings.max_rows,
            prefill_tokens=self.settings.prefill_tokens,
        )
        self.static = (
            self.settings.static_steps if self.settings.static_steps is not None else self.is_cuda
        )
        self.chooser = TokenChooser(
            eos=torch.tensor(sorted(set(eos_ids)), device=self.device),
            vocab=self.vocab,
            width=(
                self.vocab
                if self.vocab <= self.settings.full_sort_vocab
                else min(self.vocab, self.settings.candidates)
            ),
            candidates=self.settings.candidates,
        )
        self.eos_set = frozenset(eos_ids)
        self.pad_id = pad_id
        self.cache: SlotCache | None = None
        self.state: SlotState | None = None
        self.slots = 0
        self.length = 0
        self.buckets: list[int] = []
        self.occupant: list[SlotEntry | None] = []
        self.running = 0  # rows in slots (they fill [0, running) between steps)
        self.running_drafts = 0
        self.in_session = False
        self.graphs = StepGraphs(self.device, enabled=self.is_cuda and self.settings.cuda_graphs)
        self.steps = 0
        self.prefills = 0

    @property
    def shape(self):
        """The model's KV cache shape (the `EngineModel`'s)."""
        return self.lm.shape

    @property
    def vocab(self) -> int:
        return self.lm.vocab

    @property
    def dtype(self):
        return self.lm.dtype

    @property
    def max_length(self) -> int | None:
        """The longest row the engine decodes exactly (a sliding window), None: no limit."""
        return self.lm.max_length

    @property
    def width(self) -> int:
        """Tokens the graph-safe sampler sorts (the chooser's)."""
        return self.chooser.width

    @property
    def use_graphs(self) -> bool:
        return self.graphs.enabled

    @property
    def warmups(self) -> list[WarmUp]:
        return self.graphs.warmups

    # --- set-up -------------------------------------------------------------------------------

    def slots_for(self, length: int) -> int:
        return self.plan.slots(length)

    def _allocate(self, *, slots: int, length: int) -> None:
        """The cache and state, once; on the CPU they grow when a batch needs more."""
        tokens = slots * length
        if self.cache is not None and self.cache.tokens >= tokens and self.state.rows >= slots:
            return
        if self.cache is not None and self.is_cuda:
            raise GenerationOutOfMemory(
                f"{slots} rows of {length} tokens need a KV cache of {tokens:,} tokens; this "
                f"worker's holds {self.cache.tokens:,} ({self.plan.describe()})"
            )
        import torch

        tokens = max(tokens, self.plan.tokens)
        rows = max(slots, self.plan.max_rows)
        self.cache = self.state = None
        self.graphs.clear()  # they point into the buffers being replaced
        try:
            self.cache = SlotCache(self.shape, tokens=tokens, dtype=self.dtype, device=self.device)
            self.state = SlotState(
                rows=rows,
                tokens=tokens,
                vocab=self.vocab,
                logits=self.static and self.width < self.vocab,
                device=self.device,
            )
        except torch.cuda.OutOfMemoryError as exc:
            self.cache = self.state = None
            raise GenerationOutOfMemory(
                f"The KV cache of {tokens:,} tokens does not fit the device ({exc}); lower "
                "PARLEY_GENERATION_MEMORY_FRACTION or PARLEY_GENERATION_MAX_ROWS."
            ) from None

    def begin(self, *, slots: int, length: int) -> None:
        """Start a session of `slots` rows of up to `length` tokens (the engine must be idle)."""
        if self.in_session:
            raise RuntimeError("A decoding session is already running on this model.")
        self._allocate(slots=slots, length=length)
        self.cache.layout(slots=slots, length=length)
        self.state.layout(slots=slots, length=length, device=self.device)
        self.slots, self.length = slots, length
        self.buckets = batch_buckets(slots)
        self.occupant = [None] * slots
        self.running = self.running_drafts = 0
        self.in_session = True
        if self.graphs.enabled and not self.graphs.captured(length):
            self._capture_length(length)

    def warm_up(self, lengths: list[int]) -> list[WarmUp]:
        """Allocate the cache and capture the CUDA graphs of sessions of these lengths now
        (a session does it on first use otherwise); returns what was captured."""
        import torch

        before = len(self.graphs.warmups)
        with torch.inference_mode():
            for length in sorted({length_bucket(n) for n in lengths}):
                if self.slots_for(length):
                    self.begin(slots=self.slots_for(length), length=length)
                    self.end()
        return self.graphs.warmups[before:]

    def free(self) -> None:
        """Give the cache, state and graphs back to the device (they are made again on use)."""
        if self.in_session:
            raise RuntimeError("The engine is decoding; it cannot give its memory back now.")
        self.cache = self.state = None
        self.graphs.clear()
        if self.is_cuda:
            import gc

            import torch

            gc.collect()
            torch.cuda.empty_cache()

    def end(self) -> None:
        if self.state is not None:
            self.state.reset()
        self.occupant = []
        self.running = self.running_drafts = 0
        self.in_session = False

    # --- the forward passes ----------------------------------------------------------------------

    def _forward(self, input_ids, positions, mask, step_attention=None) -> torch.Tensor:
        return self.lm.forward(self.cache, input_ids, positions, mask, step_attention)

    def _decode_body(self, rows: int, length: int, *, static: bool, flags: SamplerFlags):
        """One decoding step of slots [0, rows) over `length` columns, all on the device.

        Only rows that are active and below `live_rows` advance; the others (free slots of a
        padded bucket, or candidates waiting while drafts step) keep their state. A waiting row
        may have a key and value written at its next position, which its own next step
        overwrites before attending to it.
        """
        import torch

        st = self.state
        ids = st.row_ids[:rows]
        positions = st.pos[:rows]
        self.cache.decode(rows=rows, length=length, row_ids=ids, positions=positions)
        visible = st.columns[:length].unsqueeze(0) <= positions.unsqueeze(1)
        logits = self._forward(
            st.last_token[:rows].unsqueeze(-1),
            positions.unsqueeze(-1),
            visible[:, None, None, :],
        )[:, -1, :]
        steps = st.step[:rows]
        tokens, unsettled = self.chooser.choose(
            st, logits, slice(0, rows), st.seen[:rows, :length], steps,
            length=self.length, static=static, flags=flags,
        )  # fmt: skip
        if not static:
            # Eager steps decode exactly the running rows [0, rows), every one of them live,
            # and a running row's next token is within its slot.
            st.generated[ids, steps] = tokens
            st.seen[ids, positions + 1] = tokens
            st.last_token[:rows] = tokens
            st.pos[:rows] += 1
            st.step[:rows] += 1
            ended = self.chooser.is_eos(tokens) | (st.step[:rows] >= st.max_new[:rows])
            st.finished[:rows] = ended
            st.any_flag.copy_(ended.any().reshape(1))
            return
        live = st.active[:rows] & (ids < st.live_rows)
        top = self.length - 1
        at_step = steps.clamp(max=top)
        st.generated[ids, at_step] = torch.where(live, tokens, st.generated[ids, at_step])
        at_next = (positions + 1).clamp(max=top)
        st.seen[ids, at_next] = torch.where(live, tokens, st.seen[ids, at_next])
        st.last_token[:rows] = torch.where(live, tokens, st.last_token[:rows])
        st.pos[:rows] += live
        st.step[:rows] += live
        ended = live & (self.chooser.is_eos(tokens) | (st.step[:rows] >= st.max_new[:rows]))
        st.finished[:rows] = ended
        flag = ended
        if unsettled is not None:
            unsettled = unsettled & live
            st.unsettled[:rows] = unsettled
            flag = ended | unsettled
        st.any_flag.copy_(flag.any().reshape(1))

    def step(self, rows: int) -> list[int]:
        """Decode one token for the active rows among slots [0, rows); return the slots whose
        row finished."""
        st = self.state
        if self.static:
            host_live = st.host_active[:rows]
            live = st.host_pos[:rows][host_live]
            top_position = int(live.max()) if live.numel() else 0
            st.live_rows.fill_(rows)
            bucket = bucket_for(rows, self.buckets)
            length = min(self.length, length_bucket(top_position + 1))
            graph = self.graphs.get(self.length, bucket, length)
            if graph is not None:
                graph.replay()
            else:
                self._decode_body(bucket, length, static=True, flags=GRAPH_FLAGS)
            st.host_pos[:rows] += host_live
        else:
            # Slots [0, rows) are exactly the rows to decode (the session keeps them packed).
            flags = SamplerFlags.of_slots(st, rows)
            self._decode_body(rows, int(st.host_pos[:rows].max()) + 1, static=False, flags=flags)
            st.host_pos[:rows] += 1
        self.steps += 1
        if not bool(st.any_flag[0]):
            return []
        if self.static and st.logits is not None and bool(st.unsettled[:rows].any()):
            self.chooser.settle(st, st.unsettled[:rows].nonzero().squeeze(-1), length=self.length)
        finished = st.finished[:rows].nonzero().squeeze(-1)
        return finished.tolist()

    # --- rows joining and leaving ----------------------------------------------------------------

    def prefill(self, entries: list[SlotEntry]) -> list[int]:
        """Encode the prompts of `entries` (slots assigned, free) into their slots and draw each
        row's first token; return the slots whose row finished with it.

        The prompts are encoded from column 0 of their slots, right-padded, in one causal
        forward with no mask: the padding comes after each prompt, so no prompt token attends to
        it, and the steps never read its keys. The model's output layer gets only each row's
        last prompt token (`EngineModel.prefill`), whose logits give the row's first token. A model
        whose output layer cannot be reached that way leaves each prompt's last token out of
        the prefill instead: it is the row's first step.
        """
        import torch

        st = self.state
        device = self.device
        prompts = [e.row.prompt_ids for e in entries]
        lengths = [len(p) for p in prompts]
        if min(lengths) < 1:
            raise ValueError("A row has an empty prompt.")
        count = len(entries)
        # The tokens each row has seen; their start is the forward's input.
        seen = seen_tokens(prompts, self.length).to(device)
        slots = torch.tensor([e.slot for e in entries], device=device)
        host_slots = torch.tensor([e.slot for e in entries])
        st.admit(
            slots, host_slots, [e.row for e in entries], seen=seen, length=self.length,
            device=device,
        )  # fmt: skip
        draws = self.lm.head is not None
        width = max(lengths) if draws else max(lengths) - 1
        logits = None
        if width:
            columns = st.columns[:width].expand(count, -1)
            self.cache.prefill(slots)
            logits = self.lm.prefill(self.cache, seen[:, :width], columns, lengths)
        st.active[slots] = True
        st.host_active[host_slots] = True
        for entry in entries:
            self.occupant[entry.slot] = entry
        self.running += count
        self.running_drafts += sum(1 for entry in entries if entry.row.draft)
        self.prefills += 1
        if not draws:
            st.last_token[slots] = torch.tensor([p[-1] for p in prompts], device=device)
            return []
        zero = torch.zeros(count, dtype=torch.long, device=device)
        tokens, _ = self.chooser.choose(
            st, logits, slots, st.seen[slots, :width], zero, length=self.length, static=False,
            flags=SamplerFlags.of_rows([e.row for e in entries]),
        )  # fmt: skip
        positions = torch.tensor(lengths, device=device)
        st.generated[slots, zero] = tokens
        st.seen[slots, positions] = tokens
        st.last_token[slots] = tokens
        st.pos[slots] = positions
        st.host_pos[host_slots] = torch.tensor(lengths)
        st.step[slots] = 1
        ended = self.chooser.is_eos(tokens) | (st.max_new[slots] <= 1)
        st.finished[slots] = ended
        return host_slots[ended.cpu()].tolist()

    def harvest(self, slots: list[int]) -> list[list[int]]:
        """The new tokens of the finished rows in `slots`, without their end-of-turn token; the
        slots are free afterwards."""
        import torch

        if not slots:
            return []
        st = self.state
        index = torch.tensor(slots, device=self.device)
        counts = st.step[index].tolist()
        tokens = st.generated[index, : max(counts)].tolist()
        self.release(slots)
        out = []
        for row, count in zip(tokens, counts, strict=True):
            row = row[:count]
            if row and row[-1] in self.eos_set:
                row.pop()
            out.append(row)
        return out

    def release(self, slots: list[int], *, keep_entries: bool = False) -> None:
        """Free `slots` (their rows finished, failed or went back to wait); the rows that held
        them forget them unless `keep_entries` (a group that failed to join keeps its slots
        for a retry)."""
        import torch

        if not slots:
            return
        st = self.state
        index = torch.tensor(slots, device=self.device)
        st.active[index] = False
        st.finished[index] = False
        st.unsettled[index] = False
        st.host_active[torch.tensor(slots)] = False
        for slot in slots:
            entry = self.occupant[slot]
            if entry is None:
                continue
            self.running -= 1
            self.running_drafts -= entry.row.draft
            if not keep_entries:
                entry.slot = None
            self.occupant[slot] = None

    def move(self, sources: list[int], targets: list[int]) -> None:
        """Move rows between slots (every source read before any target is written)."""
        import torch

        if not sources:
            return
        src, dst = (torch.tensor(x, device=self.device) for x in (sources, targets))
        host_src, host_dst = torch.tensor(sources), torch.tensor(targets)
        # Keys and values beyond the moving rows' positions are never read: not copied.
        used = int(self.state.host_pos[host_src].max()) + 1
        for tensor in self.cache.per_slot_tensors():
            tensor[dst, :, :used] = tensor[src, :, :used]
        for tensor in self.state.device_per_slot():
            tensor[dst] = tensor[src]
        for tensor in self.state.host_per_slot():
            tensor[host_dst] = tensor[host_src]
        moved = [self.occupant[s] for s in sources]
        for slot in sources:
            self.occupant[slot] = None
        for entry, slot in zip(moved, targets, strict=True):
            self.occupant[slot] = entry
            entry.slot = slot
        # A source that no row moved into is free now.
        emptied = sorted(set(sources) - set(targets))
        if emptied:
            index = torch.tensor(emptied, device=self.device)
            self.state.active[index] = False
            self.state.host_active[torch.tensor(emptied)] = False

    # --- CUDA graphs and the bare forward -------------------------------------------------------

    def _capture_length(self, length: int) -> None:
        """Capture a step for every (batch bucket, attended length bucket) of a session length."""
        attended = sorted({min(length, length_bucket(n)) for n in range(1, length + 1)})

        def step(rows: int, columns: int) -> None:
            # Nothing but the step itself: `live_rows` is the host's to set before each replay.
            self._decode_body(rows, columns, static=True, flags=GRAPH_FLAGS)

        self.graphs.capture_length(
            length,
            shapes=[(rows, columns) for columns in attended for rows in self.buckets],
            step=step,
            reset=self.state.reset,
        )

    def forward_floor(
        self,
        *,
        rows: int,
        length: int,
        steps: int,
        step_attention: str | None = None,
        graph: bool = True,
    ) -> float:
        """Seconds for `steps` bare forwards of `rows` rows over `length` columns: the model
        alone, no sampling and no bookkeeping (one CUDA graph on CUDA unless not `graph`), its
        attention as `step_attention` says (default: the engine's). For benchmarks; the engine
        must be idle."""
        import torch

        with torch.inference_mode():
            return self._forward_floor(
                rows=rows, length=length, steps=steps, step_attention=step_attention, graph=graph
            )

    def _forward_floor(
        self, *, rows: int, length: int, steps: int, step_attention, graph: bool
    ) -> float:
        import torch

        self.begin(slots=max(rows, self.slots_for(length)), length=length)
        try:
            st = self.state
            ids = st.row_ids[:rows]
            positions = st.pos[:rows]
            tokens = st.last_token[:rows].unsqueeze(-1)
            mask = (st.columns[:length].unsqueeze(0) <= positions.unsqueeze(1))[:, None, None, :]

            def forward():
                self.cache.decode(rows=rows, length=length, row_ids=ids, positions=positions)
                return self._forward(tokens, positions.unsqueeze(-1), mask, step_attention)

            run = self.graphs.capture(forward).replay if self.is_cuda and graph else forward
            started = time.perf_counter()
            for _ in range(steps):
                run()
            if self.is_cuda:
                torch.cuda.synchronize(self.device)
            return time.perf_counter() - started
        finally:
            self.end()
