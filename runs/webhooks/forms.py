"""The webhook form: it parses input; ``services`` checks the URL, events and query."""

from django import forms

from .models import EVENT_CHOICES


class WebhookForm(forms.Form):
    url = forms.CharField(
        label="Payload URL", max_length=2000, help_text="http:// or https://; requests go to public addresses only."
    )
    events = forms.MultipleChoiceField(choices=EVENT_CHOICES, widget=forms.CheckboxSelectMultiple)
    query = forms.CharField(
        label="Query",
        required=False,
        max_length=2000,
        help_text="For “a field changed”: sent when a write changes a field the query names and the run matches it, "
        "e.g. eval/acc > 0.9 and sys/tags contains “candidate”.",
    )
    secret = forms.CharField(
        required=False,
        max_length=200,
        widget=forms.PasswordInput(render_value=False),
        help_text="Signs every delivery (X-Runstore-Signature-256). Empty: generated on creation, kept on a change.",
    )
    active = forms.BooleanField(required=False, initial=True)
