from typing import Any, ClassVar

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.db.models import Count, IntegerField, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from . import services
from .models import TOKEN_PREFIX, ApiToken


class RevokedFilter(admin.SimpleListFilter):
    title = "revoked"
    parameter_name = "revoked"

    def lookups(self, request, model_admin):
        return [("yes", "revoked"), ("no", "not revoked")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(revoked_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(revoked_at__isnull=True)
        return queryset


class ExpiredFilter(admin.SimpleListFilter):
    title = "expired"
    parameter_name = "expired"

    def lookups(self, request, model_admin):
        return [("yes", "expired"), ("no", "not expired"), ("never", "never expires")]

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "yes":
            return queryset.filter(expires_at__lte=now)
        if self.value() == "no":
            return queryset.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        if self.value() == "never":
            return queryset.filter(expires_at__isnull=True)
        return queryset


class ApiTokenForm(forms.ModelForm):
    def clean_expires_at(self):
        value = self.cleaned_data.get("expires_at")
        if value is not None and "expires_at" in self.changed_data and value <= timezone.now():
            raise forms.ValidationError("The expiry must be in the future.")
        return value


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens: the new secret is shown once, in a message after "Save"; only its prefix after that."""

    form = ApiTokenForm
    list_display: tuple[str, ...] = (
        "prefix",
        "user",
        "name",
        "scope",
        "created_at",
        "expires_at",
        "last_used_at",
        "last_used_ip",
        "revoked",
    )
    list_select_related: ClassVar[tuple[str, ...]] = ("user",)
    list_filter: ClassVar[tuple[Any, ...]] = ("scope", RevokedFilter, ExpiredFilter)
    search_fields: ClassVar[tuple[str, ...]] = ("user__username", "user__email", "name", "lookup")
    actions = ["revoke_selected"]
    readonly_fields: ClassVar[tuple[str, ...]] = ("prefix", "created_at", "last_used_at", "last_used_ip", "revoked_at")
    add_fields = ("user", "name", "scope", "expires_at")
    change_fields: tuple[str, ...] = (
        "prefix",
        "user",
        "name",
        "scope",
        "created_at",
        "expires_at",
        "last_used_at",
        "last_used_ip",
        "revoked_at",
    )
    raw_id_fields = ("user",)

    @admin.display(boolean=True, ordering="revoked_at")
    def revoked(self, obj):
        return obj.revoked_at is not None

    @admin.display(description="prefix", ordering="lookup")
    def prefix(self, obj):
        return obj.prefix

    def get_fields(self, request, obj=None):
        return self.change_fields if obj else self.add_fields

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        # a token keeps its owner and rights; issue a new one for others
        return (*self.readonly_fields, "user", "scope")

    def get_search_results(self, request, queryset, search_term):
        # the prefix as shown (rs_<lookup>) finds its token
        term = search_term.strip()
        if term.startswith(f"{TOKEN_PREFIX}_"):
            search_term = term.removeprefix(f"{TOKEN_PREFIX}_").split("_", 1)[0]
        return super().get_search_results(request, queryset, search_term)

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        token, raw = services.issue_token(
            obj.user, name=obj.name, scope=obj.scope, expires_at=obj.expires_at, by=request.user
        )
        obj.pk = token.pk
        obj.lookup = token.lookup
        messages.warning(request, f"New API token (copy it now, it is not shown again): {raw}")

    @admin.action(description="Revoke selected tokens", permissions=["change"])
    def revoke_selected(self, request, queryset):
        revoked = sum(services.revoke_token(token, by=request.user) for token in queryset.select_related("user"))
        self.message_user(request, f"{revoked} token(s) revoked.", messages.SUCCESS)


def count_of(queryset, field: str, outer: str = "pk"):
    """A correlated ``COUNT`` of ``queryset`` rows whose ``field`` is the outer row's ``outer``: one
    subquery, not a join, so several counts on one list never multiply each other."""
    counted = queryset.filter(**{field: OuterRef(outer)}).order_by().values(field).annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


class UserAdmin(BaseUserAdmin):
    """Users with the API tokens they hold (active ones counted, linked to the token list)."""

    list_display: tuple[str, ...] = (
        "username",
        "email",
        "is_active",
        "is_staff",
        "is_superuser",
        "active_tokens",
        "last_login",
    )

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_active_tokens=count_of(ApiToken.objects.active(), "user"))

    @admin.display(description="active tokens", ordering="_active_tokens")
    def active_tokens(self, obj):
        url = reverse("admin:accounts_apitoken_changelist") + f"?user__id__exact={obj.pk}&revoked=no"
        return format_html('<a href="{}">{}</a>', url, obj._active_tokens)


admin.site.unregister(get_user_model())
admin.site.register(get_user_model(), UserAdmin)
