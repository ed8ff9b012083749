"""Create (or bring up to date) the demo project, its three accounts and its seed prompts."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from annotations.memberships import membership_set
from annotations.models import Conversation, Membership, Project
from annotations.projects import project_create
from annotations.selectors import prompt_pool
from annotations.services import conversation_start
from labelling.demo import DEMO_GUIDELINES, DEMO_PROMPTS

DEMO_SLUG = "demo"
DEMO_USERS = [
    ("trainer", Membership.Role.TRAINER),
    ("lead", Membership.Role.LEAD),
    ("engineer", Membership.Role.ENGINEER),
]
LEADS_GROUP = "Project leads"


class Command(BaseCommand):
    help = "Create the demo project with demo prompts and the accounts trainer, lead and engineer."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--password",
            default="parley-demo",
            help="Password for the three demo accounts (default: parley-demo).",
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="Run even when DEBUG is off (demo accounts have known passwords).",
        )

    def handle(self, *args, password: str, force: bool, **options) -> None:
        if not settings.DEBUG and not force:
            raise CommandError(
                "seed_demo creates accounts with known passwords; it runs only with DEBUG on "
                "(pass --force to run it anyway)."
            )
        with transaction.atomic():
            project = self._project()
            self._users(project, password)
            added = self._prompts(project)
        self.stdout.write(self.style.SUCCESS(f"Demo project '{project.slug}' is ready."))
        self.stdout.write(
            f"  prompts added: {added}, in the pool: {prompt_pool(project=project).count()}"
        )
        self.stdout.write("  Log in with:")
        for username, role in DEMO_USERS:
            self.stdout.write(f"    {username:<9} / {password}   ({role})")

    def _project(self) -> Project:
        project = Project.objects.filter(slug=DEMO_SLUG).first()
        if project is None:
            project = project_create(
                slug=DEMO_SLUG,
                name="Demo: helpful assistant",
                description="A demo project: write dialogues, rank replies, export datasets.",
                guidelines=DEMO_GUIDELINES,
            )
        return project

    def _users(self, project: Project, password: str) -> None:
        user_model = get_user_model()
        leads, _ = Group.objects.get_or_create(name=LEADS_GROUP)
        leads.permissions.set(
            Permission.objects.filter(
                content_type__app_label__in=["annotations", "labelling", "trainer_bridge"]
            )
        )
        for username, role in DEMO_USERS:
            user, created = user_model.objects.get_or_create(
                username=username, defaults={"email": f"{username}@example.com"}
            )
            if created or not user.check_password(password):
                user.set_password(password)
            # Leads review failed generations and annotations in the admin.
            user.is_staff = role == Membership.Role.LEAD
            user.save()
            if role == Membership.Role.LEAD:
                user.groups.add(leads)
            membership_set(project=project, user=user, role=role)

    def _prompts(self, project: Project) -> int:
        existing = set(prompt_pool(project=project).values_list("text", flat=True))
        added = 0
        for text in DEMO_PROMPTS:
            if text in existing:
                continue
            conversation_start(project=project, text=text, source=Conversation.Source.PROMPT)
            added += 1
        return added
