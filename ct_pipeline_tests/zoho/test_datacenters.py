"""Which hosts the client calls for each data centre, and how overrides apply.

Over HTTP, a transport mounted on the client's session (`ZohoCRMResource.mount_transport`)
carries the calls addressed to the real Zoho host names to the emulator, which answers a token
request as the data centre it was addressed to would.
"""

from urllib.parse import urlsplit, urlunsplit

import pytest
from requests.adapters import HTTPAdapter

from ct_pipeline.sandbox import credentials
from ct_pipeline.zoho import DATA_CENTERS, ZohoCRMResource, resolve_hosts
from ct_pipeline_tests.zoho.conftest import FAST_CLIENT

EXPECTED_HOSTS = {
    "in": ("https://accounts.zoho.in", "https://www.zohoapis.in"),
    "com": ("https://accounts.zoho.com", "https://www.zohoapis.com"),
    "eu": ("https://accounts.zoho.eu", "https://www.zohoapis.eu"),
    "com.au": ("https://accounts.zoho.com.au", "https://www.zohoapis.com.au"),
    "jp": ("https://accounts.zoho.jp", "https://www.zohoapis.jp"),
    "com.cn": ("https://accounts.zoho.com.cn", "https://www.zohoapis.com.cn"),
    "sa": ("https://accounts.zoho.sa", "https://www.zohoapis.sa"),
    "ca": ("https://accounts.zohocloud.ca", "https://www.zohoapis.ca"),
}


def test_every_documented_data_centre_is_known():
    assert set(DATA_CENTERS) == set(EXPECTED_HOSTS)


@pytest.mark.parametrize("code", sorted(EXPECTED_HOSTS))
def test_data_centre_selects_its_accounts_host_and_api_domain(code):
    hosts = resolve_hosts(code)

    accounts, api_domain = EXPECTED_HOSTS[code]
    assert hosts.token_url == f"{accounts}/oauth/v2/token"
    assert hosts.api_domain == api_domain
    assert not hosts.api_domain_fixed


def test_canada_uses_zohocloud_accounts_host():
    assert resolve_hosts("ca").accounts_url == "https://accounts.zohocloud.ca"


def test_india_is_the_default_data_centre():
    resource = ZohoCRMResource(client_id="id", client_secret="secret", refresh_token="token")

    assert resource.data_center == "in"


def test_data_centre_code_is_case_insensitive():
    assert resolve_hosts(" EU ").accounts_url == "https://accounts.zoho.eu"


def test_unknown_data_centre_names_the_variable_and_allowed_values():
    with pytest.raises(ValueError) as raised:
        resolve_hosts("uk")

    message = str(raised.value)
    assert "ZOHO_DATA_CENTER 'uk'" in message
    assert "in, com, eu, com.au, jp, com.cn, sa, ca" in message


def test_resource_refuses_unknown_data_centre_at_construction():
    with pytest.raises(ValueError, match="ZOHO_DATA_CENTER"):
        ZohoCRMResource(client_id="i", client_secret="s", refresh_token="t", data_center="us")


def test_overrides_replace_hosts_and_pin_the_api_domain():
    hosts = resolve_hosts(
        "in", accounts_url="http://127.0.0.1:9000/", api_domain="http://127.0.0.1:9001"
    )

    assert hosts.token_url == "http://127.0.0.1:9000/oauth/v2/token"
    assert hosts.api_domain == "http://127.0.0.1:9001"
    assert hosts.api_domain_fixed


def test_accounts_override_may_be_the_full_token_url():
    hosts = resolve_hosts("in", accounts_url="http://127.0.0.1:9000/oauth/v2/token")

    assert hosts.token_url == "http://127.0.0.1:9000/oauth/v2/token"


def test_override_without_scheme_is_refused():
    with pytest.raises(ValueError, match="http:// or https://"):
        resolve_hosts("in", accounts_url="127.0.0.1:9000")


class DataCentreRouter(HTTPAdapter):
    """A transport that carries every https call to the emulator, addressed (Host header) to the
    Zoho host the client named, and notes which host each call was for."""

    def __init__(self, emulator_url: str) -> None:
        super().__init__()
        self._emulator = urlsplit(emulator_url).netloc
        self.calls: list[tuple[str, str, str]] = []
        self.token_api_domains: list[str] = []
        self.authorization_schemes: set[str] = set()

    def send(self, request, **kwargs):
        addressed = urlsplit(request.url)
        self.calls.append((request.method, addressed.hostname, addressed.path))
        if "Authorization" in request.headers:
            self.authorization_schemes.add(request.headers["Authorization"].split(" ", 1)[0])
        request.url = urlunsplit(("http", self._emulator, addressed.path, addressed.query, ""))
        request.headers["Host"] = addressed.netloc
        response = super().send(request, **kwargs)
        if addressed.path == "/oauth/v2/token":
            self.token_api_domains.append(response.json()["api_domain"])
        return response


def _client_from_environment(monkeypatch, data_centre: str) -> ZohoCRMResource:
    """A resource built as deployments build it: from ZOHO_* variables, with no host overrides."""
    for name in ("ZOHO_ACCOUNTS_URL", "ZOHO_API_DOMAIN", "ZOHO_TOKEN_CACHE_DIR", "DAGSTER_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ZOHO_CLIENT_ID", credentials.SANDBOX_ZOHO_CLIENT_ID)
    monkeypatch.setenv("ZOHO_CLIENT_SECRET", credentials.SANDBOX_ZOHO_CLIENT_SECRET)
    monkeypatch.setenv("ZOHO_REFRESH_TOKEN", credentials.SANDBOX_ZOHO_REFRESH_TOKEN)
    monkeypatch.setenv("ZOHO_DATA_CENTER", data_centre)
    return ZohoCRMResource.from_env(**FAST_CLIENT)


@pytest.mark.parametrize("code", sorted(EXPECTED_HOSTS))
def test_each_data_centre_is_called_on_its_own_hosts_over_http(code, sandbox, crm, monkeypatch):
    zoho = _client_from_environment(monkeypatch, code)
    router = DataCentreRouter(sandbox.url)
    zoho.mount_transport("https://", router)

    records = zoho.read_records("Contacts", ["Last_Name"]).records

    accounts, api_domain = (urlsplit(url).hostname for url in EXPECTED_HOSTS[code])
    assert len(records) == len(crm.contacts)
    token_calls = [call for call in router.calls if call[2] == "/oauth/v2/token"]
    assert token_calls == [("POST", accounts, "/oauth/v2/token")]
    # The accounts host answered with its data centre's API domain, and every call went there.
    assert router.token_api_domains == [EXPECTED_HOSTS[code][1]]
    api_calls = [call for call in router.calls if call not in token_calls]
    assert {host for _, host, _ in api_calls} == {api_domain}
    assert {path for method, _, path in api_calls if method == "GET"} == {
        "/crm/v8/settings/fields",
        "/crm/v8/Contacts",
    }
    assert router.authorization_schemes == {"Zoho-oauthtoken"}


def test_calls_go_to_the_api_domain_the_token_answer_names(start_sandbox, monkeypatch):
    # An org served from another host of its data centre than the usual www.zohoapis.in.
    sandbox = start_sandbox(api_domain="https://sandbox.zohoapis.in")
    zoho = _client_from_environment(monkeypatch, "in")
    router = DataCentreRouter(sandbox.url)
    zoho.mount_transport("https://", router)

    zoho.read_records("Contacts", ["Last_Name"])

    hosts = [host for _, host, path in router.calls if path != "/oauth/v2/token"]
    assert hosts and set(hosts) == {"sandbox.zohoapis.in"}
