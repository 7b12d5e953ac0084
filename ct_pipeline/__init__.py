"""ct_pipeline: a Dagster code location that keeps CleverTap in step with Zoho CRM."""
