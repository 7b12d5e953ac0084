"""A local emulator of the Zoho CRM API (v7 and v8) serving synthetic CRM data.

`create_zoho_app(generate_crm(N))` returns a Starlette app with, on one host:
- `POST /oauth/v2/token`: the refresh-token grant for the sandbox credentials;
- `/crm/{v7,v8}/...`: records (list, get, deleted, update), Notes, Stage_History, and the
  `settings/modules`, `settings/fields`, `users` and `org` metadata;
- `/crm/bulk/{v7,v8}/read`: Bulk Read jobs, served as a zip holding a CSV;
- `/__sandbox/...`: the admin API (records, faults, stats, reset) that tests drive.

Paths, parameters, status codes, JSON shapes, error bodies and limits follow Zoho's documentation
as collected in research/zoho.md.
"""

from ct_pipeline.sandbox.zoho_emulator.app import API_VERSIONS, create_zoho_app

__all__ = ["API_VERSIONS", "create_zoho_app"]
