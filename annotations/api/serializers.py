from rest_framework import serializers

from annotations.io.preprocess import CT_WINDOWS
from annotations.models import Dataset, Image, LabelClass


class LabelClassSerializer(serializers.ModelSerializer):
    color = serializers.RegexField(r"^#[0-9a-fA-F]{6}$", required=False, default="#ff5a36")

    class Meta:
        model = LabelClass
        fields = ["id", "name", "color", "instructions"]


class DatasetSerializer(serializers.ModelSerializer):
    label_classes = LabelClassSerializer(many=True, read_only=True)
    image_count = serializers.IntegerField(read_only=True, default=0)

    class Meta:
        model = Dataset
        fields = ["id", "name", "description", "label_classes", "image_count", "created_at"]


class DatasetCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    label_classes = serializers.ListField(child=serializers.CharField(max_length=100), required=False, default=list)


class ImageTaskSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    label_class = serializers.CharField(source="label_class.name")


class ImageSerializer(serializers.ModelSerializer):
    display_url = serializers.FileField(source="display", read_only=True, use_url=True)
    tasks = ImageTaskSerializer(many=True, read_only=True)

    class Meta:
        model = Image
        fields = [
            "id",
            "modality",
            "source_format",
            "source_name",
            "frame_key",
            "width",
            "height",
            "display_url",
            "metadata",
            "preprocessing",
            "slice_axis",
            "slice_index",
            "slice_count",
            "tasks",
            "created_at",
        ]


class ImageImportSerializer(serializers.Serializer):
    files = serializers.ListField(child=serializers.FileField(allow_empty_file=False), min_length=1, max_length=500)
    ct_window = serializers.ChoiceField(choices=sorted(CT_WINDOWS), default="soft_tissue")
    nifti_axis = serializers.ChoiceField(choices=["axial", "coronal", "sagittal"], default="axial")
    keep_file_names = serializers.BooleanField(
        default=False,
        help_text="Store each file's name as its images' source_name. By default they get an opaque name, "
        "since file names often hold patient names or IDs.",
    )


class ImageImportResultSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    skipped = serializers.IntegerField()
    images = ImageSerializer(many=True)


class MaskInputSerializer(serializers.Serializer):
    """A mask as COCO RLE (``{"size": [H, W], "counts": "..."}``) or as polygons in pixels."""

    rle = serializers.JSONField(required=False)
    polygons = serializers.ListField(child=serializers.ListField(child=serializers.FloatField()), required=False)


class GoldStandardSerializer(serializers.Serializer):
    task = serializers.UUIDField(source="task_id")
    rle = serializers.JSONField(source="mask")
    area = serializers.IntegerField()
    source = serializers.CharField()
    updated_at = serializers.DateTimeField()
