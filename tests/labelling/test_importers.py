"""Prompt and message-tree imports: every format, duplicates, refused files, the command."""

import json
from io import StringIO
from itertools import combinations

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import override_settings

from annotations import imports
from annotations.models import (
    Conversation,
    Message,
    ModelVersion,
    Ranking,
    RankingCandidate,
    RankingSet,
)
from annotations.selectors import prompt_pool
from annotations.services import conversation_start
from labelling import importers
from labelling.importers import normalise, prompt_file_import
from tests.shared_data import PROMPTS, TREES, shared

pytestmark = pytest.mark.django_db


def run(project, text: str | bytes, filename: str = "prompts.jsonl", **kwargs):
    data = text.encode() if isinstance(text, str) else text
    return prompt_file_import(project=project, source=data, filename=filename, **kwargs)


class Raw(str):
    """A line written as is, not as JSON."""


def lines(*rows) -> str:
    """JSONL: each row as JSON, except Raw lines."""
    return "\n".join(row if isinstance(row, Raw) else json.dumps(row) for row in rows) + "\n"


def pool_texts(project) -> list[str]:
    return sorted(prompt_pool(project=project).values_list("text", flat=True))


def problems(report) -> list[str]:
    return [str(problem) for problem in report.errors]


# --- JSONL and CSV prompts ----------------------------------------------------------------------


def test_jsonl_objects_and_bare_strings_become_pool_prompts(project, lead):
    project.languages = ["de", "en"]
    project.save()
    text = lines(
        {"prompt": "  How do I repot a cactus?  ", "lang": "en", "tags": ["plants", " care "]},
        "Wie backe ich Brot?",
        Raw(""),
        {"prompt": "Plan a picnic.", "tags": None, "lang": None, "source": "ignored"},
    )
    report = run(project, text, user=lead)

    assert report.ok and report.format == "jsonl"
    assert (report.imported, report.duplicates, report.conversations, report.messages) == (
        3,
        0,
        3,
        3,
    )
    pool = {m.text: m for m in prompt_pool(project=project).select_related("conversation")}
    assert set(pool) == {"How do I repot a cactus?", "Wie backe ich Brot?", "Plan a picnic."}
    cactus = pool["How do I repot a cactus?"]
    assert (cactus.role, cactus.depth, cactus.parent, cactus.lang) == ("user", 0, None, "en")
    assert cactus.author_user is None and cactus.author_model is None
    assert cactus.conversation.source == "prompt" and cactus.conversation.project == project
    assert cactus.conversation.meta["tags"] == ["plants", "care"]
    assert cactus.conversation.meta["import"] | {"batch": "-"} == {
        "file": "prompts.jsonl",
        "format": "jsonl",
        "line": 1,
        "by": lead.pk,
        "batch": "-",
    }
    # No language given: the project's first language.
    assert pool["Wie backe ich Brot?"].lang == "de"
    assert pool["Plan a picnic."].conversation.meta["import"]["line"] == 4
    assert Conversation.objects.filter(project=project).count() == 3


def test_csv_with_a_prompt_column(project):
    text = (
        '\ufeff"Prompt",lang,tags\n'
        '"Write a limerick about a cat",en,"poetry; cats"\n'
        '"A prompt with a comma, and\na line break",fr,\n'
        "\n"
        "Short one,,\n"
    )
    report = run(project, text, filename="batch.csv")
    assert report.ok and (report.format, report.imported) == ("csv", 3)
    texts = pool_texts(project)
    assert texts == sorted(
        ["Write a limerick about a cat", "A prompt with a comma, and\na line break", "Short one"]
    )
    limerick = prompt_pool(project=project).get(text__startswith="Write a limerick")
    assert limerick.conversation.meta["tags"] == ["poetry", "cats"]
    assert prompt_pool(project=project).get(text__startswith="A prompt").lang == "fr"
    assert prompt_pool(project=project).get(text="Short one").lang == "en"
    # Line numbers are where each record starts.
    assert (
        prompt_pool(project=project).get(text="Short one").conversation.meta["import"]["line"] == 6
    )


def test_csv_delimiter_is_read_from_the_header(project):
    report = run(project, "id;prompt\n1;Name three rivers; in Africa\n", filename="p.csv")
    assert not report.ok
    assert problems(report) == ["line 2: 3 fields where the header has 2"]
    report = run(project, 'id;prompt\n1;"Name three rivers; in Africa"\n', filename="p.csv")
    assert report.ok and pool_texts(project) == ["Name three rivers; in Africa"]


@pytest.mark.parametrize(
    ("filename", "text", "expected"),
    [
        ("prompts.jsonl", '"Hello"\n', "jsonl"),
        ("prompts.txt", '{"prompt": "Hello"}\n', "jsonl"),
        ("prompts", '"Hello"\n', "jsonl"),
        ("prompts.txt", '"prompt","lang"\n"Hello","en"\n', "csv"),
        ("prompts", "prompt\nHello\n", "csv"),
        ("export", '{"message_tree_id": "t1", "prompt": {"message_id": "t1"}}\n', "oasst"),
    ],
)
def test_format_is_detected_from_name_and_first_line(filename, text, expected):
    assert importers.detect_format(filename, text) == expected


def test_an_explicit_format_wins(project):
    report = run(project, '"Hello there"\n', filename="prompts.csv", fmt="jsonl")
    assert report.ok and pool_texts(project) == ["Hello there"]
    assert not run(project, "x", fmt="xml").ok


def test_shared_prompt_file_imports_with_duplicates_counted(project):
    path = shared(PROMPTS)
    raw = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    distinct = {normalise(text) for text in raw}

    report = prompt_file_import(project=project, source=path.read_bytes(), filename=path.name)
    assert report.ok and report.format == "jsonl"
    assert report.imported == len(distinct) and report.imported + report.duplicates == len(raw)
    assert prompt_pool(project=project).count() == len(distinct)

    again = prompt_file_import(project=project, source=path.read_bytes(), filename=path.name)
    assert (again.imported, again.duplicates) == (0, len(raw))
    assert prompt_pool(project=project).count() == len(distinct)


# --- Duplicates ---------------------------------------------------------------------------------


def test_duplicates_within_the_file_and_against_the_pool_are_skipped_and_counted(project):
    conversation_start(project=project, text="What is a  Black Hole?", source="prompt")
    # A demonstration with the same first turn is not a pool prompt: no duplicate of it.
    conversation_start(project=project, text="Tell me a joke.", source="demonstration")
    other = type(project).objects.create(slug="other", name="Other")
    conversation_start(project=other, text="Name a colour.", source="prompt")

    text = lines(
        "what is a black hole?",  # the pool has it (case and spacing differ)
        "Tell me a joke.",
        "Name a colour.",  # only another project has it
        "  TELL me   a joke. ",  # repeats line 2
        {"prompt": "Tell me a joke.\n"},  # and again
    )
    report = run(project, text)
    assert report.ok
    assert (report.imported, report.duplicates) == (2, 3)
    assert pool_texts(project) == ["Name a colour.", "Tell me a joke.", "What is a  Black Hole?"]


# --- Refused files ------------------------------------------------------------------------------


def test_a_bad_jsonl_file_is_refused_whole_with_every_problem_by_line(project):
    conversation_start(project=project, text="Already here", source="prompt")
    text = lines(
        "Fine prompt",
        Raw('{"prompt": "unterminated'),
        {"text": "no prompt field"},
        {"prompt": "   "},
        {"prompt": 42},
        [1, 2],
        {"prompt": "ok", "tags": "not-a-list"},
        {"prompt": "ok too", "lang": "a-language-code-far-too-long"},
        {"prompt": "nul \u0000 inside"},
        Raw('{"prompt": "broken \\ud83d surrogate"}'),
        "Another fine prompt",
    )
    report = run(project, text)

    assert not report.ok
    assert problems(report) == [
        "line 2: malformed JSON: Unterminated string starting at (column 12)",
        "line 3: field 'prompt': missing",
        "line 4: field 'prompt': empty text",
        "line 5: field 'prompt': expected a string, got a number",
        "line 6: expected an object with a 'prompt' field or a JSON string, got an array",
        "line 7: field 'tags': expected a list of strings",
        "line 8: field 'lang': expected a language code of at most 16 characters",
        "line 9: field 'prompt': contains a NUL character",
        "line 10: field 'prompt': contains an unpaired surrogate (a broken \\u escape)",
    ]
    assert report.imported == 0
    assert pool_texts(project) == ["Already here"]
    assert Conversation.objects.count() == 1 and Message.objects.count() == 1


def test_text_over_the_projects_limit_is_a_problem(project):
    project.max_message_chars = 10
    project.save()
    report = run(project, lines("short", "far more than ten characters"))
    assert problems(report) == ["line 2: field 'prompt': 28 characters; the project's limit is 10"]
    assert not Conversation.objects.exists()


def test_bad_utf8_is_refused_with_each_line_and_byte_offset(project):
    data = (
        b'"caf\xc3\xa9 is fine"\n'  # UTF-8
        b'"caf\xe9 in Latin-1"\n'  # offset 20: "café is fine" + quotes + newline is 16 bytes
        b'"ok"\n'
        b'{"prompt": "\xff"}\n'
        b'{"prompt": ""}\n'
    )
    report = run(project, data)
    assert problems(report) == [
        "line 2: not valid UTF-8: byte 0xe9 at byte 5 of the line (offset 20 in the file); "
        "save the file as UTF-8",
        "line 4: not valid UTF-8: byte 0xff at byte 13 of the line (offset 51 in the file); "
        "save the file as UTF-8",
        "line 5: field 'prompt': empty text",
    ]
    assert not Conversation.objects.exists()


def test_a_file_over_the_size_limit_is_refused_naming_the_limit(project):
    tiny = {**settings.PARLEY, "IMPORT_MAX_BYTES": 20}
    with override_settings(PARLEY=tiny):
        report = run(project, lines("A prompt that is short", "and another"))
        assert run(project, '"twenty bytes ok"\n').ok  # 18 bytes
    assert len(report.errors) == 1
    assert str(report.errors[0]) == (
        "file: the file is larger than the import limit of 20\xa0bytes (20 bytes); "
        "split it into smaller files"
    )
    assert pool_texts(project) == ["twenty bytes ok"]


def test_empty_and_prompt_less_files_are_refused(project):
    assert problems(run(project, "")) == ["file: the file is empty"]
    assert problems(run(project, "\n  \n")) == ["file: the file is empty"]
    assert problems(run(project, "prompt,lang\n", filename="p.csv")) == [
        "file: the file holds no prompts"
    ]


def test_bad_csv_files_list_their_problems(project):
    report = run(project, "text,<b>lang</b>\nhello,en\n", filename="p.csv")
    assert problems(report) == [
        "line 1: no 'prompt' column in the header (found: text, <b>lang</b>)"
    ]
    report = run(project, 'prompt,lang\n"  ",en\ngood,en,extra\nfine,en\n"open quote\n', "p.csv")
    assert problems(report) == [
        "line 2: field 'prompt': empty text",
        "line 3: 3 fields where the header has 2",
        "line 5: malformed CSV: unexpected end of data",
    ]
    report = run(project, 'prompt\n"bad"quote\nfine\n"x"y\n', "p.csv")
    assert problems(report) == [
        "line 2: malformed CSV: ',' expected after '\"'",
        "line 4: malformed CSV: ',' expected after '\"'",
    ]
    assert not Conversation.objects.exists()


def test_nothing_is_stored_when_the_insert_fails_half_way(project, monkeypatch):
    calls = []
    real = imports.insert_rows

    def failing(model, **kwargs):
        calls.append(model)
        if model is Message:
            raise RuntimeError("disk full")
        return real(model, **kwargs)

    monkeypatch.setattr(imports, "insert_rows", failing)
    with pytest.raises(RuntimeError):
        run(project, lines("one", "two"))
    assert calls == [Conversation, Message]
    assert not Conversation.objects.exists()


# --- Open Assistant message trees ---------------------------------------------------------------


def _walk(node):
    yield node
    for reply in node.get("replies") or []:
        yield from _walk(reply)


def test_shared_open_assistant_trees_import_whole(project):
    path = shared(TREES)
    trees = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    nodes = [node for tree in trees for node in _walk(tree["prompt"])]
    deleted = [node for node in nodes if node.get("deleted")]
    # The file's README: 1,167 messages and 212 sibling sets with two or more ranked replies
    # (754 ordered pairs). None of its messages is marked deleted, so all of them come in.
    assert (len(trees), len(nodes), len(deleted)) == (100, 1167, 0)

    report = prompt_file_import(project=project, source=path.open("rb"), filename=path.name)

    assert report.ok, problems(report)
    assert report.format == "oasst"
    assert (report.imported, report.conversations, report.messages) == (100, 100, 1167)
    assert (report.ranking_sets, report.deleted, report.duplicates) == (212, 0, 0)

    conversations = Conversation.objects.filter(project=project)
    assert conversations.count() == 100 and set(conversations.values_list("source", flat=True)) == {
        "import"
    }
    assert set(conversations.values_list("external_id", flat=True)) == {
        t["message_tree_id"] for t in trees
    }
    assert conversations.first().meta["tree_state"] == "ready_for_export"
    assert not prompt_pool(project=project).exists()  # trees are not pool prompts

    messages = Message.objects.filter(conversation__project=project)
    assert messages.count() == 1167
    by_id = {m.external_id: m for m in messages.select_related("parent")}
    for node in nodes:
        message = by_id[node["message_id"]]
        assert message.text == node["text"]
        assert message.role == {"prompter": "user", "assistant": "assistant"}[node["role"]]
        if node.get("parent_id"):
            assert message.parent.external_id == node["parent_id"]
            assert message.conversation_id == message.parent.conversation_id
            assert message.depth == message.parent.depth + 1
        else:
            assert message.parent is None and message.depth == 0
        assert message.meta["review_count"] == node["review_count"]
        assert message.meta.get("rank") == node.get("rank")
        assert message.author_user is None
    synthetic = [n for n in nodes if n["synthetic"] and n.get("model_name")]
    assert messages.filter(is_synthetic=True).count() == len(synthetic) == 22
    model = ModelVersion.objects.get(name="chip20b")
    assert (model.kind, model.source, model.notes) == ("policy", "chip20b", "imported")
    assert messages.filter(author_model=model).count() == 22

    sets = RankingSet.objects.filter(project=project)
    assert sets.count() == 212
    assert set(sets.values_list("state", "rankings_needed", "rankings_count")) == {
        ("complete", 1, 1)
    }
    rankings = Ranking.objects.filter(ranking_set__project=project)
    assert rankings.count() == 212 and not rankings.filter(annotator__isnull=False).exists()
    pairs = 0
    for ranking in rankings.select_related("ranking_set"):
        assert ranking.ranking_set.consensus == ranking.order
        pairs += sum(len(a) * len(b) for a, b in combinations(ranking.order, 2))
    assert pairs == 754  # the README's ordered pairs
    # Every set: its candidates are the ranked siblings, best first by rank in the ranking.
    ranked_by_pk = {m.pk: m for m in messages}
    for ranking_set in sets.prefetch_related("entries"):
        candidates = [entry.message_id for entry in ranking_set.entries.all()]
        assert len(candidates) >= 2
        assert {ranked_by_pk[pk].parent_id for pk in candidates} == {ranking_set.context_id}
        order = ranking_set.consensus
        assert sorted(pk for group in order for pk in group) == sorted(candidates)
        ranks = [ranked_by_pk[group[0]].meta["rank"] for group in order]
        assert ranks == sorted(ranks)
    assert RankingCandidate.objects.filter(ranking_set__project=project).count() == sum(
        1 for n in nodes if n.get("rank") is not None and _ranked_siblings(trees, n) >= 2
    )

    again = prompt_file_import(project=project, source=path.open("rb"), filename=path.name)
    assert again.ok and (again.imported, again.duplicates, again.messages) == (0, 100, 0)
    assert Message.objects.count() == 1167 and RankingSet.objects.count() == 212


def _ranked_siblings(trees, node) -> int:
    for tree in trees:
        for parent in _walk(tree["prompt"]):
            replies = parent.get("replies") or []
            if any(reply is node for reply in replies):
                return sum(1 for reply in replies if reply.get("rank") is not None)
    return 0


def _node(message_id, role, text, replies=(), **extra):
    return {
        "message_id": message_id,
        "text": text,
        "role": role,
        "lang": "en",
        "review_count": 3,
        "review_result": True,
        "deleted": False,
        "synthetic": False,
        "replies": list(replies),
        **extra,
    }


def _tree(tree_id, root):
    return {"message_tree_id": tree_id, "tree_state": "ready_for_export", "prompt": root}


def test_trees_skip_deleted_subtrees_and_keep_ties_in_rankings(project):
    root = _node(
        "r",
        "prompter",
        "Name a fruit.",
        replies=[
            _node("a1", "assistant", "Apple.", rank=1, model_name="human-written anyway"),
            _node("a2", "assistant", "Banana.", rank=0, synthetic=True, model_name="tiny-v1"),
            _node("a3", "assistant", "Cherry.", rank=1),
            _node(
                "a4",
                "assistant",
                "Rude reply.",
                rank=2,
                deleted=True,
                replies=[_node("p5", "prompter", "Why so rude?")],
            ),
            _node("a6", "assistant", "Unranked reply."),
        ],
    )
    report = run(project, lines(_tree("t1", root)), filename="trees.jsonl")

    assert report.ok, problems(report)
    assert (report.messages, report.deleted, report.ranking_sets) == (5, 2, 1)
    messages = {m.external_id: m for m in Message.objects.all()}
    assert set(messages) == {"r", "a1", "a2", "a3", "a6"}
    assert messages["a2"].is_synthetic and messages["a2"].author_model.name == "tiny-v1"
    assert messages["a1"].author_model is None and not messages["a1"].is_synthetic
    ranking_set = RankingSet.objects.get()
    assert ranking_set.context == messages["r"]
    entries = list(ranking_set.entries.values_list("message__external_id", "position"))
    assert entries == [("a1", 0), ("a2", 1), ("a3", 2)]
    # Best first; the two replies ranked 1 form a tie group.
    ids = {key: m.pk for key, m in messages.items()}
    assert Ranking.objects.get().order == [[ids["a2"]], [ids["a1"], ids["a3"]]]
    assert ranking_set.consensus == [[ids["a2"]], [ids["a1"], ids["a3"]]]


def test_a_tree_deleted_at_the_root_is_left_out(project):
    report = run(
        project, lines(_tree("t1", _node("r", "prompter", "Gone", deleted=True))), "t.jsonl"
    )
    assert report.ok and (report.imported, report.deleted) == (0, 1)
    assert not Conversation.objects.exists()


def test_bad_trees_are_refused_with_every_problem(project):
    good = _tree("t1", _node("r1", "prompter", "Hi", replies=[_node("a1", "assistant", "Hello")]))
    broken = _tree(
        "t2",
        _node(
            "r2",
            "prompter",
            "Hi again",
            replies=[
                _node("a2", "prompter", "Two prompter turns in a row"),
                _node("a1", "assistant", "Reused id"),
                _node("a3", "assistant", "", rank="first"),
                _node("a4", "bot", "Who am I?", synthetic=True, model_name="not a name!"),
                {"message_id": "a5", "role": "assistant"},
            ],
        ),
    )
    no_root = {"message_tree_id": "t3"}
    wrong_parent = _tree(
        "t4",
        _node("r4", "prompter", "Yo", replies=[_node("a6", "assistant", "Hey", parent_id="zz")]),
    )
    report = run(project, lines(good, broken, no_root, wrong_parent, []), "export.jsonl")

    assert report.format == "oasst"
    assert problems(report) == [
        "line 2: field 'prompt.replies[0].role': a user turn cannot come after a user turn",
        "line 2: field 'prompt.replies[1].message_id': a1 also appears on line 1",
        "line 2: field 'prompt.replies[2].text': empty text",
        "line 2: field 'prompt.replies[2].rank': expected a whole number or null, got a string",
        "line 2: field 'prompt.replies[3].role': expected 'prompter' or 'assistant', got 'bot'",
        "line 2: field 'prompt.replies[3].model_name': 'not a name!' is not a valid model name",
        "line 2: field 'prompt.replies[4].text': missing",
        "line 3: field 'prompt': missing",
        "line 4: field 'prompt.replies[0].parent_id': 'zz' is not the message it replies to",
        "line 5: expected a message tree object, got an array",
    ]
    assert not Conversation.objects.exists() and not ModelVersion.objects.exists()


def test_the_same_tree_twice_in_a_file_is_a_duplicate(project):
    tree = _tree("t1", _node("r1", "prompter", "Hi", replies=[_node("a1", "assistant", "Hello")]))
    report = run(project, lines(tree, tree), "t.jsonl")
    assert report.ok and (report.imported, report.duplicates, report.messages) == (1, 1, 2)


# --- The command --------------------------------------------------------------------------------


def test_command_imports_a_file_and_prints_the_report(project, tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text(lines("One", "Two", "one"), encoding="utf-8")
    out = StringIO()
    call_command("import_prompts", "alpha", str(path), stdout=out)
    assert "alpha (jsonl): Imported 2 prompts (1 duplicate skipped)." in out.getvalue()
    assert pool_texts(project) == ["One", "Two"]


def test_command_imports_trees_with_an_explicit_format(project, tmp_path):
    path = tmp_path / "export.txt"
    tree = _tree("t1", _node("r1", "prompter", "Hi", replies=[_node("a1", "assistant", "Hello")]))
    path.write_text(lines(tree), encoding="utf-8")
    out = StringIO()
    call_command("import_prompts", "alpha", str(path), "--format", "oasst", stdout=out)
    assert (
        "Imported 1 tree (0 duplicates skipped): 1 conversation, 2 messages, 0 ranking sets; "
        "0 deleted messages left out." in out.getvalue()
    )


def test_command_refuses_a_bad_file_listing_every_problem(project, tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text(lines("fine", {"prompt": ""}, Raw("{oops")), encoding="utf-8")
    err = StringIO()
    with pytest.raises(CommandError, match="2 problem"):
        call_command("import_prompts", "alpha", str(path), stdout=StringIO(), stderr=err)
    assert err.getvalue().splitlines() == [
        "line 2: field 'prompt': empty text",
        "line 3: malformed JSON: Expecting property name enclosed in double quotes (column 2)",
    ]
    assert not Conversation.objects.exists()


def test_command_needs_a_known_project_and_an_existing_file(project, tmp_path):
    with pytest.raises(CommandError, match="No project"):
        call_command("import_prompts", "nope", str(tmp_path / "x.jsonl"))
    with pytest.raises(CommandError, match="No such file"):
        call_command("import_prompts", "alpha", str(tmp_path / "missing.jsonl"))
