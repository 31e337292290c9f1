"""Count the places where the host would wait for the device (CUDA syncs), on any device.

:class:`HostSyncs` is a context manager (a ``TorchDispatchMode`` plus a ``TorchFunctionMode``) that
runs the code inside it unchanged and counts, per kind, the operations that block the host until
the device has caught up. On CUDA they are real syncs; on the CPU the same code runs the same
operations, so the count is a faithful proxy (the tests pin it per method on the CPU).

What counts (``SYNC_KINDS``), on a tensor that lives on the device:

* ``item``     ``aten::_local_scalar_dense``: ``.item()``, ``bool(t)``, ``float(t)``, ``int(t)``,
               ``if t:``; also ``aten::equal`` / ``aten::is_nonzero``;
* ``shape``    an output whose SIZE depends on the values: ``aten::nonzero``, ``masked_select``,
               ``unique``, ``repeat_interleave`` without ``output_size``, and indexing with a
               bool mask (``x[mask]``, ``x[mask] = v``), which calls nonzero;
* ``to_host``  a device-to-host copy (``.cpu()``, ``.tolist()``, ``.numpy()``, ``copy_`` into a
               host tensor) -- blocking unless ``non_blocking=True``, then not counted;
* ``upload``   a BLOCKING host-to-device copy (``.to(device)`` / ``copy_`` of a host tensor without
               ``non_blocking=True``, and ``torch.tensor(data, device=...)``, which copies blocking):
               CUDA waits for the stream before a blocking copy returns.

Not syncs, counted for information (``INFO_KINDS``): ``upload_async`` (a ``non_blocking=True``
host-to-device copy: queued, the host goes on).

Which tensors are "on the device"? On CUDA, ``t.is_cuda``. On the CPU (the proxy), the counter
tracks it: the tensors passed to :meth:`HostSyncs.on_device` (the model's parameters and buffers),
everything made by a factory called with an explicit ``device=`` (``torch.zeros(n,
device=x.device)``: on the device in a CUDA run), the result of an upload, and every output of an
operation with an input on the device (an op with a CUDA input runs on the device). A tensor made
without ``device=`` (``torch.rand(n, generator=g)``) is a host tensor, as it is in a CUDA run, and
reading it is free -- e.g. a non-capturable Adam's ``step`` counter, which torch keeps on the host.

Each event keeps the first frame of this project's code that caused it (``events``), so a test
failure says where a new sync came from.
"""
from __future__ import annotations

import traceback
from collections import Counter
from typing import Any, Iterable

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.weak import WeakIdKeyDictionary

SYNC_KINDS = ("item", "shape", "to_host", "upload")
INFO_KINDS = ("upload_async",)

_ITEM_OPS = {"aten::_local_scalar_dense", "aten::equal", "aten::is_nonzero"}
_SHAPE_OPS = {"aten::nonzero", "aten::masked_select", "aten::_unique", "aten::_unique2", "aten::unique_dim",
              "aten::unique_consecutive", "aten::unique_dim_consecutive"}
_INDEX_OPS = {"aten::index", "aten::index_put", "aten::index_put_", "aten::_index_put_impl_"}
_COPY_FROM_DATA = {"tensor", "as_tensor"}


def _where() -> str:
    """The innermost frame of this project's code (bench/, methods/, benchmarks/) on the stack."""
    for frame in reversed(traceback.extract_stack()[:-2]):
        path = frame.filename.replace("\\", "/")
        if any(f"/{d}/" in path for d in ("bench", "methods", "benchmarks")) and not path.endswith("train/syncs.py"):
            return f"{path.rsplit('/', 2)[-2]}/{path.rsplit('/', 1)[-1]}:{frame.lineno}"
    return "?"


def _is_device(value: Any) -> bool:
    return isinstance(value, (torch.device, str)) and not isinstance(value, bool)


class HostSyncs:
    """``with HostSyncs(device) as s: ...`` -> ``s.counts`` (kind -> n), ``s.syncs`` (their sum),
    ``s.events`` ((kind, where) in order). ``device``: the step's device ("cpu": the proxy)."""

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.proxy = torch.device(device).type == "cpu"
        self.counts: Counter[str] = Counter()
        self.events: list[tuple[str, str]] = []
        self._on_device = WeakIdKeyDictionary()
        self._modes = (_Functions(self), _Dispatch(self))

    # -- which tensors live on the device ----------------------------------------------------
    def on_device(self, *items: torch.Tensor | torch.nn.Module | Iterable[torch.Tensor]) -> "HostSyncs":
        """Declare tensors (or a module's parameters and buffers) to live on the device."""
        for item in items:
            if isinstance(item, torch.nn.Module):
                self.on_device(*item.parameters(), *item.buffers())
            elif isinstance(item, torch.Tensor):
                self._on_device[item] = True
            else:
                self.on_device(*item)
        return self

    def device_tensor(self, t: Any) -> bool:
        if not isinstance(t, torch.Tensor):
            return False
        return t in self._on_device if self.proxy else t.device.type != "cpu"

    def _mark(self, *values: Any) -> None:
        if self.proxy:
            for t in tree_leaves(values):
                if isinstance(t, torch.Tensor):
                    self._on_device[t] = True

    def count(self, kind: str) -> None:
        self.counts[kind] += 1
        self.events.append((kind, _where()))

    @property
    def syncs(self) -> int:
        return sum(self.counts[k] for k in SYNC_KINDS)

    def summary(self) -> str:
        """'3 syncs (item 1, upload 2)' -- what a benchmark prints."""
        parts = ", ".join(f"{k} {self.counts[k]}" for k in (*SYNC_KINDS, *INFO_KINDS) if self.counts[k])
        return f"{self.syncs} syncs" + (f" ({parts})" if parts else "")

    def __enter__(self) -> "HostSyncs":
        for mode in self._modes:
            mode.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        for mode in reversed(self._modes):
            mode.__exit__(*exc)


class _Functions(TorchFunctionMode):
    """Python-level calls: explicit ``device=`` factories, ``.to`` / ``.cpu`` / ``copy_`` copies."""

    def __init__(self, owner: HostSyncs) -> None:
        super().__init__()
        self.owner = owner

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        o = self.owner
        name = getattr(func, "__name__", "")
        src = args[0] if args and isinstance(args[0], torch.Tensor) else None
        on_dev = o.device_tensor(src)
        if name == "to" and src is not None:
            out = func(*args, **kwargs)
            non_blocking = bool(kwargs.get("non_blocking", any(a is True for a in args[1:])))
            if not o.proxy:  # real devices: where the data went
                if src.device.type == "cpu" and out.device.type != "cpu":
                    o.count("upload_async" if non_blocking else "upload")
                elif src.device.type != "cpu" and out.device.type == "cpu" and not non_blocking:
                    o.count("to_host")
                return out
            other = next((a for a in args[1:] if isinstance(a, torch.Tensor)), kwargs.get("other"))
            to_device = (kwargs.get("device") is not None or any(_is_device(a) for a in args[1:])
                         or o.device_tensor(other))
            if to_device and not on_dev:  # the proxy: a host tensor sent to the step's device
                o.count("upload_async" if non_blocking else "upload")
                o._mark(out)
            return out
        if name in ("cpu", "tolist") and on_dev:
            o.count("to_host")
        if name == "copy_" and src is not None and len(args) > 1 and isinstance(args[1], torch.Tensor):
            non_blocking = bool(kwargs.get("non_blocking", args[2] if len(args) > 2 else False))
            if on_dev and not o.device_tensor(args[1]):
                o.count("upload_async" if non_blocking else "upload")
            elif not on_dev and o.device_tensor(args[1]) and not non_blocking:
                o.count("to_host")
        out = func(*args, **kwargs)
        if kwargs.get("device") is not None:  # a factory that places its result on the device
            if name in _COPY_FROM_DATA and not o.device_tensor(args[0] if args else None):
                o.count("upload")  # torch.tensor(data, device=...) copies from the host, blocking
            o._mark(out)
        return out


class _Dispatch(TorchDispatchMode):
    """aten-level ops (autograd's backward included): device-ness flows from inputs to outputs."""

    def __init__(self, owner: HostSyncs) -> None:
        super().__init__()
        self.owner = owner

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        o = self.owner
        name = func._schema.name
        inputs = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        on_dev = any(o.device_tensor(t) for t in inputs)
        if on_dev:
            if name in _ITEM_OPS:
                o.count("item")
            elif name in _SHAPE_OPS or (name == "aten::repeat_interleave" and kwargs.get("output_size") is None
                                        and len(args) < 3):
                o.count("shape")
            elif name in _INDEX_OPS and any(t.dtype in (torch.bool, torch.uint8)
                                            for t in tree_leaves(args[1:2]) if isinstance(t, torch.Tensor)):
                o.count("shape")
        out = func(*args, **kwargs)
        if on_dev and o.proxy:
            o._mark(out)
            for arg, value in zip(func._schema.arguments, args):
                if arg.alias_info is not None and arg.alias_info.is_write:
                    o._mark(value)
        return out


def per_step(run_epoch: Any, device: str | torch.device = "cpu",
             mark: Any = ()) -> tuple[HostSyncs, HostSyncs]:
    """Syncs of ONE training step and of an epoch's fixed part: ``run_epoch(n)`` trains an epoch of
    n steps; after an uncounted epoch of one step (the optimiser creates its state), it runs for
    n = 1 and n = 2 under two counters, and the step's count is the difference (the per-epoch
    reads -- the loss, the finite checks -- cancel out). Returns (step, epoch-of-one-step)
    counters; ``mark``: what lives on the device (see ``on_device``)."""
    run_epoch(1)
    one, two = HostSyncs(device), HostSyncs(device)
    for counter, n in ((one, 1), (two, 2)):
        counter.on_device(*([mark] if isinstance(mark, (torch.nn.Module, torch.Tensor)) else mark))
        with counter:
            run_epoch(n)
    step = HostSyncs(device)
    step.counts = two.counts - one.counts
    step.events = list(two.events)
    for event in one.events:
        if event in step.events:
            step.events.remove(event)
    return step, one
