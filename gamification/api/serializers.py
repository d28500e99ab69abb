"""Game API shapes. Round tasks serialise the same fields whether or not they are gold checks."""

from django.urls import reverse
from rest_framework import serializers

from annotations.api.serializers import (
    DESCRIPTION_MAX_CHARS,
    LABEL_CLASSES_MAX,
    LabelClassSerializer,
    RleField,
    polygons_field,
)
from annotations.models import LabelClass, SuggestionUse
from crowdseg.api import MAX_ID, ExactlyOneOf, StrictJSON
from gamification.models import Campaign
from inference.api.serializers import PromptSerializer


class CampaignSerializer(serializers.ModelSerializer):
    dataset = serializers.CharField(source="dataset.name", read_only=True)
    label_classes = LabelClassSerializer(many=True, read_only=True)
    joined = serializers.BooleanField(read_only=True, default=False)
    player_count = serializers.IntegerField(read_only=True, default=0)

    class Meta:
        model = Campaign
        fields = [
            "id",
            "name",
            "description",
            "dataset",
            "label_classes",
            "visibility",
            "round_size",
            "round_seconds",
            "task_seconds",
            "annotations_per_image",
            "starts_at",
            "ends_at",
            "joined",
            "player_count",
        ]


class CampaignOwnerSerializer(CampaignSerializer):
    """What the researcher who runs the campaign sees: the rules players do not."""

    class Meta(CampaignSerializer.Meta):
        fields = [*CampaignSerializer.Meta.fields, "gold_rate", "suggestion_withheld_share", "invite_code"]


class CampaignCreateSerializer(StrictJSON, serializers.Serializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="", max_length=DESCRIPTION_MAX_CHARS)
    dataset = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    label_classes = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID), min_length=1, max_length=LABEL_CLASSES_MAX
    )
    visibility = serializers.ChoiceField(choices=Campaign.Visibility.choices, default=Campaign.Visibility.PUBLIC)
    round_size = serializers.IntegerField(min_value=1, max_value=50, default=10)
    round_seconds = serializers.IntegerField(min_value=30, max_value=24 * 3600, default=900)
    task_seconds = serializers.IntegerField(min_value=3, max_value=3600, default=30)
    annotations_per_image = serializers.IntegerField(min_value=1, max_value=50, default=5)
    gold_rate = serializers.FloatField(min_value=0.0, max_value=0.5, default=0.15)
    suggestion_withheld_share = serializers.FloatField(min_value=0.0, max_value=1.0, default=0.0)
    starts_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    ends_at = serializers.DateTimeField(required=False, allow_null=True, default=None)

    def validate_label_classes(self, value):
        classes = list(LabelClass.objects.filter(pk__in=value))
        if len(classes) != len(set(value)):
            raise serializers.ValidationError("unknown label class")
        return classes


class JoinSerializer(StrictJSON, serializers.Serializer):
    invite_code = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=Campaign._meta.get_field("invite_code").max_length
    )


class SubmittedPromptSerializer(PromptSerializer):
    """The box/points a suggestion came from, as the suggest endpoint takes them, and nothing else:
    it is stored with the annotation, so unknown keys are refused rather than kept."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(str(key)[:40] for key in set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(f"unknown keys: {', '.join(unknown[:5])}")
        return super().to_internal_value(data)


class SubmissionSerializer(StrictJSON, ExactlyOneOf, serializers.Serializer):
    """A volunteer's mask for one task of their round."""

    exactly_one_of = ("rle", "polygons")

    rle = RleField(required=False, help_text="COCO RLE at the image's native size")
    polygons = polygons_field(required=False, help_text="[[x0, y0, x1, y1, ...], ...] in image pixels")
    time_spent_ms = serializers.IntegerField(min_value=0, max_value=24 * 3600 * 1000)
    suggestion_use = serializers.ChoiceField(choices=SuggestionUse.choices, default=SuggestionUse.NONE)
    prompt = SubmittedPromptSerializer(required=False, help_text="The box/points the suggestion came from")


class BatchItemSerializer(SubmissionSerializer):
    round = serializers.UUIDField()
    task = serializers.UUIDField()
    idempotency_key = serializers.CharField(max_length=64)


class BatchSerializer(StrictJSON, serializers.Serializer):
    submissions = serializers.ListField(child=serializers.DictField(), min_length=1, max_length=100)


def round_task_data(round_task, request) -> dict:
    """One task of a round. Every field is the same kind for gold checks and ordinary tasks."""
    task, image, label_class = round_task.task, round_task.task.image, round_task.task.label_class
    submission = getattr(round_task, "submission", None)
    withheld = round_task.suggestion_withheld
    return {
        "id": str(task.id),
        "position": round_task.position,
        "image": {"url": request.build_absolute_uri(image.display.url), "width": image.width, "height": image.height},
        "label_class": {"id": label_class.id, "name": label_class.name, "color": label_class.color},
        "instructions": label_class.instructions,
        # null where the campaign withholds the AI on this task (at the same rate for every task)
        "initial_mask_url": None
        if withheld
        else request.build_absolute_uri(reverse("task-initial-mask", args=[task.id])),
        "suggest_url": None if withheld else request.build_absolute_uri(reverse("task-suggest", args=[task.id])),
        "submit_url": request.build_absolute_uri(reverse("round-submit", args=[round_task.round_id, task.id])),
        "submitted": submission is not None,
        "status": submission.status if submission else None,
        "points": (submission.points if submission.points is not None else submission.provisional_points)
        if submission
        else None,
    }


def round_data(game_round, request, check_accuracy) -> dict:
    round_tasks = list(game_round.round_tasks.all())
    submitted = sum(hasattr(rt, "submission") for rt in round_tasks)
    return {
        "id": str(game_round.id),
        "campaign": game_round.campaign_id,
        "created_at": game_round.created_at,
        "expires_at": game_round.expires_at,
        "completed": game_round.completed_at is not None,
        "settled": game_round.settled,
        "submitted": submitted,
        "check_accuracy": check_accuracy,
        "tasks": [round_task_data(rt, request) for rt in round_tasks],
    }
