from django.urls import path

from . import views

app_name = "runs"

urlpatterns = [
    path("w/<str:workspace>/<str:project>/", views.RunListView.as_view(), name="run_list"),
    path("w/<str:workspace>/<str:project>/runs/<str:run_id>/", views.RunDetailView.as_view(), name="run_detail"),
]
