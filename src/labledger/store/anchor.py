"""The head anchor: the last known head (position + chain link), MAC-keyed, outside the database.

SQLite silently drops every commit after a damaged WAL frame, and its own
integrity check then says "ok"; an edit of event k with the chain
recomputed from k onwards passes ``verify`` too. Both leave the log
disagreeing with what it said earlier. The anchor remembers it: after every
commit the store writes ``{position, chain, mac}`` to a side file (temp file
and rename, so a torn write never replaces a good anchor). On open and in
``verify`` the log is checked against it: a head below the anchor means
lost commits ("log regressed from P to Q; K events missing"), a different
chain link at the anchor's position means history was rewritten. Either
way appends are refused until an operator decides (``labledger anchor
accept``).

The MAC key lives outside the database (``LABLEDGER_ANCHOR_KEY`` as hex, or
a ``.key`` file beside the anchor, created with mode 0600): someone who can
rewrite the database but not read the key cannot forge a matching anchor.

Cost and direction of failure: the anchor is written after the commit it
records, without fsync. After a power cut it may lag the log (it then
protects a little less), but it can never run ahead of durable commits, so
it never raises a false alarm. With several writer processes the file holds
whichever process wrote last, again at or behind the true head.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
from pathlib import Path

import msgspec

from labledger.errors import CorruptionDetected

KEY_ENV = "LABLEDGER_ANCHOR_KEY"
PATH_ENV = "LABLEDGER_ANCHOR"
"""A path for the anchor (PostgreSQL has none by default), or ``off``."""


class AnchorState(msgspec.Struct, frozen=True):
    position: int
    chain: str


class AnchorMismatch(CorruptionDetected):
    """The log no longer matches its head anchor; appends are refused until an operator acts."""


class HeadAnchor:
    """Reads and advances one anchor file."""

    def __init__(self, path: Path, key: bytes | None = None, *, create_key: bool = True) -> None:
        self.path = path
        self.key = key if key is not None else _key_for(path, create=create_key)
        self._lock = threading.Lock()
        self._written = -1

    def _mac(self, position: int, chain: str) -> str:
        return hmac.new(self.key, f"{position}:{chain}".encode(), hashlib.sha256).hexdigest()

    def read(self) -> AnchorState | None:
        """The anchored head, or None when there is no anchor yet.

        Raises:
            AnchorMismatch: the file is unreadable or its MAC does not match.
        """
        try:
            doc = json.loads(self.path.read_bytes())
            state = AnchorState(int(doc["position"]), str(doc["chain"]))
            mac = str(doc["mac"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise AnchorMismatch(f"head anchor {self.path} is unreadable ({exc})") from exc
        if not hmac.compare_digest(mac, self._mac(state.position, state.chain)):
            raise AnchorMismatch(
                f"head anchor {self.path} fails its MAC: it was edited, or the anchor key changed"
            )
        return state

    def advance(self, position: int, chain: bytes) -> None:
        """Record a committed head (never moves this process's anchor backwards)."""
        with self._lock:
            if position <= self._written:
                return
            self._write(AnchorState(position, chain.hex()))
            self._written = position

    def reset(self, position: int, chain: bytes) -> None:
        """An operator accepts the log as it is now."""
        with self._lock:
            self._write(AnchorState(position, chain.hex()))
            self._written = position

    def _write(self, state: AnchorState) -> None:
        doc = {"position": state.position, "chain": state.chain,
               "mac": self._mac(state.position, state.chain)}  # fmt: skip
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(json.dumps(doc).encode())
        os.replace(tmp, self.path)


def _key_for(anchor: Path, *, create: bool) -> bytes:
    env = os.environ.get(KEY_ENV)
    if env:
        return bytes.fromhex(env)
    key_file = anchor.with_name(anchor.name + ".key")
    try:
        return bytes.fromhex(key_file.read_text().strip())
    except FileNotFoundError:
        if not create:
            raise
    key = secrets.token_bytes(32)
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first
        return bytes.fromhex(key_file.read_text().strip())
    with os.fdopen(fd, "w") as fh:
        fh.write(key.hex())
        fh.flush()
        os.fsync(fh.fileno())
    return key


def check(anchor: AnchorState | None, head: int, chain_at: bytes | None) -> str | None:
    """Why the log disagrees with its anchor, or None.

    Args:
        anchor: the anchored head.
        head: the log's head position now.
        chain_at: the log's chain link at the anchor's position (None if absent).
    """
    if anchor is None:
        return None
    if head < anchor.position:
        missing = anchor.position - head
        return (
            f"log regressed from {anchor.position} to {head}; {missing} events missing "
            "(a damaged WAL or a restored older copy). Restore from a backup, or run "
            "`labledger anchor accept` to accept the log as it is"
        )
    if chain_at is None or chain_at.hex() != anchor.chain:
        return (
            f"the chain link at position {anchor.position} differs from the anchor: history "
            "up to that position was rewritten. Restore from a backup, or run "
            "`labledger anchor accept` to accept the log as it is"
        )
    return None
