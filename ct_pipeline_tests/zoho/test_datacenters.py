"""Which hosts the client calls for each data centre, and how overrides apply."""

import pytest

from ct_pipeline.zoho import DATA_CENTERS, ZohoCRMResource, resolve_hosts

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
