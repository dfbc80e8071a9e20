"""The control branch of a decision: the same host, data order and epochs, without the adaptation.

A field report used to credit a decision with everything the host did over
its window — including the host's own learning, which an untouched host does
just as well (+0.41 for a GERMINATE at epoch 1 that a control matched, issue
#16). Now, at the moment Kasmina is about to carry out a command, the host
(with its seeds) and every slot's lifecycle state are forked, and the fork is
trained over the report's window as if the command had never come: the same
shuffles (they depend on ``(seed, epoch)`` only), the same plain SGD (no
optimizer state), the same lifecycle ticks for the other seeds. The report's
deltas are then *treatment minus control* at the same epoch.

The control replays the treatment's divergence rule (since reward v4): an
epoch whose validation loss diverges from the last good one
(:func:`labledger.lab.esper.tolaria.diverged`) restores the last good
parameters, as the session does. Before v4 it kept a diverged loss as
measured, so a FOSSILIZE (which changes no training) was credited with the
treatment's rollback (issue #16: 184 of 539 such reports). What it still
leaves out: injected faults (``diverge_epoch``) and the emergency halt (the
control never halts; a halted treatment's decisions are judged against the
control at their window's end, see ``field_reports``). Commands that change
nothing (``WAIT``, a command that does not apply) have the treatment as their
control, so their deltas are exactly 0 and nothing is trained twice.
"""

from __future__ import annotations

import msgspec
import torch

from labledger.events.esper import SeedStage
from labledger.lab.esper import kasmina, tolaria
from labledger.lab.esper.kasmina import Observed, SlotState
from labledger.lab.esper.urza import KernelCache


def fork_host(host: tolaria.Host, slots: dict[str, SlotState], cache: KernelCache) -> tolaria.Host:
    """A copy of ``host`` with fresh instances of its seeds' kernels and the same parameters.

    Kernels come from Urza's cache by sha (as at germination), not from a deep
    copy of the TorchScript modules, so the fork's parameters are leaves of
    their own.
    """
    fork = tolaria.Host(0, host.shape)
    for name, s in slots.items():
        source = host.slot(name)
        if source.kernel is not None and s.kernel_sha is not None:
            fork.slot(name).attach(cache.instantiate(s.kernel_sha))
        target = fork.slot(name)
        target.mode, target.alpha = source.mode, source.alpha
        target.breaker.consecutive = source.breaker.consecutive
        target.breaker.last_error = source.breaker.last_error
    fork.load_state_dict({k: v.detach().clone() for k, v in host.state_dict().items()})
    return fork


def control_branch(
    host: tolaria.Host,
    slots: dict[str, SlotState],
    data: tolaria.Data,
    *,
    seed: int,
    lr: float,
    batch: int,
    first_epoch: int,
    epochs: int,
    last_good_loss: float | None,
) -> Control:
    """Train a fork of ``host`` for ``epochs`` epochs from ``first_epoch``; (loss, accuracy) each.

    ``host`` (already forked by :func:`fork_host`, so its parameters are the
    treatment's last good ones) is trained; ``slots`` is copied.
    ``last_good_loss`` is the treatment's, for the divergence rule.
    """
    from labledger.lab.esper._run import set_mode  # the torch slot modes, one definition

    fork = host
    states = {n: msgspec.structs.replace(s) for n, s in slots.items()}
    out = Control()
    good = _snapshot(fork)
    for epoch in range(first_epoch, first_epoch + epochs):
        for name in tolaria.SLOT_NAMES:
            fork.slot(name).failures_this_epoch = 0
        stats = tolaria.train_epoch(fork, data, epoch=epoch, seed=seed, lr=lr, batch=batch)
        loss, accuracy = tolaria.evaluate(fork, data)
        if tolaria.diverged(loss, last_good_loss):
            tolaria.restore(fork, good)
            loss, accuracy = tolaria.evaluate(fork, data)
            out.rollbacks += 1
        else:
            last_good_loss, good = loss, _snapshot(fork)
        broken = {
            n: fork.slot(n).breaker.last_error
            for n in tolaria.SLOT_NAMES
            if fork.slot(n).breaker.open
        }
        seen = Observed(epoch, stats.train_loss, loss, stats.probe_loss, broken)
        for name, s in sorted(states.items()):
            _, prune_reason = kasmina.tick(name, s, seen)
            if prune_reason is not None:
                s.stage, s.alpha = SeedStage.PRUNED, 0.0
            set_mode(fork.slot(name), s)
        out.epochs[epoch] = (loss, accuracy)
    return out


class Control(msgspec.Struct, kw_only=True):
    """What a control branch measured."""

    epochs: dict[int, tuple[float, float]] = msgspec.field(default_factory=dict)
    """(loss, accuracy) per epoch of the window."""
    rollbacks: int = 0
    """Divergence rollbacks the control performed."""


def _snapshot(host: tolaria.Host) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in host.state_dict().items()}
