"""The lead's console pages: who may open them, what they save, how they refuse bad input."""

import pytest
from django.urls import reverse

from annotations.audit import audit_log
from annotations.models import Membership, Project, Ranking
from labelling.models import Task
from tests.factories import (
    MembershipFactory,
    ModelVersionFactory,
    UserFactory,
    claim,
    make_ranking_set,
    ranked_set,
    say,
    start,
)

pytestmark = pytest.mark.django_db

# Every console URL of a project, with the method that reaches it.
PROJECT_URLS = [
    ("get", "project-settings", {}),
    ("post", "guidelines-preview", {}),
    ("get", "label-schema", {}),
    ("get", "sampling-settings", {}),
    ("get", "project-log", {}),
    ("get", "members", {}),
    ("post", "member-role", {"pk": "MEMBER"}),
    ("post", "member-remove", {"pk": "MEMBER"}),
]


def _url(project, name, kwargs, member_pk):
    kwargs = {key: member_pk if value == "MEMBER" else value for key, value in kwargs.items()}
    return reverse(name, kwargs={"slug": project.slug, **kwargs})


@pytest.mark.parametrize(("method", "name", "kwargs"), PROJECT_URLS)
def test_access_matrix(client, project, trainer, lead, engineer, outsider, method, name, kwargs):
    member = Membership.objects.get(project=project, user=trainer)
    url = _url(project, name, kwargs, member.pk)
    # Anonymous: to the login page.
    response = getattr(client, method)(url)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    expected = {outsider: 404, trainer: 403, engineer: 403}
    for user, status in expected.items():
        client.force_login(user)
        assert getattr(client, method)(url).status_code == status, (user, url)
    client.force_login(lead)
    data = {"role": "trainer"} if name == "member-role" else {}
    if name == "member-remove":
        return  # the lead's removal is tested below; the rows above left the trainer in place
    assert getattr(client, method)(url, data).status_code in (200, 302)
    assert Membership.objects.filter(project=project, user=trainer).exists()


def test_a_member_of_another_project_is_not_found(client, project, lead):
    other = Project.objects.create(slug="other", name="Other")
    stranger = MembershipFactory(project=other, role="trainer")
    client.force_login(lead)
    url = reverse("member-role", kwargs={"slug": project.slug, "pk": stranger.pk})
    assert client.post(url, {"role": "lead"}).status_code == 404
    assert Membership.objects.get(pk=stranger.pk).role == "trainer"


def test_only_staff_create_projects(client, lead):
    url = reverse("project-new")
    assert client.get(url).status_code == 302  # anonymous: log in first
    client.force_login(lead)
    assert client.get(url).status_code == 403
    assert client.post(url, {"name": "X", "slug": "x"}).status_code == 403
    assert not Project.objects.filter(slug="x").exists()


def test_staff_create_a_project_and_lead_it(client, db):
    staff = UserFactory(username="sam", is_staff=True)
    client.force_login(staff)
    response = client.post(
        reverse("project-new"), {"name": "Beta", "slug": "beta", "description": "B"}
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("project-settings", kwargs={"slug": "beta"})
    project = Project.objects.get(slug="beta")
    assert Membership.objects.get(project=project, user=staff).role == "lead"
    # The same address again: the field is named and nothing is created.
    response = client.post(reverse("project-new"), {"name": "Again", "slug": "beta"})
    assert response.status_code == 400
    assert response.context["form"].errors["slug"] == [
        "A project with this address already exists."
    ]
    response = client.post(reverse("project-new"), {"name": "", "slug": "no spaces"})
    assert response.status_code == 400
    assert set(response.context["form"].errors) == {"name", "slug"}
    assert Project.objects.count() == 1


def _settings_data(project, **changes):
    data = {
        "name": project.name,
        "description": project.description,
        "guidelines": project.guidelines,
        "languages": "en",
        "replies_per_set": project.replies_per_set,
        "rankings_per_set": project.rankings_per_set,
        "draft_model": "",
        "comparison_contexts": ["model_reply", "human_reply", "prompt"],
        "comparison_queue_depth": 20,
        "include_human_reply": "on",
        "task_lease_minutes": 30,
        "max_open_tasks": 3,
        "max_turns": 20,
        "max_message_chars": 8000,
    }
    data.update(changes)
    return data


def test_settings_save_and_show_the_change_in_the_log(client, project, lead):
    model = ModelVersionFactory(name="tiny-policy")
    client.force_login(lead)
    url = reverse("project-settings", kwargs={"slug": project.slug})
    page = client.get(url)
    assert "Changing K or N applies to ranking sets made from now on" in page.text
    data = _settings_data(
        project,
        replies_per_set=5,
        languages="en, de",
        draft_model=model.pk,
        candidate_models=["tiny-policy"],
        task_lease_minutes=45,
        comparison_contexts=["prompt"],
    )
    response = client.post(url, data, follow=True)
    assert response.status_code == 200
    project.refresh_from_db()
    assert project.replies_per_set == 5
    assert project.languages == ["en", "de"]
    assert project.draft_model == model
    assert project.task_lease_seconds == 45 * 60
    assert project.comparison_contexts == ["prompt"]
    assert list(project.candidate_models.all()) == [model]
    text = response.text
    assert "K and N apply to ranking sets made from now on." in text
    assert 'data-audit-action="project.update"' in text
    assert '<strong>replies_per_set</strong>: <span class="before">4</span> → ' in text
    entry = audit_log(project).get()
    assert entry.actor == lead and entry.after["task_lease_seconds"] == 2700


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"replies_per_set": 12}, "replies_per_set"),
        ({"replies_per_set": "many"}, "replies_per_set"),
        ({"rankings_per_set": 0}, "rankings_per_set"),
        ({"languages": "en, english!"}, "languages"),
        ({"languages": " , "}, "languages"),
        ({"task_lease_minutes": "soon"}, "task_lease_minutes"),
        ({"comparison_contexts": ["nowhere"]}, "comparison_contexts"),
        ({"draft_model": "999999"}, "draft_model"),
        ({"candidate_models": ["no-such-model"]}, "candidate_models"),
        ({"name": ""}, "name"),
    ],
)
def test_settings_refuse_bad_input_naming_the_field(client, project, lead, changes, field):
    client.force_login(lead)
    url = reverse("project-settings", kwargs={"slug": project.slug})
    response = client.post(url, _settings_data(project, **changes))
    assert response.status_code == 400
    assert field in response.context["form"].errors
    assert "Nothing was saved" in response.text
    assert not audit_log(project).exists()


def test_guidelines_preview_is_sanitised_markdown(client, project, lead):
    client.force_login(lead)
    url = reverse("guidelines-preview", kwargs={"slug": project.slug})
    text = "# Rules\n\n**Be kind.** <script>alert(1)</script> [x](javascript:alert(1))"
    response = client.post(url, {"guidelines": text}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert "<h1>Rules</h1>" in response.text
    assert "<strong>Be kind.</strong>" in response.text
    assert "<script" not in response.text and "javascript:" not in response.text
    assert client.get(url).status_code == 405
    too_long = client.post(url, {"guidelines": "x" * 100_001})
    assert too_long.status_code == 400


def _label_data(rows, *, initial):
    data = {
        "labels-TOTAL_FORMS": str(len(rows)),
        "labels-INITIAL_FORMS": str(initial),
        "labels-MIN_NUM_FORMS": "0",
        "labels-MAX_NUM_FORMS": "50",
    }
    for i, row in enumerate(rows):
        for key, value in row.items():
            data[f"labels-{i}-{key}"] = value
    return data


def test_label_schema_add_rename_reorder_remove(client, project, lead):
    client.force_login(lead)
    url = reverse("label-schema", kwargs={"slug": project.slug})
    page = client.get(url)
    assert page.status_code == 200
    assert 'value="fails_instruction"' in page.text
    schema = project.label_schema
    rows = [
        {
            "original_name": label["name"],
            "name": label["name"],
            "kind": label["kind"],
            "description": label["description"],
            "ORDER": str(i + 1),
        }
        for i, label in enumerate(schema)
    ]
    rows[0]["ORDER"] = "9"  # harmful goes last
    rows[1]["DELETE"] = "on"  # untruthful goes
    rows[3]["name"] = "personal_data"  # pii is renamed
    rows.append({"original_name": "", "name": "concise", "kind": "likert", "ORDER": "0"})
    response = client.post(url, _label_data(rows, initial=len(schema)))
    assert response.status_code == 302
    project.refresh_from_db()
    assert [(label["name"], label["kind"]) for label in project.label_schema] == [
        ("concise", "likert"),
        ("fails_instruction", "flag"),
        ("personal_data", "flag"),
        ("wrong_language", "flag"),
        ("quality", "likert"),
        ("harmful", "flag"),
    ]
    entry = audit_log(project, actions=["project.label_schema"]).get()
    assert entry.reason == "pii renamed to personal_data"


def test_label_schema_names_the_bad_row(client, project, lead):
    client.force_login(lead)
    url = reverse("label-schema", kwargs={"slug": project.slug})
    before = list(project.label_schema)
    rows = [
        {"original_name": "harmful", "name": "Harmful!", "kind": "flag", "ORDER": "1"},
        {"original_name": "", "name": "dup", "kind": "flag", "ORDER": "2"},
        {"original_name": "", "name": "dup", "kind": "stars", "ORDER": "3"},
    ]
    response = client.post(url, _label_data(rows, initial=1))
    assert response.status_code == 400
    forms = response.context["formset"].forms
    assert "name" in forms[0].errors
    assert "kind" in forms[2].errors
    rows[2]["kind"] = "likert"
    rows[0]["name"] = "harmful"
    response = client.post(url, _label_data(rows, initial=1))
    assert response.status_code == 400
    assert response.context["formset"].forms[2].errors["name"] == ["Label 2 is already called dup."]
    # No management form at all: refused, not a server error.
    assert client.post(url, {"labels-0-name": "x"}).status_code == 400
    project.refresh_from_db()
    assert project.label_schema == before


def test_label_schema_refuses_a_kind_change_with_recorded_values(client, project, lead, trainer):
    from annotations.models import Label

    Label.objects.create(
        message=say(start(project, "Hi"), "Hello"), name="quality", value=3, annotator=trainer
    )
    client.force_login(lead)
    url = reverse("label-schema", kwargs={"slug": project.slug})
    rows = [{"original_name": "quality", "name": "quality", "kind": "flag", "ORDER": "1"}]
    response = client.post(url, _label_data(rows, initial=1))
    assert response.status_code == 400
    assert "cannot become a flag" in response.text


def test_sampling_per_model(client, project, lead):
    model = ModelVersionFactory(name="tiny-b")
    project.candidate_models.add(model)
    client.force_login(lead)
    url = reverse("sampling-settings", kwargs={"slug": project.slug})
    page = client.get(url)
    assert "Candidates from tiny-b" in page.text
    prefix = f"model-{model.pk}"
    data = {
        "default-temperature": "0.7",
        "default-max_new_tokens": "128",
        f"{prefix}-top_k": "20",
        f"{prefix}-seed": "7",
    }
    assert client.post(url, data).status_code == 302
    project.refresh_from_db()
    assert project.sampling == {"temperature": 0.7, "max_new_tokens": 128}
    assert project.candidate_sampling == {"tiny-b": {"top_k": 20, "seed": 7}}
    assert audit_log(project, actions=["project.update"]).get().before["sampling"] == {
        "temperature": 0.8,
        "top_p": 0.95,
        "max_new_tokens": 256,
    }
    bad = {**data, "default-top_p": "2", f"{prefix}-top_k": "lots"}
    response = client.post(url, bad)
    assert response.status_code == 400
    assert "top_p" in response.context["default"].errors
    assert "top_k" in response.context["per_model"][0][1].errors
    project.refresh_from_db()
    assert project.candidate_sampling == {"tiny-b": {"top_k": 20, "seed": 7}}


def test_members_add_by_username_or_email(client, project, lead):
    UserFactory(username="alice", email="Alice@Example.com")
    UserFactory(username="bob")
    client.force_login(lead)
    url = reverse("members", kwargs={"slug": project.slug})
    assert client.post(url, {"who": "alice@example.com", "role": "trainer"}).status_code == 302
    response = client.post(url, {"who": "bob", "role": "engineer"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert "<html" not in response.text and 'id="members-panel"' in response.text
    assert "bob added as engineer." in response.text
    roles = dict(project.memberships.values_list("user__username", "role"))
    assert roles == {"lee": "lead", "alice": "trainer", "bob": "engineer"}
    for who, error in [
        ("nobody", "No active account has this username or e-mail."),
        ("alice", "alice is already a member of Alpha."),
    ]:
        response = client.post(url, {"who": who, "role": "trainer"})
        assert response.status_code == 400
        assert response.context["add_form"].errors["who"] == [error]
    response = client.post(url, {"who": "zed", "role": "owner"})
    assert "role" in response.context["add_form"].errors


def test_member_role_change_and_the_last_lead(client, project, lead, trainer):
    client.force_login(lead)
    member = Membership.objects.get(project=project, user=trainer)
    url = reverse("member-role", kwargs={"slug": project.slug, "pk": member.pk})
    assert client.post(url, {"role": "engineer"}).status_code == 302
    assert Membership.objects.get(pk=member.pk).role == "engineer"
    assert client.post(url, {"role": "boss"}).status_code == 400
    own = Membership.objects.get(project=project, user=lead)
    url = reverse("member-role", kwargs={"slug": project.slug, "pk": own.pk})
    response = client.post(url, {"role": "trainer"}, HTTP_HX_REQUEST="true")
    assert "only lead" in response.text
    assert Membership.objects.get(pk=own.pk).role == "lead"


def test_removing_a_trainer_returns_held_tasks_and_keeps_submitted_work(
    client, project, lead, trainer
):
    project.rankings_per_set = 1
    project.save()
    ranked = ranked_set(
        project, start(project, "Q"), [say(start(project, "Q1"), "a")], [(trainer, [[0]])]
    )
    make_ranking_set(project, k=2, needed=1)
    held = claim(project, trainer)
    assert held is not None and held.state == Task.State.ASSIGNED
    client.force_login(lead)
    member = Membership.objects.get(project=project, user=trainer)
    url = reverse("member-remove", kwargs={"slug": project.slug, "pk": member.pk})
    response = client.post(url, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert "tina removed. 1 task went back to the pool." in response.text
    held.refresh_from_db()
    assert (held.state, held.assignee) == (Task.State.OPEN, None)
    assert Ranking.objects.filter(ranking_set=ranked, annotator=trainer).exists()
    assert not Membership.objects.filter(project=project, user=trainer).exists()
    entry = audit_log(project, actions=["member.remove"]).get()
    assert (entry.actor, entry.target, entry.before) == (lead, "user tina", {"role": "trainer"})
    # The removed trainer no longer reaches the project.
    client.force_login(trainer)
    assert client.get(reverse("project-detail", kwargs={"slug": project.slug})).status_code == 404


def test_change_log_page_escapes_and_paginates(client, project, lead):
    from annotations.audit import audit_record

    for i in range(55):
        audit_record(
            project=project,
            actor=lead,
            action="project.update",
            before={"name": f"old {i}"},
            after={"name": "<script>alert(1)</script>"},
        )
    client.force_login(lead)
    url = reverse("project-log", kwargs={"slug": project.slug})
    first = client.get(url)
    assert first.status_code == 200
    assert "<script>alert(1)</script>" not in first.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in first.text
    assert "old 54" in first.text and "old 4<" not in first.text
    second = client.get(url, {"page": 2})
    assert "old 4<" in second.text
    assert client.get(url, {"page": "nonsense"}).status_code == 200


def test_project_page_links_the_console_for_leads_only(client, project, lead, trainer):
    url = reverse("project-detail", kwargs={"slug": project.slug})
    settings_url = reverse("project-settings", kwargs={"slug": project.slug})
    client.force_login(lead)
    assert settings_url in client.get(url).text
    client.force_login(trainer)
    assert settings_url not in client.get(url).text


def test_a_lead_who_leaves_goes_home(client, project, lead):
    MembershipFactory(project=project, role="lead")
    client.force_login(lead)
    own = Membership.objects.get(project=project, user=lead)
    url = reverse("member-remove", kwargs={"slug": project.slug, "pk": own.pk})
    response = client.post(url, HTTP_HX_REQUEST="true")
    assert response.status_code == 204
    assert response["HX-Redirect"] == reverse("home")
    assert not Membership.objects.filter(pk=own.pk).exists()


def test_a_lead_who_steps_down_goes_to_the_project_page(client, project, lead):
    MembershipFactory(project=project, role="lead")
    client.force_login(lead)
    own = Membership.objects.get(project=project, user=lead)
    url = reverse("member-role", kwargs={"slug": project.slug, "pk": own.pk})
    response = client.post(url, {"role": "trainer"})
    assert response.status_code == 302
    assert response["Location"] == reverse("project-detail", kwargs={"slug": project.slug})
    assert Membership.objects.get(pk=own.pk).role == "trainer"
