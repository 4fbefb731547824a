"""Per-project webhooks: run events delivered as signed JSON by a Celery task, with a delivery log.

``events`` emits (after the write's transaction commits), ``network`` sends (behind the SSRF guard),
``services`` owns every write, ``tasks`` delivers and retries."""
