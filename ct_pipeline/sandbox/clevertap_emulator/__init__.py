"""A local emulator of CleverTap's server API for the sandbox and the tests.

It serves `/1/upload`, `/1/profile.json`, the `/1/profiles.json` and `/1/events.json` cursor
APIs, `/1/send/externaltrigger.json` and `/2/send/externaltrigger.json`,
`/1/delete/profiles.json`, `/1/demerge/profiles.json`, `/1/disassociate` and `/1/subscribe`
with CleverTap's documented checks, codes and limits, keeps profiles and events the way
CleverTap does, and offers an admin API under `/__sandbox/` to read what was received and to
inject faults.
"""

from ct_pipeline.sandbox.clevertap_emulator.app import create_clevertap_app

__all__ = ["create_clevertap_app"]
