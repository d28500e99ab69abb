from django.urls import path

from . import views

urlpatterns = [
    path("accounts/guest", views.GuestCreateView.as_view(), name="guest-create"),
    path("accounts/guest/upgrade", views.GuestUpgradeView.as_view(), name="guest-upgrade"),
    path("accounts/me", views.MeView.as_view(), name="me"),
]
