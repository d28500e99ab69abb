from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from .models import User


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    list_display = ["username", "pseudonym", "role", "is_guest", "is_staff", "date_joined"]
    list_filter = ["role", "is_guest", "is_staff"]
    search_fields = ["username", "pseudonym", "email"]
    fieldsets = [*BaseUserAdmin.fieldsets, ("crowdseg", {"fields": ["role", "is_guest", "pseudonym", "time_zone"]})]
