"""How drafts and candidates share a session's steps, from the session's measurements."""

import pytest

from trainer_bridge.decoding import EngineSettings
from trainer_bridge.sharing import DRAFT, FULL, MAX_DRAFT_STREAK, StepSharing


def _measured(draft: float, full: float, **settings) -> StepSharing:
    sharing = StepSharing(EngineSettings(**settings))
    sharing.stepped(DRAFT, seconds=draft * 3, decoding=draft)  # a draft step's joining: not counted
    sharing.stepped(FULL, seconds=full, decoding=full / 2)
    return sharing


def test_draft_steps_per_full_step_keep_a_draft_at_two_thirds_of_its_idle_speed():
    assert StepSharing(EngineSettings()).draft_steps_per_bulk_step == 1  # nothing measured yet
    # (k x 2 ms + 10 ms) / (k + 1) <= 3 ms: k = 2 x 10 / 2 - 3 = 7.
    assert _measured(0.002, 0.010).draft_steps_per_bulk_step == 7
    assert _measured(0.002, 0.002).draft_steps_per_bulk_step == 1
    assert _measured(0.001, 10.0).draft_steps_per_bulk_step == MAX_DRAFT_STREAK
    assert _measured(0.002, 0.010, draft_steps_per_bulk_step=2).draft_steps_per_bulk_step == 2


def test_a_streak_of_draft_steps_then_a_full_one_and_a_joining_draft_steps_at_once():
    sharing = StepSharing(EngineSettings(draft_steps_per_bulk_step=3))

    def kinds(count, **running):
        return [sharing.next_kind(**running) for _ in range(count)]

    both = {"drafts": 1, "candidates": 4, "draft_joins": False}
    assert kinds(8, **both) == [DRAFT] * 3 + [FULL] + [DRAFT] * 3 + [FULL]
    assert kinds(3, **both) == [DRAFT] * 3
    # A draft joining when the batch's turn has come takes a step of its own first; the batch
    # keeps its turn, next.
    assert kinds(1, drafts=1, candidates=4, draft_joins=True) == [DRAFT]
    assert kinds(2, **both) == [FULL, DRAFT]
    # With one kind running there is nothing to share; a draft joining an idle session or a
    # session of drafts joins before the step of everyone.
    assert kinds(3, drafts=0, candidates=4, draft_joins=False) == [FULL] * 3
    assert kinds(2, drafts=2, candidates=0, draft_joins=True) == [FULL] * 2


@pytest.mark.parametrize(
    ("settings", "running", "tokens"),
    [
        ({}, 30, 16384 // 8),  # nothing measured: an eighth of the prefill budget
        ({"prefill_tokens": 64}, 3, 8),
        ({"draft_prefill_tokens": 40}, 3, 40),  # fixed
        ({"draft_prefill_tokens": 40}, 300, 300),  # never fewer tokens than rows running
    ],
)
def test_a_candidates_slice_before_anything_is_measured_or_when_fixed(settings, running, tokens):
    assert StepSharing(EngineSettings(**settings)).slice_tokens(running=running) == tokens


def test_a_candidates_slice_is_a_step_s_decoding_time_of_prefill():
    sharing = StepSharing(EngineSettings())
    sharing.prefilled(tokens=1000, seconds=0.5)
    sharing.stepped(FULL, seconds=0.02, decoding=0.01)
    assert sharing.prefill_rate == 2000
    assert sharing.step_seconds == {DRAFT: 0.0, FULL: 0.02, "decode": 0.01}
    assert sharing.slice_tokens(running=5) == 20  # 2,000 tokens/s for 10 ms
    assert sharing.slice_tokens(running=30) == 30
    # Recent measurements weigh most: four fifths of what came before, one of what is new.
    sharing.prefilled(tokens=9000, seconds=0.5)
    assert sharing.prefill_rate == pytest.approx((0.8 * 1000 + 9000) / (0.8 * 0.5 + 0.5))
    sharing.stepped(FULL, seconds=0.04, decoding=0.02)
    assert sharing.step_seconds["decode"] == pytest.approx(0.8 * 0.01 + 0.2 * 0.02)
    # A very fast prefill still joins no more than the prefill's token budget at once.
    sharing.prefilled(tokens=10**9, seconds=0.001)
    assert sharing.slice_tokens(running=5) == 16384
