from django.conf import settings
from django.shortcuts import render


def locked_out(request, original_response=None, credentials=None):
    """The page a locked-out login gets (django-axes' lockout callable): 429 with Retry-After."""
    cool_off = settings.AXES_COOLOFF_TIME
    response = render(
        request,
        "accounts/locked_out.html",
        {"failure_limit": settings.AXES_FAILURE_LIMIT, "cooloff_minutes": int(cool_off.total_seconds() // 60)},
        status=429,
    )
    response["Retry-After"] = str(int(cool_off.total_seconds()))
    return response
