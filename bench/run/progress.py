"""What a running job shows on a terminal: one tqdm bar per job over all its training steps
(every stage, ETA included), the per-epoch lines printed above it. Off a terminal (a log file,
Slurm, a pipe) there is no bar, only the per-epoch lines. Computes nothing.
"""
from __future__ import annotations

import sys
from typing import Any, Iterable, Iterator


class JobBar:
    """``wrap`` an epoch's batches to advance the bar; ``say`` a line without breaking it."""

    def __init__(self, desc: str, total_steps: int, done_steps: int, enabled: bool) -> None:
        self.bar: Any = None
        if enabled and sys.stdout.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total_steps, initial=done_steps, desc=desc, unit="step", leave=False,
                            mininterval=1.0, dynamic_ncols=True)

    def wrap(self, items: Iterable[Any]) -> Iterator[Any]:
        for item in items:
            yield item
            if self.bar is not None:
                self.bar.update(1)

    def say(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
