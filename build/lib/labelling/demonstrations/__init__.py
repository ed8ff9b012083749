"""Demonstration tasks: a trainer writes both sides of a dialogue, with model drafts on request.

Work in progress lives in `Task.autosave` as {"turns": [{"role", "content", "draft_id"}],
"editor", "editor_draft_id"}; the submission is {"turns": [...]}. Turns saved before messages
said `content` say `text`, and are still read. The turns
continue the task's anchor (`Task.message`): a seed prompt from the pool, the last turn of a
conversation being continued, or nothing for a blank task, whose first turn is the user's.

Drafts need their context stored as messages, so asking for one stores the turns written so far
as *scratch* messages, marked `meta["scratch_for_task"] = task id`, on the branch the
demonstration will be stored on: under the anchor in its conversation, or in a new conversation
(marked the same way) for a blank task. The draft is a model-written child of the last scratch
turn. On submit the scratch turns holding the submitted ones become the stored dialogue (markers
removed, authored by the submitter), so every draft, taken or not, stays a model-written sibling
of the reply the trainer wrote; scratch the submission did not use (earlier versions of edited
turns, with their drafts) is deleted. A skip deletes the task's scratch unless the
project hands autosaves on; after an expired lease it stays marked until the task is next
claimed (page or API), which deletes it unless the autosave was handed on too. Exports must
leave out anything marked `scratch_for_task`.
"""

from labelling.demonstrations.autosave import demonstration_autosave
from labelling.demonstrations.dialogue import (
    ASSISTANT,
    KIND,
    MAX_AUTOSAVED_TURNS,
    ROLES,
    SCRATCH_KEY,
    USER,
    Turn,
    anchor_thread,
    edit_distance,
    first_role,
    next_role,
    parse_state,
    parse_turns,
    state_from_autosave,
    submitted_thread,
    turn_errors,
    turns_allowed,
)
from labelling.demonstrations.drafts import (
    current_draft,
    demonstration_draft_request,
    draft_belongs_to_task,
    scratch_prune,
    task_draft_request,
)
from labelling.demonstrations.kind import (
    demonstration_describe,
    demonstration_eligible,
    demonstration_on_claim,
    demonstration_on_skip,
    demonstration_submit,
    demonstration_supply,
)

__all__ = [
    "ASSISTANT",
    "KIND",
    "MAX_AUTOSAVED_TURNS",
    "ROLES",
    "SCRATCH_KEY",
    "USER",
    "Turn",
    "anchor_thread",
    "edit_distance",
    "first_role",
    "next_role",
    "parse_state",
    "parse_turns",
    "state_from_autosave",
    "submitted_thread",
    "turn_errors",
    "turns_allowed",
    "current_draft",
    "demonstration_draft_request",
    "draft_belongs_to_task",
    "scratch_prune",
    "task_draft_request",
    "demonstration_autosave",
    "demonstration_describe",
    "demonstration_eligible",
    "demonstration_on_claim",
    "demonstration_on_skip",
    "demonstration_submit",
    "demonstration_supply",
]
