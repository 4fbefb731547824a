"""Webhooks and their delivery log in the Django admin: writes go through ``services`` (``manage``
on the project); staff who are not superusers see the webhooks of projects they manage."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404

from projects import permissions
from projects.admin import ServiceAdmin, _become

from . import services
from .models import EVENT_CHOICES, Delivery, DeliveryAttempt, Webhook


def _managed(queryset, request, field: str):
    if request.user.is_superuser:
        return queryset
    return permissions.scope_by_project(queryset, request.user, "manage", field=field)


class WebhookAdminForm(forms.ModelForm):
    url = forms.CharField(max_length=2000, help_text="http:// or https://; public addresses only (the SSRF guard).")
    events = forms.MultipleChoiceField(choices=EVENT_CHOICES, widget=forms.CheckboxSelectMultiple)
    secret = forms.CharField(
        required=False, max_length=200, help_text="Empty: generated on creation, kept on a change."
    )

    class Meta:
        model = Webhook
        fields = ["project", "url", "events", "query", "secret", "active"]


@admin.register(Webhook)
class WebhookAdmin(ServiceAdmin):
    form = WebhookAdminForm
    list_display = ["url", "project", "active", "created_by", "created_at"]
    list_filter = ["active"]
    search_fields = ["url", "project__slug"]
    readonly_fields = ["created_by", "created_at", "updated_at"]
    list_select_related = ["project__workspace", "created_by"]

    def get_queryset(self, request):
        return _managed(super().get_queryset(request), request, "project")

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        if obj is not None:
            form.base_fields["project"].disabled = True
            form.base_fields["secret"].initial = ""
        return form

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        values = {k: data[k] for k in ("url", "events", "query", "secret", "active")}
        if change:
            services.update_webhook(request.user, obj, **values)
        else:
            _become(obj, services.create_webhook(request.user, data["project"], **values))

    def delete_model(self, request, obj):
        services.delete_webhook(request.user, obj)

    def delete_queryset(self, request, queryset):
        for hook in queryset.select_related("project"):
            services.delete_webhook(request.user, hook)


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = readonly_fields = (
        "number",
        "started_at",
        "succeeded",
        "response_code",
        "latency_ms",
        "error",
        "response_excerpt",
    )

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    """The delivery log: read-only, with a "redeliver" action (the same payload and delivery id)."""

    list_display = [
        "event",
        "delivery_id",
        "webhook",
        "status",
        "response_code",
        "latency_ms",
        "attempts",
        "created_at",
    ]
    list_filter = ["status", "event"]
    search_fields = ["delivery_id", "webhook__url"]
    list_select_related = ["webhook__project__workspace"]
    inlines = [DeliveryAttemptInline]
    actions = ["redeliver"]
    readonly_fields = [
        "webhook",
        "event",
        "delivery_id",
        "status",
        "attempts",
        "response_code",
        "latency_ms",
        "response_excerpt",
        "error",
        "created_at",
        "last_attempt_at",
        "next_attempt_at",
        "payload",
    ]

    def get_queryset(self, request):
        return _managed(super().get_queryset(request), request, "webhook__project")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Redeliver the selected deliveries (same payload, same delivery id)")
    def redeliver(self, request, queryset):
        count = 0
        for delivery in queryset.select_related("webhook__project"):
            try:
                services.redeliver(request.user, delivery)
            except (PermissionDenied, Http404):
                self.message_user(request, f"{delivery}: you may not manage its webhook.", messages.ERROR)
                continue
            count += 1
        self.message_user(request, f"Redelivering {count} deliveries.", messages.SUCCESS)
