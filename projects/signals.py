from django.conf import settings
from django.db.models.signals import post_save
from django.dispatch import receiver

from .services import ensure_personal_workspace


# Lives in projects, not accounts: accounts knows nothing of workspaces.
@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def give_new_user_a_personal_workspace(sender, instance, created, raw=False, **kwargs):
    if created and not raw and not getattr(instance, "_runstore_service_account", False):
        ensure_personal_workspace(instance)
