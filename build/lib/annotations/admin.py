"""Admin pages for the core data, and the auth admins scoped to the projects a lead leads."""

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin as DjangoGroupAdmin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.models import Group
from rest_framework.authtoken.admin import TokenAdmin as DrfTokenAdmin
from rest_framework.authtoken.models import TokenProxy

from annotations.access import (
    members_of_projects_led_by,
    model_versions_used_by,
    projects_led_by,
)
from annotations.admin_audit import (
    membership_deleted_in_admin,
    membership_saved_in_admin,
    project_saved_in_admin,
)
from annotations.admin_curation import MessageCurationActions, RankingCurationActions
from annotations.admin_scoping import ProjectScopedAdmin, ScopedAdmin, ScopedInline
from annotations.models import (
    Conversation,
    Label,
    Membership,
    Message,
    ModelVersion,
    Project,
    PromptReport,
    Ranking,
    RankingCandidate,
    RankingSet,
)

Related = admin.RelatedOnlyFieldListFilter  # filter choices from the visible rows only


class MembershipInline(ScopedInline):
    model = Membership
    extra = 1
    autocomplete_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(ProjectScopedAdmin):
    project_path = "pk"
    leads_may_add = False  # a new project would be one its creator does not lead

    list_display = [
        "name",
        "slug",
        "replies_per_set",
        "rankings_per_set",
        "draft_model",
        "is_active",
    ]
    list_filter = ["is_active"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    filter_horizontal = ["candidate_models"]
    inlines = [MembershipInline]

    # Changes made here go to the project's change log too.
    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        project_saved_in_admin(project=obj, actor=request.user, form=form, created=not change)

    def save_formset(self, request, form, formset, change) -> None:
        roles_before = {f.instance.pk: f.initial.get("role") for f in formset.initial_forms}
        super().save_formset(request, form, formset, change)
        if formset.model is not Membership:
            return
        for membership in formset.deleted_objects:
            membership_deleted_in_admin(membership=membership, actor=request.user)
        for membership in formset.new_objects:
            membership_saved_in_admin(membership=membership, actor=request.user, before_role=None)
        for membership, _ in formset.changed_objects:
            before = roles_before.get(membership.pk)
            membership_saved_in_admin(membership=membership, actor=request.user, before_role=before)


@admin.register(Membership)
class MembershipAdmin(ProjectScopedAdmin):
    list_display = ["user", "project", "role", "created_at"]
    list_filter = ["role", ("project", Related)]
    search_fields = ["user__username", "project__slug"]
    autocomplete_fields = ["user", "project"]

    # Changes made here go to the project's change log too.
    def save_model(self, request, obj, form, change) -> None:
        before = form.initial.get("role") if change else None
        super().save_model(request, obj, form, change)
        membership_saved_in_admin(membership=obj, actor=request.user, before_role=before)

    def delete_model(self, request, obj) -> None:
        membership_deleted_in_admin(membership=obj, actor=request.user)
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset) -> None:
        for membership in queryset.select_related("user", "project"):
            membership_deleted_in_admin(membership=membership, actor=request.user)
        super().delete_queryset(request, queryset)


@admin.register(ModelVersion)
class ModelVersionAdmin(ScopedAdmin):
    """Leads see the versions their projects use and change only those no other project uses."""

    list_display = ["name", "kind", "source", "revision", "dtype", "parent", "created_at"]
    list_filter = ["kind", "dtype"]
    search_fields = ["name", "source"]
    autocomplete_fields = ["parent"]
    leads_may_add = False  # a version no project uses yet is the engineers' (superusers') call

    def scope(self, queryset, user):
        return queryset.filter(pk__in=model_versions_used_by(projects_led_by(user)).values("pk"))

    def may_change(self, user, obj):
        others = Project.objects.exclude(pk__in=projects_led_by(user).values("pk"))
        return not model_versions_used_by(others).filter(pk=obj.pk).exists()


class MessageInline(ScopedInline):
    model = Message
    extra = 0
    fields = ["parent", "role", "depth", "text", "author_user", "author_model", "is_synthetic"]
    raw_id_fields = ["parent", "author_user", "author_model"]
    show_change_link = True


@admin.register(Conversation)
class ConversationAdmin(ProjectScopedAdmin):
    list_display = ["id", "project", "source", "created_by", "external_id", "created_at"]
    list_filter = ["source", ("project", Related)]
    search_fields = ["external_id", "messages__text"]
    raw_id_fields = ["created_by"]
    inlines = [MessageInline]


@admin.register(Message)
class MessageAdmin(MessageCurationActions, ProjectScopedAdmin):
    project_path = "conversation__project"
    list_display = [
        "id",
        "conversation",
        "role",
        "depth",
        "author_user",
        "author_model",
        "is_excluded",
        "created_at",
    ]
    list_filter = ["role", "is_synthetic", "is_excluded", ("conversation__project", Related)]
    # Exclusion is changed by the actions only, which log it with a reason.
    readonly_fields = ["is_excluded"]
    search_fields = ["text", "external_id"]
    raw_id_fields = ["conversation", "parent", "author_user", "author_model", "draft"]
    list_select_related = ["conversation", "author_user", "author_model"]


class RankingCandidateInline(ScopedInline):
    model = RankingCandidate
    extra = 0
    raw_id_fields = ["message"]


class RankingInline(ScopedInline):
    model = Ranking
    extra = 0
    fields = ["annotator", "order", "all_bad", "time_spent_ms", "is_excluded"]
    readonly_fields = ["is_excluded"]  # changed by the Ranking admin's actions only (logged)
    raw_id_fields = ["annotator"]


@admin.register(RankingSet)
class RankingSetAdmin(ProjectScopedAdmin):
    list_display = [
        "id", "project", "state", "rankings_needed", "agreement", "resamples", "created_at"
    ]  # fmt: skip
    list_filter = ["state", ("project", Related)]
    raw_id_fields = ["context"]
    readonly_fields = ["resamples", "cancel_reason"]
    inlines = [RankingCandidateInline, RankingInline]


@admin.register(Ranking)
class RankingAdmin(RankingCurationActions, ProjectScopedAdmin):
    project_path = "ranking_set__project"
    list_display = ["id", "ranking_set", "annotator", "all_bad", "is_excluded", "created_at"]
    list_filter = ["is_excluded", "all_bad", ("ranking_set__project", Related)]
    raw_id_fields = ["ranking_set", "annotator", "rewrite"]
    list_select_related = ["ranking_set", "annotator"]
    # Exclusion is changed by the actions only, which log it and recompute the set's consensus.
    readonly_fields = ["is_excluded", "excluded_by"]


@admin.register(Label)
class LabelAdmin(ProjectScopedAdmin):
    project_path = "message__conversation__project"
    list_display = ["id", "message", "name", "value", "annotator", "created_at"]
    list_filter = ["name"]
    raw_id_fields = ["message", "annotator"]


@admin.register(PromptReport)
class PromptReportAdmin(ProjectScopedAdmin):
    list_display = ["id", "project", "message", "reason", "state", "reporter", "created_at"]
    list_filter = ["state", "reason", ("project", Related)]
    search_fields = ["note", "message__text"]
    raw_id_fields = ["message", "reporter", "decided_by"]
    list_select_related = ["project", "reporter"]
    # Leads decide through the review queue, which settles every open report on the prompt at
    # once; the admin shows the decision but does not make it.
    readonly_fields = ["state", "decided_by", "decided_at"]


# The auth admins, replaced so a lead (staff, possibly granted auth permissions) reaches only the
# people of the projects they lead and can never raise anyone's standing, their own included.

User = get_user_model()
admin.site.unregister(User)
admin.site.unregister(Group)
admin.site.unregister(TokenProxy)


@admin.register(User)
class UserAdmin(ScopedAdmin, DjangoUserAdmin):
    leads_may_add = False  # a new account belongs to no project the lead leads
    elevating_fields = ["is_superuser", "is_staff", "groups", "user_permissions"]

    def scope(self, queryset, user):
        return queryset.filter(pk__in=members_of_projects_led_by(user).values("pk"))

    def may_change(self, user, obj):
        # Taking over a staff account, or one with a role in a project the lead does not lead,
        # would reach beyond the lead's projects; this covers the lead's own account too.
        if obj.is_staff or obj.is_superuser:
            return False
        return not obj.memberships.exclude(project__in=projects_led_by(user)).exists()

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        if not request.user.is_superuser:
            readonly += [name for name in self.elevating_fields if name not in readonly]
        return readonly


@admin.register(Group)
class GroupAdmin(ScopedAdmin, DjangoGroupAdmin):
    """Groups carry permissions across every project: superusers only."""

    leads_may_add = False

    def scope(self, queryset, user):
        return queryset.none()


@admin.register(TokenProxy)
class TokenAdmin(ScopedAdmin, DrfTokenAdmin):
    """An API token is its owner's password: superusers only."""

    leads_may_add = False

    def scope(self, queryset, user):
        return queryset.none()
