"""The fixed, public credentials the sandbox emulators accept.

They protect nothing: they exist so that the sandbox enforces authentication exactly as the real
APIs do, and so that a client configured for the sandbox proves it sends its credentials.
"""

SANDBOX_ZOHO_CLIENT_ID = "1000.SANDBOXCLIENTID"
SANDBOX_ZOHO_CLIENT_SECRET = "sandbox-client-secret"
SANDBOX_ZOHO_REFRESH_TOKEN = "1000.sandbox-refresh-token"

SANDBOX_CLEVERTAP_ACCOUNT_ID = "SBX-000-000-000Z"
SANDBOX_CLEVERTAP_PASSCODE = "SANDBOX-PASSCODE"
SANDBOX_CLEVERTAP_TOKEN = "SANDBOX-TOKEN"
