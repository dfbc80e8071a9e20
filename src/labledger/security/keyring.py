"""The key ring: key id → private signing key, from the environment or a key file, never the log.

Sources, later ones adding to earlier ones:

- ``LABLEDGER_KEY_FILE`` (default ``./labledger.keys`` when it exists): JSON
  ``{"active": KID, "keys": {KID: SECRET, ...}, "trusted": [KID, ...]}``,
  written with mode 0600.
- ``LABLEDGER_KEYS``: ``KID:SECRET[,KID:SECRET...]``.
- ``LABLEDGER_TRUSTED_KEYS``: ``KID[,KID...]``, the trust list (see :meth:`KeyRing.trusts`).

A ``SECRET`` is ``ed25519:HEX`` (the 32-byte Ed25519 private seed: the
signing keys made since issue #18) or bare ``HEX`` (an HMAC-SHA256 secret of
at least 16 bytes: the keys of older logs, still loaded so their commands stay
verifiable). Several keys are valid at once (rotation): commands signed with
any of them verify; new commands are signed with the active one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from labledger.errors import UsageError

KEY_FILE_ENV = "LABLEDGER_KEY_FILE"
KEYS_ENV = "LABLEDGER_KEYS"
TRUSTED_ENV = "LABLEDGER_TRUSTED_KEYS"
DEFAULT_KEY_FILE = "labledger.keys"
MIN_SECRET_BYTES = 16
ED25519 = "ed25519"
HMAC = "hmac-sha256"
_ED_PREFIX = "ed25519:"


def public_bytes(seed: bytes) -> bytes:
    """The 32-byte Ed25519 public key of a 32-byte private seed."""
    key = Ed25519PrivateKey.from_private_bytes(seed)
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def fingerprint(public_key: bytes) -> str:
    """``sha256:HEX`` of the raw public key: what people compare out of band."""
    return "sha256:" + hashlib.sha256(public_key).hexdigest()


class KeyRing:
    """Private keys by key id. ``repr`` and ``str`` never show a secret.

    ``keys`` given as plain bytes are HMAC secrets (older logs); Ed25519 keys are
    added with :meth:`add_ed25519` or :func:`new_key`, or loaded from a file.
    """

    def __init__(
        self,
        keys: Mapping[str, bytes] | None = None,
        active: str | None = None,
        *,
        trusted: Iterable[str] | None = None,
    ) -> None:
        self._keys: dict[str, bytes] = {}
        self._alg: dict[str, str] = {}
        self._public: dict[str, bytes] = {}
        for kid, secret in (keys or {}).items():
            self._put(kid, secret, HMAC)
        if active is not None and active not in self._keys:
            raise UsageError(f"active key {active!r} is not in the key ring")
        self.active = active or (next(reversed(self._keys)) if self._keys else None)
        self.trusted: set[str] | None = None if trusted is None else set(trusted)

    def __repr__(self) -> str:
        return f"KeyRing(ids={sorted(self._keys)}, active={self.active!r})"

    def __contains__(self, kid: object) -> bool:
        return kid in self._keys

    def ids(self) -> list[str]:
        return sorted(self._keys)

    def secret(self, kid: str) -> bytes | None:
        """The key's secret bytes (the HMAC secret, or the Ed25519 private seed)."""
        return self._keys.get(kid)

    def algorithm(self, kid: str) -> str | None:
        """``ed25519``, ``hmac-sha256``, or None for a key not in the ring."""
        return self._alg.get(kid)

    def public_key(self, kid: str) -> bytes | None:
        """The raw Ed25519 public key of ``kid``; None for an HMAC key or a key not here."""
        if self._alg.get(kid) != ED25519:
            return None
        if kid not in self._public:  # derived once: Kasmina checks every command with the ring
            self._public[kid] = public_bytes(self._keys[kid])
        return self._public[kid]

    def trusts(self, kid: str) -> bool:
        """Whether the gate accepts commands signed with ``kid``.

        The trust list is configuration (key file ``trusted``, ``LABLEDGER_TRUSTED_KEYS``);
        without one, the ring trusts exactly the keys it holds.
        """
        return kid in self._keys if self.trusted is None else kid in self.trusted

    def add(self, kid: str, secret: bytes, *, activate: bool = True) -> None:
        """Add an HMAC secret (older logs; new keys are Ed25519: :meth:`add_ed25519`)."""
        self._put(kid, secret, HMAC)
        if activate or self.active is None:
            self.active = kid

    def add_ed25519(self, kid: str, seed: bytes, *, activate: bool = True) -> None:
        """Add an Ed25519 private key given as its 32-byte seed."""
        self._put(kid, seed, ED25519)
        if activate or self.active is None:
            self.active = kid

    def _put(self, kid: str, secret: bytes, alg: str) -> None:
        _check(kid, secret, alg)
        self._keys[kid], self._alg[kid] = secret, alg
        self._public.pop(kid, None)

    def encoded(self, kid: str) -> str:
        """The key as the key file stores it: ``ed25519:HEX`` or bare HMAC ``HEX``."""
        hexed = self._keys[kid].hex()
        return _ED_PREFIX + hexed if self._alg[kid] == ED25519 else hexed

    def add_encoded(self, kid: str, value: str, *, activate: bool = True) -> None:
        """Add a key written as :meth:`encoded` writes it."""
        if value.startswith(_ED_PREFIX):
            self.add_ed25519(kid, _unhex(kid, value[len(_ED_PREFIX) :]), activate=activate)
        else:
            self.add(kid, _unhex(kid, value), activate=activate)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KeyRing:
        env = os.environ if environ is None else environ
        ring = cls()
        path = Path(env.get(KEY_FILE_ENV) or DEFAULT_KEY_FILE)
        if path.exists():
            # No key file is an empty ring: signed commands are then refused (unknown_key).
            ring = load(path)
        for item in filter(None, (env.get(KEYS_ENV) or "").split(",")):
            kid, _, value = item.strip().partition(":")
            ring.add_encoded(kid, value, activate=False)
        listed = [k.strip() for k in (env.get(TRUSTED_ENV) or "").split(",") if k.strip()]
        if listed:
            ring.trusted = (ring.trusted or set()) | set(listed)
        return ring


def _check(kid: str, secret: bytes, alg: str) -> None:
    if not kid or len(kid) > 64 or not kid.replace("-", "").replace("_", "").isalnum():
        raise UsageError(f"key id {kid!r}: use 1–64 letters, digits, '-' or '_'")
    if not kid.isascii():
        raise UsageError(f"key id {kid!r}: use ASCII letters, digits, '-' or '_'")
    if alg == ED25519 and len(secret) != 32:
        raise UsageError(f"key {kid!r}: an Ed25519 private key is 32 bytes")
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
        ring = KeyRing(trusted=doc.get("trusted"))
        for kid, value in doc["keys"].items():
            ring.add_encoded(kid, value, activate=False)
        active = doc.get("active")
        if active is not None and active not in ring:
            raise UsageError(f"key file {path}: active key {active!r} is not in it")
        ring.active = active or ring.active
        return ring
    except FileNotFoundError as exc:
        raise UsageError(f"key file {path} does not exist: run `labledger keys new`") from exc
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        if isinstance(exc, UsageError):
            raise
        raise UsageError(f"key file {path} is unreadable or malformed: {exc}") from exc


def save(ring: KeyRing, path: Path) -> None:
    """Write the ring with mode 0600, atomically (temp file, fsync, rename)."""
    doc: dict[str, object] = {
        "active": ring.active,
        "keys": {k: ring.encoded(k) for k in ring.ids()},
    }
    if ring.trusted is not None:
        doc["trusted"] = sorted(ring.trusted)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh, indent=2)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def key_file(environ: Mapping[str, str] | None = None) -> Path:
    """Where the key file is: ``$LABLEDGER_KEY_FILE``, else ``./labledger.keys``."""
    env = os.environ if environ is None else environ
    return Path(env.get(KEY_FILE_ENV) or DEFAULT_KEY_FILE)


def ensure_key(ring: KeyRing, path: Path | None = None) -> str:
    """The ring's active key; for an empty ring, a new Ed25519 key saved to the key file first.

    This is how a lab run without a key file gets a key it can still name after
    the run: the key is persisted (mode 0600) before anything is signed with it,
    and the caller registers its public half in the log. Concurrent runs take a
    lock on the key file's directory so neither loses the other's key.
    """
    if ring.active is not None:
        return ring.active
    path = path or key_file()
    with _locked(path):
        on_disk = load(path) if path.exists() else KeyRing()
        kid = new_key(on_disk)
        save(on_disk, path)
    seed = on_disk.secret(kid)
    assert seed is not None
    ring.add_ed25519(kid, seed)
    return kid


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path.parent if str(path.parent) else ".", os.O_RDONLY)  # no stray lock file
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def new_key(ring: KeyRing) -> str:
    """Add a fresh Ed25519 key, make it active, and return its id."""
    kid = f"k-{secrets.token_hex(4)}"
    ring.add_ed25519(kid, secrets.token_bytes(32))
    return kid
