"""The project's webhook pages (settings area): list and create, edit with the delivery log, delete,
test ping, redeliver. Managing and viewing webhooks is the project's ``manage`` action."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect
from django.views import View

from projects.forms import apply_service_error
from projects.views.base import ProjectMixin

from . import services
from .forms import WebhookForm
from .models import Delivery, Webhook

LOG_SIZE = 50  # deliveries shown on a webhook's page


class WebhookListView(ProjectMixin, View):
    """GET: the project's webhooks and a form for a new one; POST: create it."""

    template_name = "webhooks/webhook_list.html"

    def scoped_queryset(self):
        return Webhook.objects.filter(project__in=self.project_scope())

    def project_scope(self):
        from projects.models import Project

        return Project.objects.for_user(self.request.user, "manage").filter(pk=self.get_project().pk)

    def page(self, form=None, status=200):
        hooks = list(self.get_queryset().filter(project=self.get_project()))
        return self.render(
            self.template_name, {"webhooks": hooks, "form": form or WebhookForm(initial={"active": True})}, status
        )

    def get(self, request, workspace, project):
        self.require("manage")
        return self.page()

    def post(self, request, workspace, project):
        self.require("manage")
        form = WebhookForm(request.POST)
        if form.is_valid():
            try:
                hook = services.create_webhook(request.user, self.get_project(), **form.cleaned_data)
            except ValidationError as exc:
                apply_service_error(form, exc)
            else:
                messages.success(request, "Added the webhook; its secret is on this page.")
                return redirect("webhooks:webhook_detail", workspace, project, hook.pk)
        return self.page(form, status=400)


class WebhookDetailView(WebhookListView):
    """GET: a webhook's settings and its delivery log; POST: change it."""

    template_name = "webhooks/webhook_detail.html"

    def hook(self) -> Webhook:
        if not hasattr(self, "_hook"):
            self.require("manage")
            self._hook = get_object_or_404(
                self.get_queryset().filter(project=self.get_project()), pk=self.kwargs["webhook_id"]
            )
        return self._hook

    def page(self, form=None, status=200):
        hook = self.hook()
        initial = {"url": hook.url, "events": hook.events, "query": hook.query, "active": hook.active}
        deliveries = list(Delivery.objects.filter(webhook=hook).prefetch_related("attempt_log")[:LOG_SIZE])
        return self.render(
            self.template_name,
            {"webhook": hook, "form": form or WebhookForm(initial=initial), "deliveries": deliveries},
            status,
        )

    def get(self, request, workspace, project, webhook_id):
        return self.page()

    def post(self, request, workspace, project, webhook_id):
        hook = self.hook()
        form = WebhookForm(request.POST)
        if form.is_valid():
            try:
                services.update_webhook(request.user, hook, **form.cleaned_data)
            except ValidationError as exc:
                apply_service_error(form, exc)
            else:
                messages.success(request, "Saved the webhook.")
                return redirect("webhooks:webhook_detail", workspace, project, hook.pk)
        return self.page(form, status=400)


class WebhookDeleteView(WebhookDetailView):
    http_method_names = ["post"]

    def post(self, request, workspace, project, webhook_id):
        services.delete_webhook(request.user, self.hook())
        messages.success(request, "Deleted the webhook.")
        return redirect("webhooks:webhook_list", workspace, project)


class WebhookPingView(WebhookDetailView):
    """POST: send a ``ping`` delivery now; it shows in the log."""

    http_method_names = ["post"]

    def post(self, request, workspace, project, webhook_id):
        services.ping(request.user, self.hook())
        messages.success(request, "Sent a ping; its delivery is in the log below.")
        return redirect("webhooks:webhook_detail", workspace, project, webhook_id)


class RedeliverView(WebhookDetailView):
    """POST: one more attempt of a delivery (same payload, same delivery id)."""

    http_method_names = ["post"]

    def post(self, request, workspace, project, webhook_id, delivery_id):
        delivery = get_object_or_404(Delivery.objects.filter(webhook=self.hook()), pk=delivery_id)
        services.redeliver(request.user, delivery)
        messages.success(request, f"Redelivering {delivery.delivery_id}.")
        return redirect("webhooks:webhook_detail", workspace, project, webhook_id)
