"""Answers to ``OPTIONS``: what a view renders and parses, and the fields its serializer takes."""

from rest_framework.metadata import SimpleMetadata


class Metadata(SimpleMetadata):
    """DRF's metadata, for views that declare no serializer too: they answer without ``actions``
    (views taking a free-form body, such as batches and uploads, have none)."""

    def determine_actions(self, request, view):
        try:
            view.get_serializer_class()
            return super().determine_actions(request, view)
        except AssertionError:
            # GenericAPIView's "should either include a serializer_class", or a view whose object is not
            # found by ``lookup_field`` (its URL names it otherwise): no ``actions``, never a 500
            return {}
