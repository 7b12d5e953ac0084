"""The CleverTap -> Zoho flow outside Dagster: the webhook receiver and the inbox it fills.

`create_webhook_app` / `serve_webhooks` receive deliveries; `ct_pipeline.assets.writeback`
matches them to Contacts and writes them to Zoho with the functions of `matching` and
`writeback`.
"""

from ct_pipeline.webhooks.app import (
    TOKEN_ENV_VAR,
    WEBHOOK_PATH,
    WebhookConfigError,
    create_webhook_app,
    serve_webhooks,
)
from ct_pipeline.webhooks.inbox import (
    DELIVERIES_TABLE,
    INBOX_TABLE,
    PENDING_STATUSES,
    pending_summary,
    requeue_parked,
)
from ct_pipeline.webhooks.payload import WebhookPayloadError, parse_delivery

__all__ = [
    "DELIVERIES_TABLE",
    "INBOX_TABLE",
    "PENDING_STATUSES",
    "TOKEN_ENV_VAR",
    "WEBHOOK_PATH",
    "WebhookConfigError",
    "WebhookPayloadError",
    "create_webhook_app",
    "parse_delivery",
    "pending_summary",
    "requeue_parked",
    "serve_webhooks",
]
