"""Base classes for API views: every view scopes its queryset through the permission module."""

from django.core.exceptions import ImproperlyConfigured
from rest_framework import generics, viewsets


class ScopedQuerysetMixin:
    """Requires ``scoped_queryset()``; a view that does not declare its queryset is an error."""

    def scoped_queryset(self):
        raise ImproperlyConfigured(f"{type(self).__name__} must define scoped_queryset() using .for_user()")

    def get_queryset(self):
        return self.scoped_queryset()


class ScopedGenericAPIView(ScopedQuerysetMixin, generics.GenericAPIView):
    pass


class ScopedViewSet(ScopedQuerysetMixin, viewsets.GenericViewSet):
    pass
