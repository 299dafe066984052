"""Standard Webhooks signatures (https://www.standardwebhooks.com), pure.

``webhook-signature`` is ``v1,<base64 HMAC-SHA256(secret, f"{id}.{timestamp}.{body}")>``;
during a secret rotation one signature per valid secret, separated by spaces. Secrets are
``whsec_<base64 of 24 random bytes>``; the HMAC key is the decoded bytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping

from telematics.insurer.model import InsurerError

SECRET_PREFIX = "whsec_"
TOLERANCE_S = 300  # receivers should refuse older or newer timestamps (replays)


class BadSignature(InsurerError):
    """A webhook's signature does not verify."""


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def _key(secret: str) -> bytes:
    if not secret.startswith(SECRET_PREFIX):
        raise BadSignature("secret: must start with whsec_")
    return base64.b64decode(secret[len(SECRET_PREFIX) :])


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secrets_: Iterable[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(s, msg_id, timestamp, body) for s in secrets_),
        "content-type": "application/json",
    }


def verify(secret: str, headers_: Mapping[str, str], body: bytes, now: int) -> None:
    """What a receiver does; raises ``BadSignature`` unless one signature matches."""
    msg_id = headers_["webhook-id"]
    timestamp = int(headers_["webhook-timestamp"])
    if abs(now - timestamp) > TOLERANCE_S:
        raise BadSignature("timestamp outside the tolerance")
    expected = signature(secret, msg_id, timestamp, body)
    for candidate in headers_["webhook-signature"].split():
        if hmac.compare_digest(candidate, expected):
            return
    raise BadSignature("no matching signature")
