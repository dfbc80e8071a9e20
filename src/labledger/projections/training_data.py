"""The exported Simic training set: torch tensors, a JSON manifest, and a Dataset over them.

The only module of labledger that imports torch (at import time: nothing
else imports this module except lazily, so the CLI and the projections start
without torch). Layout follows TorchRL's step/next convention::

    observation                 float64 [N, F]
    action/{op,slot,blueprint,style,tempo,alpha_speed,alpha_curve}   int64 [N]
    action/alpha_target         float64 [N]   (0 where unset)
    action/alpha_target_mask    bool [N]
    next/observation            float64 [N, F]
    next/reward                 float64 [N, 1]
    next/done, next/terminated, next/truncated   bool [N, 1]
    source_positions            int64 [N, 7]  (see SOURCE_POSITIONS; 0 = none)

Floats are float64 so the export is exact (the ledger does not round);
:class:`TrainingSetDataset` casts them on load when asked. The tensors are a
``torch.save`` of a nested dict of tensors only, loaded with
``weights_only=True`` — nothing but tensors and plain containers is ever
unpickled — after the file's SHA-256 is checked against the manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from labledger.errors import CorruptionDetected, UsageError
from labledger.projections.esper_training import (
    ENUM_HEADS,
    FEATURE_NAMES,
    NONE,
    REWARD_FORMULA,
    SOURCE_POSITIONS,
    EsperTrainingProjection,
    Transition,
)

FORMAT = "labledger.esper.training_set"
FORMAT_VERSION = 1
Tensors = dict[str, Any]
"""``{"observation": T, "action": {head: T}, "next": {...}, "source_positions": T}``."""
Progress = Callable[[int, int], None]


def manifest_path(out: Path) -> Path:
    """Where the manifest of tensors written to ``out`` goes: ``<out>.manifest.json``."""
    return out.with_name(out.name + ".manifest.json")


def vocabularies(rows: Sequence[Transition]) -> dict[str, list[str]]:
    """Index → value of every categorical action head; slots and blueprints sorted."""
    vocab = {head: list(values) for head, values in ENUM_HEADS.items()}
    vocab["slot"] = sorted({r.slot for r in rows})
    vocab["blueprint"] = [NONE, *sorted({r.blueprint for r in rows if r.blueprint is not None})]
    return vocab


def build_tensors(
    rows: Sequence[Transition], vocab: dict[str, list[str]], progress: Progress | None = None
) -> Tensors:
    """The nested dict of tensors for ``rows`` (in their order)."""
    index = {head: {v: i for i, v in enumerate(values)} for head, values in vocab.items()}
    actions: dict[str, list[int]] = {head: [] for head in vocab}
    for done, row in enumerate(rows, 1):
        for head in ENUM_HEADS:
            actions[head].append(index[head][row.heads[head]])
        actions["slot"].append(index["slot"][row.slot])
        actions["blueprint"].append(index["blueprint"][row.blueprint or NONE])
        if progress is not None and done % 1000 == 0:
            progress(done, len(rows))
    width = len(FEATURE_NAMES)
    f64, i64 = torch.float64, torch.int64

    def column(values: list[Any], dtype: torch.dtype) -> torch.Tensor:
        return torch.tensor(values, dtype=dtype).reshape(len(rows), 1)

    terminated = column([r.terminated for r in rows], torch.bool)
    truncated = column([r.truncated for r in rows], torch.bool)
    alpha = [r.alpha_target for r in rows]
    return {
        "observation": torch.tensor([r.obs for r in rows], dtype=f64).reshape(len(rows), width),
        "action": {
            **{head: torch.tensor(v, dtype=i64) for head, v in actions.items()},
            "alpha_target": torch.tensor([a or 0.0 for a in alpha], dtype=f64),
            "alpha_target_mask": torch.tensor([a is not None for a in alpha], dtype=torch.bool),
        },
        "next": {
            "observation": torch.tensor([r.next_obs for r in rows], dtype=f64).reshape(
                len(rows), width
            ),
            "reward": column([r.reward for r in rows], f64),
            "done": terminated | truncated,
            "terminated": terminated,
            "truncated": truncated,
        },
        "source_positions": torch.tensor([r.positions for r in rows], dtype=i64).reshape(
            len(rows), len(SOURCE_POSITIONS)
        ),
    }


def _flat(tensors: Tensors, prefix: str = "") -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        if isinstance(value, dict):
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[prefix + key] = value
    return out


def manifest(
    rows: Sequence[Transition],
    tensors: Tensors,
    vocab: dict[str, list[str]],
    *,
    head_position: int,
    head_hash: str,
    pending: int,
) -> dict[str, Any]:
    """The manifest describing ``tensors`` (without the file name and checksum)."""
    used = [p for r in rows for p in r.positions if p]
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "projection": {
            "name": EsperTrainingProjection.name,
            "version": EsperTrainingProjection.version,
        },
        "transitions": len(rows),
        "pending_excluded": pending,
        "log": {"head_position": head_position, "head_hash": head_hash},
        "source_position_range": [min(used), max(used)] if used else None,
        "source_positions_columns": list(SOURCE_POSITIONS),
        "observation_features": list(FEATURE_NAMES),
        "action_vocabularies": vocab,
        "reward": REWARD_FORMULA,
        "tensors": {
            key: {"shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")}
            for key, t in _flat(tensors).items()
        },
    }


def _write_atomically(path: Path, write: Callable[[Any], None]) -> None:
    """Write through a temporary file in the same directory, fsync, rename, fsync the dir."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_training_set(
    rows: Sequence[Transition],
    out: Path,
    *,
    head_position: int,
    head_hash: str,
    pending: int,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Write the tensors of ``rows`` to ``out`` and the manifest beside it; return the manifest.

    The tensors are written first and the manifest (with their SHA-256) last,
    each atomically: a reader never pairs a manifest with other tensors.

    Raises:
        UsageError: the output directory does not exist.
    """
    if not out.parent.is_dir():
        raise UsageError(f"--out {out}: directory {out.parent} does not exist")
    vocab = vocabularies(rows)
    tensors = build_tensors(rows, vocab, progress)
    _write_atomically(out, lambda fh: torch.save(tensors, fh))
    doc = manifest(
        rows, tensors, vocab, head_position=head_position, head_hash=head_hash, pending=pending
    )
    doc = {"tensors_file": out.name, "tensors_sha256": _sha256(out), **doc}
    text = json.dumps(doc, indent=2, sort_keys=False) + "\n"
    _write_atomically(manifest_path(out), lambda fh: fh.write(text.encode()))
    if progress is not None:
        progress(len(rows), len(rows))
    return doc


def load_training_set(path: Path) -> tuple[Tensors, dict[str, Any]]:
    """Load tensors written by :func:`write_training_set`, checked against their manifest.

    Raises:
        UsageError: the file or its manifest is missing or not a training set.
        CorruptionDetected: the tensors do not match the manifest's checksum or shapes.
    """
    try:
        doc = json.loads(manifest_path(path).read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: no readable manifest at {manifest_path(path)}: {exc}") from exc
    if doc.get("format") != FORMAT or doc.get("format_version") != FORMAT_VERSION:
        raise UsageError(f"{path}: not a {FORMAT} v{FORMAT_VERSION} file")
    if _sha256(path) != doc["tensors_sha256"]:
        raise CorruptionDetected(f"{path} does not match the SHA-256 in its manifest")
    tensors: Tensors = torch.load(path, weights_only=True)
    for key, tensor in _flat(tensors).items():
        want = doc["tensors"].get(key)
        if want is None or list(tensor.shape) != want["shape"]:
            raise CorruptionDetected(f"{path}: tensor {key} does not match the manifest")
    return tensors, doc


class TrainingSetDataset(Dataset[dict[str, Any]]):
    """The exported transitions, one TorchRL-style nested dict per index.

    ``dataset[i]`` is ``{"observation", "action": {...}, "next": {"observation",
    "reward", "done", "terminated", "truncated"}, "source_positions"}``; the
    default ``DataLoader`` collate stacks them. ``float_dtype`` casts the float
    tensors (e.g. ``torch.float32`` for training).
    """

    def __init__(self, path: str | os.PathLike[str], float_dtype: torch.dtype | None = None):
        tensors, self.manifest = load_training_set(Path(path))
        if float_dtype is not None:
            tensors = _cast(tensors, float_dtype)
        self.tensors = tensors
        self.feature_names: list[str] = self.manifest["observation_features"]

    def __len__(self) -> int:
        return int(self.manifest["transitions"])

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        return _select(self.tensors, index)


def _cast(tensors: Tensors, dtype: torch.dtype) -> Tensors:
    return {
        k: _cast(v, dtype) if isinstance(v, dict) else (v.to(dtype) if v.is_floating_point() else v)
        for k, v in tensors.items()
    }


def _select(tensors: Tensors, index: int) -> dict[str, Any]:
    return {k: _select(v, index) if isinstance(v, dict) else v[index] for k, v in tensors.items()}
