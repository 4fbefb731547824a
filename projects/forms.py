"""Forms of the workspace, project, membership and token pages: they parse input; the services decide."""

from datetime import datetime, time, timedelta

from django import forms
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.utils import timezone

from accounts.models import TokenScope

from . import permissions
from .models import CustomRole, ProjectRole, Team, Visibility, Workspace, WorkspaceRole

EXPIRY_CHOICES = [
    ("never", "Never"),
    ("7", "In 7 days"),
    ("30", "In 30 days"),
    ("90", "In 90 days"),
    ("date", "At the end of a date"),
]
SCOPE_HELP = "read: view and export; write: also log and delete runs; admin: everything you may do."


def apply_service_error(form: forms.Form, exc: ValidationError, aliases: dict | None = None) -> None:
    """Show a service's ``ValidationError`` on ``form``: each message on its field, others above the form."""
    aliases = aliases or {}
    if not hasattr(exc, "error_dict"):
        form.add_error(None, exc.messages)
        return
    for field, messages in exc.message_dict.items():
        field = aliases.get(field, field)
        form.add_error(field if field in form.fields else None, messages)


def find_user(text: str):
    """The user whose username (or, failing that, email) is ``text``; never creates one."""
    text = text.strip()
    User = get_user_model()
    user = User.objects.filter(username=text).first()
    if user is None and "@" in text:
        matches = list(User.objects.filter(email__iexact=text)[:2])
        if len(matches) > 1:
            raise ValidationError(f"several users have the email {text}; give the username instead")
        user = matches[0] if matches else None
    if user is None:
        raise ValidationError(f"no user has the username or email {text!r}; they need an account first")
    if not user.is_active:
        raise ValidationError(f"the account {user.username} is deactivated")
    return user


class ExpiryMixin(forms.Form):
    expires = forms.ChoiceField(choices=EXPIRY_CHOICES, initial="90", label="Expires")
    expires_on = forms.DateField(
        required=False,
        label="Expiry date",
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="With 'at the end of a date': the token works until that day ends.",
    )

    def clean(self):
        cleaned = super().clean()
        choice = cleaned.get("expires")
        cleaned["expires_at"] = None
        if choice == "date":
            day = cleaned.get("expires_on")
            if day is None:
                self.add_error("expires_on", "choose the date the token expires")
            elif day < timezone.localdate():
                self.add_error("expires_on", "must be today or a later date")
            else:
                cleaned["expires_at"] = timezone.make_aware(datetime.combine(day + timedelta(days=1), time.min))
        elif choice in ("7", "30", "90"):
            cleaned["expires_at"] = timezone.now() + timedelta(days=int(choice))
        return cleaned


class TokenForm(ExpiryMixin, forms.Form):
    name = forms.CharField(max_length=100, required=False, help_text="What the token is for, e.g. 'laptop' or 'CI'.")
    scope = forms.ChoiceField(choices=TokenScope.choices, initial=TokenScope.WRITE, help_text=SCOPE_HELP)
    field_order = ["name", "scope", "expires", "expires_on", "workspace"]

    def __init__(self, *args, user=None, bindable=True, **kwargs):
        super().__init__(*args, **kwargs)
        if bindable:
            self.fields["workspace"] = forms.ModelChoiceField(
                queryset=Workspace.objects.for_user(user, "view"),
                required=False,
                to_field_name="slug",
                empty_label="Any workspace",
                help_text="A token bound to one workspace reaches nothing outside it.",
            )
        self.order_fields(self.field_order)


class PrincipalForm(forms.Form):
    """A user (by username or email) or a team of the workspace: exactly one."""

    member = forms.CharField(max_length=254, required=False, label="Username or email")
    team = forms.ModelChoiceField(queryset=Team.objects.none(), required=False, to_field_name="name")

    def __init__(self, *args, workspace=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = Team.objects.filter(workspace=workspace).order_by("name")
        self.fields["team"].label_from_instance = lambda team: team.name
        self.fields["team"].empty_label = "— or a team —"

    def clean(self):
        cleaned = super().clean()
        member, team = cleaned.get("member", "").strip(), cleaned.get("team")
        if member and team:
            raise ValidationError("give a user or a team, not both")
        if team is not None:
            cleaned["principal"] = team
        elif member:
            try:
                cleaned["principal"] = find_user(member)
            except ValidationError as exc:
                self.add_error("member", exc)
        elif "team" not in self.errors:
            self.add_error("member", "give a username or email, or choose a team")
        return cleaned


class MemberForm(PrincipalForm):
    role = forms.ChoiceField(choices=WorkspaceRole.choices, initial=WorkspaceRole.MEMBER)


class WorkspaceRoleForm(forms.Form):
    role = forms.ChoiceField(choices=WorkspaceRole.choices)


def project_role_choices(project) -> list[tuple[str, list[tuple[str, str]]]]:
    builtin = [(f"role:{value}", label) for value, label in ProjectRole.choices]
    custom = [
        (f"custom:{role.pk}", f"{role.name} ({', '.join(role.actions)})")
        for role in CustomRole.objects.filter(workspace_id=project.workspace_id)
    ]
    return [("Built-in roles", builtin)] + ([("Custom roles", custom)] if custom else [])


class GrantRoleMixin(forms.Form):
    """A built-in project role or a custom role of the project's workspace, allowing or denying."""

    role = forms.ChoiceField(choices=())
    deny = forms.BooleanField(required=False, label="Deny these actions", help_text="Custom roles only; deny wins.")

    def setup_roles(self, project, choices=None):
        self.project = project
        self.fields["role"].choices = choices if choices is not None else project_role_choices(project)

    def clean(self):
        cleaned = super().clean()
        value = cleaned.get("role") or ""
        kind, _, ident = value.partition(":")
        if kind == "custom":
            cleaned["custom_role"] = CustomRole.objects.filter(pk=ident, workspace_id=self.project.workspace_id).first()
            if cleaned["custom_role"] is None:
                self.add_error("role", "no such custom role in this workspace")
        elif kind == "role":
            cleaned["custom_role"] = None
            cleaned["builtin"] = ident
            if cleaned.get("deny", getattr(self, "fixed_deny", False)):
                field = "deny" if "deny" in self.fields else "role"
                self.add_error(field, "only a custom role can deny; choose a custom role")
        return cleaned


class ProjectGrantForm(GrantRoleMixin, PrincipalForm):
    field_order = ["member", "team", "role", "deny"]

    def __init__(self, *args, project=None, **kwargs):
        super().__init__(*args, workspace=project.workspace, **kwargs)
        self.setup_roles(project)
        self.fields["role"].initial = f"role:{ProjectRole.VIEWER}"
        self.order_fields(self.field_order)


class GrantChangeForm(GrantRoleMixin, forms.Form):
    """A new role for an existing grant; whether it allows or denies stays as it is."""

    def __init__(self, *args, project=None, deny=False, choices=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.setup_roles(project, choices)
        del self.fields["deny"]
        self.fixed_deny = deny


class ProjectCreateForm(forms.Form):
    slug = forms.CharField(max_length=100, label="Name", help_text="Letters, digits, '.', '_' or '-'.")
    key = forms.CharField(
        max_length=10,
        required=False,
        help_text="Prefix of run ids (e.g. VIS for VIS-42); derived from the name if empty.",
    )
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
    visibility = forms.ChoiceField(choices=Visibility.choices, initial=Visibility.PRIVATE)


class ProjectSettingsForm(forms.Form):
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), required=False)
    visibility = forms.ChoiceField(choices=Visibility.choices)


class ProjectDeleteForm(forms.Form):
    confirm = forms.CharField(max_length=100, label="Type the project's name to confirm")

    def __init__(self, *args, project=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.project = project

    def clean_confirm(self):
        value = self.cleaned_data["confirm"].strip()
        if value not in (self.project.slug, self.project.full_name):
            raise ValidationError(f"type {self.project.slug} to delete the project")
        return value


class TeamForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="Letters, digits, '.', '_' or '-'.")
    description = forms.CharField(max_length=300, required=False)


class TeamMemberForm(forms.Form):
    member = forms.CharField(max_length=254, label="Username or email")

    def clean_member(self):
        return find_user(self.cleaned_data["member"])


class CustomRoleForm(forms.Form):
    name = forms.CharField(max_length=100)
    description = forms.CharField(max_length=300, required=False)
    actions = forms.MultipleChoiceField(
        choices=[(a, a) for a in permissions.PROJECT_ACTIONS],
        widget=forms.CheckboxSelectMultiple,
        help_text="view: see runs; export: download exports; write: log runs; delete: trash runs; "
        "manage: members and settings.",
    )


class ServiceAccountForm(forms.Form):
    username = forms.CharField(max_length=100, help_text="The bot's user name, e.g. ci-acme.")
    role = forms.ChoiceField(choices=WorkspaceRole.choices, initial=WorkspaceRole.MEMBER)
    description = forms.CharField(max_length=300, required=False)
