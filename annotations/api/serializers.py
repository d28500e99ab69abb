from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from annotations import exports
from annotations.io.preprocess import CT_WINDOWS
from annotations.models import Dataset, FusedLabel, Image, LabelClass
from crowdseg.api import ExactlyOneOf, MaxJSONBytes, StrictJSON

# Caps on what clients send (the body limit alone would let one field take 10 MB).
DESCRIPTION_MAX_CHARS = 5000
INSTRUCTIONS_MAX_CHARS = 2000  # shown with every task on a phone
LABEL_CLASSES_MAX = 50
# A COCO RLE as JSON: a detailed outline on the largest image (40 megapixels) stays far below.
RLE_MAX_BYTES = 4 * 1024 * 1024
POLYGONS_MAX = 200
POLYGON_MAX_COORDINATES = 20000


@extend_schema_field(
    {
        "type": "object",
        "description": "COCO RLE, column-major: counts as a compressed string or a list of run lengths",
        "required": ["size", "counts"],
        "properties": {
            "size": {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 2, "maxItems": 2},
            "counts": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "integer", "minimum": 0}}]},
        },
    }
)
class RleField(serializers.JSONField):
    """A COCO RLE (``{"size": [H, W], "counts": ...}``) as sent by a client, at most ``RLE_MAX_BYTES``
    of JSON; ``inference.engine.rle.decode`` checks the rest."""

    def __init__(self, **kwargs):
        kwargs.setdefault("validators", [MaxJSONBytes(RLE_MAX_BYTES)])
        super().__init__(**kwargs)


def polygons_field(**kwargs) -> serializers.ListField:
    """``[[x0, y0, x1, y1, ...], ...]`` in image pixels: at most 200 rings of at most 20000 numbers."""
    return serializers.ListField(
        child=serializers.ListField(child=serializers.FloatField(), min_length=6, max_length=POLYGON_MAX_COORDINATES),
        max_length=POLYGONS_MAX,
        **kwargs,
    )


class LabelClassSerializer(StrictJSON, serializers.ModelSerializer):
    color = serializers.RegexField(r"^#[0-9a-fA-F]{6}$", required=False, default="#ff5a36")

    class Meta:
        model = LabelClass
        fields = ["id", "name", "color", "instructions"]
        extra_kwargs = {"instructions": {"max_length": INSTRUCTIONS_MAX_CHARS}}


class DatasetSerializer(serializers.ModelSerializer):
    label_classes = LabelClassSerializer(many=True, read_only=True)
    image_count = serializers.IntegerField(read_only=True, default=0)

    class Meta:
        model = Dataset
        fields = ["id", "name", "description", "label_classes", "image_count", "created_at"]


class DatasetCreateSerializer(StrictJSON, serializers.Serializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="", max_length=DESCRIPTION_MAX_CHARS)
    label_classes = serializers.ListField(
        child=serializers.CharField(max_length=100), required=False, default=list, max_length=LABEL_CLASSES_MAX
    )

    def validate_label_classes(self, names):
        return list(dict.fromkeys(names))  # a name twice is one class


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
    # Empty files are refused in validate_files, by name (the field's own check names the index).
    files = serializers.ListField(child=serializers.FileField(allow_empty_file=True), min_length=1, max_length=500)
    ct_window = serializers.ChoiceField(choices=sorted(CT_WINDOWS), default="soft_tissue")
    nifti_axis = serializers.ChoiceField(choices=["axial", "coronal", "sagittal"], default="axial")
    keep_file_names = serializers.BooleanField(
        default=False,
        help_text="Store each file's name as its images' source_name. By default they get an opaque name, "
        "since file names often hold patient names or IDs.",
    )

    def validate_files(self, files):
        empty = [f.name for f in files if not f.size]
        if empty:
            raise serializers.ValidationError(f"{empty[0]}: the file is empty")
        return files


class ImageImportResultSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    skipped = serializers.IntegerField()
    images = ImageSerializer(many=True)


class MaskInputSerializer(StrictJSON, ExactlyOneOf, serializers.Serializer):
    """A mask as COCO RLE (``{"size": [H, W], "counts": "..."}``) or as polygons in pixels."""

    exactly_one_of = ("rle", "polygons")

    rle = RleField(required=False)
    polygons = polygons_field(required=False)


class GoldStandardSerializer(serializers.Serializer):
    task = serializers.UUIDField(source="task_id")
    rle = serializers.JSONField(source="mask")
    area = serializers.IntegerField()
    source = serializers.CharField()
    updated_at = serializers.DateTimeField()


class ExportStartSerializer(StrictJSON, serializers.Serializer):
    """An export request; ``annotations.services.export_start`` checks the rest."""

    formats = serializers.ListField(
        child=serializers.ChoiceField(choices=exports.FORMATS), min_length=1, max_length=len(exports.FORMATS)
    )
    contents = serializers.ListField(
        child=serializers.ChoiceField(choices=exports.CONTENTS),
        max_length=len(exports.CONTENTS),
        default=["images", "fused"],
    )
    label_classes = serializers.ListField(
        child=serializers.IntegerField(min_value=1), required=False, allow_null=True, default=None, max_length=1000
    )
    campaign = serializers.IntegerField(min_value=1, required=False, allow_null=True, default=None)
    min_confidence = serializers.FloatField(min_value=0, max_value=1, required=False, allow_null=True, default=None)
    review = serializers.ListField(
        child=serializers.ChoiceField(choices=FusedLabel.Review.values),
        required=False,
        allow_null=True,
        default=None,
        max_length=len(FusedLabel.Review.values),
    )
    nnunet_id = serializers.IntegerField(min_value=1, max_value=999, default=501)
    ignore_above_bits = serializers.FloatField(
        min_value=0.01, max_value=0.99, required=False, allow_null=True, default=None
    )

    def export_arguments(self) -> dict:
        """The service's keyword arguments; an empty list of classes or review states means all,
        as leaving it out does."""
        data = dict(self.validated_data)
        data["label_class_ids"] = data.pop("label_classes") or None
        data["campaign_id"] = data.pop("campaign")
        data["review"] = data["review"] or None
        return data
