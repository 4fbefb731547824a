"""The self-service token page: create (the secret shown once), list, revoke."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views import View

from accounts.models import ApiToken
from tracker.ui import ScopedUIViewMixin

from .. import services
from ..forms import TokenForm, apply_service_error
from .base import no_store

TOKEN_ALIASES = {"expires_at": "expires"}


def token_rows(queryset):
    return queryset.select_related("workspace_binding__workspace").order_by("-created_at")


class TokenListView(ScopedUIViewMixin, View):
    """The signed-in user's API tokens; POST creates one and shows its secret on this response only."""

    template_name = "projects/token_list.html"

    def scoped_queryset(self):
        return ApiToken.objects.filter(user=self.request.user)  # one's own tokens, nobody else's

    def page(self, form, *, secret=None, created=None, status=200):
        context = {"form": form, "tokens": token_rows(self.get_queryset()), "secret": secret, "created": created}
        return no_store(TemplateResponse(self.request, self.template_name, context, status=status))

    def get(self, request):
        return self.page(TokenForm(user=request.user))

    def post(self, request):
        form = TokenForm(request.POST, user=request.user)
        if form.is_valid():
            data = form.cleaned_data
            try:
                token, raw = services.issue_token(
                    request.user,
                    name=data["name"],
                    scope=data["scope"],
                    expires_at=data["expires_at"],
                    workspace=data.get("workspace"),
                    by=request.user,
                )
            except ValidationError as exc:
                apply_service_error(form, exc, TOKEN_ALIASES)
            else:
                return self.page(TokenForm(user=request.user), secret=raw, created=token)
        return self.page(form, status=400)


class TokenRevokeView(ScopedUIViewMixin, View):
    """Confirm (GET) and revoke (POST) one of the user's own tokens."""

    def scoped_queryset(self):
        return ApiToken.objects.filter(user=self.request.user)

    def get(self, request, token_id):
        token = get_object_or_404(self.get_queryset(), pk=token_id)
        return TemplateResponse(
            request, "projects/token_revoke.html", {"token": token, "cancel_url": reverse("projects:token_list")}
        )

    def post(self, request, token_id):
        token = get_object_or_404(self.get_queryset(), pk=token_id)
        services.revoke_token(token, by=request.user)
        messages.success(request, f"Revoked the token {token.prefix}{f' ({token.name})' if token.name else ''}.")
        return redirect("projects:token_list")
