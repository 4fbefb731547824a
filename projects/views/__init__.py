"""UI views of workspaces, projects, members, teams, roles, service accounts and tokens."""

from .members import (
    CustomRoleDeleteView,
    CustomRoleEditView,
    CustomRoleListView,
    ServiceAccountDetailView,
    ServiceAccountListView,
    ServiceAccountTokenRevokeView,
    TeamDeleteView,
    TeamDetailView,
    TeamListView,
    WorkspaceMemberRemoveView,
    WorkspaceMembersView,
    WorkspaceMemberView,
)
from .project import (
    ProjectDeleteView,
    ProjectMemberRemoveView,
    ProjectMembersView,
    ProjectMemberView,
    ProjectSettingsView,
)
from .tokens import TokenListView, TokenRevokeView
from .workspace import ProjectCreateView, ProjectListView, WorkspaceListView

__all__ = [
    "CustomRoleDeleteView",
    "CustomRoleEditView",
    "CustomRoleListView",
    "ProjectCreateView",
    "ProjectDeleteView",
    "ProjectListView",
    "ProjectMemberRemoveView",
    "ProjectMemberView",
    "ProjectMembersView",
    "ProjectSettingsView",
    "ServiceAccountDetailView",
    "ServiceAccountListView",
    "ServiceAccountTokenRevokeView",
    "TeamDeleteView",
    "TeamDetailView",
    "TeamListView",
    "TokenListView",
    "TokenRevokeView",
    "WorkspaceListView",
    "WorkspaceMemberRemoveView",
    "WorkspaceMemberView",
    "WorkspaceMembersView",
]
