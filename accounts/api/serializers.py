from rest_framework import serializers

from accounts.models import User
from crowdseg.api import StrictJSON


class BlankAsNullEmailField(serializers.EmailField):
    """An optional e-mail address: ``null`` when there is none (pupils, guests), never ``""``,
    which is no e-mail address."""

    def to_representation(self, value):
        return value or None


class UserSerializer(serializers.ModelSerializer):
    email = BlankAsNullEmailField(read_only=True, allow_null=True)

    class Meta:
        model = User
        fields = ["id", "username", "email", "role", "is_guest", "pseudonym", "time_zone"]
        read_only_fields = fields


class GuestCreateSerializer(StrictJSON, serializers.Serializer):
    client = serializers.ChoiceField(choices=["app", "browser"], default="browser")


class GuestCreatedSerializer(serializers.Serializer):
    user = UserSerializer()
    session_token = serializers.CharField(required=False, help_text="Only for app clients: send as X-Session-Token.")


class GuestUpgradeSerializer(StrictJSON, serializers.Serializer):
    username = serializers.RegexField(r"^[\w.@+-]{3,150}$")
    password = serializers.CharField(min_length=8, max_length=128, write_only=True)
    email = serializers.EmailField(required=False, allow_blank=True, default="")
