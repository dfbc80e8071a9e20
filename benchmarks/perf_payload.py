"""The events every perf_bench subject writes: esper telemetry packets (v2, some v1).

The same packet (id, stream, payload) goes to labledger, to the raw twin and to
the eventsourcing peer; each side turns it into its own native form before
the timer starts (``NewEvent`` bytes, a row tuple, keyword arguments).
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from typing import Any

import msgspec

from labledger.events import TelemetryPacket
from labledger.events._upcast import TelemetryPacketV1, _telemetry_priority_to_field

EVENT_TYPE = TelemetryPacket.TYPE
_ENCODE = msgspec.json.Encoder(order="sorted").encode
_DECODE_V2 = msgspec.json.Decoder(TelemetryPacket).decode
_DECODE_V1 = msgspec.json.Decoder(TelemetryPacketV1).decode
_METRICS = ("loss", "lr", "grad_norm", "tokens_per_s", "gpu_util", "gpu_mem_gb", "power_w")


@dataclass(frozen=True, slots=True)
class Packet:
    """One event: a fresh id, its schema version and its payload (JSON-ready)."""

    id: str
    version: int
    body: dict[str, Any]

    @property
    def data(self) -> bytes:
        return _ENCODE(self.body)


class PacketFactory:
    """Telemetry packets of ~600 bytes of canonical JSON; every ``v1_every``-th one is v1."""

    def __init__(self, seed: int = 7, v1_every: int = 0) -> None:
        self.rng = random.Random(seed)
        self.seq = 0
        self.v1_every = v1_every

    def packet(self, t_ns: int = 0) -> Packet:
        self.seq += 1
        rng, seq = self.rng, self.seq
        metrics = [
            {"name": f"train.{m}", "unit": None, "value": round(rng.uniform(0.1, 900.0), 4)}
            for m in _METRICS
        ]
        indicators = {"host": f"gpu-node-{seq % 64:03d}", "seq": str(seq), "t_ns": str(t_ns)}
        body: dict[str, Any] = {
            "source": f"kasmina.rig-{seq % 16:02d}",
            "health": {"status": "HEALTHY", "indicators": indicators},
            "metrics": metrics,
            "events": [],
        }
        version = 2
        if self.v1_every and seq % self.v1_every == 0:
            version = 1
            indicators["priority"] = "MESSAGE_PRIORITY_NORMAL"
        else:
            body["priority"] = "NORMAL"
        event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        return Packet(event_id, version, body)

    def packets(self, n: int) -> list[Packet]:
        return [self.packet() for _ in range(n)]


def decode_raw(schema_version: int, data: bytes) -> TelemetryPacket:
    """The raw twin's decode + upcast: msgspec straight into the current class."""
    if schema_version == 2:
        return _DECODE_V2(data)
    lifted = _telemetry_priority_to_field(msgspec.to_builtins(_DECODE_V1(data)))
    return msgspec.convert(lifted, TelemetryPacket)


def sent_ns(data: bytes) -> int:
    """The ``t_ns`` indicator a latency packet carries (time.perf_counter_ns at append)."""
    return int(msgspec.json.decode(data)["health"]["indicators"]["t_ns"])
