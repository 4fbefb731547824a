"""Domain writes on accounts: issuing and revoking API tokens.

The admin, the token page, commands and the API call these; each write sends
its signal (:mod:`accounts.signals`) inside the transaction, so a receiver's
write (the audit entry) commits or rolls back with it.
"""

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from .models import ApiToken, TokenScope
from .signals import token_issued, token_revoked


def issue_token(user, *, name: str, scope: str, expires_at=None, by=None) -> tuple[ApiToken, str]:
    """Create a token for ``user``; return it with its raw value, which is shown once and never stored.

    ``by`` is the user doing it (``user`` themselves, an admin, or None from a command line).
    A scope outside read/write/admin or an expiry in the past is a ``ValidationError`` naming the field.
    """
    if scope not in TokenScope.values:
        raise ValidationError({"scope": f"must be one of {', '.join(TokenScope.values)}, not {scope!r}"})
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": "must be in the future"})
    with transaction.atomic():
        token, raw = ApiToken.issue(user, name=name, expires_at=expires_at, scope=scope)
        token_issued.send(sender=ApiToken, token=token, by=by)
    return token, raw


def revoke_token(token: ApiToken, *, by) -> bool:
    """Revoke ``token`` now; return False (and announce nothing) if it was already revoked."""
    with transaction.atomic():
        now = timezone.now()
        changed = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=now)
        if not changed:
            token.refresh_from_db(fields=["revoked_at"])
            return False
        token.revoked_at = now
        token_revoked.send(sender=ApiToken, token=token, by=by)
    return True
