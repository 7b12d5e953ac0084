"""Start both emulators, seeded with synthetic data, and say how to point the pipeline at them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ct_pipeline.sandbox import credentials
from ct_pipeline.sandbox.server import RunningServer, start_in_thread
from ct_pipeline.sandbox.synthetic import SyntheticCrm

if TYPE_CHECKING:
    from ct_pipeline.zoho import ZohoCRMResource


@dataclass
class RunningSandbox:
    """The emulators started by `start_sandbox`; either may be absent."""

    zoho: RunningServer | None
    clevertap: RunningServer | None

    def environment(self) -> dict[str, str]:
        """The environment variables that point the pipeline's resources at these emulators."""
        variables: dict[str, str] = {}
        if self.zoho is not None:
            variables |= {
                "ZOHO_CLIENT_ID": credentials.SANDBOX_ZOHO_CLIENT_ID,
                "ZOHO_CLIENT_SECRET": credentials.SANDBOX_ZOHO_CLIENT_SECRET,
                "ZOHO_REFRESH_TOKEN": credentials.SANDBOX_ZOHO_REFRESH_TOKEN,
                "ZOHO_ACCOUNTS_URL": self.zoho.url,
                "ZOHO_API_DOMAIN": self.zoho.url,
            }
        if self.clevertap is not None:
            variables |= {
                "CLEVERTAP_ACCOUNT_ID": credentials.SANDBOX_CLEVERTAP_ACCOUNT_ID,
                "CLEVERTAP_PASSCODE": credentials.SANDBOX_CLEVERTAP_PASSCODE,
                "CLEVERTAP_API_URL": self.clevertap.url,
            }
        return variables

    def zoho_resource(self) -> ZohoCRMResource:
        """A Zoho client resource signed in to this Zoho emulator with the sandbox's self-client."""
        from ct_pipeline.zoho import ZohoCRMResource

        if self.zoho is None:
            raise RuntimeError("this sandbox was started without the Zoho emulator")
        return ZohoCRMResource(
            client_id=credentials.SANDBOX_ZOHO_CLIENT_ID,
            client_secret=credentials.SANDBOX_ZOHO_CLIENT_SECRET,
            refresh_token=credentials.SANDBOX_ZOHO_REFRESH_TOKEN,
            accounts_url=self.zoho.url,
            api_domain=self.zoho.url,
        )

    def stop(self) -> None:
        """Stop every emulator that was started."""
        for server in (self.zoho, self.clevertap):
            if server is not None:
                server.stop()


def start_sandbox(
    *,
    zoho_port: int | None = 0,
    clevertap_port: int | None = 0,
    contacts: int = 2_000,
    seed: int = 0,
    crm: SyntheticCrm | None = None,
) -> RunningSandbox:
    """Serve the emulators in threads; a port of None skips that emulator, 0 picks a free one.

    The Zoho emulator serves `crm` when given (it takes ownership), else `contacts` synthetic
    contacts generated from `seed`.
    """
    from ct_pipeline.sandbox.clevertap_emulator import create_clevertap_app
    from ct_pipeline.sandbox.synthetic import generate_crm
    from ct_pipeline.sandbox.zoho_emulator import create_zoho_app

    zoho = None
    if zoho_port is not None:
        crm = crm if crm is not None else generate_crm(contacts, seed=seed)
        zoho = start_in_thread(create_zoho_app(crm), port=zoho_port)
    clevertap = None
    if clevertap_port is not None:
        clevertap = start_in_thread(create_clevertap_app(), port=clevertap_port)
    return RunningSandbox(zoho=zoho, clevertap=clevertap)
