"""The non-finite guard of a training step, decided on the device: no per-step host read.

A step whose gradients are inf/NaN must leave no trace: no optimiser update, no EMA update. Asking
the host "finite?" every step (``bool(finite)``) makes it wait for the device each step. Instead
:func:`masked_update` runs the update unconditionally and keeps its result only where the
device-side flag ``finite`` is True: every tensor the update writes (parameters, optimiser state,
EMA weights) is snapshotted first -- one ``torch.cat`` per (device, dtype) -- and written back as
``torch.where(finite, updated, snapshot)`` -- one ``torch.where`` and one ``_foreach_copy_``.

Exactness: on a finite step ``torch.where`` returns the updated values bit for bit, so the
numbers are those of the old ``if bool(finite): update()``. On a skipped step every tensor is
restored exactly; optimiser state that the update CREATED (its first step) is reset to zeros,
which is Adam's own initial state (step 0, zero moments); SGD's momentum buffer then starts from
zero instead of the first gradient -- the same next update up to the sign of a zero.

On the CPU (``finite`` in host memory, :data:`HOST_READ_FREE`) reading the flag costs nothing, so
:func:`masked_update` is there the plain ``if bool(finite): update()``: on a finite step the
same numbers bit for bit, without the snapshot, ``where`` and copy-back (the default suite's
step 1.17-1.25x faster on one thread: benchmarks/bench_guard_cpu.py). A skipped step then
creates no optimiser state; Adam creates it at its next step as the same zeros.

Tensors on another device than ``finite`` (a non-capturable Adam's host-side ``step`` counter in
a CUDA run) would need the flag on the host: :func:`bench.train.optim.build_optimizer` makes Adam
and AdamW capturable on CUDA so that their step counters live on the device.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch


#: Device types whose tensors the host reads for free (host memory). tests/test_host_syncs.py,
#: which counts on the CPU as a proxy for a device, empties it to count the device path.
HOST_READ_FREE: set[str] = {"cpu"}


def optimizer_tensors(opt: torch.optim.Optimizer) -> list[torch.Tensor]:
    """Every tensor ``opt.step()`` may write: the parameters and the per-parameter state."""
    out = [p for group in opt.param_groups for p in group["params"]]
    for state in opt.state.values():
        out += [v for v in state.values() if isinstance(v, torch.Tensor)]
    return out


def _groups(tensors: Iterable[torch.Tensor]) -> dict[tuple, list[torch.Tensor]]:
    out: dict[tuple, list[torch.Tensor]] = {}
    for t in tensors:
        out.setdefault((t.device, t.dtype), []).append(t)
    return out


def _flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.detach().reshape(-1) for t in tensors])


@torch.no_grad()
def masked_update(finite: torch.Tensor, written: Callable[[], list[torch.Tensor]],
                  update: Callable[[], None]) -> None:
    """Run ``update()`` (in place on the tensors ``written()`` lists, before and after it: the
    same tensor objects, e.g. parameters and buffers, not a fresh ``state_dict()``) and keep its
    effect only where the 0-dim bool ``finite`` is True; nothing is read to the host (on a
    device; in host memory the flag is read and a non-finite update is not run)."""
    if finite.device.type in HOST_READ_FREE:
        if bool(finite):
            update()
        return
    before = {id(t): t for t in written()}
    snapshots = {key: (group, _flat(group)) for key, group in _groups(before.values()).items()}
    update()
    for group, old in snapshots.values():
        _restore(finite, group, old)
    created = [t for t in written() if id(t) not in before]
    for group in _groups(created).values():  # state made by this update: undone to zeros
        _restore(finite, group, torch.zeros(sum(t.numel() for t in group), dtype=group[0].dtype,
                                            device=group[0].device))


def _restore(finite: torch.Tensor, group: list[torch.Tensor], old: torch.Tensor) -> None:
    flag = finite if finite.device == old.device else finite.to(old.device)  # host tensors only
    kept = torch.where(flag, _flat(group), old)
    torch._foreach_copy_([t.detach() for t in group],
                         [v.view(t.shape) for v, t in zip(kept.split([t.numel() for t in group]), group)])
