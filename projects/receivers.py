"""Audit entries for what other apps announce: logins (``django.contrib.auth``, with django-axes'
lockouts) and tokens (``accounts.signals``). Connected in ``ProjectsConfig.ready``.

One attempt, one entry: a failed login is ``login.failed``, or ``login.locked_out`` when django-axes
refused it or it reached the failure limit (axes also sends ``user_locked_out`` for those, which is not
recorded a second time). Only the username tried is kept, never what else was posted.
"""

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from accounts.models import ApiToken
from accounts.signals import token_issued, token_refused, token_revoked

from . import audit
from .models import ServiceAccount, TokenWorkspace


@receiver(user_logged_in, dispatch_uid="audit_login")
def audit_login(sender, request, user, **kwargs):
    audit.record("login", actor=user, target=user)


@receiver(user_logged_out, dispatch_uid="audit_logout")
def audit_logout(sender, request, user, **kwargs):
    if user is not None and user.is_authenticated:  # a logout without a session is no event
        audit.record("logout", actor=user, target=user)


def _username(credentials) -> str:
    User = get_user_model()
    value = (credentials or {}).get(User.USERNAME_FIELD) or (credentials or {}).get("username") or ""
    return str(value)[:150]


@receiver(user_login_failed, dispatch_uid="audit_login_failed")
def audit_login_failed(sender, credentials, request=None, **kwargs):
    username = _username(credentials)
    # django-axes' receiver (connected first, its app comes first) has marked a lockout by now.
    locked_out = bool(getattr(request, "axes_locked_out", False))
    account = get_user_model()._default_manager.filter(**{get_user_model().USERNAME_FIELD: username}).first()
    details = {"username": username}
    failures = getattr(request, "axes_failures_since_start", None)
    if isinstance(failures, int):
        details["failures"] = failures
    audit.record(
        "login.locked_out" if locked_out else "login.failed",
        target=account if account is not None else username,
        details=details,
    )


def _token_workspace(token: ApiToken):
    binding = TokenWorkspace.objects.filter(token=token).select_related("workspace").first()
    if binding is not None:
        return binding.workspace
    account = ServiceAccount.objects.filter(user_id=token.user_id).select_related("workspace").first()
    return account.workspace if account is not None else None


def _token_details(token: ApiToken, **more) -> dict:
    return {
        "prefix": token.prefix,
        "user": token.user.get_username(),
        "name": token.name,
        "scope": token.scope,
        "expires_at": token.expires_at,
        **more,
    }


@receiver(token_issued, sender=ApiToken, dispatch_uid="audit_token_issued")
def audit_token_issued(sender, token, by=None, **kwargs):
    audit.record(
        "token.issued", actor=by, workspace=_token_workspace(token), target=token, details=_token_details(token)
    )


@receiver(token_revoked, sender=ApiToken, dispatch_uid="audit_token_revoked")
def audit_token_revoked(sender, token, by=None, **kwargs):
    audit.record(
        "token.revoked", actor=by, workspace=_token_workspace(token), target=token, details=_token_details(token)
    )


@receiver(token_refused, sender=ApiToken, dispatch_uid="audit_token_refused")
def audit_token_refused(sender, token, reason, **kwargs):
    # The actor is the identity the token names: whoever presented it holds that user's token.
    audit.record(
        "token.refused",
        actor=token.user,
        workspace=_token_workspace(token),
        target=token,
        details=_token_details(token, reason=reason),
    )
