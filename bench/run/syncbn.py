"""SyncBatchNorm for data-parallel jobs (``budget.sync_batchnorm``, on by default).

With W ranks, a BatchNorm layer in training mode normalises by the statistics of the rank's
B/W images and updates its running statistics from them; with SyncBatchNorm every rank
normalises by the mean and variance of the whole global batch -- the statistics a 1-process
run computes -- and all ranks keep the same running statistics.

On CUDA :func:`convert` uses timm's converter (torch's ``SyncBatchNorm``, and timm's
``SyncBatchNormAct`` for its fused BatchNorm + activation layers). torch's SyncBatchNorm has no
CPU kernels (``batch_norm_stats``...) and DistributedDataParallel refuses it on CPU modules, so
on CPU (gloo: tests, CPU clusters) torch's BatchNorm layers get :class:`CpuSync`'s training
forward instead: the per-channel sums, sums of squares and counts all-reduced with gradient, then
the mean, biased variance (normalising) and unbiased variance (running statistics) that
``F.batch_norm`` computes on the concatenated batch.
"""
from __future__ import annotations

import torch
from torch import nn

from bench.errors import BenchError
from methods.global_batch import all_reduce_sum, world_size

#: The BatchNorm classes CpuSync extends (their forward is _BatchNorm.forward).
_PLAIN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class CpuSync:
    """Mixin placed before a torch BatchNorm class: its training forward on CPU with several
    ranks uses the global batch's statistics (see the module doc); otherwise BatchNorm's own."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if not (self.training and x.device.type == "cpu" and world_size() > 1):
            return super().forward(x)  # type: ignore[misc]
        c, out_dtype = x.shape[1], x.dtype
        x = x.float()  # statistics in fp32 (as autocast runs batch_norm)
        dims = [0, *range(2, x.dim())]
        local = torch.cat([x.sum(dims), x.square().sum(dims), x.new_full((1,), x.numel() // c)])
        stats = all_reduce_sum(local)
        count = stats[-1]
        mean = stats[:c] / count
        var = (stats[c:2 * c] / count - mean.square()).clamp(min=0)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - m).add_(m * mean.detach())
                self.running_var.mul_(1 - m).add_(m * var.detach() * count / (count - 1).clamp(min=1))
        shape = [1, c] + [1] * (x.dim() - 2)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(out_dtype)


_CPU_CLASSES = {cls: type(cls.__name__, (CpuSync, cls), {"__module__": __name__}) for cls in _PLAIN}


def convert(model: nn.Module) -> nn.Module:
    """``model`` with every BatchNorm layer synchronised over the ranks; ``model`` itself with one
    process. Parameters and buffers are the same tensors (state_dict keys unchanged)."""
    if world_size() == 1:
        return model
    if next(model.parameters()).device.type != "cpu":
        from timm.layers import convert_sync_batchnorm

        return convert_sync_batchnorm(model)
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, CpuSync):
            if type(module) not in _CPU_CLASSES:
                raise BenchError(f"budget.sync_batchnorm: the {type(module).__name__} layer {name!r} cannot be "
                                 "synchronised on CPU (torch's BatchNorm layers only); run on CUDA or set "
                                 "budget.sync_batchnorm: false")
            module.__class__ = _CPU_CLASSES[type(module)]
    return model
