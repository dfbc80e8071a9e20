"""Command signing, verification at append, the key ring (DESIGN §5)."""

from __future__ import annotations

from labledger.security.gate import REJECTIONS_STREAM, LabGate
from labledger.security.keyring import KeyRing, new_key
from labledger.security.signing import DEFAULT_WINDOW, check_signature, sign

__all__ = [
    "DEFAULT_WINDOW",
    "REJECTIONS_STREAM",
    "KeyRing",
    "LabGate",
    "check_signature",
    "new_key",
    "sign",
]
