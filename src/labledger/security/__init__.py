"""Command signing, verification at append, the key ring and the key book (DESIGN §5)."""

from __future__ import annotations

from labledger.security.gate import GATE_ACTOR, REJECTIONS_STREAM, LabGate
from labledger.security.keybook import KEYS_STREAM, KeyBook, register_key
from labledger.security.keyring import KeyRing, new_key
from labledger.security.reserved import as_gate
from labledger.security.signing import DEFAULT_WINDOW, check_signature, sign

__all__ = [
    "DEFAULT_WINDOW",
    "GATE_ACTOR",
    "KEYS_STREAM",
    "REJECTIONS_STREAM",
    "KeyBook",
    "KeyRing",
    "LabGate",
    "as_gate",
    "check_signature",
    "new_key",
    "register_key",
    "sign",
]
