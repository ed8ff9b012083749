"""The admin: every model has a page, and a staff lead reaches only the projects they lead."""

import json

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.messages import get_messages
from django.core.exceptions import PermissionDenied
from django.test import RequestFactory
from django.urls import reverse
from rest_framework.authtoken.models import Token

from annotations.audit import audit_log
from annotations.models import (
    Conversation,
    Label,
    Membership,
    Message,
    ModelVersion,
    Project,
    PromptReport,
    Ranking,
    RankingSet,
)
from annotations.services import conversation_start
from tests.conftest import (
    admin_url,
    assert_changelist_scoped,
    assert_no_choices_from_b,
    assert_object_unreachable,
)
from tests.factories import UserFactory, ranked_set, say, start, trainers
from trainer_bridge.models import GenerationRequest

pytestmark = pytest.mark.django_db

User = get_user_model()

# Every admin of project data, each with one object in project A and one in project B.
SCOPED_MODELS = [
    Project, Membership, Conversation, Message, GenerationRequest, RankingSet, Ranking, Label,
    PromptReport, User,
]  # fmt: skip


def test_every_model_of_ours_has_a_working_admin(client, project):
    conversation_start(project=project, text="Hello")
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    ours = [
        model
        for model in admin.site._registry
        if model._meta.app_label in {"annotations", "labelling", "exports", "trainer_bridge"}
    ]
    names = {model.__name__ for model in ours}
    assert {
        "Project", "Membership", "ModelVersion", "Conversation", "Message", "RankingSet",
        "Ranking", "Label", "GenerationRequest", "PromptReport", "Task",
    } <= names  # fmt: skip
    for model in ours:
        opts = model._meta
        changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        assert client.get(changelist).status_code == 200, changelist
        add = reverse(f"admin:{opts.app_label}_{opts.model_name}_add")
        assert client.get(add).status_code == 200, add


# A lead sees and changes only their projects' objects.


@pytest.mark.parametrize("model", SCOPED_MODELS, ids=lambda m: m.__name__)
def test_a_lead_lists_only_their_projects_objects(lead_client, world, model):
    assert_changelist_scoped(lead_client, model, world)


@pytest.mark.parametrize("model", SCOPED_MODELS, ids=lambda m: m.__name__)
def test_a_lead_cannot_view_change_or_delete_another_projects_object(lead_client, world, model):
    assert_object_unreachable(lead_client, model, world.b[model])


@pytest.mark.parametrize(
    "model", [m for m in SCOPED_MODELS if m is not User], ids=lambda m: m.__name__
)
def test_a_lead_may_open_their_own_projects_object(lead_client, world, model):
    response = lead_client.get(admin_url(model, "change", world.a[model].pk))
    assert response.status_code == 200
    assert response.context["has_change_permission"]
    assert_no_choices_from_b(response, world)


@pytest.mark.parametrize(
    "model", [m for m in SCOPED_MODELS if m not in {Project, User}], ids=lambda m: m.__name__
)
def test_add_forms_offer_no_choice_from_another_project(lead_client, world, model):
    response = lead_client.get(admin_url(model, "add"))
    assert response.status_code == 200
    assert_no_choices_from_b(response, world)


def test_a_lead_cannot_add_a_membership_in_another_project(lead_client, world):
    b = world.b[Project]
    for user in [world.lead, world.a[User]]:
        response = lead_client.post(
            admin_url(Membership, "add"), {"user": user.pk, "project": b.pk, "role": "lead"}
        )
        assert response.status_code == 200  # the form again, with the error
        assert response.context["adminform"].form.errors["project"]
    assert not Membership.objects.filter(project=b, user__in=[world.lead, world.a[User]]).exists()


def test_a_lead_cannot_move_their_membership_to_another_project(lead_client, world):
    own = Membership.objects.get(user=world.lead, project=world.a[Project])
    response = lead_client.post(
        admin_url(Membership, "change", own.pk),
        {"user": world.lead.pk, "project": world.b[Project].pk, "role": "lead"},
    )
    assert response.status_code == 200
    own.refresh_from_db()
    assert own.project == world.a[Project]
    assert not Membership.objects.filter(user=world.lead, project=world.b[Project]).exists()


def test_a_lead_cannot_add_another_projects_outsider_to_their_project(lead_client, world):
    response = lead_client.post(
        admin_url(Membership, "add"),
        {"user": world.b[User].pk, "project": world.a[Project].pk, "role": "trainer"},
    )
    assert response.context["adminform"].form.errors["user"]
    assert not Membership.objects.filter(user=world.b[User], project=world.a[Project]).exists()


def test_a_lead_may_add_a_member_of_their_project_as_lead(lead_client, world):
    membership = world.a[Membership]
    response = lead_client.post(
        admin_url(Membership, "change", membership.pk),
        {"user": membership.user_id, "project": world.a[Project].pk, "role": "lead"},
    )
    assert response.status_code == 302
    membership.refresh_from_db()
    assert membership.role == "lead"


# Each form is valid but for the one field that points at project B.
ADDS_IN_PROJECT_B = {
    Conversation: lambda w: {
        "project": w.b[Project].pk,
        "source": "api",
        "meta": "{}",
        "messages-TOTAL_FORMS": 0,
        "messages-INITIAL_FORMS": 0,
    },
    Message: lambda w: {
        "conversation": w.b[Conversation].pk,
        "role": "user",
        "text": "x",
        "depth": 0,
        "lang": "en",
        "meta": "{}",
    },
    Ranking: lambda w: {
        "ranking_set": w.b[RankingSet].pk,
        "order": "[[1]]",
        "flags": "{}",
    },
    Label: lambda w: {"message": w.b[Message].pk, "name": "harmful", "value": 1},
    PromptReport: lambda w: {
        "project": w.b[Project].pk,
        "message": w.a[Message].pk,
        "reporter": w.lead.pk,
        "reason": "pii",
    },
    GenerationRequest: lambda w: {
        "project": w.b[Project].pk,
        "context": w.a[Message].pk,
        "model_version": w.a[ModelVersion].pk,
        "purpose": "draft",
        "n": 1,
        "params": "{}",
        "state": "queued",
        "attempts": 0,
    },
}


@pytest.mark.parametrize("model", list(ADDS_IN_PROJECT_B), ids=lambda m: m.__name__)
def test_adding_an_object_in_another_project_stores_nothing(lead_client, world, model):
    before = model.objects.count()
    response = lead_client.post(admin_url(model, "add"), ADDS_IN_PROJECT_B[model](world))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert set(errors) <= {"project", "conversation", "ranking_set", "message"}, errors
    assert errors
    assert model.objects.count() == before


def test_a_lead_cannot_move_a_conversation_to_another_project(lead_client, world):
    conversation = world.a[Conversation]
    response = lead_client.post(
        admin_url(Conversation, "change", conversation.pk),
        {
            "project": world.b[Project].pk,
            "source": conversation.source,
            "meta": "{}",
            "messages-TOTAL_FORMS": 0,
            "messages-INITIAL_FORMS": 0,
        },
    )
    assert response.status_code == 200
    conversation.refresh_from_db()
    assert conversation.project == world.a[Project]


def test_the_last_check_before_saving_refuses_an_object_of_another_project(world):
    """Behind the form's choices, save_model itself refuses a row outside the led projects."""
    request = RequestFactory().post("/")
    request.user = world.lead
    membership = Membership(user=world.lead, project=world.b[Project], role="lead")
    with pytest.raises(PermissionDenied):
        admin.site._registry[Membership].save_model(request, membership, None, False)
    assert not Membership.objects.filter(user=world.lead, project=world.b[Project]).exists()


def test_a_lead_cannot_create_a_project(lead_client, world):
    assert lead_client.get(admin_url(Project, "add")).status_code == 403
    lead_client.post(admin_url(Project, "add"), {"slug": "mine", "name": "Mine"})
    assert not Project.objects.filter(slug="mine").exists()


# Exclusion from exports: a reason asked first, then the curation services (audit log, the set's
# consensus and agreement computed again), within the lead's projects only.


def act(client, model, action: str, pks: list[int], reason: str | None = None):
    """Pick an admin action on the change list; with `reason`, confirm it on the next page."""
    data = {"action": action, "_selected_action": pks}
    if reason is not None:
        data |= {"apply": "yes", "reason": reason}
    return client.post(admin_url(model, "changelist"), data)


def dissenting_set(project):
    r1, r2, r3 = trainers(project, 3, prefix="ranker")
    context = start(project, "Which?")
    replies = [say(context, f"reply {x}") for x in "abc"]
    the_set = ranked_set(
        project,
        context,
        replies,
        [(r1, [[0], [1], [2]]), (r2, [[0], [1], [2]]), (r3, [[2], [1], [0]])],
    )
    return the_set, Ranking.objects.get(ranking_set=the_set, annotator=r3)


def test_excluding_rankings_asks_for_a_reason_before_changing_anything(lead_client, world):
    ranking = world.a[Ranking]
    page = act(lead_client, Ranking, "exclude_from_exports", [ranking.pk])
    assert page.status_code == 200
    assert page.templates[0].name == "admin/annotations/exclusion_confirmation.html"
    html = page.content.decode()
    assert 'name="reason"' in html and 'name="apply"' in html and "csrfmiddlewaretoken" in html
    assert f'name="_selected_action" value="{ranking.pk}"' in html
    # Confirming without a reason shows the page again, with the error on the field.
    again = act(lead_client, Ranking, "exclude_from_exports", [ranking.pk], reason="  ")
    assert again.status_code == 200
    assert again.context["form"].errors["reason"]
    ranking.refresh_from_db()
    assert not ranking.is_excluded
    assert not audit_log(world.a[Project]).exists()


def test_excluding_a_ranking_in_the_admin_logs_it_and_recomputes_its_set(lead_client, world):
    project = world.a[Project]
    the_set, dissent = dissenting_set(project)
    before = the_set.agreement
    response = act(lead_client, Ranking, "exclude_from_exports", [dissent.pk], reason="Random")
    assert response.status_code == 302
    dissent.refresh_from_db()
    the_set.refresh_from_db()
    assert dissent.is_excluded
    assert the_set.agreement == 1.0 and before < 1.0
    entry = audit_log(project, actions=["ranking."]).get()
    assert (entry.action, entry.actor, entry.reason) == ("ranking.exclude", world.lead, "Random")
    assert entry.before["set_agreement"] == before and entry.after["set_agreement"] == 1.0
    messages = [str(m) for m in get_messages(response.wsgi_request)]
    assert messages == ["1 ranking(s) excluded from exports."]

    # Including it again, with no reason needed, restores the set's figures and logs that too.
    act(lead_client, Ranking, "include_in_exports", [dissent.pk], reason="")
    dissent.refresh_from_db()
    the_set.refresh_from_db()
    assert not dissent.is_excluded
    assert the_set.agreement == before
    assert audit_log(project).first().action == "ranking.include"


def test_excluding_messages_in_the_admin_goes_through_the_audit_log(lead_client, world):
    message = world.a[Message]
    Message.objects.filter(pk=message.pk).update(text="<b>My</b> card number")
    act(lead_client, Message, "exclude_from_exports", [message.pk], reason="Contains PII")
    message.refresh_from_db()
    assert message.is_excluded
    entry = audit_log(world.a[Project]).get()
    assert (entry.action, entry.target) == ("message.exclude", f"message {message.pk}")
    assert entry.reason == "Contains PII"
    # The confirmation page names the message (escaped), and says it is excluded now.
    page = act(lead_client, Message, "include_in_exports", [message.pk]).content.decode()
    assert "&lt;b&gt;My&lt;/b&gt; card number (excluded now)" in page.replace("</a>", "")
    assert "<b>My</b>" not in page
    act(lead_client, Message, "include_in_exports", [message.pk], reason="")
    message.refresh_from_db()
    assert not message.is_excluded
    assert audit_log(world.a[Project]).first().action == "message.include"


@pytest.mark.parametrize("model", [Ranking, Message], ids=lambda m: m.__name__)
def test_exclusion_actions_touch_only_the_leads_projects(lead_client, world, model):
    act(
        lead_client,
        model,
        "exclude_from_exports",
        [world.a[model].pk, world.b[model].pk],
        reason="Spam",
    )
    assert model.objects.get(pk=world.a[model].pk).is_excluded
    assert not model.objects.get(pk=world.b[model].pk).is_excluded
    assert not audit_log(world.b[Project]).exists()
    # Nor does the confirmation page name another project's object.
    page = act(lead_client, model, "include_in_exports", [world.b[model].pk])
    assert str(world.b[model]) not in page.content.decode()


@pytest.mark.parametrize("model", [Ranking, Message], ids=lambda m: m.__name__)
def test_exclusion_actions_need_the_change_permission(client, world, model):
    viewer = UserFactory(username="viewer", is_staff=True)
    Membership.objects.create(user=viewer, project=world.a[Project], role="lead")
    viewer.user_permissions.set(
        world.lead.user_permissions.filter(codename=f"view_{model._meta.model_name}")
    )
    client.force_login(viewer)
    act(client, model, "exclude_from_exports", [world.a[model].pk], reason="Spam")
    assert not model.objects.get(pk=world.a[model].pk).is_excluded
    assert not audit_log(world.a[Project]).exists()


def test_the_change_form_cannot_flip_an_exclusion_without_the_log(lead_client, world):
    ranking = world.a[Ranking]
    response = lead_client.post(
        admin_url(Ranking, "change", ranking.pk),
        {
            "ranking_set": ranking.ranking_set_id,
            "annotator": ranking.annotator_id,
            "order": json.dumps(ranking.order),
            "flags": "{}",
            "is_excluded": "on",
        },
    )
    assert response.status_code == 302  # saved, but without the read-only field
    ranking.refresh_from_db()
    assert not ranking.is_excluded


# Model versions: those the lead's projects use, changed only when no other project uses them.


def test_a_lead_sees_only_the_model_versions_their_projects_use(lead_client, world):
    response = lead_client.get(admin_url(ModelVersion, "changelist"))
    page = response.content.decode()
    assert admin_url(ModelVersion, "change", world.a[ModelVersion].pk) in page
    assert admin_url(ModelVersion, "change", world.shared_model.pk) in page
    assert admin_url(ModelVersion, "change", world.b[ModelVersion].pk) not in page
    assert_object_unreachable(lead_client, ModelVersion, world.b[ModelVersion])


def test_a_lead_cannot_change_a_model_version_another_project_uses(lead_client, world):
    shared = world.shared_model
    response = lead_client.get(admin_url(ModelVersion, "change", shared.pk))
    assert response.status_code == 200
    assert not response.context["has_change_permission"]
    data = {"name": shared.name, "kind": "policy", "source": "/tmp/evil", "dtype": "auto"}
    assert lead_client.post(admin_url(ModelVersion, "change", shared.pk), data).status_code == 403
    delete = lead_client.post(admin_url(ModelVersion, "delete", shared.pk), {"post": "yes"})
    assert delete.status_code == 403
    shared.refresh_from_db()
    assert shared.source == "org/some-model"


def test_a_lead_may_change_a_model_version_only_their_projects_use(lead_client, world):
    own = world.a[ModelVersion]
    data = {"name": own.name, "kind": "policy", "source": "/models/new", "dtype": "auto"}
    assert lead_client.post(admin_url(ModelVersion, "change", own.pk), data).status_code == 302
    own.refresh_from_db()
    assert own.source == "/models/new"


def test_a_lead_cannot_register_a_model_version(lead_client, world):
    assert lead_client.get(admin_url(ModelVersion, "add")).status_code == 403


def test_a_projects_model_choices_are_the_ones_its_leads_projects_use(lead_client, world):
    response = lead_client.get(admin_url(Project, "change", world.a[Project].pk))
    choices = response.context["adminform"].form.fields["candidate_models"].queryset
    assert set(choices) == {world.a[ModelVersion], world.shared_model}


# Users, groups and tokens.


def test_a_lead_cannot_elevate_themselves(lead_client, world):
    lead = world.lead
    response = lead_client.get(admin_url(User, "change", lead.pk))
    assert not response.context["has_change_permission"]
    data = {
        "username": lead.username,
        "is_active": "on",
        "is_staff": "on",
        "is_superuser": "on",
        "groups": [world.group.pk],
        "user_permissions": list(lead.user_permissions.values_list("pk", flat=True)),
    }
    assert lead_client.post(admin_url(User, "change", lead.pk), data).status_code == 403
    assert lead_client.get(admin_url(User, "password_change", lead.pk)).status_code == 403
    lead.refresh_from_db()
    assert not lead.is_superuser
    assert not lead.groups.exists()


def test_a_lead_cannot_elevate_a_trainer_of_their_project(lead_client, world):
    trainer = world.a[User]
    response = lead_client.get(admin_url(User, "change", trainer.pk))
    assert response.context["has_change_permission"]
    form = response.context["adminform"].form
    assert not {"is_superuser", "is_staff", "groups", "user_permissions"} & set(form.fields)
    lead_client.post(
        admin_url(User, "change", trainer.pk),
        {
            "username": trainer.username,
            "email": "new@example.com",
            "is_active": "on",
            "is_staff": "on",
            "is_superuser": "on",
            "groups": [world.group.pk],
            "date_joined_0": "2024-01-01",
            "date_joined_1": "00:00:00",
        },
    )
    trainer.refresh_from_db()
    assert trainer.email == "new@example.com"  # the change went through ...
    assert not (trainer.is_staff or trainer.is_superuser or trainer.groups.exists())  # ... only it


def test_a_lead_cannot_take_over_a_member_who_has_a_role_elsewhere(lead_client, world):
    trainer = world.a[User]
    Membership.objects.create(user=trainer, project=world.b[Project], role="lead")
    response = lead_client.get(admin_url(User, "change", trainer.pk))
    assert not response.context["has_change_permission"]
    assert lead_client.get(admin_url(User, "password_change", trainer.pk)).status_code == 403
    lead_client.post(
        admin_url(User, "password_change", trainer.pk),
        {"password1": "Taken-0ver!", "password2": "Taken-0ver!"},
    )
    trainer.refresh_from_db()
    assert trainer.check_password("pw-for-tests")


def test_a_lead_cannot_add_users(lead_client, world):
    assert lead_client.get(admin_url(User, "add")).status_code == 403


def test_a_lead_reaches_no_group(lead_client, world):
    response = lead_client.get(admin_url(Group, "changelist"))
    assert admin_url(Group, "change", world.group.pk) not in response.content.decode()
    assert_object_unreachable(lead_client, Group, world.group)
    assert lead_client.get(admin_url(Group, "add")).status_code == 403


def test_a_lead_reaches_no_api_token(lead_client, world):
    token = Token.objects.create(user=world.a[User])
    response = lead_client.get(reverse("admin:authtoken_tokenproxy_changelist"))
    assert token.key not in response.content.decode()
    response = lead_client.get(reverse("admin:authtoken_tokenproxy_change", args=[token.user_id]))
    assert response.status_code != 200


# Superusers keep everything.


@pytest.mark.parametrize("model", [*SCOPED_MODELS, ModelVersion, Group], ids=lambda m: m.__name__)
def test_a_superuser_sees_every_project(client, world, model):
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    page = client.get(admin_url(model, "changelist")).content.decode()
    side = world.b.objects.get(model, world.group)
    assert admin_url(model, "change", side.pk) in page
    assert client.get(admin_url(model, "change", side.pk)).status_code == 200
