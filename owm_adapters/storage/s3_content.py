"""The content-addressed store on an S3-compatible bucket (AWS S3, MinIO, Ceph, Garage, ...).

Each blob is the object ``<prefix><digest>`` (hex SHA-256 of its bytes): PUT sends the digest
as ``x-amz-checksum-sha256`` so the server refuses bytes damaged on the way, GET checks what
comes back against the digest, so an object altered in the bucket is refused, not served, and
HEAD answers :meth:`has`. A blob already there is not sent again (seed 001: a reference is a
check). It implements :class:`owm_core.ports.content_store.ContentStore` and passes the same
contract tests as the folder on disk and the in-memory twin (run against a real S3 server).

Requests are signed with AWS Signature V4 by ``botocore``'s low-level S3 client: boto3 would
only add its resource layer and s3transfer on top of the same botocore, and a hand-rolled
signer would be new security code to own; botocore is AWS's own, kept current, and already
the base of every S3 tool. Credentials are passed in explicitly (bootstrap reads them from a
0600 file or the environment) and are never logged nor part of an error or ``repr``.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import attrs
import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from owm_adapters.storage.content import checked_digest
from owm_core.errors import InvalidValue, NotFound

_MISSING = {"404", "NoSuchKey", "NotFound"}


class ObjectStoreUnavailable(Exception):
    """The S3-compatible server refused or could not be reached (no secret in the message)."""


@attrs.frozen
class S3Location:
    """Where the blobs live: ``bucket`` at ``endpoint_url`` (empty: AWS) in ``region``, each
    object named ``prefix`` + digest."""

    bucket: str
    region: str = "us-east-1"
    endpoint_url: str = ""
    prefix: str = "content/"


@attrs.frozen
class S3Credentials:
    """An access key pair; ``repr`` shows neither part."""

    access_key_id: str = attrs.field(repr=False)
    secret_access_key: str = attrs.field(repr=False)


class S3ContentStore:
    """Blobs by SHA-256 in an S3-compatible bucket (see the module docstring)."""

    def __init__(self, location: S3Location, credentials: S3Credentials) -> None:
        self.location = location
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=10,
            read_timeout=60,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._client: Any = botocore.session.get_session().create_client(
            "s3",
            region_name=location.region,
            endpoint_url=location.endpoint_url or None,
            aws_access_key_id=credentials.access_key_id,
            aws_secret_access_key=credentials.secret_access_key,
            config=config,
        )

    def _key(self, digest: str) -> str:
        return self.location.prefix + digest

    def _failed(self, verb: str, digest: str, exc: Exception) -> ObjectStoreUnavailable:
        code = exc.response.get("Error", {}).get("Code", "?") if isinstance(exc, ClientError) \
            else type(exc).__name__
        return ObjectStoreUnavailable(
            f"S3 {verb} of {self._key(digest)} in bucket {self.location.bucket} failed: {code}"
        )

    def put(self, data: bytes) -> str:
        """Store ``data`` unless it is there already; its hex SHA-256."""
        digest = hashlib.sha256(data).hexdigest()
        if self.has(digest):
            return digest
        checksum = base64.b64encode(hashlib.sha256(data).digest()).decode()
        try:
            self._client.put_object(
                Bucket=self.location.bucket, Key=self._key(digest), Body=data,
                ChecksumSHA256=checksum,
            )  # fmt: skip
        except (ClientError, BotoCoreError) as exc:
            raise self._failed("PUT", digest, exc) from None
        return digest

    def get(self, digest: str) -> bytes:
        """The blob of ``digest``; NotFound if none, InvalidValue if it was altered."""
        key = self._key(checked_digest(digest))
        try:
            answer = self._client.get_object(Bucket=self.location.bucket, Key=key)
            data: bytes = answer["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                raise NotFound(f"no content {digest}") from None
            raise self._failed("GET", digest, exc) from None
        except BotoCoreError as exc:
            raise self._failed("GET", digest, exc) from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise InvalidValue("digest", f"the stored content of {digest} was altered")
        return data

    def has(self, digest: str) -> bool:
        """Whether ``digest`` is stored (HEAD of its object)."""
        key = self._key(checked_digest(digest))
        try:
            self._client.head_object(Bucket=self.location.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                return False
            raise self._failed("HEAD", digest, exc) from None
        except BotoCoreError as exc:
            raise self._failed("HEAD", digest, exc) from None
        return True
