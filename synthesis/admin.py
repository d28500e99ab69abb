"""Researchers start, watch (live), cancel and resume jobs here, and look at synthetic pairs."""

import base64

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html

from annotations.admin import DatasetAdmin, ResearcherScopedAdmin
from crowdseg.errors import DomainError

from . import services
from .models import Job, SyntheticSample


@admin.register(Job)
class JobAdmin(ResearcherScopedAdmin):
    list_display = ["id", "kind", "dataset", "status", "progress_shown", "created_by", "created_at"]
    list_filter = ["kind", "status", "dataset"]
    fields = [
        "dataset", "kind", "status", "params", "progress_live", "loss_curve", "figure_shown", "result", "error",
        "attempts", "created_by", "created_at", "started_at", "heartbeat_at", "finished_at",
    ]  # fmt: skip
    readonly_fields = fields
    actions = ["cancel", "resume"]
    change_form_template = "admin/synthesis/job/change_form.html"

    def has_add_permission(self, request):
        return False  # jobs start from a dataset's actions, `manage.py validate_dataset` or the API

    def has_change_permission(self, request, obj=None):
        return super().has_view_permission(request, obj)

    @admin.display(description="progress")
    def progress_shown(self, obj):
        p = obj.progress or {}
        return f"{p.get('stage', '')} {p.get('done', 0)}/{p.get('total', 0)}" if p else ""

    @admin.display(description="progress")
    def progress_live(self, obj):
        p = obj.progress or {}
        return format_html(
            '<div id="job-progress" data-job="{}">{} — {} of {}, about {} s left</div>',
            obj.pk,
            p.get("stage", "waiting"),
            p.get("done", 0),
            p.get("total", 0),
            p.get("eta_seconds", "?"),
        )

    @admin.display(description="loss curve")
    def loss_curve(self, obj):
        if obj.kind != Job.Kind.PIX2PIX or not obj.history:
            return "-"
        return format_html(
            '<img src="{}" style="max-width:640px">', reverse("admin:synthesis_job_curve", args=[obj.pk])
        )

    @admin.display(description="figure")
    def figure_shown(self, obj):
        if not obj.figure:
            return "-"
        data = base64.b64encode(bytes(obj.figure)).decode()
        return format_html('<img src="data:image/png;base64,{}" style="max-width:800px">', data)

    @admin.action(description="Cancel (after the current epoch)")
    def cancel(self, request, queryset):
        for job in queryset:
            services.job_cancel(job=job)
        messages.success(request, "Cancellation requested.")

    @admin.action(description="Resume from the last checkpoint")
    def resume(self, request, queryset):
        for job in queryset:
            try:
                services.job_resume(job=job)
            except DomainError as exc:
                messages.error(request, exc.message)
            else:
                messages.success(request, f"Job {job.pk} queued again.")

    def get_urls(self):
        extra = [path("<int:pk>/curve.png", self.admin_site.admin_view(self.curve_view), name="synthesis_job_curve")]
        return extra + super().get_urls()

    def curve_view(self, request, pk):
        from synthesis.engine import EpochStats, loss_curve_png

        if not self.has_view_permission(request):
            raise PermissionDenied
        job = get_object_or_404(self.get_queryset(request), pk=pk)
        png = loss_curve_png([EpochStats(**epoch) for epoch in job.history])  # history holds EpochStats as dicts
        return HttpResponse(png, content_type="image/png")


@admin.register(SyntheticSample)
class SyntheticSampleAdmin(ResearcherScopedAdmin):
    list_display = ["thumbnail", "index", "dataset", "job", "generator_version", "seed", "created_at"]
    list_filter = ["dataset", "job"]
    readonly_fields = ["dataset", "job", "generator_version", "seed", "index", "size", "source_tasks", "created_at"]
    exclude = ["image", "masks"]

    @admin.display(description="")
    def thumbnail(self, obj):
        data = base64.b64encode(bytes(obj.image)).decode()
        return format_html('<img src="data:image/png;base64,{}" style="height:64px">', data)

    def has_add_permission(self, request):
        return False


def _start(kind):
    def action(modeladmin, request, queryset):
        for dataset in queryset:
            try:
                job = services.job_start(dataset=dataset, kind=kind, created_by=request.user)
            except DomainError as exc:
                messages.error(request, exc.message)
            else:
                url = reverse("admin:synthesis_job_change", args=[job.pk])
                messages.success(request, format_html('Started <a href="{}">job {}</a>.', url, job.pk))

    action.__name__ = f"start_{kind}"
    action.short_description = f"Start: {Job.Kind(kind).label}"
    return action


# The dataset page offers the jobs; registered from here so annotations does not depend on synthesis.
DatasetAdmin.actions = [*DatasetAdmin.actions, _start(Job.Kind.PIX2PIX), _start(Job.Kind.VALIDATION)]
