"""AWS Signature Version 4 checks for the Rekognition-compatible endpoint.

The signature of a received request is computed again with botocore's own signer
(:class:`botocore.auth.SigV4Auth`) over the method, path, query, the headers the client says it
signed and the body, with the one secret the service is configured with, and compared in constant
time. A request is refused when it is unsigned, signed for another key, service or scope, when its
``X-Amz-Date`` is more than 15 minutes off, or when the signature differs. Messages say which check
failed and never carry a secret or a signature.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW_SECONDS = 15 * 60
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
# Headers a request must have signed: the host and date (replay across hosts and time) and the target
# (it names the operation: an unsigned target would let a captured request run another operation).
REQUIRED_SIGNED = ("host", "x-amz-date", "x-amz-target")

_AUTHORIZATION = re.compile(
    rf"^{ALGORITHM}\s+Credential=(?P<credential>[^,\s]+)\s*,\s*"
    r"SignedHeaders=(?P<signed>[a-z0-9;._-]+)\s*,\s*Signature=(?P<signature>[0-9a-f]{64})\s*$"
)
_AMZ_DATE = re.compile(r"^\d{8}T\d{6}Z$")


class SignatureError(Exception):
    """The request's signature does not hold; the message says why (safe to return to the client)."""


@dataclass(frozen=True, slots=True)
class Signer:
    """Who signed a request that passed: the access key id and the credential scope's region."""

    access_key_id: str
    region: str


def verify(
    *,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
    access_key_id: str,
    secret_access_key: str,
    service: str,
    now: float | None = None,
) -> Signer:
    """Check a request's SigV4 signature; return its signer or raise :class:`SignatureError`.

    ``headers`` are the received headers with lower-case names; ``path`` and ``query`` are as sent
    (percent-encoded); ``now`` is a Unix time (default: the clock).
    """
    authorization = headers.get("authorization", "")
    if not authorization:
        raise SignatureError("The request is not signed: it carries no Authorization header.")
    match = _AUTHORIZATION.match(authorization)
    if match is None:
        raise SignatureError(f"The Authorization header is not an {ALGORITHM} signature.")
    parts = match["credential"].split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise SignatureError("The Credential of the Authorization header is malformed.")
    key_id, scope_date, region, scope_service, _ = parts
    if not hmac.compare_digest(key_id.encode(), access_key_id.encode()):
        raise SignatureError("The security token included in the request is invalid.")
    if scope_service != service:
        raise SignatureError(f"The credential scope names service {scope_service!r}, not {service!r}.")
    amz_date = headers.get("x-amz-date", "")
    if not _AMZ_DATE.match(amz_date):
        raise SignatureError("The request has no valid X-Amz-Date header.")
    try:
        signed_at = calendar.timegm(time.strptime(amz_date, AMZ_DATE_FORMAT))
    except ValueError:
        raise SignatureError("The request has no valid X-Amz-Date header.") from None
    if scope_date != amz_date[:8]:
        raise SignatureError("The credential scope's date is not the date of X-Amz-Date.")
    clock = time.time() if now is None else now
    if abs(clock - signed_at) > MAX_SKEW_SECONDS:
        raise SignatureError(
            f"Signature expired: {amz_date} is more than {MAX_SKEW_SECONDS // 60} minutes from the "
            f"server's time {time.strftime(AMZ_DATE_FORMAT, time.gmtime(clock))}."
        )
    signed = match["signed"].split(";")
    missing = [name for name in REQUIRED_SIGNED if name not in signed]
    if missing:
        raise SignatureError(f"The signature must cover the header(s): {', '.join(missing)}.")
    absent = [name for name in signed if name not in headers]
    if absent:
        raise SignatureError(f"Signed header(s) missing from the request: {', '.join(absent)}.")
    declared = headers.get("x-amz-content-sha256")
    if declared is not None and declared != hashlib.sha256(body).hexdigest():
        # botocore signs this header's value instead of the body: it must be the body's real hash.
        raise SignatureError("X-Amz-Content-SHA256 is not the SHA-256 of the body.")
    request = AWSRequest(
        method=method,
        url=f"http://{headers['host']}{path}" + (f"?{query}" if query else ""),
        headers={name: headers[name] for name in signed},
        data=body,
    )
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(key_id, secret_access_key), service, region)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected.encode(), match["signature"].encode()):
        raise SignatureError(
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method."
        )
    return Signer(access_key_id=key_id, region=region)
