"""Imported demonstrations (`messages` and `instruction` JSONL) and the dataset tag of imports."""

import io
import json
import sys
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from annotations import imports
from annotations.models import Conversation, Message
from annotations.selectors import prompt_pool
from annotations.services import conversation_start
from labelling import importers
from labelling.importers import detect_format, prompt_file_import

pytestmark = pytest.mark.django_db


class Raw(str):
    """A line written as is, not as JSON."""


def lines(*rows) -> str:
    return "\n".join(row if isinstance(row, Raw) else json.dumps(row) for row in rows) + "\n"


def run(project, text: str, filename: str = "chats.jsonl", **kwargs):
    return prompt_file_import(project=project, source=text.encode(), filename=filename, **kwargs)


def problems(report) -> list[str]:
    return [str(problem) for problem in report.errors]


def turn(role: str, content: str, **extra) -> dict:
    return {"role": role, "content": content, **extra}


def dialogues(project) -> list[list[tuple[str, str]]]:
    """Each imported conversation's turns, (role, text), following parents from the root."""
    result = []
    for conversation in Conversation.objects.filter(project=project, source="import").order_by(
        "pk"
    ):
        messages = {m.parent_id: m for m in conversation.messages.all()}
        chain, message = [], messages[None]
        while message is not None:
            chain.append((message.role, message.text))
            message = messages.get(message.pk)
        result.append(chain)
    return result


# --- Good files ---------------------------------------------------------------------------------


def test_messages_lines_become_human_written_demonstrations(project, lead):
    project.languages = ["de", "en"]
    project.save()
    text = lines(
        {
            "messages": [
                turn("system", "You are terse."),
                turn("user", "  Name a river.  "),
                turn("assistant", "The Danube."),
                turn("user", "And a lake?"),
                turn("assistant", "Lake Constance."),
            ],
            "lang": "en",
            "tags": ["geo", " "],
            "id": "ignored",
        },
        Raw(""),
        {"messages": [turn("user", "Wie spät ist es?"), turn("assistant", "Ich weiß es nicht.")]},
    )
    report = run(project, text, filename="dolly.jsonl", user=lead)

    assert report.ok, problems(report)
    assert (report.format, report.dataset) == ("messages", "dolly")
    assert (report.imported, report.duplicates, report.conversations, report.messages) == (
        2,
        0,
        2,
        7,
    )
    assert report.summary() == "Imported 2 conversations (0 duplicates skipped): 7 messages."
    assert dialogues(project) == [
        [
            ("system", "You are terse."),
            ("user", "Name a river."),
            ("assistant", "The Danube."),
            ("user", "And a lake?"),
            ("assistant", "Lake Constance."),
        ],
        [("user", "Wie spät ist es?"), ("assistant", "Ich weiß es nicht.")],
    ]
    first, second = Conversation.objects.filter(project=project).order_by("pk")
    assert first.source == Conversation.Source.IMPORT and first.created_by is None
    assert first.external_id.startswith("sha256:") and len(first.external_id) == 7 + 64
    assert first.meta["dataset"] == "dolly" and first.meta["tags"] == ["geo"]
    assert first.meta["import"] | {"batch": "-"} == {
        "file": "dolly.jsonl",
        "format": "messages",
        "line": 1,
        "by": lead.pk,
        "batch": "-",
    }
    assert second.meta["import"]["line"] == 3
    for message in Message.objects.filter(conversation__project=project):
        assert not message.is_synthetic
        assert message.author_user is None and message.author_model is None
    assert [m.depth for m in first.messages.order_by("depth")] == [0, 1, 2, 3, 4]
    assert set(first.messages.values_list("lang", flat=True)) == {"en"}
    assert set(second.messages.values_list("lang", flat=True)) == {"de"}  # the project's first
    # Imported demonstrations are not pool prompts.
    assert not prompt_pool(project=project).exists()


def test_instruction_lines_in_string_and_message_list_forms(project):
    text = lines(
        {"prompt": "Write a haiku about rain.", "completion": "Soft rain on the roof."},
        {
            "system": "You answer in French.",
            "prompt": "Say hello.",
            "completion": "Bonjour.",
            "lang": "fr",
        },
        {  # TRL's conversational prompt-completion form
            "prompt": [
                turn("system", "Be brief."),
                turn("user", "2+2?"),
                turn("assistant", "4."),
                turn("user", "And 3+3?"),
            ],
            "completion": [turn("assistant", "6.")],
        },
        {"prompt": [turn("user", "Capital of Peru?")], "completion": "Lima.", "system": ""},
    )
    report = run(project, text, filename="pairs.jsonl")
    assert report.ok, problems(report)
    assert (report.format, report.imported, report.messages) == ("instruction", 4, 12)
    assert dialogues(project) == [
        [("user", "Write a haiku about rain."), ("assistant", "Soft rain on the roof.")],
        [("system", "You answer in French."), ("user", "Say hello."), ("assistant", "Bonjour.")],
        [
            ("system", "Be brief."),
            ("user", "2+2?"),
            ("assistant", "4."),
            ("user", "And 3+3?"),
            ("assistant", "6."),
        ],
        [("user", "Capital of Peru?"), ("assistant", "Lima.")],
    ]
    french = Message.objects.get(text="Bonjour.")
    assert french.lang == "fr" and french.conversation.meta["dataset"] == "pairs"


def test_a_system_string_goes_before_the_messages(project):
    report = run(
        project,
        lines({"system": "Be kind.", "messages": [turn("user", "Hi"), turn("assistant", "Hey")]}),
    )
    assert report.ok
    assert dialogues(project) == [[("system", "Be kind."), ("user", "Hi"), ("assistant", "Hey")]]


# --- Refused files ------------------------------------------------------------------------------


def test_bad_messages_lines_are_refused_with_line_and_field(project):
    conversation_start(project=project, text="Already here", source="prompt")
    project.max_turns = 4
    project.save()
    ok = [turn("user", "Hi"), turn("assistant", "Hello")]
    text = lines(
        {"messages": ok},
        Raw('{"messages": [oops'),
        [1, 2],
        {"conversation": ok},
        {"messages": "Hi"},
        {"messages": ["Hi", {"role": "assistant", "content": "Hello"}]},
        {"messages": [turn("user", "Hi", name="bob"), turn("assistant", "Hello", weight=0)]},
        {"messages": [turn("user", "Hi"), turn("tool", "42")]},
        {"messages": [turn("user", "Hi"), {"content": "Hello"}]},
        {"messages": [turn("user", "  "), {"role": "assistant", "content": ["Hello"]}]},
        {"messages": [turn("user", "Hi"), {"role": "assistant"}]},
        {"messages": [turn("user", "Hi"), turn("user", "Hello?"), turn("assistant", "Yes")]},
        {"messages": [turn("assistant", "Hello"), turn("user", "Hi")]},
        {"messages": [*ok, turn("system", "Be terse."), turn("user", "Hi")]},
        {"messages": [*ok, turn("user", "Bye")]},
        {"messages": []},
        {"messages": [turn("system", "Be terse.")]},
        {"system": "Be kind.", "messages": [turn("system", "Be terse."), *ok]},
        {"messages": ok * 3},
        {"messages": ok, "lang": "a-language-code-far-too-long", "tags": "greeting"},
        {"messages": [turn("user", "nul \u0000 inside"), turn("assistant", "Hello")]},
        {"system": 7, "messages": ok},
    )
    report = run(project, text)

    assert problems(report) == [
        "line 2: malformed JSON: Expecting value (column 15)",
        "line 3: expected an object with a 'messages' array, got an array",
        "line 4: field 'messages': missing",
        "line 5: field 'messages': expected an array of messages, got a string",
        "line 6: field 'messages[0]': expected an object with 'role' and 'content', got a string",
        "line 7: field 'messages[0].name': not supported; a message holds only 'role' and "
        "'content'",
        "line 7: field 'messages[1].weight': not supported; a message holds only 'role' and "
        "'content'",
        "line 8: field 'messages[1].role': expected system, user or assistant, got 'tool'",
        "line 9: field 'messages[1].role': missing",
        "line 10: field 'messages[0].content': empty text",
        "line 10: field 'messages[1].content': expected a string, got an array",
        "line 11: field 'messages[1].content': missing",
        "line 12: field 'messages[1].role': expected assistant after a user turn, got user",
        "line 13: field 'messages[0].role': expected system or user as the first turn, "
        "got assistant",
        "line 14: field 'messages[2].role': expected user after an assistant turn, got system "
        "(a system turn can only come first)",
        "line 15: field 'messages': the conversation ends with a user turn; it must end with "
        "an assistant turn",
        "line 16: field 'messages': empty; expected a user turn and an assistant turn",
        "line 17: field 'messages': the conversation ends with a system turn; it must end with "
        "an assistant turn",
        "line 18: field 'system': the messages already start with a system message",
        "line 19: field 'messages': 6 turns; the project's limit is 4",
        "line 20: field 'lang': expected a language code of at most 16 characters",
        "line 20: field 'tags': expected a list of strings",
        "line 21: field 'messages[0].content': contains a NUL character",
        "line 22: field 'system': expected a string, got a number",
    ]
    assert report.imported == 0
    assert Conversation.objects.count() == 1 and Message.objects.count() == 1


def test_bad_instruction_lines_are_refused_with_line_and_field(project):
    text = lines(
        {"prompt": "Hi", "completion": "Hello"},
        {"prompt": "Hi"},
        {"prompt": 42, "completion": None},
        {"prompt": "", "completion": "Hello"},
        {"prompt": "Hi", "completion": [turn("assistant", "Hello"), turn("assistant", "Again")]},
        {"prompt": "Hi", "completion": []},
        {"prompt": "Hi", "completion": [turn("user", "Hello")]},
        {"prompt": [turn("user", "Hi"), turn("assistant", "Hello")], "completion": "Bye"},
        {"prompt": [], "completion": "Hello"},
        {"prompt": [turn("assistant", "Hi")], "completion": "Hello"},
        {"system": "Be kind.", "prompt": [turn("system", "Be terse."), turn("user", "Hi")]}
        | {"completion": "Hello"},
        {"prompt": [turn("user", "Hi", name="bob")], "completion": [{"role": "assistant"}]},
        "just a string",
    )
    report = run(project, text, fmt="instruction")

    assert problems(report) == [
        "line 2: field 'completion': missing",
        "line 3: field 'prompt': expected a string or an array of messages, got a number",
        "line 3: field 'completion': expected a string or an array of messages, got null",
        "line 4: field 'prompt': empty text",
        "line 5: field 'completion': expected one assistant message, got 2",
        "line 6: field 'completion': expected one assistant message, got 0",
        "line 7: field 'completion[0].role': expected assistant, got user",
        "line 8: field 'prompt': the prompt ends with an assistant turn; it must end with a "
        "user turn",
        "line 9: field 'prompt': empty; expected at least a user turn",
        "line 10: field 'prompt[0].role': expected system or user as the first turn, got assistant",
        "line 11: field 'system': the prompt already starts with a system message",
        "line 12: field 'prompt[0].name': not supported; a message holds only 'role' and 'content'",
        "line 12: field 'completion[0].content': missing",
        "line 13: expected an object with 'prompt' and 'completion' fields, got a string",
    ]
    assert not Conversation.objects.exists() and not Message.objects.exists()


def test_a_file_of_blank_lines_or_without_conversations_is_refused(project):
    assert problems(run(project, "\n\n", fmt="messages")) == ["file: the file is empty"]
    assert problems(run(project, "  \n", fmt="instruction")) == ["file: the file is empty"]


def test_nothing_is_stored_when_the_insert_fails_half_way(project, monkeypatch):
    calls = []
    real = imports.insert_rows

    def failing(model, **kwargs):
        calls.append((model, kwargs["constants"].get("depth")))
        if model is Message and kwargs["constants"]["depth"] == 1:
            raise RuntimeError("disk full")
        return real(model, **kwargs)

    monkeypatch.setattr(imports, "insert_rows", failing)
    with pytest.raises(RuntimeError):
        run(project, lines({"prompt": "Hi", "completion": "Hello"}))
    assert calls == [(Conversation, None), (Message, 0), (Message, 1)]
    assert not Conversation.objects.exists() and not Message.objects.exists()


# --- Duplicates ---------------------------------------------------------------------------------


def test_duplicates_in_the_file_and_in_the_project_are_skipped_and_counted(project):
    # A pool prompt with the same first turn is not an imported conversation.
    conversation_start(project=project, text="Name a river.", source="prompt")
    other = type(project).objects.create(slug="other", name="Other")
    pair = {"prompt": "Name a lake.", "completion": "Lake Titicaca."}
    assert run(other, lines(pair)).ok

    first = run(
        project,
        lines(
            {"prompt": "Name a river.", "completion": "The Nile."},
            pair,  # only another project has it
            {"prompt": "  name a   RIVER. ", "completion": "the nile."},  # repeats line 1
            {"prompt": "Name a river.", "completion": "The Amazon."},  # another answer
        ),
    )
    assert first.ok and (first.imported, first.duplicates, first.messages) == (3, 1, 6)

    # The same conversations again, now as messages: all duplicates, plus one new with a system.
    again = run(
        project,
        lines(
            {"messages": [turn("user", "Name a river."), turn("assistant", "The Nile.")]},
            {"messages": [turn("user", "Name a lake."), turn("assistant", "Lake Titicaca.")]},
            {
                "system": "Be brief.",
                "messages": [turn("user", "Name a lake."), turn("assistant", "Lake Titicaca.")],
            },
        ),
        filename="again.jsonl",
    )
    assert again.ok and (again.imported, again.duplicates) == (1, 2)
    assert again.summary() == "Imported 1 conversation (2 duplicates skipped): 3 messages."
    assert Conversation.objects.filter(project=project, source="import").count() == 4


# --- The dataset tag ----------------------------------------------------------------------------


def test_every_import_format_tags_its_conversations_with_the_dataset(project):
    tree = {
        "message_tree_id": "t1",
        "prompt": {
            "message_id": "m1",
            "role": "prompter",
            "text": "Hi",
            "replies": [{"message_id": "m2", "role": "assistant", "text": "Hello"}],
        },
    }
    assert run(project, lines("A prompt"), filename="seed prompts (v2).jsonl").ok
    assert run(project, "prompt\nA csv prompt\n", filename="sheet.csv", dataset="sheet.v1").ok
    assert run(project, lines(tree), filename="oasst_export.jsonl").ok
    assert run(project, lines({"prompt": "Q", "completion": "A"}), dataset="dolly-15k").ok
    tags = {
        (c.source, c.meta["import"]["format"]): c.meta["dataset"]
        for c in Conversation.objects.filter(project=project)
    }
    assert tags == {
        ("prompt", "jsonl"): "seed-prompts-v2",
        ("prompt", "csv"): "sheet.v1",
        ("import", "oasst"): "oasst_export",
        ("import", "instruction"): "dolly-15k",
    }


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("dolly.jsonl", "dolly"),
        ("train-00000-of-00001.jsonl", "train-00000-of-00001"),
        ("my data (copy).csv", "my-data-copy"),
        ("données.jsonl", "donn-es"),
        ("x" * 80 + ".jsonl", "x" * 64),
        ("", "import"),
        ("???.jsonl", "import"),
    ],
)
def test_the_default_dataset_name_is_the_files_stem_made_valid(filename, expected):
    name = importers.default_dataset_name(filename)
    assert name == expected and importers.dataset_name_problem(name) is None


@pytest.mark.parametrize("name", ["", "has space", "x" * 65, "naïve", "a/b"])
def test_a_bad_dataset_name_refuses_the_import_naming_the_field(project, name):
    report = run(project, lines({"prompt": "Q", "completion": "A"}), dataset=name)
    assert problems(report) == [
        f"field 'dataset': expected 1 to 64 letters, digits, '.', '_' or '-', got {name!r}"
    ]
    assert not Conversation.objects.exists()


# --- Detection ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "text", "expected"),
    [
        ("chats.jsonl", '{"messages": [{"role": "user", "content": "Hi"}]}\n', "messages"),
        ("chats.txt", '{"messages": []}\n', "messages"),
        # ultrachat_200k's rows carry a prompt string beside the messages.
        ("u.jsonl", '{"prompt": "Hi", "prompt_id": "1", "messages": []}\n', "messages"),
        ("pairs.jsonl", '{"prompt": "Hi", "completion": "Hello"}\n', "instruction"),
        ("pairs", '{"prompt": [], "completion": []}\n', "instruction"),
        ("prompts.jsonl", '{"prompt": "Hi", "tags": ["x"]}\n', "jsonl"),
        ("prompts.jsonl", '{"messages": "not a list"}\n', "jsonl"),
        ("pairs.csv", "prompt,completion\nHi,Hello\n", "csv"),
    ],
)
def test_conversation_formats_are_detected_from_the_first_line(filename, text, expected):
    assert detect_format(filename, text) == expected


def test_formats_include_the_conversation_forms():
    assert importers.FORMATS == ("jsonl", "csv", "oasst", "messages", "instruction")


# --- The command --------------------------------------------------------------------------------


def test_command_imports_conversations_tagged_with_the_file_stem(project, tmp_path):
    path = tmp_path / "dolly.jsonl"
    rows = [
        {"prompt": "Name a colour.", "completion": "Blue."},
        {"prompt": "name a colour.", "completion": "blue."},
    ]
    path.write_text(lines(*rows), encoding="utf-8")
    out = StringIO()
    call_command("import_prompts", "alpha", str(path), stdout=out)
    assert out.getvalue().strip() == (
        "alpha (instruction): Imported 1 conversation (1 duplicate skipped): 2 messages. "
        "Dataset: dolly"
    )
    conversation = Conversation.objects.get(project=project)
    assert conversation.meta["dataset"] == "dolly"
    assert dialogues(project) == [[("user", "Name a colour."), ("assistant", "Blue.")]]


def test_command_takes_a_format_and_a_dataset_name(project, tmp_path):
    path = tmp_path / "export.txt"
    path.write_text(
        lines({"messages": [turn("user", "Hi"), turn("assistant", "Hello")]}), encoding="utf-8"
    )
    out = StringIO()
    call_command(
        "import_prompts",
        "alpha",
        str(path),
        "--format",
        "messages",
        "--dataset",
        "oasst2-top1",
        stdout=out,
    )
    assert "alpha (messages): Imported 1 conversation" in out.getvalue()
    assert "Dataset: oasst2-top1" in out.getvalue()
    assert Conversation.objects.get(project=project).meta["dataset"] == "oasst2-top1"


def test_command_reads_standard_input_as_the_stdin_dataset(project, monkeypatch):
    data = lines({"prompt": "Hi", "completion": "Hello"}).encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    call_command("import_prompts", "alpha", "-", stdout=StringIO())
    conversation = Conversation.objects.get(project=project)
    assert conversation.meta["dataset"] == "stdin"
    assert conversation.meta["import"]["format"] == "instruction"


def test_command_refuses_a_bad_file_or_dataset_name_listing_every_problem(project, tmp_path):
    path = tmp_path / "chats.jsonl"
    path.write_text(
        lines(
            {"messages": [turn("user", "Hi"), turn("assistant", "Hello")]},
            {"messages": [turn("user", "Hi"), turn("user", "Hello")]},
        ),
        encoding="utf-8",
    )
    err = StringIO()
    with pytest.raises(CommandError, match="1 problem"):
        call_command("import_prompts", "alpha", str(path), stdout=StringIO(), stderr=err)
    assert err.getvalue().splitlines() == [
        "line 2: field 'messages[1].role': expected assistant after a user turn, got user"
    ]
    err = StringIO()
    with pytest.raises(CommandError, match="1 problem"):
        call_command("import_prompts", "alpha", str(path), "--dataset", "my set", stderr=err)
    assert err.getvalue().splitlines() == [
        "field 'dataset': expected 1 to 64 letters, digits, '.', '_' or '-', got 'my set'"
    ]
    assert not Conversation.objects.exists()
