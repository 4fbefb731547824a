from django import forms

from .paths import PathError, validate_path


class RunIdsField(forms.Field):
    """Human run ids (``VIS-3``), from repeated fields or one comma-separated value."""

    def to_python(self, value):
        if not value:
            return []
        values = value if isinstance(value, list) else [value]
        return [i.strip() for v in values for i in str(v).split(",") if i.strip()][:1000]


class MultipleValueWidget(forms.Widget):
    def value_from_datadict(self, data, files, name):
        return data.getlist(name) if hasattr(data, "getlist") else data.get(name)


class BulkActionForm(forms.Form):
    action = forms.ChoiceField(
        choices=[("tag", "tag"), ("untag", "untag"), ("delete", "delete"), ("restore", "restore")]
    )
    runs = RunIdsField(widget=MultipleValueWidget)
    tag = forms.CharField(max_length=200, required=False, strip=True)

    def clean_runs(self):
        runs = self.cleaned_data["runs"]
        if not runs:
            raise forms.ValidationError("select at least one run")
        return runs


class SavedViewForm(forms.Form):
    name = forms.CharField(max_length=100, strip=True)
    shared = forms.BooleanField(required=False)
    c = forms.Field(widget=MultipleValueWidget, required=False)
    widths = forms.CharField(required=False)  # "path=px" lines from the table's resized headers
    q = forms.CharField(required=False, max_length=10000)
    sort = forms.CharField(required=False, max_length=520)
    group = forms.CharField(required=False, max_length=512)
    # the project dashboard's settings as JSON (runs/dashboard.py parse_dashboard); absent from the table's form
    dashboard = forms.CharField(required=False, max_length=100_000)

    def clean_dashboard(self):
        from .dashboard import DashboardError, parse_dashboard

        raw = self.cleaned_data.get("dashboard")
        if not raw:
            return None
        try:
            return parse_dashboard(raw)
        except DashboardError as exc:
            raise forms.ValidationError(f"dashboard: {exc}")

    def clean_c(self):
        paths = self.cleaned_data.get("c") or []
        for path in paths:
            try:
                validate_path(path)
            except PathError as exc:
                raise forms.ValidationError(f"column {path!r}: {exc}")
        return paths

    def clean_widths(self):
        widths = {}
        for line in (self.cleaned_data.get("widths") or "").splitlines():
            path, _, px = line.rpartition("=")
            if path and px.isdigit():
                widths[path] = max(40, min(1200, int(px)))
        return widths


class RunEditForm(forms.Form):
    name = forms.CharField(max_length=250, required=False, strip=True)
    description = forms.CharField(required=False, max_length=10000)
    tags = forms.CharField(required=False, max_length=5000)

    def clean_tags(self):
        raw = self.cleaned_data.get("tags") or ""
        return sorted({t.strip() for t in raw.replace("\n", ",").split(",") if t.strip()})
