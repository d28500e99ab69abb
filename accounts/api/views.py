from django.contrib.auth import login
from drf_spectacular.utils import extend_schema
from rest_framework import permissions
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView

from accounts import services

from .serializers import GuestCreatedSerializer, GuestCreateSerializer, GuestUpgradeSerializer, UserSerializer


class GuestThrottle(AnonRateThrottle):
    scope = "guest"


class GuestCreateView(APIView):
    """Start playing without an account. Browsers get a session cookie; apps a session token."""

    permission_classes = [permissions.AllowAny]
    authentication_classes: list = []
    throttle_classes = [GuestThrottle]

    @extend_schema(request=GuestCreateSerializer, responses={201: GuestCreatedSerializer})
    def post(self, request):
        params = GuestCreateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        user = services.guest_create()
        login(request._request, user, backend="django.contrib.auth.backends.ModelBackend")
        body = {"user": UserSerializer(user).data}
        if params.validated_data["client"] == "app":
            request._request.session.save()
            body["session_token"] = request._request.session.session_key
        return Response(body, status=201)


class GuestUpgradeView(APIView):
    """Turn the current guest into a full account (username, password, optional e-mail)."""

    @extend_schema(request=GuestUpgradeSerializer, responses={200: UserSerializer})
    def post(self, request):
        params = GuestUpgradeSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        user = services.guest_upgrade(user=request.user, **params.validated_data)
        return Response(UserSerializer(user).data)


class MeView(APIView):
    @extend_schema(responses={200: UserSerializer})
    def get(self, request):
        return Response(UserSerializer(request.user).data)
