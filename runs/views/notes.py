from django import forms
from django.http import HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views import View

from projects import permissions

from .. import services
from ..notes import MAX_NOTES_CHARS, render_markdown
from .base import ProjectScopedMixin

TEMPLATE = "runs/_notes.html"


class RunNotesForm(forms.Form):
    notes = forms.CharField(required=False, max_length=MAX_NOTES_CHARS, strip=False)


def notes_context(request, run, project) -> dict:
    return {
        "run": run,
        "project": project,
        "can_write": permissions.can(request.user, "write", project),
        "notes_html": render_markdown(run.description) if run.description.strip() else "",
        "max_notes": MAX_NOTES_CHARS,
    }


class RunNotesView(ProjectScopedMixin, View):
    """A run's notes (``sys/description``) in Markdown: shown rendered and sanitised; ``?edit=1`` is
    the editor for users who may write; a POST saves them through ``services.update_run``."""

    def get(self, request, workspace, project, run_id):
        run = self.get_run(run_id)
        context = notes_context(request, run, self.get_project())
        if request.GET.get("edit") == "1":
            permissions.require(request.user, "write", run.project)
            return TemplateResponse(request, TEMPLATE + "#notes-edit", context)
        return TemplateResponse(request, TEMPLATE + "#notes", context)

    def post(self, request, workspace, project, run_id):
        run = self.get_run(run_id)
        form = RunNotesForm(request.POST)
        if not form.is_valid():
            return HttpResponse(
                f"notes: {form.errors['notes'][0]}", status=400, content_type="text/plain; charset=utf-8"
            )
        services.update_run(request.user, run, description=form.cleaned_data["notes"])
        if not request.htmx:
            return redirect(reverse("runs:run_detail", args=[workspace, project, run_id]) + "#notes")
        return TemplateResponse(request, TEMPLATE + "#notes", notes_context(request, run, self.get_project()))
