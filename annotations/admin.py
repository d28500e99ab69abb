from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from accounts.models import Role, User
from crowdseg.errors import DomainError
from inference.engine import rle

from . import consensus, exports, figures, selectors, services
from .fusion import entropy_bits
from .io import ImageReadError, ReadOptions
from .io.preprocess import CT_WINDOWS
from .models import (
    Annotation,
    AnnotatorReliability,
    Dataset,
    ExportJob,
    FusedLabel,
    GoldStandard,
    Image,
    LabelClass,
    Task,
)


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", MultipleFileInput())
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        single = super().clean
        if isinstance(data, list | tuple):
            return [single(d, initial) for d in data]
        return [single(data, initial)]


class ImportForm(forms.Form):
    files = MultipleFileField(help_text="DICOM, NIfTI (.nii, .nii.gz), PNG, JPEG or TIFF")
    ct_window = forms.ChoiceField(choices=[(k, k.replace("_", " ")) for k in CT_WINDOWS], initial="soft_tissue")
    nifti_axis = forms.ChoiceField(choices=[(a, a) for a in ("axial", "coronal", "sagittal")], initial="axial")
    keep_file_names = forms.BooleanField(
        required=False,
        help_text="Store each file's name with its images. Off: they get an opaque name, since file names "
        "often hold patient names or IDs.",
    )


# How each model that a form may point at reaches its dataset: the choices a researcher is offered
# (selects, raw-id fields, which validate against the same choices) are limited to their datasets.
_DATASET_OF = {
    "annotations.dataset": "pk",
    "annotations.labelclass": "dataset",
    "annotations.image": "dataset",
    "annotations.task": "label_class__dataset",
    "gamification.campaign": "dataset",
    "synthesis.job": "dataset",
}


def researched(queryset, dataset_path: str, user):
    """``queryset`` cut to the rows whose dataset (``dataset_path`` from its model) ``user`` researches."""
    if user.is_superuser:
        return queryset
    return queryset.filter(**{f"{dataset_path}__in": selectors.datasets_for_researcher(user=user).values("pk")})


class ResearcherScopedAdmin(admin.ModelAdmin):
    """A researcher sees, filters by, and picks only what belongs to the datasets they research
    (owner or collaborator); superusers see all. Relations in ``list_filter`` offer only the values
    present in those rows, and foreign-key choices are limited the same way, so neither names nor
    ids of another researcher's data reach the page."""

    dataset_path = "dataset"  # lookup from this model to its dataset

    def get_queryset(self, request):
        return researched(super().get_queryset(request), self.dataset_path, request.user)

    def get_list_filter(self, request):
        return [self._related_only(name) for name in super().get_list_filter(request)]

    def _related_only(self, entry):
        if not isinstance(entry, str):
            return entry
        field = None
        model = self.model
        for part in entry.split("__"):
            field = model._meta.get_field(part)
            model = field.related_model
        return (entry, admin.RelatedOnlyFieldListFilter) if field is not None and field.is_relation else entry

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        kwargs.setdefault("queryset", self._choices(db_field, request))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        kwargs.setdefault("queryset", self._choices(db_field, request))
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def _choices(self, db_field, request):
        related = db_field.related_model
        queryset = related._default_manager.all()
        if request.user.is_superuser:
            return queryset
        if related is User:
            return queryset.filter(pk=request.user.pk)  # researchers act as themselves
        path = _DATASET_OF.get(related._meta.label_lower)
        if path is None:
            return queryset.none()  # a relation no researcher should set: nothing to choose
        return researched(queryset, path, request.user)


class ExportForm(forms.Form):
    """What an export holds. The campaign (optional) chooses its label classes; the classes
    field narrows further."""

    formats = forms.MultipleChoiceField(
        choices=[
            ("nnunet", "nnU-Net v2 raw dataset"),
            ("coco", "COCO instances (RLE)"),
            ("masks", "Masks (PNG, NIfTI for NIfTI sources)"),
            ("dicom-seg", "DICOM SEG (DICOM images only)"),
        ],
        widget=forms.CheckboxSelectMultiple,
        initial=["nnunet"],
    )
    contents = forms.MultipleChoiceField(
        choices=[
            ("images", "Images"),
            ("fused", "Fused labels"),
            ("raters", "Each rater's mask (opaque rater ids)"),
            ("probability", "Probability maps"),
            ("uncertainty", "Uncertainty maps"),
            ("gold", "Gold standards"),
            ("synthetic", "Synthetic pairs (own folder, flagged)"),
        ],
        widget=forms.CheckboxSelectMultiple,
        initial=["images", "fused"],
    )
    campaign = forms.TypedChoiceField(coerce=int, required=False, empty_value=None)
    label_classes = forms.ModelMultipleChoiceField(
        queryset=LabelClass.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None chosen: every class (of the campaign, if one is chosen)",
    )
    min_confidence = forms.FloatField(
        required=False, min_value=0, max_value=1, help_text="Leave out fused labels less confident than this"
    )
    review = forms.MultipleChoiceField(
        choices=[(v or "none", label) for v, label in FusedLabel.Review.choices],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Only fused labels in these review states (none chosen: all)",
    )
    nnunet_id = forms.IntegerField(min_value=1, max_value=999, initial=501, label="nnU-Net dataset id")
    ignore_above_bits = forms.FloatField(
        required=False,
        min_value=0.01,
        max_value=0.99,
        help_text="nnU-Net: pixels whose fused uncertainty (bits) is above this get the 'ignore' label",
    )

    def __init__(self, *args, dataset: Dataset, **kwargs):
        super().__init__(*args, **kwargs)
        from django.apps import apps

        campaigns = apps.get_model("gamification", "Campaign").objects.filter(dataset=dataset).order_by("name")
        self.fields["campaign"].choices = [("", "All of the dataset"), *((c.pk, c.name) for c in campaigns)]
        self.fields["label_classes"].queryset = dataset.label_classes.order_by("pk")

    def export_arguments(self) -> dict:
        data = self.cleaned_data
        classes = data["label_classes"]
        return {
            "formats": data["formats"],
            "contents": data["contents"],
            "campaign_id": data["campaign"],
            "label_class_ids": [c.pk for c in classes] if classes else None,
            "min_confidence": data["min_confidence"],
            "review": [("" if v == "none" else v) for v in data["review"]] or None,
            "nnunet_id": data["nnunet_id"],
            "ignore_above_bits": data["ignore_above_bits"],
        }


class LabelClassInline(admin.TabularInline):
    model = LabelClass
    extra = 0


@admin.register(Dataset)
class DatasetAdmin(ResearcherScopedAdmin):
    dataset_path = "pk"
    list_display = ["name", "owner", "image_count", "created_at", "import_link"]
    search_fields = ["name"]
    inlines = [LabelClassInline]
    readonly_fields = ["created_at"]

    filter_horizontal = ["collaborators"]
    actions = ["export"]

    def get_exclude(self, request, obj=None):
        return [] if request.user.is_superuser else ["owner"]

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and not (request.user.is_superuser or obj.owner_id == request.user.pk):
            return [*self.readonly_fields, "collaborators"]  # only the owner chooses who works on it
        return self.readonly_fields

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if db_field.name == "collaborators":
            kwargs["queryset"] = User.objects.filter(role=Role.RESEARCHER).exclude(pk=request.user.pk)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        if not change and not request.user.is_superuser:
            obj.owner = request.user  # a researcher's new dataset is theirs
        super().save_model(request, obj, form, change)

    @admin.display(description="images")
    def image_count(self, obj):
        return obj.images.count()

    @admin.display(description="")
    def import_link(self, obj):
        return format_html('<a href="{}">Import images</a>', reverse("admin:annotations_dataset_import", args=[obj.pk]))

    @admin.action(description="Export (nnU-Net, COCO, DICOM SEG, masks)")
    def export(self, request, queryset):
        if queryset.count() != 1:
            messages.error(request, "Choose one dataset to export.")
            return None
        return redirect("admin:annotations_dataset_export", queryset.get().pk)

    def get_urls(self):
        view = self.admin_site.admin_view
        extra = [
            path("<int:pk>/import/", view(self.import_view), name="annotations_dataset_import"),
            path("<int:pk>/export/", view(self.export_view), name="annotations_dataset_export"),
        ]
        return extra + super().get_urls()

    def export_view(self, request, pk):
        """The export form; ``?campaign=<id>`` preselects a campaign (its classes)."""
        dataset = get_object_or_404(self.get_queryset(request), pk=pk)
        if not self.has_view_permission(request, dataset):
            return redirect("admin:index")
        initial = {"campaign": request.GET.get("campaign")}
        form = ExportForm(request.POST or None, dataset=dataset, initial=initial)
        if request.method == "POST" and form.is_valid():
            try:
                job = services.export_start(dataset=dataset, requested_by=request.user, **form.export_arguments())
            except DomainError as exc:
                messages.error(request, f"Nothing was exported. {exc.message}")
            else:
                messages.success(request, f"Export {job.pk} started; this page shows its progress.")
                return redirect("admin:annotations_exportjob_change", job.pk)
        return self._form_page(request, dataset, form, f"Export {dataset}", "export.html")

    def _form_page(self, request, dataset, form, title: str, template: str):
        """A page of the dataset with one form (import, export)."""
        context = {
            **self.admin_site.each_context(request),
            "form": form,
            "dataset": dataset,
            "opts": self.model._meta,
            "title": title,
        }
        return render(request, f"admin/annotations/dataset/{template}", context)

    def import_view(self, request, pk):
        dataset = get_object_or_404(self.get_queryset(request), pk=pk)
        if not self.has_change_permission(request, dataset):
            return redirect("admin:index")
        form = ImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            options = ReadOptions(ct_window=form.cleaned_data["ct_window"], nifti_axis=form.cleaned_data["nifti_axis"])
            sources = [services.BytesSource(name=f.name, data=f.read()) for f in form.cleaned_data["files"]]
            try:
                result = services.images_import(
                    dataset=dataset,
                    sources=sources,
                    options=options,
                    keep_file_names=form.cleaned_data["keep_file_names"],
                )
            except ImageReadError as exc:
                messages.error(request, f"Nothing was imported. {exc}")
            else:
                messages.success(
                    request, f"{len(result.created)} images imported, {result.skipped} were already there."
                )
                return redirect("admin:annotations_dataset_change", pk)
        return self._form_page(request, dataset, form, f"Import images into {dataset}", "import.html")


@admin.register(Image)
class ImageAdmin(ResearcherScopedAdmin):
    list_display = ["thumbnail", "source_name", "frame_key", "modality", "width", "height", "dataset"]
    list_filter = ["dataset", "modality", "source_format"]
    search_fields = ["source_name"]
    readonly_fields = [f.name for f in Image._meta.fields] + ["preview"]

    @admin.display(description="")
    def thumbnail(self, obj):
        return format_html('<img src="{}" style="height:48px">', obj.display.url) if obj.display else ""

    @admin.display(description="display rendition")
    def preview(self, obj):
        return format_html('<img src="{}" style="max-width:512px">', obj.display.url) if obj.display else ""

    def has_add_permission(self, request):
        return False  # images arrive through the import, which de-identifies them


@admin.register(Task)
class TaskAdmin(ResearcherScopedAdmin):
    dataset_path = "label_class__dataset"
    list_display = ["id", "label_class", "image", "has_gold"]
    list_filter = ["label_class__dataset", "label_class"]
    list_select_related = ["label_class__dataset", "image"]
    raw_id_fields = ["image", "label_class"]

    @admin.display(boolean=True)
    def has_gold(self, obj):
        return hasattr(obj, "gold")


@admin.register(Annotation)
class AnnotationAdmin(ResearcherScopedAdmin):
    dataset_path = "task__label_class__dataset"
    list_display = ["task", "annotator", "area", "suggestion_use", "time_spent_ms", "created_at"]
    list_filter = ["suggestion_use"]
    raw_id_fields = ["task", "annotator"]
    readonly_fields = ["client_key", "created_at"]


@admin.register(GoldStandard)
class GoldStandardAdmin(ResearcherScopedAdmin):
    dataset_path = "task__label_class__dataset"
    list_display = ["task", "area", "source", "created_by", "updated_at"]
    list_filter = ["source"]
    raw_id_fields = ["task", "created_by"]
    actions = ["use_for_teaching"]

    @admin.action(description="Use for teaching: show the outline to classes after live rounds (no longer a check)")
    def use_for_teaching(self, request, queryset):
        from gamification.live_sessions import practice_task_mark  # the game builds on annotations

        golds = list(queryset.select_related("task"))
        for gold in golds:
            practice_task_mark(task=gold.task, by=request.user)
        messages.success(request, f"{len(golds)} expert outlines are now practice images for live lessons.")


@admin.register(FusedLabel)
class FusedLabelAdmin(ResearcherScopedAdmin):
    """QA: labels the crowd is unsure about, shown over the image with each annotator's mask and
    weight. *Accept* makes the fused mask the gold standard; *use this mask* takes one annotator's."""

    dataset_path = "task__label_class__dataset"
    list_display = ["task", "label_class", "confidence", "votes", "settled", "review", "updated_at"]
    list_filter = ["review", "settled", "task__label_class__dataset", "task__label_class"]
    list_select_related = ["task__label_class"]
    ordering = ["confidence"]
    fields = ["task", "confidence", "votes", "gain", "settled", "review", "updated_at", "figures", "annotators"]
    readonly_fields = fields
    actions = ["accept_as_gold"]

    @admin.display(description="label class")
    def label_class(self, obj):
        return obj.task.label_class

    def has_add_permission(self, request):
        return False

    @admin.display(description="fused label and uncertainty")
    def figures(self, obj):
        return format_html(
            '<img src="{}" style="max-width:45%"> <img src="{}" style="max-width:45%">',
            reverse("admin:annotations_fusedlabel_figure", args=[obj.pk, "fused"]),
            reverse("admin:annotations_fusedlabel_figure", args=[obj.pk, "uncertainty"]),
        )

    @admin.display(description="annotators (weight for this class)")
    def annotators(self, obj):
        weights = dict(
            AnnotatorReliability.objects.filter(label_class=obj.task.label_class).values_list("annotator_id", "weight")
        )
        cells = []
        for annotation in obj.task.annotations.select_related("annotator").order_by("created_at"):
            figure = reverse("admin:annotations_fusedlabel_annotation", args=[obj.pk, annotation.pk])
            use = reverse("admin:annotations_fusedlabel_use", args=[obj.pk, annotation.pk])
            weight = weights.get(annotation.annotator_id)
            cells.append(
                format_html(
                    '<div style="display:inline-block;margin:4px;text-align:center"><img src="{}" '
                    'style="width:160px"><br>{} · weight {} · {}<br><a href="{}">use this mask as gold</a></div>',
                    figure,
                    annotation.annotator.pseudonym or annotation.annotator,
                    "?" if weight is None else f"{weight:.2f}",
                    annotation.get_suggestion_use_display(),
                    use,
                )
            )
        return format_html_join("", "{}", ((c,) for c in cells)) or "no annotations"

    @admin.action(description="Accept the fused mask as the gold standard")
    def accept_as_gold(self, request, queryset):
        for fused in queryset.select_related("task__image"):
            consensus.fused_label_accept(fused=fused, reviewer=request.user)
        messages.success(request, f"{queryset.count()} fused labels are now gold standards.")

    def get_urls(self):
        view = self.admin_site.admin_view
        extra = [
            path("<int:pk>/figure/<str:kind>.png", view(self.figure_view), name="annotations_fusedlabel_figure"),
            path(
                "<int:pk>/annotation/<int:annotation_pk>.png",
                view(self.annotation_view),
                name="annotations_fusedlabel_annotation",
            ),
            path("<int:pk>/use/<int:annotation_pk>/", view(self.use_view), name="annotations_fusedlabel_use"),
        ]
        return extra + super().get_urls()

    def _fused(self, request, pk) -> FusedLabel:
        if not self.has_view_permission(request):
            raise PermissionDenied
        return get_object_or_404(self.get_queryset(request).select_related("task__image", "task__label_class"), pk=pk)

    def figure_view(self, request, pk, kind):
        fused = self._fused(request, pk)
        image = services.image_model_input(fused.task.image)
        if kind == "uncertainty":
            probability = figures.grey_from_png(fused.probability)
            png = figures.uncertainty_overlay(image, entropy_bits(probability))
        else:
            png = figures.mask_overlay(image, rle.decode(fused.mask), fused.task.label_class.color)
        return HttpResponse(png, content_type="image/png")

    def annotation_view(self, request, pk, annotation_pk):
        fused = self._fused(request, pk)
        annotation = get_object_or_404(Annotation, pk=annotation_pk, task=fused.task)
        image = services.image_model_input(fused.task.image)
        png = figures.mask_overlay(image, rle.decode(annotation.mask), fused.task.label_class.color)
        return HttpResponse(png, content_type="image/png")

    def use_view(self, request, pk, annotation_pk):
        """GET asks for confirmation; POST (with the CSRF token) makes the mask the gold standard."""
        fused = self._fused(request, pk)
        if not self.has_change_permission(request, fused):
            return redirect("admin:index")
        annotation = get_object_or_404(
            Annotation.objects.select_related("annotator"), pk=annotation_pk, task=fused.task
        )
        if request.method != "POST":
            context = {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "fused": fused,
                "annotation": annotation,
                "figure": reverse("admin:annotations_fusedlabel_annotation", args=[fused.pk, annotation.pk]),
                "title": f"Make {annotation.annotator.pseudonym or annotation.annotator}'s mask the gold standard?",
            }
            return render(request, "admin/annotations/fusedlabel/use.html", context)
        consensus.fused_label_accept(fused=fused, reviewer=request.user, mask=rle.decode(annotation.mask))
        messages.success(request, f"The mask of {annotation.annotator} is now the gold standard of this task.")
        return redirect("admin:annotations_fusedlabel_change", pk)


@admin.register(AnnotatorReliability)
class AnnotatorReliabilityAdmin(ResearcherScopedAdmin):
    """Each annotator's reliability per label class, with how much evidence stands behind it; a
    histogram and an agreement plot per class, and a CSV."""

    dataset_path = "label_class__dataset"
    list_display = [
        "who", "label_class", "weight_shown", "sensitivity_shown", "precision_shown", "specificity_shown",
        "images", "golds", "anchored", "updated_at",
    ]  # fmt: skip
    list_filter = ["label_class__dataset", "label_class"]
    list_select_related = ["annotator", "label_class"]
    ordering = ["label_class", "-weight"]
    readonly_fields = [f.name for f in AnnotatorReliability._meta.fields]
    actions = ["download_csv"]
    change_list_template = "admin/annotations/annotatorreliability/change_list.html"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="annotator", ordering="annotator__username")
    def who(self, obj):
        return obj.annotator or "AI model (unchanged acceptances)"

    @admin.display(description="weight", ordering="weight")
    def weight_shown(self, obj):
        return f"{obj.weight:.2f}"

    @admin.display(description="sensitivity")
    def sensitivity_shown(self, obj):
        return f"{obj.sensitivity:.2f} ± {obj.sensitivity_sd:.2f}"

    @admin.display(description="precision")
    def precision_shown(self, obj):
        return f"{obj.precision:.2f} ± {obj.precision_sd:.2f}"

    @admin.display(description="specificity")
    def specificity_shown(self, obj):
        return f"{obj.specificity:.2f} ± {obj.specificity_sd:.2f}"

    @admin.action(description="Download as CSV (raters by opaque id)")
    def download_csv(self, request, queryset):
        response = HttpResponse(
            exports.reliability_csv(services.reliability_rows(queryset)), content_type="text/csv; charset=utf-8"
        )
        response["Content-Disposition"] = 'attachment; filename="reliability.csv"'
        return response

    def changelist_view(self, request, extra_context=None):
        classes = LabelClass.objects.filter(reliabilities__in=self.get_queryset(request)).distinct()
        plots = [
            (
                label_class,
                reverse("admin:annotations_annotatorreliability_plot", args=[label_class.pk, "histogram"]),
                reverse("admin:annotations_annotatorreliability_plot", args=[label_class.pk, "agreement"]),
            )
            for label_class in classes.select_related("dataset")
        ]
        return super().changelist_view(request, {**(extra_context or {}), "reliability_plots": plots})

    def get_urls(self):
        extra = [
            path(
                "plot/<int:label_class_pk>/<str:kind>.png",
                self.admin_site.admin_view(self.plot_view),
                name="annotations_annotatorreliability_plot",
            ),
        ]
        return extra + super().get_urls()

    def plot_view(self, request, label_class_pk, kind):
        if not self.has_view_permission(request):
            raise PermissionDenied
        rows = list(self.get_queryset(request).filter(label_class_id=label_class_pk, annotator__isnull=False))
        if not rows:
            return HttpResponse(status=404)
        title = str(rows[0].label_class)
        if kind == "histogram":
            png = figures.reliability_histogram([r.weight for r in rows], title)
        else:
            png = figures.agreement_plot(
                [r.sensitivity for r in rows], [r.precision for r in rows], [r.images for r in rows], title
            )
        return HttpResponse(png, content_type="image/png")


@admin.action(description="Export (nnU-Net, COCO, DICOM SEG, masks)")
def campaign_export(modeladmin, request, queryset):
    """A campaign's export: the dataset's export form with the campaign (its classes) chosen.
    Registered on the campaigns' admin by ``gamification.admin``."""
    if queryset.count() != 1:
        messages.error(request, "Choose one campaign to export.")
        return None
    campaign = queryset.get()
    url = reverse("admin:annotations_dataset_export", args=[campaign.dataset_id])
    return redirect(f"{url}?campaign={campaign.pk}")


@admin.register(ExportJob)
class ExportJobAdmin(ResearcherScopedAdmin):
    """Exports of the datasets a researcher works on: progress (live), cancel, and the download,
    which only the researcher who asked for the export may use, until it expires."""

    list_display = ["id", "dataset", "formats_shown", "status", "progress_shown", "requested_by", "created_at", "link"]
    list_filter = ["status", "dataset"]
    fields = [
        "dataset", "formats", "contents", "selection", "options", "status", "progress_live", "link", "error",
        "summary", "file_size", "requested_by", "created_at", "started_at", "finished_at", "expires_at",
    ]  # fmt: skip
    readonly_fields = fields
    actions = ["cancel"]
    change_form_template = "admin/annotations/exportjob/change_form.html"

    def has_add_permission(self, request):
        return False  # exports start from a dataset's "Export" action, `manage.py export_dataset` or the API

    def has_change_permission(self, request, obj=None):
        return super().has_view_permission(request, obj)

    @admin.display(description="formats")
    def formats_shown(self, obj):
        return ", ".join(obj.formats)

    @admin.display(description="progress")
    def progress_shown(self, obj):
        p = obj.progress or {}
        return f"{p.get('done', 0)}/{p.get('total', 0)}" if p else ""

    @admin.display(description="progress")
    def progress_live(self, obj):
        p = obj.progress or {}
        return format_html(
            '<div id="export-progress" data-export="{}">{} — {} of {} images</div>',
            obj.pk,
            p.get("stage", "waiting"),
            p.get("done", 0),
            p.get("total", 0),
        )

    @admin.display(description="download")
    def link(self, obj):
        if obj.status != ExportJob.Status.DONE:
            return "-"
        url = reverse("admin:annotations_exportjob_download", args=[obj.pk])
        return format_html('<a href="{}">download</a> (for whoever asked for it, until {})', url, obj.expires_at)

    @admin.action(description="Cancel")
    def cancel(self, request, queryset):
        for job in queryset:
            services.export_cancel(job=job)
        messages.success(request, "Cancellation requested.")

    def get_urls(self):
        view = self.admin_site.admin_view
        extra = [path("<int:pk>/download/", view(self.download_view), name="annotations_exportjob_download")]
        return extra + super().get_urls()

    def download_view(self, request, pk):
        job = get_object_or_404(self.get_queryset(request), pk=pk)
        try:
            path = services.export_file_for_download(job=job, user=request.user)
        except DomainError as exc:
            if exc.status == 404:
                raise Http404(exc.message) from None
            return HttpResponse(exc.message, status=exc.status, content_type="text/plain; charset=utf-8")
        name = f"{exports.slug(job.dataset.name)}-export-{job.pk}.zip"
        return FileResponse(path.open("rb"), as_attachment=True, filename=name, content_type="application/zip")
