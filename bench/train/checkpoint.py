"""The per-epoch checkpoint a job resumes from (written atomically into the job folder)."""
from __future__ import annotations

import copy
import io
from typing import Any

import torch

from bench.run.store import JobDir, atomic_write_bytes


def save_checkpoint(jd: JobDir, *, model: torch.nn.Module, opt: torch.optim.Optimizer, sched: Any,
                    scaler: torch.amp.GradScaler, ema_state: dict | None, stage_index: int,
                    epochs_done: int, best: dict, history: list, train_s: float,
                    collapse: dict | None) -> None:
    """Everything a resumed run needs to end with the numbers of an uninterrupted one."""
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "scaler": scaler.state_dict(), "ema": ema_state,
                "stage_index": stage_index, "epochs_done": epochs_done, "best": best,
                "history": copy.deepcopy(history), "train_s": train_s, "collapse": collapse}, buf)
    atomic_write_bytes(jd.checkpoint_file, buf.getvalue())


def load_checkpoint(jd: JobDir, model: torch.nn.Module) -> dict[str, Any] | None:
    """The saved state with the model's weights restored, or None when there is no checkpoint."""
    if not jd.checkpoint_file.exists():
        return None
    state = torch.load(jd.checkpoint_file, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    return state
