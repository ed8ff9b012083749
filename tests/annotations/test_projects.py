"""Project and membership writes: checked, applied, and logged before -> after."""

import pytest
from django.core.exceptions import ValidationError

from annotations.audit import audit_log
from annotations.memberships import (
    membership_add,
    membership_change_role,
    membership_remove,
    membership_set,
)
from annotations.models import Label, Membership, Project, RankingSet
from annotations.projects import (
    LabelDefinition,
    label_schema_update,
    project_create,
    project_update,
)
from tests.factories import (
    MembershipFactory,
    ModelVersionFactory,
    UserFactory,
    make_ranking_set,
    ranked_set,
    say,
    start,
)

pytestmark = pytest.mark.django_db


def test_project_create_logs_it_and_makes_the_creator_lead():
    staff = UserFactory(username="sam", is_staff=True)
    project = project_create(slug="beta", name="Beta", actor=staff, lead=staff)
    assert Membership.objects.get(project=project, user=staff).role == "lead"
    actions = list(audit_log(project).values_list("action", "actor__username", "after"))
    assert actions == [
        ("member.add", "sam", {"role": "lead"}),
        ("project.create", "sam", {"slug": "beta", "name": "Beta"}),
    ]


def test_project_create_refuses_a_taken_slug(project):
    with pytest.raises(ValidationError) as raised:
        project_create(slug="alpha", name="Again")
    assert "slug" in raised.value.message_dict


def test_project_update_logs_only_what_changed(project, lead):
    model = ModelVersionFactory(name="tiny-a")
    changed = project_update(
        project=project,
        actor=lead,
        name=project.name,
        replies_per_set=6,
        draft_model=model,
        candidate_models=["tiny-a"],
    )
    assert set(changed) == {"replies_per_set", "draft_model", "candidate_models"}
    entry = audit_log(project, actions=["project.update"]).get()
    assert entry.actor == lead
    assert entry.before == {"replies_per_set": 4, "draft_model": None, "candidate_models": []}
    assert entry.after == {
        "replies_per_set": 6,
        "draft_model": "tiny-a",
        "candidate_models": ["tiny-a"],
    }
    project.refresh_from_db()
    assert project.replies_per_set == 6
    assert list(project.candidate_models.values_list("name", flat=True)) == ["tiny-a"]
    # The same values again: nothing to log.
    assert project_update(project=project, actor=lead, replies_per_set=6) == {}
    assert audit_log(project, actions=["project.update"]).count() == 1


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"replies_per_set": 12}, "replies_per_set"),
        ({"rankings_per_set": 0}, "rankings_per_set"),
        ({"languages": ["en", "not a code"]}, "languages"),
        ({"comparison_contexts": ["anywhere"]}, "comparison_contexts"),
        ({"sampling": {"temperature": "hot"}}, "sampling"),
        ({"candidate_sampling": {"tiny": 3}}, "candidate_sampling"),
        ({"task_lease_seconds": 5}, "task_lease_seconds"),
    ],
)
def test_project_update_names_the_bad_field_and_changes_nothing(project, lead, fields, field):
    with pytest.raises(ValidationError) as raised:
        project_update(project=project, actor=lead, **fields)
    assert field in raised.value.message_dict
    assert not audit_log(project).exists()
    assert Project.objects.get(pk=project.pk).replies_per_set == 4


def test_changing_k_and_n_leaves_existing_sets_alone(project, lead):
    existing = make_ranking_set(project, k=4, needed=3)
    project_update(project=project, actor=lead, replies_per_set=5, rankings_per_set=2)
    existing.refresh_from_db()
    assert existing.rankings_needed == 3
    assert existing.entries.count() == 4
    assert RankingSet.objects.get(pk=existing.pk).state == "collecting"


def test_label_schema_rename_carries_recorded_values(project, lead, trainer):
    reply = say(start(project, "Hi"), "Hello!")
    Label.objects.create(message=reply, name="pii", value=1, annotator=trainer)
    other = ranked_set(
        project,
        start(project, "Q"),
        [say(start(project, "Q2"), "a"), say(start(project, "Q3"), "b")],
        [(trainer, [[0], [1]])],
        flags={0: {1: ["pii", "harmful"]}},
    )
    labels = [
        LabelDefinition(name="personal_data", kind="flag", renamed_from="pii"),
        LabelDefinition(name="quality", kind="likert", renamed_from="quality"),
    ]
    assert label_schema_update(project=project, actor=lead, labels=labels)
    project.refresh_from_db()
    assert [label["name"] for label in project.label_schema] == ["personal_data", "quality"]
    assert Label.objects.get(message=reply).name == "personal_data"
    ranking = other.rankings.get()
    assert ranking.flags == {str(other.ids[1]): ["personal_data", "harmful"]}
    entry = audit_log(project, actions=["project.label_schema"]).get()
    assert [label["name"] for label in entry.before][:2] == ["harmful", "untruthful"]
    assert entry.reason == "pii renamed to personal_data"


def test_label_schema_refuses_a_kind_change_of_a_label_with_values(project, lead, trainer):
    reply = say(start(project, "Hi"), "Hello!")
    Label.objects.create(message=reply, name="quality", value=4, annotator=trainer)
    with pytest.raises(ValidationError) as raised:
        label_schema_update(
            project=project,
            actor=lead,
            labels=[LabelDefinition(name="quality", kind="flag", renamed_from="quality")],
        )
    assert "cannot become a flag" in str(raised.value)
    # With no values recorded the kind may change.
    assert label_schema_update(
        project=project,
        actor=lead,
        labels=[LabelDefinition(name="harmful", kind="likert", renamed_from="harmful")],
    )


@pytest.mark.parametrize(
    "labels",
    [
        [LabelDefinition(name="Bad Name", kind="flag")],
        [LabelDefinition(name="a", kind="stars")],
        [LabelDefinition(name="a", kind="flag"), LabelDefinition(name="a", kind="likert")],
        [LabelDefinition(name="a", kind="flag", renamed_from="never_there")],
    ],
)
def test_label_schema_refuses_bad_labels(project, lead, labels):
    before = list(project.label_schema)
    with pytest.raises(ValidationError) as raised:
        label_schema_update(project=project, actor=lead, labels=labels)
    assert "label_schema" in raised.value.message_dict
    project.refresh_from_db()
    assert project.label_schema == before


def test_membership_add_change_remove_are_logged(project, lead):
    alice = UserFactory(username="alice")
    membership = membership_add(project=project, actor=lead, user=alice, role="trainer")
    with pytest.raises(ValidationError) as raised:
        membership_add(project=project, actor=lead, user=alice, role="lead")
    assert "user" in raised.value.message_dict
    membership_change_role(membership=membership, actor=lead, role="engineer")
    membership_remove(membership=membership, actor=lead)
    assert not Membership.objects.filter(project=project, user=alice).exists()
    log = list(
        audit_log(project, actions=["member."]).values_list("action", "target", "before", "after")
    )
    assert log == [
        ("member.remove", "user alice", {"role": "engineer"}, None),
        ("member.role", "user alice", {"role": "trainer"}, {"role": "engineer"}),
        ("member.add", "user alice", None, {"role": "trainer"}),
    ]


def test_the_only_lead_cannot_be_demoted_or_removed(project, lead):
    membership = Membership.objects.get(project=project, user=lead)
    with pytest.raises(ValidationError):
        membership_change_role(membership=membership, actor=lead, role="trainer")
    with pytest.raises(ValidationError):
        membership_remove(membership=membership, actor=lead)
    second = MembershipFactory(project=project, role="lead").user
    membership_change_role(membership=membership, actor=second, role="trainer")
    assert Membership.objects.get(project=project, user=lead).role == "trainer"


def test_membership_refuses_an_unknown_role(project, lead):
    with pytest.raises(ValidationError) as raised:
        membership_add(project=project, actor=lead, user=UserFactory(), role="owner")
    assert "role" in raised.value.message_dict


def test_membership_set_adds_or_changes(project):
    user = UserFactory(username="bo")
    membership_set(project=project, user=user, role="trainer")
    membership_set(project=project, user=user, role="engineer")
    assert Membership.objects.get(project=project, user=user).role == "engineer"
    assert audit_log(project).count() == 2
