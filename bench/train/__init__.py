"""The training loop and its parts, one small module each.

``bench.run.runner`` orchestrates a job (data -> model -> stages -> selection -> record) and
delegates every step of training to this package:

* :mod:`bench.train.settings`   the budget's runtime keys (precision, EMA, workers, channels_last,
                                cudnn.benchmark, compile, gradient accumulation), validated once
* :mod:`bench.train.optim`      optimiser, parameter groups, lr schedule, derived seeds
* :mod:`bench.train.data`       batch order, the DataLoader of raw uint8 batches (workers, pinned
                                memory, prefetch), non-blocking copies, device augmentation, prediction
* :mod:`bench.train.precision`  autocast (fp32 | bf16 | fp16) and fp16's gradient scaler
* :mod:`bench.train.ema`        the weights' exponential moving average (timm ``ModelEmaV3``)
* :mod:`bench.train.loop`       one epoch: forward, loss in fp32, backward, non-finite guard, step
* :mod:`bench.train.checkpoint` the per-epoch checkpoint a job resumes from
"""
