"""The provider catalogue: vendor names agree with the config, endpoints follow the formulas."""

from __future__ import annotations

import warnings

import pytest

from metanode_storage.config.settings import VENDORS, ProviderSettings
from metanode_storage.errors import InvalidSetting
from metanode_storage.providers.catalogue import CATALOGUE, endpoint_of, open_provider


def test_config_and_catalogue_name_the_same_vendors() -> None:
    assert set(VENDORS) == set(CATALOGUE)


@pytest.mark.parametrize(
    ("vendor", "region", "account", "expected"),
    [
        ("digitalocean", "fra1", "", "https://fra1.digitaloceanspaces.com"),
        ("linode", "us-east-1", "", "https://us-east-1.linodeobjects.com"),
        ("vultr", "ewr1", "", "https://ewr1.vultrobjects.com"),
        ("hetzner", "fsn1", "", "https://fsn1.your-objectstorage.com"),
        ("ovh", "gra", "", "https://s3.gra.io.cloud.ovh.net"),
        ("cloudflare", "auto", "abc123", "https://abc123.r2.cloudflarestorage.com"),
        ("aws", "us-east-1", "", None),
        ("gcp", "us-central1", "", None),
    ],
)
def test_endpoint_formulas(vendor: str, region: str, account: str, expected: str | None) -> None:
    settings = ProviderSettings("p", vendor, region=region, account=account, bucket="b")
    assert endpoint_of(settings) == expected


def test_an_override_wins_and_r2_needs_its_account() -> None:
    override = ProviderSettings("p", "ovh", region="gra", bucket="b", endpoint="http://127.0.0.1:9")
    assert endpoint_of(override) == "http://127.0.0.1:9"
    with pytest.raises(InvalidSetting, match="--account"):
        endpoint_of(ProviderSettings("p", "cloudflare", region="auto", bucket="b"))


def test_a_gcp_provider_without_a_project_opens_without_a_warning() -> None:
    """gcsfs warns 'GCS project not set' at construction: on every command, for a setting
    only bucket creation needs. (The suite turns warnings into errors.)"""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        store = open_provider(
            ProviderSettings(
                "g", "gcp", bucket="b", endpoint="http://127.0.0.1:9", credentials="anonymous"
            )
        )
    assert store.name == "g"
