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


class TokenScope(models.TextChoices):
    """What a token may do, at most: read → view and export; write → also write and delete;
    admin → everything its user may do."""

    READ = "read", "read"
    WRITE = "write", "write"
    ADMIN = "admin", "admin"


class ApiToken(models.Model):
    """A bearer token for the API. Only its SHA-256 is stored; the raw value is shown once.

    The raw value is ``rs_<lookup>_<secret>``; ``rs_<lookup>`` is the token's visible
    :attr:`prefix`, safe to show, log and audit.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True)
    lookup = models.CharField(max_length=16, unique=True, editable=False)
    digest = models.CharField(max_length=64, editable=False)
    scope = models.CharField(max_length=10, choices=TokenScope.choices, default=TokenScope.WRITE)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_ip = models.GenericIPAddressField(null=True, blank=True, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.user} · {self.name or self.prefix}"

    def __repr__(self):
        return f"<ApiToken {self.prefix} user={self.user_id} scope={self.scope}>"

    @property
    def prefix(self) -> str:
        return f"{TOKEN_PREFIX}_{self.lookup}"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def is_active(self) -> bool:
        return not self.is_revoked and not self.is_expired

    @classmethod
    def issue(cls, user, name: str = "", expires_at=None, scope: str = TokenScope.ADMIN) -> tuple["ApiToken", str]:
        """Create a token; return it with the raw value, which is never stored.

        A bare row write: ``accounts.services.issue_token`` is the domain operation (it announces it).
        """
        if scope not in TokenScope.values:
            raise ValueError(f"scope must be one of {', '.join(TokenScope.values)}, not {scope!r}")
        lookup = secrets.token_hex(6)
        raw = f"{TOKEN_PREFIX}_{lookup}_{secrets.token_urlsafe(32)}"
        token = cls.objects.create(
            user=user, name=name, lookup=lookup, digest=hash_token(raw), expires_at=expires_at, scope=scope
        )
        return token, raw

    @classmethod
    def find(cls, raw: str, related: tuple[str, ...] = ("user",)) -> "ApiToken | None":
        """The token whose full value is ``raw`` (whatever its state), or None; ``related``: the
        relations read in the same statement (``select_related``)."""
        parts = raw.split("_")
        if len(parts) < 3 or parts[0] != TOKEN_PREFIX or not parts[1]:
            return None
        token = cls.objects.select_related(*related).filter(lookup=parts[1]).first()
        if token is None or not hmac.compare_digest(token.digest, hash_token(raw)):
            return None
        return token

    @classmethod
    def authenticate(cls, raw: str):
        """The token for ``raw`` if it may be used now (not revoked, not expired, its user active)."""
        token = cls.find(raw)
        if token is None or not token.is_active or not token.user.is_active:
            return None
        return token
