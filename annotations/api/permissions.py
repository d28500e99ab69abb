from rest_framework.permissions import BasePermission


class IsResearcher(BasePermission):
    message = "only researchers can manage datasets"

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.is_researcher)
