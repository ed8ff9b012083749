"""Admin classes that keep a non-superuser inside the projects they lead.

Leads are staff so they can fix data in the admin, but the admin's model permissions are
global: without scoping, a lead of one project would read and change every project's data.
Every admin of project data derives from `ProjectScopedAdmin` (the path from the model to its
project) or, where an object belongs to no single project, from `ScopedAdmin` with its own
`scope`. Superusers keep the whole admin.
"""

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from annotations.access import projects_led_by


class ScopedChoicesMixin:
    """Foreign-key and many-to-many choices limited to what the user may reach in the admin.

    A related model whose admin is scoped offers that admin's queryset; any other related model
    offers nothing to a non-superuser (deny by default), so a form cannot point at another
    project's objects, even by typing an id into a raw-id field.
    """

    admin_site: admin.AdminSite

    def scoped_choices(self, request: HttpRequest, model: type[Model]) -> QuerySet | None:
        if request.user.is_superuser:
            return None
        related_admin = self.admin_site._registry.get(model)
        if isinstance(related_admin, ScopedAdmin):
            return related_admin.get_queryset(request)
        return model._default_manager.none()

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if "queryset" not in kwargs:
            choices = self.scoped_choices(request, db_field.related_model)
            if choices is not None:
                kwargs["queryset"] = choices
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if "queryset" not in kwargs:
            choices = self.scoped_choices(request, db_field.related_model)
            if choices is not None:
                kwargs["queryset"] = choices
        return super().formfield_for_manytomany(db_field, request, **kwargs)


class ScopedInline(ScopedChoicesMixin, admin.TabularInline):
    """An inline on a scoped admin: its parent is already in scope, its choices must be too."""


class ScopedAdmin(ScopedChoicesMixin, admin.ModelAdmin):
    """A model admin whose non-superusers see `scope(queryset, user)` and nothing else."""

    # Whether non-superusers (with the add permission) may add objects here. Off where a new
    # object would belong to no project the user leads.
    leads_may_add = True

    def scope(self, queryset: QuerySet, user) -> QuerySet:
        raise NotImplementedError

    def may_change(self, user, obj: Model) -> bool:
        """Beyond being in scope: may this non-superuser change or delete `obj`?"""
        return True

    def may_save(self, user, obj: Model) -> bool:
        """Is `obj`, as the form is about to save it, still inside the user's scope?"""
        return True

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return self.scope(queryset, request.user)

    def in_scope(self, request: HttpRequest, obj: Model | None) -> bool:
        if obj is None or request.user.is_superuser:
            return True
        return self.get_queryset(request).filter(pk=obj.pk).exists()

    def has_add_permission(self, request: HttpRequest, *args) -> bool:
        if not (request.user.is_superuser or self.leads_may_add):
            return False
        return super().has_add_permission(request, *args)

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return super().has_view_permission(request, obj) and self.in_scope(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return super().has_change_permission(request, obj) and self._may_alter(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return super().has_delete_permission(request, obj) and self._may_alter(request, obj)

    def _may_alter(self, request: HttpRequest, obj: Model | None) -> bool:
        if obj is None or request.user.is_superuser:
            return True
        return self.in_scope(request, obj) and self.may_change(request.user, obj)

    def save_model(self, request, obj, form, change) -> None:
        # The form's choices already keep a non-superuser inside their projects; this is the
        # last check before the row is written (the admin's transaction rolls back on raise).
        if not request.user.is_superuser and not self.may_save(request.user, obj):
            raise PermissionDenied("That object would belong to a project you do not lead.")
        super().save_model(request, obj, form, change)


class ProjectScopedAdmin(ScopedAdmin):
    """Admin of a model that belongs to one project, reached by `project_path`.

    `project_path` is the lookup from the model to its project (`project`,
    `conversation__project`, `ranking_set__project`, ...), or `pk` for Project itself.
    """

    project_path: str = "project"

    def scope(self, queryset: QuerySet, user) -> QuerySet:
        return queryset.filter(**{f"{self.project_path}__in": projects_led_by(user)})

    def project_of(self, obj: Model) -> Model | None:
        if self.project_path == "pk":
            return obj
        for name in self.project_path.split("__"):
            obj = getattr(obj, name, None)
            if obj is None:
                return None
        return obj

    def may_save(self, user, obj: Model) -> bool:
        project = self.project_of(obj)
        return (
            project is not None
            and project.pk is not None
            and projects_led_by(user).filter(pk=project.pk).exists()
        )
