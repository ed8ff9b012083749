"""Open Assistant message trees: check every node, store the messages and their rankings."""

from __future__ import annotations

import re
from collections import defaultdict, deque
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from annotations.models import (
    Conversation,
    Message,
    ModelVersion,
    Project,
    Ranking,
    RankingCandidate,
    RankingSet,
)
from annotations.services import NEXT_ROLES
from labelling.importers.bulk import BATCH_SIZE, _lock
from labelling.importers.common import (
    ImportProblem,
    ImportReport,
    _kind,
    _lang_field,
    _lines,
    _load_json,
    _Rules,
    _storable,
    _text_field,
)

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
class _Node:
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
    pk: int | None = None


@dataclass
class _Tree:
    line: int
    tree_id: str
    state: str | None
    nodes: list[_Node] = field(default_factory=list)  # breadth first: parents before children


def _parse_oasst(text: str, bad_lines: set[int], rules: _Rules, report: ImportReport):
    problems = report.errors
    trees: list[_Tree] = []
    tree_ids: set[str] = set()
    message_lines: dict[str, int] = {}  # every message id in the file -> its line
    for number, line in _lines(text, bad_lines):
        value, ok = _load_json(line, number, problems)
        if not ok:
            continue
        if not isinstance(value, dict):
            kind = _kind(value)
            problems.append(ImportProblem(number, f"expected a message tree object, got {kind}"))
            continue
        tree_id = _text_field(value, "message_tree_id", number, problems, rules)
        if tree_id is not None and len(tree_id) > EXTERNAL_ID_MAX:
            problems.append(ImportProblem(number, LONG_ID, "message_tree_id"))
            tree_id = None
        state = value.get("tree_state")
        if state is not None and not (isinstance(state, str) and _storable(state)):
            problems.append(ImportProblem(number, "expected a string", "tree_state"))
        root = value.get("prompt")
        if not isinstance(root, dict):
            why = "missing" if root is None else f"expected an object, got {_kind(root)}"
            problems.append(ImportProblem(number, why, "prompt"))
        elif tree_id in tree_ids:
            report.duplicates += 1  # the same tree twice in one file
        elif tree_id is not None:
            tree_ids.add(tree_id)
            tree = _Tree(line=number, tree_id=tree_id, state=state)
            report.deleted += _walk(tree, root, rules, message_lines, problems)
            trees.append(tree)
    return trees


def _walk(tree: _Tree, root: dict, rules: _Rules, message_lines: dict, problems: list) -> int:
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
            bad(f"expected an object, got {_kind(raw)}", "", path[:-1])
            continue
        if raw.get("deleted") is True:
            deleted += _count_nodes(raw)
            continue
        message_id = _text_field(raw, "message_id", line, problems, rules, path=path)
        if message_id is not None and len(message_id) > EXTERNAL_ID_MAX:
            bad(LONG_ID, "message_id")
        elif message_id in message_lines:
            bad(f"{message_id} also appears on line {message_lines[message_id]}", "message_id")
        elif message_id is not None:
            message_lines[message_id] = line
        text = _text_field(raw, "text", line, problems, rules, path=path)
        lang = _lang_field(raw, line, problems, rules, path=path)
        above = tree.nodes[parent] if parent is not None else None
        role = OA_ROLES.get(raw.get("role"))
        if role is None:
            bad(f"expected 'prompter' or 'assistant', got {raw.get('role')!r}", "role")
        elif role not in NEXT_ROLES[above.role if above else None]:
            after = f"after a {above.role} turn" if above else "as the first turn"
            bad(f"a {role} turn cannot come {after}", "role")
        parent_id = raw.get("parent_id")
        if above and parent_id is not None and parent_id != above.external_id:
            bad(f"{parent_id!r} is not the message it replies to", "parent_id")
        rank = raw.get("rank")
        if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int)):
            bad(f"expected a whole number or null, got {_kind(rank)}", "rank")
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
            bad(f"expected an array, got {_kind(replies)}", "replies")
        meta = {key: raw[key] for key in OA_META_KEYS if key in raw}
        if not _storable(meta):
            why = "a review field holds a NUL, a broken \\u escape or a non-finite number"
            bad(why, "", path[:-1])
        if len(problems) > before:
            continue
        tree.nodes.append(
            _Node(
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


def ranked_groups(nodes: list[_Node]) -> dict[int, list[int]]:
    """Parent index -> indices of its replies that carry a rank, where two or more do."""
    ranked: dict[int, list[int]] = defaultdict(list)
    for index, node in enumerate(nodes):
        if node.parent is not None and node.rank is not None:
            ranked[node.parent].append(index)
    return {parent: children for parent, children in ranked.items() if len(children) >= 2}


def _store_trees(project: Project, trees: list[_Tree], context: dict, report: ImportReport):
    with transaction.atomic():
        _lock(project)
        existing = set(
            Conversation.objects.filter(project=project)
            .exclude(external_id="")
            .values_list("external_id", flat=True)
        )
        fresh = [tree for tree in trees if tree.tree_id not in existing and tree.nodes]
        report.duplicates += sum(1 for tree in trees if tree.tree_id in existing)
        models = {
            name: ModelVersion.objects.get_or_create(
                name=name,
                defaults={"kind": ModelVersion.Kind.POLICY, "source": name, "notes": "imported"},
            )[0]
            for name in sorted({n.model_name for t in fresh for n in t.nodes if n.model_name})
        }
        conversations = Conversation.objects.bulk_create(
            [
                Conversation(
                    project=project,
                    source=Conversation.Source.IMPORT,
                    external_id=tree.tree_id,
                    meta={
                        "tree_state": tree.state,
                        "dataset": report.dataset,
                        "import": {**context, "line": tree.line},
                    },
                )
                for tree in fresh
            ],
            batch_size=BATCH_SIZE,
        )
        # Level by level: the database insists that a parent exists (in the same conversation)
        # before its replies, and each level's ids come back from its bulk insert.
        levels: dict[int, list[tuple[_Tree, _Node, int]]] = defaultdict(list)
        for tree, conversation in zip(fresh, conversations, strict=True):
            for node in tree.nodes:
                levels[node.depth].append((tree, node, conversation.pk))
        for depth in sorted(levels):
            rows = levels[depth]
            created = Message.objects.bulk_create(
                [
                    Message(
                        conversation_id=conversation_id,
                        parent_id=tree.nodes[node.parent].pk if node.parent is not None else None,
                        role=node.role,
                        text=node.text,
                        lang=node.lang,
                        depth=node.depth,
                        author_model=models.get(node.model_name),
                        is_synthetic=node.is_synthetic,
                        external_id=node.external_id,
                        meta=node.meta,
                    )
                    for tree, node, conversation_id in rows
                ],
                batch_size=BATCH_SIZE,
            )
            for (_, node, _), message in zip(rows, created, strict=True):
                node.pk = message.pk
            report.messages += len(created)
        _store_rankings(project, fresh, report)
    report.imported = report.conversations = len(fresh)


def _store_rankings(project: Project, trees: list[_Tree], report: ImportReport) -> None:
    now = timezone.now()
    sets, orders = [], []
    for tree in trees:
        for parent, children in ranked_groups(tree.nodes).items():
            ranks = sorted({tree.nodes[i].rank for i in children})
            # Best first; replies with equal ranks form one tie group.
            order = [[tree.nodes[i].pk for i in children if tree.nodes[i].rank == r] for r in ranks]
            candidates = [tree.nodes[i].pk for i in children]
            sets.append(
                RankingSet(
                    project=project,
                    context_id=tree.nodes[parent].pk,
                    state=RankingSet.State.COMPLETE,
                    rankings_needed=1,
                    rankings_count=1,
                    consensus=order,
                    completed_at=now,
                )
            )
            orders.append((order, candidates))
    created = RankingSet.objects.bulk_create(sets, batch_size=BATCH_SIZE)
    RankingCandidate.objects.bulk_create(
        [
            RankingCandidate(
                ranking_set_id=ranking_set.pk, message_id=message_id, position=position
            )
            for ranking_set, (_, candidates) in zip(created, orders, strict=True)
            for position, message_id in enumerate(candidates)
        ],
        batch_size=BATCH_SIZE,
    )
    Ranking.objects.bulk_create(
        [
            Ranking(ranking_set_id=ranking_set.pk, annotator=None, order=order)
            for ranking_set, (order, _) in zip(created, orders, strict=True)
        ],
        batch_size=BATCH_SIZE,
    )
    report.ranking_sets = len(created)
