from django.urls import path

from . import views

app_name = "projects"

# Workspace pages live under "w/<workspace>/-/": a project's slug never starts with "-",
# so they cannot shadow a project's run table at "w/<workspace>/<project>/".
ws = "w/<str:workspace>/-/"
project = "w/<str:workspace>/<str:project>/"

urlpatterns = [
    path("", views.WorkspaceListView.as_view(), name="workspace_list"),
    path("settings/tokens/", views.TokenListView.as_view(), name="token_list"),
    path("settings/tokens/<int:token_id>/revoke", views.TokenRevokeView.as_view(), name="token_revoke"),
    path("w/<str:workspace>/", views.ProjectListView.as_view(), name="project_list"),
    path(ws + "new-project", views.ProjectCreateView.as_view(), name="project_create"),
    path(ws + "members", views.WorkspaceMembersView.as_view(), name="workspace_members"),
    path(ws + "members/<int:membership_id>", views.WorkspaceMemberView.as_view(), name="workspace_member"),
    path(
        ws + "members/<int:membership_id>/remove",
        views.WorkspaceMemberRemoveView.as_view(),
        name="workspace_member_remove",
    ),
    path(ws + "teams", views.TeamListView.as_view(), name="team_list"),
    path(ws + "teams/<str:team>", views.TeamDetailView.as_view(), name="team_detail"),
    path(ws + "teams/<str:team>/delete", views.TeamDeleteView.as_view(), name="team_delete"),
    path(ws + "roles", views.CustomRoleListView.as_view(), name="custom_role_list"),
    path(ws + "roles/<int:role_id>", views.CustomRoleEditView.as_view(), name="custom_role_edit"),
    path(ws + "roles/<int:role_id>/delete", views.CustomRoleDeleteView.as_view(), name="custom_role_delete"),
    path(ws + "service-accounts", views.ServiceAccountListView.as_view(), name="service_account_list"),
    path(
        ws + "service-accounts/<str:username>",
        views.ServiceAccountDetailView.as_view(),
        name="service_account_detail",
    ),
    path(
        ws + "service-accounts/<str:username>/tokens/<int:token_id>/revoke",
        views.ServiceAccountTokenRevokeView.as_view(),
        name="service_account_token_revoke",
    ),
    path(project + "members", views.ProjectMembersView.as_view(), name="project_members"),
    path(project + "members/<int:grant_id>", views.ProjectMemberView.as_view(), name="project_member"),
    path(
        project + "members/<int:grant_id>/remove",
        views.ProjectMemberRemoveView.as_view(),
        name="project_member_remove",
    ),
    path(project + "settings", views.ProjectSettingsView.as_view(), name="project_settings"),
    path(project + "delete", views.ProjectDeleteView.as_view(), name="project_delete"),
]
