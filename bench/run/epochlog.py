"""Per-epoch logs of a job, beside its record: ``summary.csv`` always (like timm's), and the
experiment loggers users already know when ``bench run/sweep --log tensorboard|wandb`` asks.

The runner calls :func:`write_epoch_log` after every epoch with the whole history; the store
calls :func:`log_final` when the record is finished (``bench.run.store.FINISH_HOOKS``). Which
loggers run is read from the environment variable ``BENCH_LOG`` (comma-separated backends), which the CLI sets from ``--log``:
it reaches the local runner and Slurm jobs alike (sbatch exports the submitting environment).
Logging is not part of a job's identity and changes no number of a record.

* tensorboard: ``<job>/tb/`` event files (``torch.utils.tensorboard``; needs the ``tensorboard``
  extra). Scalars per epoch, step = the epoch's position in the job's history (1, 2, ... across
  stages): ``<stage>/loss``, ``<stage>/lr``, ``<stage>/images_per_s``, ``<stage>/<loss term>``,
  ``val/mAP``, ``val/mAP_ema``; when done ``test/mAP``, ``test/CF1``, ... (the selected
  checkpoint). ``tb/logged.json`` counts the epochs written, so a resumed job appends only
  the epochs it adds.
* wandb: an offline run in ``<job>/wandb/`` (``WANDB_MODE`` overrides; ``wandb sync`` uploads
  it), the same scalars; needs the ``wandb`` extra.
"""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from bench.run.store import FINISH_HOOKS, atomic_write_bytes

LOG_ENV = "BENCH_LOG"
BACKENDS = ("tensorboard", "wandb")
#: the CSV's leading columns (then every other key of the history, sorted)
EPOCH_LOG_FIELDS = ("stage", "epoch", "train_loss", "val_mAP", "lr", "seconds", "images_per_s")
TEST_METRICS = ("mAP", "CP", "CR", "CF1", "OP", "OR", "OF1")
_WRITERS: dict[str, Any] = {}


def backends() -> list[str]:
    return [b for b in os.environ.get(LOG_ENV, "").replace(" ", "").split(",") if b]


def write_epoch_log(path: Path, history: Sequence[dict[str, Any]]) -> None:
    """The history as CSV (one row per epoch), written atomically; then the loggers of BENCH_LOG."""
    buf = io.StringIO()
    extra = sorted({k for h in history for k in h} - set(EPOCH_LOG_FIELDS))
    writer = csv.DictWriter(buf, fieldnames=[*EPOCH_LOG_FIELDS, *extra], extrasaction="ignore")
    writer.writeheader()
    for h in history:
        writer.writerow({k: ("" if h.get(k) is None else h.get(k)) for k in writer.fieldnames})
    atomic_write_bytes(path, buf.getvalue().encode())
    if backends():
        log_epochs(Path(path).parent, history)


def epoch_scalars(entry: Mapping[str, Any]) -> dict[str, float]:
    """{tag: value} of one history entry (None values left out)."""
    stage = str(entry.get("stage") or "train")
    tags = {f"{stage}/loss": entry.get("train_loss"), f"{stage}/lr": entry.get("lr"),
            f"{stage}/images_per_s": entry.get("images_per_s"), "val/mAP": entry.get("val_mAP"),
            "val/mAP_ema": entry.get("val_mAP_ema")}
    tags.update({f"{stage}/{k}": v for k, v in entry.items() if k.startswith("loss_")})
    return {k: float(v) for k, v in tags.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _logged(job_dir: Path) -> Path:
    return job_dir / ".epochlog.json"


def log_epochs(job_dir: Path, history: Sequence[Mapping[str, Any]]) -> None:
    """Send the epochs of ``history`` not yet logged for ``job_dir`` to every backend."""
    state = _logged(job_dir)
    done = json.loads(state.read_text())["epochs"] if state.exists() else 0
    new = list(enumerate(history, 1))[done:]
    if not new:
        return
    for backend in backends():
        log = _tensorboard if backend == "tensorboard" else _wandb
        for step, entry in new:
            log(job_dir, epoch_scalars(entry), step)
        _flush(job_dir, backend)
    state.write_text(json.dumps({"epochs": len(history)}))


def log_final(job_dir: Path, record: Mapping[str, Any]) -> None:
    """The finished record's test metrics (selected checkpoint) to every backend; closes them."""
    if not backends():
        return
    test = ((record.get("metrics") or {}).get("selected") or {}).get("test") or {}
    scalars = {f"test/{k}": float(test[k]) for k in TEST_METRICS if isinstance(test.get(k), (int, float))}
    step = max(len(record.get("history") or []), 1)
    for backend in backends():
        (_tensorboard if backend == "tensorboard" else _wandb)(job_dir, scalars, step)
        _close(job_dir, backend)


FINISH_HOOKS.append(log_final)


def _tensorboard(job_dir: Path, scalars: Mapping[str, float], step: int) -> None:
    key = f"tensorboard:{job_dir}"
    if key not in _WRITERS:
        from torch.utils.tensorboard import SummaryWriter

        _WRITERS[key] = SummaryWriter(log_dir=str(job_dir / "tb"))
    for tag, value in scalars.items():
        _WRITERS[key].add_scalar(tag, value, step)


def _wandb(job_dir: Path, scalars: Mapping[str, float], step: int) -> None:
    key = f"wandb:{job_dir}"
    if key not in _WRITERS:
        import wandb

        os.environ.setdefault("WANDB_MODE", "offline")
        os.environ.setdefault("WANDB_SILENT", "true")  # the job's own progress lines stay readable
        (job_dir / "wandb").mkdir(parents=True, exist_ok=True)
        _WRITERS[key] = wandb.init(dir=str(job_dir), id=job_dir.name, name=job_dir.name, resume="allow",
                                   project=os.environ.get("WANDB_PROJECT", "mlbench"), group=job_dir.parent.name,
                                   reinit="create_new")
    _WRITERS[key].log(dict(scalars), step=step)


def _flush(job_dir: Path, backend: str) -> None:
    writer = _WRITERS.get(f"{backend}:{job_dir}")
    if writer is not None and backend == "tensorboard":
        writer.flush()


def _close(job_dir: Path, backend: str) -> None:
    writer = _WRITERS.pop(f"{backend}:{job_dir}", None)
    if writer is not None:
        writer.close() if backend == "tensorboard" else writer.finish()


def check_backends(names: Sequence[str]) -> None:
    """One line naming the extra to install when a requested logger's package is missing."""
    import importlib.util

    from bench.errors import BenchError

    for name in names:
        if importlib.util.find_spec(name) is None:
            raise BenchError(f"--log {name}: the {name} package is not installed: pip install '{name}' "
                             f"(or the project's extra: pip install -e '.[{name}]')")
