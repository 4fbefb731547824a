from django import template

from ..units import series_unit

register = template.Library()


@register.filter
def unit(path: str) -> str:
    """The unit of a series path (``%``, ``GiB``) or ``""``."""
    return series_unit(path)
