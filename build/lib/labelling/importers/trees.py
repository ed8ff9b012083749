"""Open Assistant message trees: check every node, store the messages and their rankings."""

from __future__ import annotations

import re
from collections import defaultdict, deque
from dataclasses import dataclass, field

from django.db import transaction

from annotations.imports import (
    ImportedConversation,
    ImportedMessage,
    ImportedRanking,
    conversations_import_bulk,
    conversations_import_lock,
)
from annotations.models import Conversation, Message, ModelVersion, Project
from annotations.selectors import conversation_external_ids
from annotations.services import NEXT_ROLES, a_turn
from labelling.importers.provenance import Provenance
from labelling.importers.reading import (
    ImportRules,
    file_lines,
    is_storable,
    json_kind,
    lang_field,
    load_json_line,
    text_field,
)
from labelling.importers.report import ImportProblem, ImportReport

OA_ROLES = {"prompter": Message.Role.USER, "assistant": Message.Role.ASSISTANT}
# What an Open Assistant node keeps in Message.meta besides what has a column of its own.
OA_META_KEYS = (
    "review_count",
    "review_result",
    "deleted",
    "synthetic",
    "model_name",
    "rank",
    "emojis",
)
EXTERNAL_ID_MAX = Message._meta.get_field("external_id").max_length
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")  # ModelVersion.name's validator
MODEL_NAME_MAX = ModelVersion._meta.get_field("name").max_length
LONG_ID = f"longer than {EXTERNAL_ID_MAX} characters"


@dataclass
class Node:
    """One message of a tree, checked."""

    parent: int | None  # index in the tree's nodes
    role: str
    text: str
    lang: str
    depth: int
    external_id: str
    is_synthetic: bool
    model_name: str | None
    rank: int | None
    meta: dict


@dataclass
class Tree:
    """One line of the file: a message tree, checked."""

    line: int
    tree_id: str
    state: str | None
    nodes: list[Node] = field(default_factory=list)  # breadth first: parents before children


def trees_import(
    *,
    project: Project,
    text: str,
    bad_lines: set[int],
    rules: ImportRules,
    provenance: Provenance,
    report: ImportReport,
) -> None:
    """Check every tree of an Open Assistant file; store them if none has a problem."""
    trees = _parse_oasst(text, bad_lines, rules, report)
    if report.ok:
        _store_trees(project, trees, provenance, report)


def _parse_oasst(text: str, bad_lines: set[int], rules: ImportRules, report: ImportReport):
    problems = report.errors
    trees: list[Tree] = []
    tree_ids: set[str] = set()
    message_lines: dict[str, int] = {}  # every message id in the file -> its line
    for number, line in file_lines(text, bad_lines):
        value, ok = load_json_line(line, number, problems)
        if not ok:
            continue
        if not isinstance(value, dict):
            kind = json_kind(value)
            problems.append(ImportProblem(number, f"expected a message tree object, got {kind}"))
            continue
        tree_id = text_field(value, "message_tree_id", number, problems, rules)
        if tree_id is not None and len(tree_id) > EXTERNAL_ID_MAX:
            problems.append(ImportProblem(number, LONG_ID, "message_tree_id"))
            tree_id = None
        state = value.get("tree_state")
        if state is not None and not (isinstance(state, str) and is_storable(state)):
            problems.append(ImportProblem(number, "expected a string", "tree_state"))
        root = value.get("prompt")
        if not isinstance(root, dict):
            why = "missing" if root is None else f"expected an object, got {json_kind(root)}"
            problems.append(ImportProblem(number, why, "prompt"))
        elif tree_id in tree_ids:
            report.duplicates += 1  # the same tree twice in one file
        elif tree_id is not None:
            tree_ids.add(tree_id)
            tree = Tree(line=number, tree_id=tree_id, state=state)
            report.deleted += _walk(tree, root, rules, message_lines, problems)
            trees.append(tree)
    return trees


def _walk(tree: Tree, root: dict, rules: ImportRules, message_lines: dict, problems: list) -> int:
    """Check the tree's nodes breadth first into `tree.nodes`; the number of deleted messages.

    Field names in problems are paths such as `prompt.replies[1].text`. A deleted node is left
    out with its replies; a broken node is reported and its replies are not checked.
    """
    line, deleted = tree.line, 0
    queue: deque = deque([(root, None, "prompt.")])
    while queue:
        raw, parent, path = queue.popleft()
        before = len(problems)

        def bad(message: str, name: str, path: str = path) -> None:
            problems.append(ImportProblem(line, message, path + name))

        if not isinstance(raw, dict):
            bad(f"expected an object, got {json_kind(raw)}", "", path[:-1])
            continue
        if raw.get("deleted") is True:
            deleted += _count_nodes(raw)
            continue
        message_id = text_field(raw, "message_id", line, problems, rules, path=path)
        if message_id is not None and len(message_id) > EXTERNAL_ID_MAX:
            bad(LONG_ID, "message_id")
        elif message_id in message_lines:
            bad(f"{message_id} also appears on line {message_lines[message_id]}", "message_id")
        elif message_id is not None:
            message_lines[message_id] = line
        text = text_field(raw, "text", line, problems, rules, path=path)
        lang = lang_field(raw, line, problems, rules, path=path)
        above = tree.nodes[parent] if parent is not None else None
        role = OA_ROLES.get(raw.get("role"))
        if role is None:
            bad(f"expected 'prompter' or 'assistant', got {raw.get('role')!r}", "role")
        elif role not in NEXT_ROLES[above.role if above else None]:
            after = f"after {a_turn(above.role)}" if above else "as the first turn"
            bad(f"{a_turn(role)} cannot come {after}", "role")
        parent_id = raw.get("parent_id")
        if above and parent_id is not None and parent_id != above.external_id:
            bad(f"{parent_id!r} is not the message it replies to", "parent_id")
        rank = raw.get("rank")
        if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int)):
            bad(f"expected a whole number or null, got {json_kind(rank)}", "rank")
        # A model-written message gets the model as its author, registered by this name.
        synthetic = raw.get("synthetic") is True
        model_name = raw.get("model_name") if synthetic else None
        if model_name is not None and not (
            isinstance(model_name, str)
            and len(model_name) <= MODEL_NAME_MAX
            and MODEL_NAME.match(model_name)
        ):
            bad(f"{model_name!r} is not a valid model name", "model_name")
        replies = raw.get("replies") or []
        if not isinstance(replies, list):
            bad(f"expected an array, got {json_kind(replies)}", "replies")
        meta = {key: raw[key] for key in OA_META_KEYS if key in raw}
        if not is_storable(meta):
            why = "a review field holds a NUL, a broken \\u escape or a non-finite number"
            bad(why, "", path[:-1])
        if len(problems) > before:
            continue
        tree.nodes.append(
            Node(
                parent=parent,
                role=role,
                text=text,
                lang=lang,
                depth=above.depth + 1 if above else 0,
                external_id=message_id,
                is_synthetic=synthetic,
                model_name=model_name,
                rank=rank,
                meta=meta,
            )
        )
        index = len(tree.nodes) - 1
        queue.extend((reply, index, f"{path}replies[{i}].") for i, reply in enumerate(replies))
    return deleted


def _count_nodes(raw) -> int:
    count, stack = 0, [raw]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            count += 1
            replies = node.get("replies")
            if isinstance(replies, list):
                stack.extend(replies)
    return count


def ranked_groups(nodes: list[Node]) -> dict[int, list[int]]:
    """Parent index -> indices of its replies that carry a rank, where two or more do."""
    ranked: dict[int, list[int]] = defaultdict(list)
    for index, node in enumerate(nodes):
        if node.parent is not None and node.rank is not None:
            ranked[node.parent].append(index)
    return {parent: children for parent, children in ranked.items() if len(children) >= 2}


def _store_trees(
    project: Project, trees: list[Tree], provenance: Provenance, report: ImportReport
) -> None:
    with transaction.atomic():
        conversations_import_lock(project=project)
        existing = set(conversation_external_ids(project=project))
        fresh = [tree for tree in trees if tree.tree_id not in existing and tree.nodes]
        report.duplicates += sum(1 for tree in trees if tree.tree_id in existing)
        counts = conversations_import_bulk(
            project=project,
            source=Conversation.Source.IMPORT,
            conversations=[
                ImportedConversation(
                    messages=[
                        ImportedMessage(
                            role=node.role,
                            text=node.text,
                            lang=node.lang,
                            parent=node.parent,
                            external_id=node.external_id,
                            model=node.model_name,
                            synthetic=node.is_synthetic,
                            meta=node.meta,
                        )
                        for node in tree.nodes
                    ],
                    external_id=tree.tree_id,
                    meta=provenance.meta(tree.line, {"tree_state": tree.state}),
                    rankings=_rankings(tree),
                )
                for tree in fresh
            ],
        )
    report.imported = report.conversations = counts.conversations
    report.messages += counts.messages
    report.ranking_sets = counts.ranking_sets


def _rankings(tree: Tree) -> list[ImportedRanking]:
    """Wherever two or more replies carry a rank: a ranking of them, best first; replies with
    equal ranks form one tie group."""
    rankings = []
    for parent, children in ranked_groups(tree.nodes).items():
        ranks = sorted({tree.nodes[i].rank for i in children})
        order = [[i for i in children if tree.nodes[i].rank == rank] for rank in ranks]
        rankings.append(ImportedRanking(context=parent, candidates=children, order=order))
    return rankings
