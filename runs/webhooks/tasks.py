from celery import shared_task


@shared_task(acks_late=True)
def deliver(delivery_pk: int, retries: bool = True) -> str:
    """One attempt of a webhook delivery; the next one is queued with a countdown while attempts remain."""
    from . import services

    return services.attempt_delivery(delivery_pk, retries=retries)
