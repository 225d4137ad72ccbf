"""The seed's provider catalogue: how each vendor is reached, and its endpoint formula.

AWS and the S3-compatible vendors go through s3fs, GCP through gcsfs, Azure
through adlfs, Local through the local filesystem. Every provider takes an
explicit ``endpoint`` that overrides the formula (tests, MinIO, Ceph, a
corporate S3). The cloud SDKs are imported only when a provider of their
family is opened.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from metanode_storage.config.secrets import Secret
from metanode_storage.config.settings import ProviderSettings
from metanode_storage.errors import InvalidSetting, MetanodeError, ProviderUnavailable
from metanode_storage.providers.base import BlobStore
from metanode_storage.providers.fsspec_store import LocalBlobStore

S3, GCS, AZURE, LOCAL = "s3", "gcs", "azure", "local"


@dataclass(frozen=True)
class Vendor:
    name: str
    title: str
    family: str
    default_region: str
    endpoint_formula: str  # documentation; "" when the SDK finds the endpoint itself
    endpoint: Callable[[ProviderSettings], str | None]
    # Credentials that `providers configure --store-credentials` reads from the environment.
    credential_env: tuple[tuple[str, str], ...] = ()


def _fixed(template: str) -> Callable[[ProviderSettings], str | None]:
    def build(settings: ProviderSettings) -> str | None:
        if "{account}" in template and not settings.account:
            raise InvalidSetting(
                f"provider '{settings.name}' needs --account for its endpoint ({template})"
            )
        return template.format(region=settings.region, account=settings.account)

    return build


def _sdk_default(_: ProviderSettings) -> str | None:
    return None


_S3_KEYS = (
    ("access_key_id", "AWS_ACCESS_KEY_ID"),
    ("secret_access_key", "AWS_SECRET_ACCESS_KEY"),
    ("session_token", "AWS_SESSION_TOKEN"),
)

CATALOGUE: dict[str, Vendor] = {
    v.name: v
    for v in (
        Vendor("aws", "AWS S3", S3, "us-east-1", "", _sdk_default, _S3_KEYS),
        Vendor(
            "gcp",
            "Google Cloud Storage",
            GCS,
            "us-central1",
            "",
            _sdk_default,
            (("service_account_json", "GOOGLE_APPLICATION_CREDENTIALS"),),
        ),
        Vendor(
            "azure",
            "Azure Blob Storage",
            AZURE,
            "eastus",
            "https://{account}.blob.core.windows.net",
            _sdk_default,
            (("connection_string", "AZURE_STORAGE_CONNECTION_STRING"),),
        ),
        Vendor(
            "digitalocean",
            "DigitalOcean Spaces",
            S3,
            "nyc3",
            "https://{region}.digitaloceanspaces.com",
            _fixed("https://{region}.digitaloceanspaces.com"),
            _S3_KEYS,
        ),
        Vendor(
            "linode",
            "Linode Object Storage",
            S3,
            "us-east-1",
            "https://{region}.linodeobjects.com",
            _fixed("https://{region}.linodeobjects.com"),
            _S3_KEYS,
        ),
        Vendor(
            "vultr",
            "Vultr Object Storage",
            S3,
            "ewr1",
            "https://{region}.vultrobjects.com",
            _fixed("https://{region}.vultrobjects.com"),
            _S3_KEYS,
        ),
        Vendor(
            "hetzner",
            "Hetzner Object Storage",
            S3,
            "fsn1",
            "https://{region}.your-objectstorage.com",
            _fixed("https://{region}.your-objectstorage.com"),
            _S3_KEYS,
        ),
        Vendor(
            "ovh",
            "OVHcloud Object Storage",
            S3,
            "gra",
            "https://s3.{region}.io.cloud.ovh.net",
            _fixed("https://s3.{region}.io.cloud.ovh.net"),
            _S3_KEYS,
        ),
        Vendor(
            "cloudflare",
            "Cloudflare R2",
            S3,
            "auto",
            "https://{account}.r2.cloudflarestorage.com",
            _fixed("https://{account}.r2.cloudflarestorage.com"),
            _S3_KEYS,
        ),
        Vendor("local", "Local directory", LOCAL, "local", "", _sdk_default),
    )
}


def vendor_named(vendor: str) -> Vendor:
    try:
        return CATALOGUE[vendor]
    except KeyError:
        raise InvalidSetting(
            f"unknown provider vendor {vendor!r}", f"choose one of: {', '.join(CATALOGUE)}"
        ) from None


def vendor_of(settings: ProviderSettings) -> Vendor:
    return vendor_named(settings.vendor)


def endpoint_of(settings: ProviderSettings) -> str | None:
    """The URL the provider is reached at: the override, else the vendor's formula."""
    return settings.endpoint or vendor_of(settings).endpoint(settings)


class UnopenedProvider(BlobStore):
    """Stands in for a provider whose configuration could not be turned into a client.

    One misconfigured provider must not make the whole node unusable: every
    call on it fails as an outage, so reads and writes fail over to the others
    and `status` names the problem.
    """

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(name)
        self.problem = problem

    def _fail(self) -> ProviderUnavailable:
        return ProviderUnavailable(self.name, f"cannot be opened: {self.problem}")

    def put(self, key: str, data: bytes) -> None:
        raise self._fail()

    def get(self, key: str) -> bytes:
        raise self._fail()

    def get_range(self, key: str, start: int, end: int) -> bytes:
        raise self._fail()

    def size(self, key: str) -> int:
        raise self._fail()

    def delete(self, key: str) -> None:
        raise self._fail()

    def list_keys(self) -> Iterator[str]:
        raise self._fail()

    def check_reachable(self) -> None:
        raise self._fail()

    def create_bucket(self) -> None:
        raise self._fail()


def open_provider_or_stand_in(
    settings: ProviderSettings, credentials: Mapping[str, Secret] | None = None
) -> BlobStore:
    try:
        return open_provider(settings, credentials)
    except MetanodeError as exc:
        return UnopenedProvider(settings.name, str(exc))


def open_provider(
    settings: ProviderSettings, credentials: Mapping[str, Secret] | None = None
) -> BlobStore:
    vendor = vendor_of(settings)
    if vendor.family == LOCAL:
        return LocalBlobStore(settings.name, settings.path)
    secrets = credentials or {}
    if settings.credentials == "keystore" and not secrets:
        raise InvalidSetting(
            f"provider '{settings.name}' expects credentials in the keystore, and there are none",
            "run `metanode storage providers configure --name "
            f"{settings.name} --store-credentials`",
        )
    opener: Callable[[ProviderSettings, str | None, Mapping[str, Secret]], BlobStore]
    if vendor.family == S3:
        from metanode_storage.providers.s3 import open_s3 as opener
    elif vendor.family == GCS:
        from metanode_storage.providers.gcs import open_gcs as opener
    else:
        from metanode_storage.providers.azure import open_azure as opener
    return opener(settings, endpoint_of(settings), secrets)
