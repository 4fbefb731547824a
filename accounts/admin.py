from django.contrib import admin, messages

from .models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("user", "name", "lookup", "created_at", "last_used_at", "expires_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("user__username", "name", "lookup")
    readonly_fields = ("lookup", "created_at", "last_used_at")
    fields = ("user", "name", "lookup", "created_at", "last_used_at", "expires_at", "revoked_at")

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        token, raw = ApiToken.issue(obj.user, name=obj.name, expires_at=obj.expires_at)
        obj.pk = token.pk
        messages.warning(request, f"New API token (copy it now, it is not shown again): {raw}")
