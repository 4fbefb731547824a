"""Shared pieces of the server-rendered UI."""

from typing import Any

from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest
from django.utils.decorators import method_decorator
from django.views.decorators.vary import vary_on_headers


def template_for(request, template: str, partial: str | None = None) -> str:
    """The whole page, or only its ``partial`` when HTMX asks for a fragment."""
    if partial and getattr(request, "htmx", False) and not request.htmx.boosted:
        return f"{template}#{partial}"
    return template


@method_decorator(vary_on_headers("HX-Request"), name="dispatch")
class ScopedUIViewMixin(LoginRequiredMixin):
    """The base of every UI view that shows or changes data: it declares what the user may reach.

    ``scoped_queryset()`` (built with ``.for_user()``, the permission module) is evaluated at
    dispatch, before any handler runs, so a scope that raises (404 for an invisible project) stops
    every method, and a view that declares none fails instead of showing unscoped data.
    ``get_queryset()`` returns that scope.
    """

    # set by Django's View.setup(); declared for the mixins built on this one
    request: HttpRequest
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def scoped_queryset(self):
        raise ImproperlyConfigured(f"{type(self).__name__} must define scoped_queryset() using .for_user()")

    def dispatch(self, request, *args, **kwargs):
        if not request.user.is_authenticated:
            return self.handle_no_permission()
        self._scope = self.scoped_queryset()
        return super().dispatch(request, *args, **kwargs)

    def get_queryset(self):
        scope = getattr(self, "_scope", None)
        return scope.all() if scope is not None else self.scoped_queryset()
