"""Two projects with one object of every admin-registered model each, and a staff lead of A."""

from dataclasses import dataclass, field

from django.contrib.auth.models import Group, Permission
from django.db.models import Model

from annotations.models import (
    Conversation,
    Label,
    Membership,
    Message,
    ModelVersion,
    PromptReport,
    Ranking,
    RankingCandidate,
    RankingSet,
)
from labelling.models import RankingSetSampling, Task, TaskSkip
from tests.factories import MembershipFactory, ModelVersionFactory, ProjectFactory, UserFactory
from trainer_bridge.models import GenerationOutput, GenerationRequest

# What a lead is given by `seed_demo`, plus the auth permissions someone might add: scoping must
# hold even for a lead whose permissions are generous.
LEAD_PERMISSION_APPS = ["annotations", "labelling", "trainer_bridge", "auth", "authtoken"]


@dataclass
class Side:
    objects: dict[type[Model], Model] = field(default_factory=dict)

    def __getitem__(self, model: type[Model]) -> Model:
        return self.objects[model]


@dataclass
class World:
    lead: Model
    a: Side
    b: Side
    shared_model: ModelVersion
    group: Group


def _side(slug: str, name: str, lead, model: ModelVersion, shared: ModelVersion) -> Side:
    project = ProjectFactory(slug=slug, name=name, draft_model=model)
    project.candidate_models.add(shared)
    trainer = UserFactory(username=f"{slug}-trainer")
    membership = MembershipFactory(project=project, user=trainer, role=Membership.Role.TRAINER)
    MembershipFactory(project=project, user=lead, role=Membership.Role.LEAD)
    conversation = Conversation.objects.create(
        project=project, source=Conversation.Source.DEMONSTRATION, created_by=trainer
    )
    prompt = Message.objects.create(
        conversation=conversation,
        role=Message.Role.USER,
        text=f"{name} prompt",
        author_user=trainer,
    )
    generation = GenerationRequest.objects.create(
        project=project,
        context=prompt,
        model_version=model,
        purpose=GenerationRequest.Purpose.CANDIDATES,
        n=2,
        requested_by=lead,
    )
    replies = [
        Message.objects.create(
            conversation=conversation,
            parent=prompt,
            depth=1,
            role=Message.Role.ASSISTANT,
            text=f"{name} reply {i}",
            author_model=model,
            is_synthetic=True,
        )
        for i in range(2)
    ]
    for i, reply in enumerate(replies):
        GenerationOutput.objects.create(request=generation, message=reply, output_index=i)
    ranking_set = RankingSet.objects.create(project=project, context=prompt, rankings_needed=1)
    for position, reply in enumerate(replies):
        RankingCandidate.objects.create(ranking_set=ranking_set, message=reply, position=position)
    RankingSetSampling.objects.create(ranking_set=ranking_set, generation_request=generation)
    ranking_set.authors.add(trainer)
    ranking = Ranking.objects.create(
        ranking_set=ranking_set, annotator=trainer, order=[[replies[0].pk], [replies[1].pk]]
    )
    label = Label.objects.create(message=replies[0], name="harmful", value=1, annotator=trainer)
    report = PromptReport.objects.create(
        project=project, message=prompt, reporter=trainer, reason=PromptReport.Reason.PII
    )
    task = Task.objects.create(
        project=project,
        kind=Task.Kind.RANKING,
        ranking_set=ranking_set,
        autosave={"text": f"{name} autosaved work"},
    )
    skip = TaskSkip.objects.create(task=task, user=trainer, reason="busy")
    return Side(
        {
            type(project): project,
            Membership: membership,
            ModelVersion: model,
            Conversation: conversation,
            Message: prompt,
            GenerationRequest: generation,
            RankingSet: ranking_set,
            Ranking: ranking,
            Label: label,
            PromptReport: report,
            Task: task,
            TaskSkip: skip,
            type(trainer): trainer,
        }
    )


def build_world() -> World:
    """Project A ("Alpha-Open") led by `lee`; project B ("Bravo-Secret") led by someone else."""
    lead = UserFactory(username="lee", is_staff=True)
    lead.user_permissions.set(
        Permission.objects.filter(content_type__app_label__in=LEAD_PERMISSION_APPS)
    )
    other_lead = UserFactory(username="bob", is_staff=True)
    shared = ModelVersionFactory(name="shared-policy")
    a = _side("alpha", "Alpha-Open", lead, ModelVersionFactory(name="alpha-policy"), shared)
    b = _side("bravo", "Bravo-Secret", other_lead, ModelVersionFactory(name="bravo-policy"), shared)
    group = Group.objects.create(name="Leads")
    group.permissions.set(Permission.objects.all())
    return World(lead=lead, a=a, b=b, shared_model=shared, group=group)
