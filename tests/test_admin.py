import pytest
from django.contrib import admin
from django.contrib.auth.models import User


def registered_models():
    return [model for model in admin.site._registry]


@pytest.mark.django_db
def test_every_admin_changelist_renders(client):
    root = User.objects.create_superuser("root", "r@x.org", "pw")
    client.force_login(root)
    for model in registered_models():
        url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        assert client.get(url).status_code == 200, url


# Models deliberately left out of the admin, each with its reason.
HIDDEN = {
    # Request-rate counters, rewritten on every API request (projects.throttling): nothing to read or edit.
    "RateBucket",
}


def test_every_model_with_a_simple_key_is_in_the_admin():
    from django.apps import apps

    ours = [m for m in apps.get_models() if m._meta.app_label in ("accounts", "projects", "runs")]
    missing = [
        m.__name__
        for m in ours
        if not m._meta.is_composite_pk and m not in admin.site._registry and m.__name__ not in HIDDEN
    ]
    assert missing == []
