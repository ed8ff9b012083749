"""How drafts and candidates share a decoding session's steps, from what the session measures.

A draft has a trainer waiting; candidates are bulk. While both run, the session decodes the
drafts alone for several steps per step of the whole batch: as many as keep a draft's tokens at
least two thirds as fast as on an idle worker, from the measured times of both kinds of step. A
draft arriving at a running batch joins alone and takes its first step at once. Candidates join
only before a step of the whole batch, and while a draft runs a slice at a time: about as many
prompt tokens as the measured prefill rate encodes in the time one step of the whole batch
takes to decode, so a draft never waits behind a long prefill.

Pure bookkeeping: no torch, no rows; the session (trainer_bridge.continuous) asks and reports.
"""

from __future__ import annotations

import math

from trainer_bridge.decoding import EngineSettings

# Most draft-only steps between two steps of the whole batch.
MAX_DRAFT_STREAK = 64
# Until the session has measured its prefill rate and steps, a candidates' slice is this share
# of the prefill token budget.
DRAFT_PREFILL_SHARE = 8
# Weight of what came before in the moving averages of step times and the prefill rate.
HISTORY = 0.8

DRAFT, FULL = "draft", "full"


class StepSharing:
    """The next kind of step, the draft-only steps per full step and the candidates' slice, from
    the settings (which may fix them) and the session's measurements."""

    def __init__(self, settings: EngineSettings) -> None:
        self.settings = settings
        self._streak = 0
        self._seconds = {DRAFT: 0.0, FULL: 0.0, "decode": 0.0}
        self._prefilled = (0.0, 0.0)  # decaying sums of prompt tokens prefilled and seconds

    # --- what the session reports ----------------------------------------------------------------

    def stepped(self, kind: str, *, seconds: float, decoding: float) -> None:
        """A step of `kind` took `seconds` with its rows' joining, `decoding` without."""
        if kind == FULL:
            self._average(FULL, seconds)
            self._average("decode", decoding)
        else:
            # Without the drafts' joining, which a draft-only step seldom has.
            self._average(DRAFT, decoding)

    def prefilled(self, *, tokens: int, seconds: float) -> None:
        """A prefill of `tokens` prompt tokens took `seconds`."""
        total, spent = self._prefilled
        self._prefilled = (HISTORY * total + tokens, HISTORY * spent + seconds)

    def _average(self, name: str, seconds: float) -> None:
        previous = self._seconds[name]
        self._seconds[name] = (
            seconds if not previous else HISTORY * previous + (1 - HISTORY) * seconds
        )

    # --- what it asks ----------------------------------------------------------------------------

    @property
    def step_seconds(self) -> dict[str, float]:
        """Moving averages in seconds (0 until measured) of a draft-only step ("draft"), of a
        step of the whole batch with its rows' joining ("full"), and of that step's decoding
        alone ("decode")."""
        return dict(self._seconds)

    @property
    def prefill_rate(self) -> float:
        """Prompt tokens a second the session's prefills have encoded (recent ones weigh
        most); 0 until measured."""
        tokens, seconds = self._prefilled
        return tokens / seconds if seconds else 0.0

    @property
    def draft_steps_per_bulk_step(self) -> int:
        """Draft-only steps per step of the whole batch: enough that a draft's tokens come at
        least 2/3 as fast as alone, (k * draft + full) / (k + 1) <= 1.5 * draft."""
        if self.settings.draft_steps_per_bulk_step:
            return self.settings.draft_steps_per_bulk_step
        draft, full = self._seconds[DRAFT], self._seconds[FULL]
        if not draft or not full:
            return 1
        return max(1, min(MAX_DRAFT_STREAK, math.ceil(2 * full / draft - 3)))

    def next_kind(self, *, drafts: int, candidates: int, draft_joins: bool) -> str:
        """DRAFT for a step of the drafts alone, FULL for one of the whole batch, with `drafts`
        and `candidates` rows running and `draft_joins` when a waiting draft can join now."""
        if candidates and draft_joins:
            # It joins alone and takes its first step at once, not with the candidates'
            # joining and a step of the whole batch; the batch keeps its turn.
            return DRAFT
        if drafts and candidates and self._streak < self.draft_steps_per_bulk_step:
            self._streak += 1
            return DRAFT
        self._streak = 0
        return FULL

    def slice_tokens(self, *, running: int) -> int:
        """Prompt tokens of candidates that may join before one step of the whole batch while
        a draft runs (at least as many as rows running)."""
        settings = self.settings
        rate, decode = self.prefill_rate, self._seconds["decode"]
        if settings.draft_prefill_tokens:
            tokens = settings.draft_prefill_tokens
        elif rate and decode:
            tokens = min(int(rate * decode), settings.prefill_tokens)
        else:
            tokens = settings.prefill_tokens // DRAFT_PREFILL_SHARE
        return max(tokens, running)
