"""Each provider family's own client, to see what a provider holds without metanode."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request

import boto3
from azure.storage.blob import BlobServiceClient

from tests.servers import S3_ACCESS_KEY, S3_SECRET_KEY, ServerProcess, azurite_connection_string


def list_objects(family: str, server: ServerProcess, bucket: str) -> dict[str, bytes]:
    """Every object in the bucket, by full name, with its body."""
    if family == "s3":
        client = boto3.client(
            "s3",
            endpoint_url=server.endpoint,
            region_name="us-east-1",
            aws_access_key_id=S3_ACCESS_KEY,
            aws_secret_access_key=S3_SECRET_KEY,
        )
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        names = [o["Key"] for page in pages for o in page.get("Contents", [])]
        return {n: client.get_object(Bucket=bucket, Key=n)["Body"].read() for n in names}
    if family == "azure":
        service = BlobServiceClient.from_connection_string(
            azurite_connection_string(server.endpoint)
        )
        container = service.get_container_client(bucket)
        return {b.name: container.download_blob(b.name).readall() for b in container.list_blobs()}
    if family == "gcs":
        base = f"{server.endpoint}/storage/v1/b/{bucket}/o"
        with urllib.request.urlopen(base, timeout=10) as response:
            items = json.load(response).get("items", [])
        bodies = {}
        for item in items:
            url = f"{base}/{urllib.parse.quote(item['name'], safe='')}?alt=media"
            with urllib.request.urlopen(url, timeout=10) as response:
                bodies[item["name"]] = response.read()
        return bodies
    raise ValueError(family)
