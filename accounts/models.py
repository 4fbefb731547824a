import hashlib
import hmac
import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone

TOKEN_PREFIX = "rs"


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiTokenQuerySet(models.QuerySet):
    def active(self):
        now = timezone.now()
        return self.filter(revoked_at__isnull=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now)
        )


class ApiToken(models.Model):
    """A bearer token for the API. Only its SHA-256 is stored; the raw value is shown once."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True)
    lookup = models.CharField(max_length=16, unique=True, editable=False)
    digest = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.user} · {self.name or self.lookup}"

    @classmethod
    def issue(cls, user, name: str = "", expires_at=None) -> tuple["ApiToken", str]:
        """Create a token; return it with the raw value, which is never stored."""
        lookup = secrets.token_hex(6)
        raw = f"{TOKEN_PREFIX}_{lookup}_{secrets.token_urlsafe(32)}"
        token = cls.objects.create(user=user, name=name, lookup=lookup, digest=hash_token(raw), expires_at=expires_at)
        return token, raw

    @classmethod
    def authenticate(cls, raw: str):
        parts = raw.split("_")
        if len(parts) < 3 or parts[0] != TOKEN_PREFIX:
            return None
        token = cls.objects.active().select_related("user").filter(lookup=parts[1]).first()
        if token is None or not hmac.compare_digest(token.digest, hash_token(raw)):
            return None
        if not token.user.is_active:
            return None
        return token
