"""Continuous batching: rows join a running batch between steps and leave it when done.

A session decodes rows on a model's engine (trainer_bridge.engine). Between two steps, rows
that finished leave (their slot is free at once) and waiting rows join: their prompts are
prefilled into free slots, then they decode together with the rest. Every row keeps its own
sampling settings and random stream, so a seeded row gives the same tokens alone, batched, or
joining a batch late.

Drafts (a trainer is waiting) come before candidates: they join first and sit in the first
slots; how the two kinds share the steps (drafts alone for several steps per step of the whole
batch, a draft's first step at once, candidates joining a slice at a time) is decided by
`StepSharing` (trainer_bridge.sharing) from what the session measures.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field

from trainer_bridge.decoding import GenerationOutOfMemory, Row, Sample
from trainer_bridge.engine import DecodeEngine, SlotEntry
from trainer_bridge.kv_cache import LENGTH_QUANTUM, length_bucket
from trainer_bridge.sharing import DRAFT, FULL, StepSharing

logger = logging.getLogger(__name__)

# Candidates may not take the last 1/64 of the slots of a session: a draft always finds one.
DRAFT_RESERVE_SHARE = 64


@dataclass
class Finished:
    tag: Hashable
    row: Row
    sample: Sample


@dataclass
class Failed:
    tag: Hashable
    error: BaseException
    out_of_memory: bool


@dataclass
class StepOutcome:
    finished: list[Finished] = field(default_factory=list)
    failed: list[Failed] = field(default_factory=list)
    joined: int = 0  # rows prefilled into the batch during this call


class _Entry(SlotEntry):
    """A waiting or running row of a session: what fails with it (its tag), and when it came."""

    __slots__ = ("tag", "order")

    def __init__(self, tag: Hashable, row: Row, order: int) -> None:
        super().__init__(row)
        self.tag = tag
        self.order = order


class DecodeSession:
    """Rows decoding on an engine: they join between steps, leave when done, fail alone.

    `add` queues rows (tagged: a tag is what fails together, e.g. a request); `step` lets
    waiting rows join where there is room, decodes one token and returns what finished or
    failed. Out of memory while rows join halves the joining group (and, with rows already
    running, learns that the batch is full); any other error halves it until one tag is alone
    and fails only that tag. `strict` (one batch, as `LoadedGenerator.generate`) raises instead.
    """

    def __init__(
        self,
        engine: DecodeEngine,
        *,
        length: int,
        decode: Callable[[list[list[int]]], list[str]],
        strict: bool = False,
        rows: int = 0,
        faults: dict | None = None,
        interrupts: tuple[type[BaseException], ...] = (),
    ) -> None:
        self.engine = engine
        # Exceptions that stop the session rather than fail a row (a task's time limit).
        self.interrupts = interrupts
        self.decode = decode
        self.strict = strict
        self.faults = faults or {}
        # Lengths come in buckets, for CUDA graphs and for rows that join later; a strict batch
        # decoded eagerly takes no one later and needs no graph: its slots are just as long.
        length = max(1, length) if strict and not engine.static else length_bucket(max(1, length))
        # A row longer than the device holds must not keep the others from running: the
        # session takes the longest rows that fit, and those longer fail alone when added.
        while length > LENGTH_QUANTUM and engine.slots_for(length) < 1:
            length //= 2
        if engine.max_length is not None and length > engine.max_length:
            length = max(engine.max_length, 1)
        self.length = length
        slots = engine.slots_for(length)
        if strict:
            # One batch of exactly these rows; on CUDA in the planned layout (its graphs).
            if not engine.is_cuda:
                slots = max(rows, 1)
            if rows > slots:
                raise GenerationOutOfMemory(
                    f"CUDA out of memory: {rows} rows of {length} tokens do not fit "
                    f"({engine.plan.describe()})"
                )
        if slots < 1:
            raise GenerationOutOfMemory(
                f"Out of memory: no row of {length} tokens fits ({engine.plan.describe()})"
            )
        self.slots = slots
        self.row_cap = slots
        self.pending: list[_Entry] = []
        self.splits = 0
        self.steps = 0
        self.joined = 0
        self._arrivals = 0
        self._failed: set[Hashable] = set()
        self._outcome = StepOutcome()
        self._dirty = False
        self.sharing = StepSharing(engine.settings)
        self._open = False

    # --- lifetime --------------------------------------------------------------------------------

    def __enter__(self) -> DecodeSession:
        import torch

        with torch.inference_mode():
            self.engine.begin(slots=self.slots, length=self.length)
        self._open = True
        return self

    def __exit__(self, *exc_info) -> None:
        import torch

        with torch.inference_mode():
            self.engine.end()
        self._open = False

    # --- what the caller sees --------------------------------------------------------------------

    @property
    def active(self) -> int:
        """Rows decoding now."""
        return self.engine.running

    def busy(self) -> bool:
        return bool(self.pending) or self.active > 0

    def room(self) -> int:
        """Rows that could join now (drafts may also use the candidates' reserve)."""
        return max(0, self.row_cap - self.active - len(self.pending))

    @property
    def reserve(self) -> int:
        """Slots candidates joining a running batch leave to drafts (the rows a batch starts
        with take every slot: a draft that comes later finds one as they finish)."""
        if self.strict or not self.steps:
            return 0
        return self.row_cap // DRAFT_RESERVE_SHARE

    def fits(self, row: Row) -> bool:
        return row.tokens_needed <= self.length

    def add(self, tagged: Iterable[tuple[Hashable, Row]]) -> None:
        """Queue rows; a row longer than the session fails its tag at the next step."""
        for tag, row in tagged:
            if not self.fits(row):
                error = GenerationOutOfMemory(
                    f"Out of memory: the row needs {row.tokens_needed} tokens and this batch "
                    f"holds rows of {self.length}"
                )
                if self.strict:
                    raise error
                self._fail(tag, error, out_of_memory=True)
                continue
            self._arrivals += 1
            self.pending.append(_Entry(tag=tag, row=row, order=self._arrivals))

    def join(self) -> StepOutcome:
        """Let waiting rows join now, without a step (what a step does first; the benchmark
        times prefills with it)."""
        import torch

        with torch.inference_mode():
            self._admit()
        outcome, self._outcome = self._outcome, StepOutcome()
        return outcome

    def step(self) -> StepOutcome:
        """Let waiting rows join, decode one token, and say what finished or failed."""
        import torch

        with torch.inference_mode():
            engine = self.engine
            kind = self.sharing.next_kind(
                drafts=engine.running_drafts,
                candidates=engine.running - engine.running_drafts,
                draft_joins=self.active < self.row_cap and any(e.row.draft for e in self.pending),
            )
            started = time.perf_counter()
            # Candidates join only before steps of the whole batch: their prefill would
            # otherwise hold up the drafts' own steps.
            self._admit(candidates=kind == FULL)
            joined = time.perf_counter()
            if self.active:
                kind = self._decode(kind)
                if kind is not None:
                    done = time.perf_counter()
                    self.sharing.stepped(kind, seconds=done - started, decoding=done - joined)
            elif self.pending:
                # Nothing runs and nothing could join: waiting would wait forever.
                for entry in list(self.pending):
                    self._fail(
                        entry.tag,
                        GenerationOutOfMemory(
                            "Out of memory even for a single sample: no room in an empty batch"
                        ),
                        out_of_memory=True,
                    )
        outcome, self._outcome = self._outcome, StepOutcome()
        return outcome

    # --- joining ---------------------------------------------------------------------------------

    def _admit(self, *, candidates: bool = True) -> None:
        active = self.active
        free = self.row_cap - active
        if free <= 0 or not self.pending:
            if self._dirty:
                self._arrange([])
            return
        drafts = sorted((e for e in self.pending if e.row.draft), key=lambda e: e.order)
        joining = drafts[:free]
        if candidates:
            waiting = sorted((e for e in self.pending if not e.row.draft), key=lambda e: e.order)
            room = min(free - len(joining), self.row_cap - self.reserve - active)
            admitted = waiting[: max(0, room)]
            if joining or self.engine.running_drafts:
                admitted = self._slice(admitted)
            joining += admitted
        if joining:
            taken = {id(e) for e in joining}
            self.pending = [e for e in self.pending if id(e) not in taken]
            self._arrange(joining)
            # Prefill in chunks of similar length, each within the prefill token budget.
            joining.sort(key=lambda e: len(e.row.prompt_ids))
            budget = self.engine.settings.prefill_tokens
            chunk: list[_Entry] = []
            for entry in joining:
                width = len(entry.row.prompt_ids)  # the widest so far: sorted by length
                if chunk and width * (len(chunk) + 1) > budget:
                    self._join(chunk)
                    chunk = []
                chunk.append(entry)
            if chunk:
                self._join(chunk)
        if self._dirty:
            self._arrange([])

    def _slice(self, waiting: list[_Entry]) -> list[_Entry]:
        """The first of `waiting` whose prompts make one slice of prefill (at least one row)."""
        budget = self.sharing.slice_tokens(running=self.engine.running)
        taken = 0
        for count, entry in enumerate(waiting):
            taken += len(entry.row.prompt_ids)
            if count and taken > budget:
                return waiting[:count]
        return waiting

    def _attempt(self, action):
        """(what `action` returned, the failure, whether it ran out of memory): a failure is
        returned rather than raised, except interrupts and, in a strict batch, plain errors."""
        import torch

        try:
            return action(), None, False
        except self.interrupts:
            raise
        except torch.cuda.OutOfMemoryError as exc:
            return None, GenerationOutOfMemory(str(exc) or "CUDA out of memory"), True
        except GenerationOutOfMemory as exc:
            return None, exc, True
        except Exception as exc:
            if self.strict:
                raise
            return None, exc, False

    def _join(self, group: list[_Entry]) -> None:
        """Prefill `group` into the slots `_arrange` gave it; halve it on failure (see the
        class). Halves keep their slots; rows that wait or fail give theirs up."""
        import torch

        group = [e for e in group if e.tag not in self._failed]
        if not group:
            return

        def prefill():
            self._inject_faults(group)
            return self.engine.prefill(group)

        started = time.perf_counter()
        ended, failure, out_of_memory = self._attempt(prefill)
        if failure is None:
            self.sharing.prefilled(
                tokens=sum(len(e.row.prompt_ids) for e in group),
                seconds=time.perf_counter() - started,
            )
            self.joined += len(group)
            self._outcome.joined += len(group)
            self._finish(ended)
            return
        # Outside the handler, so the failed forward's memory is free before a retry.
        if out_of_memory and self.engine.is_cuda:
            torch.cuda.empty_cache()
        self.engine.release([e.slot for e in group if e.slot is not None], keep_entries=True)
        self._dirty = True
        if self.strict:
            raise failure
        running = self.active
        if out_of_memory:
            if running:
                # What runs plus this group does not fit: wait for rows to leave.
                self.row_cap = max(1, min(self.row_cap, running + len(group) - 1))
            if len(group) == 1:
                if running:
                    self._wait(group)
                else:
                    self._fail(
                        group[0].tag,
                        GenerationOutOfMemory(f"Out of memory even for a single sample: {failure}"),
                        out_of_memory=True,
                    )
                return
        elif len({e.tag for e in group}) == 1:
            self._fail(group[0].tag, failure, out_of_memory=False)
            return
        self.splits += 1
        half = len(group) // 2
        logger.warning(
            "%s on %d joining rows; retrying as %d + %d",
            "Out of memory" if out_of_memory else f"{type(failure).__name__}: {failure}",
            len(group), half, len(group) - half,
        )  # fmt: skip
        for part in (group[:half], group[half:]):
            if out_of_memory and self.active + len(part) > self.row_cap:
                self._wait(part)  # no room now; they join when rows leave
            else:
                self._join(part)

    def _wait(self, entries: list[_Entry]) -> None:
        """Back to the waiting rows (their slots, if any, are given up)."""
        for entry in entries:
            entry.slot = None
        self.pending.extend(entries)
        self._dirty = True

    def _inject_faults(self, group: list[_Entry]) -> None:
        """Faults from settings, for tests and drills (see LoadedGenerator.generate)."""
        limit = self.faults.get("fail_when_top_k_above")
        if limit is not None and any(e.row.sampling.top_k > int(limit) for e in group):
            raise OverflowError(f"injected: a row's top_k is above {limit}")
        limit = self.faults.get("oom_above_rows")
        rows = self.active + len(group)
        if limit is not None and rows > int(limit):
            raise GenerationOutOfMemory(
                f"CUDA out of memory (injected: batch of {rows} rows > {limit})"
            )

    def _arrange(self, joining: list[_Entry]) -> None:
        """Give `joining` free slots, drafts first: drafts fill [0, D), candidates [D, D + C).

        Rows already in their part stay; the others move into the free slots of their part,
        so each change moves as few rows as it can.
        """
        engine = self.engine
        running = [e for e in engine.occupant if e is not None]
        drafts = [e for e in running + joining if e.row.draft]
        candidates = [e for e in running + joining if not e.row.draft]
        sources: list[int] = []
        targets: list[int] = []
        for group, low in ((drafts, 0), (candidates, len(drafts))):
            high = low + len(group)
            kept = {e.slot for e in group if e.slot is not None and low <= e.slot < high}
            free = iter(s for s in range(low, high) if s not in kept)
            for entry in group:
                if entry.slot is not None and low <= entry.slot < high:
                    continue
                slot = next(free)
                if entry.slot is not None:
                    sources.append(entry.slot)
                    targets.append(slot)
                else:
                    entry.slot = slot
        engine.move(sources, targets)
        self._dirty = False

    # --- decoding --------------------------------------------------------------------------------

    def _decode(self, kind: str) -> str | None:
        """One step (of the drafts alone, or of every row): the kind it was, None if it
        failed."""
        import torch

        engine = self.engine
        rows = engine.running_drafts if kind == DRAFT else engine.running
        if not rows:  # the drafts finished as they joined
            kind, rows = FULL, engine.running
        ended, failure, out_of_memory = self._attempt(lambda: engine.step(rows))
        if failure is not None:
            if out_of_memory and engine.is_cuda:
                torch.cuda.empty_cache()
            if self.strict:
                raise failure
            self._step_failed(failure, out_of_memory, rows)
            return None
        self.steps += 1
        self._finish(ended)
        return kind

    def _step_failed(self, failure: BaseException, out_of_memory: bool, rows: int) -> None:
        """Halve what the failed step decoded: the later half goes back to wait (it starts
        again from its prompt); a row or tag that fails alone fails for good."""
        running = [e for e in self.engine.occupant[:rows] if e is not None]
        tags = {e.tag for e in running}
        alone = len(running) == 1 or (not out_of_memory and len(tags) == 1)
        if alone:
            reason = (
                GenerationOutOfMemory(f"Out of memory even for a single sample: {failure}")
                if out_of_memory
                else failure
            )
            self._fail(running[0].tag, reason, out_of_memory=out_of_memory)
            return
        self.splits += 1
        later = sorted(running, key=lambda e: e.order)[len(running) // 2 :]
        if out_of_memory:
            self.row_cap = max(1, self.active - len(later))
        logger.warning(
            "%s in a step of %d rows; %d rows wait and start again",
            "Out of memory" if out_of_memory else f"{type(failure).__name__}: {failure}",
            len(running), len(later),
        )  # fmt: skip
        self.engine.release([e.slot for e in later])
        self._wait(later)

    def _finish(self, slots: list[int]) -> None:
        if not slots:
            return
        entries = [self.engine.occupant[s] for s in slots]
        tokens = self.engine.harvest(slots)
        texts = self.decode(tokens)
        for entry, ids, text in zip(entries, tokens, texts, strict=True):
            if entry.tag in self._failed:
                continue
            sample = Sample(text=text.strip(), completion_tokens=len(ids))
            self._outcome.finished.append(Finished(entry.tag, entry.row, sample))
        self._dirty = True

    def _fail(self, tag: Hashable, error: BaseException, *, out_of_memory: bool) -> None:
        """Fail every row of `tag`, waiting or running."""
        if tag in self._failed:
            return
        self._failed.add(tag)
        self._outcome.failed.append(Failed(tag, error, out_of_memory))
        for entry in self.pending:
            if entry.tag == tag:
                entry.slot = None
        self.pending = [e for e in self.pending if e.tag != tag]
        if self._open:
            held = [s for s, e in enumerate(self.engine.occupant) if e is not None and e.tag == tag]
            self.engine.release(held)
            self._dirty = True
