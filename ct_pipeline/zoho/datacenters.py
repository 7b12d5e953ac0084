"""Which Zoho hosts to call: the accounts (OAuth) host and the API domain of each data centre.

A Zoho account lives in one data centre; its refresh token only works against that centre's
accounts host, and its records are only served by that centre's API domain.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_DATA_CENTER = "in"
TOKEN_PATH = "/oauth/v2/token"


@dataclass(frozen=True)
class DataCenter:
    """One Zoho data centre: its accounts host and its default API domain."""

    code: str
    accounts_url: str
    api_domain: str


# Source: the official Python SDK's data-centre classes (zohocrmsdk8_0, dc/*_data_center.py) and
# Zoho's multi-DC page. Canada's accounts host is zohocloud.ca, not zoho.ca.
DATA_CENTERS: dict[str, DataCenter] = {
    dc.code: dc
    for dc in (
        DataCenter("in", "https://accounts.zoho.in", "https://www.zohoapis.in"),
        DataCenter("com", "https://accounts.zoho.com", "https://www.zohoapis.com"),
        DataCenter("eu", "https://accounts.zoho.eu", "https://www.zohoapis.eu"),
        DataCenter("com.au", "https://accounts.zoho.com.au", "https://www.zohoapis.com.au"),
        DataCenter("jp", "https://accounts.zoho.jp", "https://www.zohoapis.jp"),
        DataCenter("com.cn", "https://accounts.zoho.com.cn", "https://www.zohoapis.com.cn"),
        DataCenter("sa", "https://accounts.zoho.sa", "https://www.zohoapis.sa"),
        DataCenter("ca", "https://accounts.zohocloud.ca", "https://www.zohoapis.ca"),
    )
}


@dataclass(frozen=True)
class Hosts:
    """Where the client sends its calls.

    `api_domain` is the fallback; the `api_domain` of the token response wins unless
    `api_domain_fixed` is set (an explicit override, as the sandbox uses).
    """

    data_center: str
    accounts_url: str
    api_domain: str
    api_domain_fixed: bool

    @property
    def token_url(self) -> str:
        """The OAuth token endpoint."""
        return self.accounts_url + TOKEN_PATH


def data_center(code: str) -> DataCenter:
    """The data centre for a ZOHO_DATA_CENTER value, or a ValueError naming the allowed values."""
    normalised = (code or "").strip().lower()
    if normalised not in DATA_CENTERS:
        allowed = ", ".join(DATA_CENTERS)
        raise ValueError(
            f"ZOHO_DATA_CENTER {code!r} is not a Zoho data centre; use one of {allowed}"
        )
    return DATA_CENTERS[normalised]


def resolve_hosts(
    data_center_code: str = DEFAULT_DATA_CENTER,
    accounts_url: str | None = None,
    api_domain: str | None = None,
) -> Hosts:
    """The hosts of a data centre, with the ZOHO_ACCOUNTS_URL / ZOHO_API_DOMAIN overrides."""
    centre = data_center(data_center_code)
    accounts = _base_url(accounts_url) if accounts_url else centre.accounts_url
    if accounts.endswith(TOKEN_PATH):
        accounts = accounts[: -len(TOKEN_PATH)]
    return Hosts(
        data_center=centre.code,
        accounts_url=accounts,
        api_domain=_base_url(api_domain) if api_domain else centre.api_domain,
        api_domain_fixed=bool(api_domain),
    )


def _base_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"Zoho URL override {url!r} must start with http:// or https://")
    return url
