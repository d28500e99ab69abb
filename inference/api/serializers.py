from rest_framework import serializers

from crowdseg.api import StrictJSON


class PromptSerializer(StrictJSON, serializers.Serializer):
    """A prompt in image pixel coordinates (x = column, y = row, 0..width and 0..height).

    MedSAM was trained on boxes: send a box. Points (label 1 = inside, 0 = outside) refine a
    box; points alone work but give worse masks (see bench/suggest_quality.py).
    """

    box = serializers.ListField(child=serializers.FloatField(), min_length=4, max_length=4, required=False)
    points = serializers.ListField(
        child=serializers.ListField(child=serializers.FloatField(), min_length=2, max_length=2),
        required=False,
        max_length=64,
    )
    labels = serializers.ListField(child=serializers.IntegerField(), required=False, max_length=64)


class SuggestionSerializer(serializers.Serializer):
    rle = serializers.JSONField(help_text="COCO RLE of the mask at the image's native size")
    polygons = serializers.JSONField(help_text="Simplified outline [[x0, y0, x1, y1, ...], ...], for display")
    area = serializers.IntegerField(help_text="Foreground pixels")
    predicted_iou = serializers.FloatField(allow_null=True)
    model_version = serializers.CharField(allow_blank=True)
    source = serializers.CharField(help_text="prompt, class_prior or consensus")
    server_ms = serializers.FloatField(help_text="Milliseconds spent on the server")


def suggestion_data(suggestion) -> dict:
    return {
        "rle": suggestion.rle,
        "polygons": suggestion.polygons,
        "area": int(suggestion.mask.sum()),
        "predicted_iou": suggestion.predicted_iou,
        "model_version": suggestion.model_version,
        "source": suggestion.source,
        "server_ms": round(suggestion.server_ms, 2),
    }


class ModelSerializer(serializers.Serializer):
    model_version = serializers.CharField()
    model_name = serializers.CharField()
    input_size = serializers.IntegerField()
    preprocess = serializers.DictField()
    embedding_shape = serializers.ListField(child=serializers.IntegerField())
    low_res_size = serializers.ListField(
        child=serializers.IntegerField(), help_text="(h, w) of the decoder's low-res logits"
    )
    context_url = serializers.CharField(help_text="Run once per image: embedding -> context")
    context_sha256 = serializers.CharField()
    context_bytes = serializers.IntegerField()
    decoder_url = serializers.CharField()
    decoder_sha256 = serializers.CharField()
    decoder_bytes = serializers.IntegerField()
