"""Shared pieces of the server-rendered UI."""

from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import ImproperlyConfigured
from django.utils.decorators import method_decorator
from django.views.decorators.vary import vary_on_headers


def template_for(request, template: str, partial: str | None = None) -> str:
    """The whole page, or only its ``partial`` when HTMX asks for a fragment."""
    if partial and getattr(request, "htmx", False) and not request.htmx.boosted:
        return f"{template}#{partial}"
    return template


@method_decorator(vary_on_headers("HX-Request"), name="dispatch")
class ScopedUIViewMixin(LoginRequiredMixin):
    """UI views must scope what they show through ``scoped_queryset()`` (the permission module)."""

    def scoped_queryset(self):
        raise ImproperlyConfigured(f"{type(self).__name__} must define scoped_queryset() using .for_user()")

    def get_queryset(self):
        return self.scoped_queryset()
