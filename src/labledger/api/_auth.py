"""Bearer tokens derived from the key ring, and who may do what.

The token scheme: for a key ``KID`` with secret ``S`` in the key ring, the
API token is ``KID.`` followed by ``hex(HMAC-SHA256(S, b"labledger-api-token"))``.
It is printed by ``labledger serve --print-token`` and never stored. The
server recomputes the tokens of every key in its ring at start-up, so
rotating a key (``labledger keys new``, then restarting) issues a new token,
and removing a key revokes its token. The key id in front of the token names
the caller (``actor`` defaults to ``api:KID`` on appended events) and lets the
server compare one digest, in constant time, instead of trying every key.

Rules: every write needs a valid token. Reads need none when the server is
bound to a loopback address (only local processes can reach it); bound to
any other address, every endpoint but ``/healthz`` needs the token.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

from labledger.security.keyring import KeyRing

TOKEN_CONTEXT = b"labledger-api-token"


def api_token(key_id: str, secret: bytes) -> str:
    """The bearer token of one key: ``KID.HEX`` (see the module docstring).

    Args:
        key_id: the key's id in the ring.
        secret: the key's secret bytes.

    Returns:
        The token, safe to put in an ``Authorization: Bearer`` header.
    """
    digest = hmac.new(secret, TOKEN_CONTEXT, hashlib.sha256).hexdigest()
    return f"{key_id}.{digest}"


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) only accepts local connections."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Authenticator:
    """Checks bearer tokens against the tokens derived from a key ring."""

    def __init__(self, ring: KeyRing) -> None:
        self._tokens: dict[str, str] = {}
        for kid in ring.ids():
            secret = ring.secret(kid)
            if secret is not None:
                self._tokens[kid] = api_token(kid, secret)

    @property
    def has_keys(self) -> bool:
        """Whether any token can be valid (an empty ring admits no writer)."""
        return bool(self._tokens)

    def key_id(self, authorization: str | None) -> str | None:
        """The key id of a valid ``Bearer`` header, or None.

        Args:
            authorization: the raw ``Authorization`` header value (or None).
        """
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return None
        kid, _, _ = token.strip().partition(".")
        wanted = self._tokens.get(kid)
        if wanted is None:
            return None
        return kid if hmac.compare_digest(wanted.encode(), token.strip().encode()) else None
