"""The leads' import page: who may use it, an upload that works, a file that is refused."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from annotations.models import Conversation
from annotations.selectors import prompt_pool

pytestmark = pytest.mark.django_db

URL = reverse("prompt-import", args=["alpha"])


def upload(name: str, text: str | bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, text.encode() if isinstance(text, str) else text)


def jsonl(*rows) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def test_lead_sees_the_form(client, project, lead):
    client.force_login(lead)
    response = client.get(URL)
    assert response.status_code == 200
    page = response.content.decode()
    assert 'enctype="multipart/form-data"' in page and "csrfmiddlewaretoken" in page
    assert 'name="file"' in page and 'name="format"' in page
    assert "Open Assistant message trees" in page


def test_only_leads_may_import(client, project, trainer, engineer, outsider):
    for user in (trainer, engineer):
        client.force_login(user)
        assert client.get(URL).status_code == 403
        assert client.post(URL, {"file": upload("p.jsonl", '"Hi"\n')}).status_code == 403
    client.force_login(outsider)
    assert client.get(URL).status_code == 404
    assert client.post(URL, {"file": upload("p.jsonl", '"Hi"\n')}).status_code == 404
    assert not Conversation.objects.exists()


def test_anonymous_users_are_sent_to_log_in(client, project):
    response = client.get(URL)
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_an_upload_imports_and_the_page_shows_the_summary_once(client, project, lead):
    client.force_login(lead)
    file = upload(
        "prompts.jsonl", jsonl("Name a river.", {"prompt": "Name a <b>lake</b>."}, "name a river.")
    )
    response = client.post(URL, {"file": file, "format": ""})
    assert response.status_code == 302 and response["Location"] == URL

    page = client.get(URL).content.decode()
    assert "Imported prompts.jsonl" in page
    assert "Imported 2 prompts (1 duplicate skipped)." in page
    assert sorted(prompt_pool(project=project).values_list("text", flat=True)) == [
        "Name a <b>lake</b>.",
        "Name a river.",
    ]
    assert Conversation.objects.first().meta["import"]["by"] == lead.pk
    # A reload does not show it again (and did not import again).
    assert "Imported prompts.jsonl" not in client.get(URL).content.decode()


def test_the_format_can_be_chosen(client, project, lead):
    client.force_login(lead)
    tree = {
        "message_tree_id": "t1",
        "prompt": {
            "message_id": "m1",
            "role": "prompter",
            "text": "Hi",
            "replies": [{"message_id": "m2", "role": "assistant", "text": "Hello"}],
        },
    }
    response = client.post(URL, {"file": upload("export.txt", jsonl(tree)), "format": "oasst"})
    assert response.status_code == 302
    page = client.get(URL).content.decode()
    assert "Imported 1 tree (0 duplicates skipped)" in page and "2 messages" in page


def test_a_refused_file_lists_every_problem_escaped_and_stores_nothing(client, project, lead):
    client.force_login(lead)
    text = "text,<script>alert(1)</script>\nhello,x\n"
    response = client.post(URL, {"file": upload("bad.csv", text)})
    assert response.status_code == 400
    page = response.content.decode()
    assert "Nothing was imported: 1 problem" in page
    assert (
        "line 1: no &#x27;prompt&#x27; column in the header "
        "(found: text, &lt;script&gt;alert(1)&lt;/script&gt;)" in page
    )
    assert "<script>alert(1)" not in page

    bad = b'"fine"\n{"prompt": ""}\n{broken\n"caf\xe9"\n'
    page = client.post(URL, {"file": upload("bad.jsonl", bad)}).content.decode()
    assert "Nothing was imported: 3 problems" in page
    assert "line 2: field &#x27;prompt&#x27;: empty text" in page
    assert "line 3: malformed JSON" in page
    assert "line 4: not valid UTF-8" in page
    assert not Conversation.objects.exists()


def test_an_empty_or_missing_file_is_a_form_error(client, project, lead):
    client.force_login(lead)
    response = client.post(URL, {})
    assert response.status_code == 400 and "This field is required." in response.content.decode()
    response = client.post(URL, {"file": upload("empty.jsonl", b"")})
    assert (
        response.status_code == 400 and "The submitted file is empty." in response.content.decode()
    )


def test_the_upload_needs_a_csrf_token(project, lead):
    client = Client(enforce_csrf_checks=True)
    client.force_login(lead)
    response = client.post(URL, {"file": upload("p.jsonl", '"Hi"\n')})
    assert response.status_code == 403
    assert not Conversation.objects.exists()


def test_project_page_links_to_import_and_reviews_for_leads_only(client, project, lead, trainer):
    detail = reverse("project-detail", args=["alpha"])
    client.force_login(lead)
    page = client.get(detail).content.decode()
    assert URL in page and reverse("prompt-reviews", args=["alpha"]) in page
    client.force_login(trainer)
    page = client.get(detail).content.decode()
    assert URL not in page and reverse("prompt-reviews", args=["alpha"]) not in page


def test_conversations_upload_with_a_dataset_name(client, project, lead):
    client.force_login(lead)
    page = client.get(URL).content.decode()
    assert 'name="dataset"' in page and "Dataset name" in page
    assert '<option value="messages">' in page and '<option value="instruction">' in page

    rows = [
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hey"}]},
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hey"}]},
    ]
    file = upload("export.jsonl", jsonl(*rows))
    response = client.post(URL, {"file": file, "format": "", "dataset": "oasst2-top1"})
    assert response.status_code == 302

    page = client.get(URL).content.decode()
    assert "Imported 1 conversation (1 duplicate skipped): 2 messages." in page
    assert "<dt>Dataset</dt><dd>oasst2-top1</dd>" in page
    assert "<dt>Format</dt><dd>messages</dd>" in page
    conversation = Conversation.objects.get(project=project)
    assert conversation.source == "import" and conversation.meta["dataset"] == "oasst2-top1"
    assert conversation.meta["import"]["by"] == lead.pk


def test_without_a_dataset_name_the_file_stem_is_used(client, project, lead):
    client.force_login(lead)
    file = upload("dolly 15k.jsonl", jsonl({"prompt": "Q?", "completion": "A."}))
    assert client.post(URL, {"file": file, "dataset": "  "}).status_code == 302
    assert "<dt>Dataset</dt><dd>dolly-15k</dd>" in client.get(URL).content.decode()
    assert Conversation.objects.get(project=project).meta["dataset"] == "dolly-15k"


def test_a_bad_dataset_name_is_a_form_error_and_stores_nothing(client, project, lead):
    client.force_login(lead)
    file = upload("pairs.jsonl", jsonl({"prompt": "Q?", "completion": "A."}))
    response = client.post(URL, {"file": file, "dataset": "my/set"})
    assert response.status_code == 400
    assert "Expected 1 to 64 letters, digits, &#x27;.&#x27;, &#x27;_&#x27; or &#x27;-&#x27;." in (
        response.content.decode()
    )
    assert not Conversation.objects.exists()


def test_a_refused_conversation_file_lists_line_and_field(client, project, lead):
    client.force_login(lead)
    rows = [{"prompt": "Q?", "completion": [{"role": "user", "content": "A."}]}]
    response = client.post(URL, {"file": upload("pairs.jsonl", jsonl(*rows))})
    assert response.status_code == 400
    assert (
        "line 1: field &#x27;completion[0].role&#x27;: expected assistant, got user"
        in response.content.decode()
    )
    assert not Conversation.objects.exists()
