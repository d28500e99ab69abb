from django import forms
from django.contrib import admin, messages
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.utils.html import format_html

from . import services
from .io import ImageReadError, ReadOptions
from .io.preprocess import CT_WINDOWS
from .models import Annotation, Dataset, GoldStandard, Image, LabelClass, Task


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


class ResearcherScopedAdmin(admin.ModelAdmin):
    """A researcher sees and changes only what belongs to their own datasets; superusers see all."""

    owner_path = "dataset__owner"  # lookup from this model to the dataset's owner

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(**{self.owner_path: request.user})


class LabelClassInline(admin.TabularInline):
    model = LabelClass
    extra = 0


@admin.register(Dataset)
class DatasetAdmin(ResearcherScopedAdmin):
    owner_path = "owner"
    list_display = ["name", "owner", "image_count", "created_at", "import_link"]
    search_fields = ["name"]
    inlines = [LabelClassInline]
    readonly_fields = ["created_at"]

    def get_exclude(self, request, obj=None):
        return [] if request.user.is_superuser else ["owner"]

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

    def get_urls(self):
        extra = [
            path("<int:pk>/import/", self.admin_site.admin_view(self.import_view), name="annotations_dataset_import")
        ]
        return extra + super().get_urls()

    def import_view(self, request, pk):
        dataset = get_object_or_404(self.get_queryset(request), pk=pk)
        if not self.has_change_permission(request, dataset):
            return redirect("admin:index")
        form = ImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            options = ReadOptions(ct_window=form.cleaned_data["ct_window"], nifti_axis=form.cleaned_data["nifti_axis"])
            sources = [services.BytesSource(name=f.name, data=f.read()) for f in form.cleaned_data["files"]]
            try:
                result = services.images_import(dataset=dataset, sources=sources, options=options)
            except ImageReadError as exc:
                messages.error(request, f"Nothing was imported. {exc}")
            else:
                messages.success(
                    request, f"{len(result.created)} images imported, {result.skipped} were already there."
                )
                return redirect("admin:annotations_dataset_change", pk)
        context = {
            **self.admin_site.each_context(request),
            "form": form,
            "dataset": dataset,
            "opts": self.model._meta,
            "title": f"Import images into {dataset}",
        }
        return render(request, "admin/annotations/dataset/import.html", context)


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
    owner_path = "label_class__dataset__owner"
    list_display = ["id", "label_class", "image", "has_gold"]
    list_filter = ["label_class__dataset", "label_class"]
    list_select_related = ["label_class__dataset", "image"]
    raw_id_fields = ["image", "label_class"]

    @admin.display(boolean=True)
    def has_gold(self, obj):
        return hasattr(obj, "gold")


@admin.register(Annotation)
class AnnotationAdmin(ResearcherScopedAdmin):
    owner_path = "task__label_class__dataset__owner"
    list_display = ["task", "annotator", "area", "suggestion_use", "time_spent_ms", "created_at"]
    list_filter = ["suggestion_use"]
    raw_id_fields = ["task", "annotator"]
    readonly_fields = ["client_key", "created_at"]


@admin.register(GoldStandard)
class GoldStandardAdmin(ResearcherScopedAdmin):
    owner_path = "task__label_class__dataset__owner"
    list_display = ["task", "area", "source", "created_by", "updated_at"]
    list_filter = ["source"]
    raw_id_fields = ["task", "created_by"]
