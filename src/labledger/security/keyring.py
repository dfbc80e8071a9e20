"""The key ring: key id → HMAC secret, from the environment or a key file, never the log.

Sources, later ones adding to earlier ones:

- ``LABLEDGER_KEY_FILE`` (default ``./labledger.keys`` when it exists): JSON
  ``{"active": KID, "keys": {KID: HEX_SECRET, ...}}``, written with mode 0600.
- ``LABLEDGER_KEYS``: ``KID:HEX_SECRET[,KID:HEX_SECRET...]``.

Several keys are valid at once (rotation): commands signed with any of them
verify; new commands are signed with the active one.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from labledger.errors import UsageError

KEY_FILE_ENV = "LABLEDGER_KEY_FILE"
KEYS_ENV = "LABLEDGER_KEYS"
DEFAULT_KEY_FILE = "labledger.keys"
MIN_SECRET_BYTES = 16


class KeyRing:
    """Secrets by key id. ``repr`` and ``str`` never show a secret."""

    def __init__(self, keys: Mapping[str, bytes] | None = None, active: str | None = None) -> None:
        self._keys = dict(keys or {})
        for kid, secret in self._keys.items():
            _check(kid, secret)
        if active is not None and active not in self._keys:
            raise UsageError(f"active key {active!r} is not in the key ring")
        self.active = active or (next(reversed(self._keys)) if self._keys else None)

    def __repr__(self) -> str:
        return f"KeyRing(ids={sorted(self._keys)}, active={self.active!r})"

    def __contains__(self, kid: object) -> bool:
        return kid in self._keys

    def ids(self) -> list[str]:
        return sorted(self._keys)

    def secret(self, kid: str) -> bytes | None:
        return self._keys.get(kid)

    def add(self, kid: str, secret: bytes, *, activate: bool = True) -> None:
        _check(kid, secret)
        self._keys[kid] = secret
        if activate or self.active is None:
            self.active = kid

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KeyRing:
        env = os.environ if environ is None else environ
        ring = cls()
        path = Path(env.get(KEY_FILE_ENV) or DEFAULT_KEY_FILE)
        if path.exists():
            # No key file is an empty ring: signed commands are then refused (unknown_key).
            ring = load(path)
        for item in filter(None, (env.get(KEYS_ENV) or "").split(",")):
            kid, _, hexsecret = item.strip().partition(":")
            ring.add(kid, _unhex(kid, hexsecret), activate=False)
        return ring


def _check(kid: str, secret: bytes) -> None:
    if not kid or len(kid) > 64 or not kid.replace("-", "").replace("_", "").isalnum():
        raise UsageError(f"key id {kid!r}: use 1–64 letters, digits, '-' or '_'")
    if len(secret) < MIN_SECRET_BYTES:
        raise UsageError(f"key {kid!r} is shorter than {MIN_SECRET_BYTES} bytes")


def _unhex(kid: str, value: str) -> bytes:
    try:
        return bytes.fromhex(value)
    except ValueError as exc:
        raise UsageError(f"key {kid!r}: the secret must be hex") from exc


def load(path: Path) -> KeyRing:
    """Read a key file."""
    try:
        doc = json.loads(path.read_text())
        keys = {kid: _unhex(kid, value) for kid, value in doc["keys"].items()}
        return KeyRing(keys, doc.get("active"))
    except FileNotFoundError as exc:
        raise UsageError(f"key file {path} does not exist: run `labledger keys new`") from exc
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UsageError(f"key file {path} is unreadable or malformed: {exc}") from exc


def save(ring: KeyRing, path: Path) -> None:
    """Write the ring with mode 0600, atomically (temp file, fsync, rename)."""
    doc = {"active": ring.active, "keys": {k: (ring.secret(k) or b"").hex() for k in ring.ids()}}
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh, indent=2)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def new_key(ring: KeyRing) -> str:
    """Add a fresh 32-byte key, make it active, and return its id."""
    kid = f"k-{secrets.token_hex(4)}"
    ring.add(kid, secrets.token_bytes(32))
    return kid
