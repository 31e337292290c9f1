"""benchmarks/bench_gpu_step.py: the GPU benchmark's tiny CPU variant runs end to end.

One subprocess (``--tiny --device cpu``, one thread; a few seconds): exit 0, every expected row
in the JSON with images/s > 0 or an explicit reason it was skipped, ratios against the
reference rows, and the markdown table on stdout. ``--compile-backend aot_eager`` keeps the
compiled-similarity row to Dynamo tracing + AOTAutograd: inductor's cold C++ compile alone takes
~25 s on two CPU cores (the GPU run uses inductor, i.e. Triton, which a CPU test cannot cover).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench.train.precision import unsupported

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "bench_gpu_step.py"

EXPECTED = (
    [f"data/{aug}/w{w}" for aug in ("flip-crop", "cutout+randaugment") for w in (0, 1)]
    + [f"step/smallcnn/{p}/cl{c}" for p in ("fp32", "bf16") for c in (0, 1)]
    + ["similarity/eager", "similarity/compiled"]
)


def test_tiny_cpu_run(tmp_path: Path) -> None:
    out = tmp_path / "bench_gpu_step.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", "--device", "cpu", "--threads", "1",
         "--compile-backend", "aot_eager", "--out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    doc = json.loads(out.read_text())
    assert doc["device"].startswith("cpu") and doc["torch"] and doc["when"]
    rows = {r["key"]: r for r in doc["rows"]}
    assert list(rows) == EXPECTED, list(rows)
    for key, r in rows.items():
        if r["skipped"]:
            # only reasons the script treats as "cannot run here", never an error
            assert not r["skipped"].startswith("error"), (key, r["skipped"])
            if r["kind"] == "step":
                assert r["precision"] == "bf16" and unsupported("bf16", "cpu"), (key, r["skipped"])
            else:
                assert key == "similarity/compiled" and r["skipped"].startswith("compile failed"), (key, r)
            assert r["images_per_s"] is None
        else:
            assert r["images_per_s"] > 0 and r["median_step_ms"] > 0, (key, r)
            assert r["timed_steps"] == 3, (key, r)
            if r["kind"] != "similarity":  # host syncs of one step, counted beside images/s
                assert isinstance(r["syncs_per_step"], int) and r["syncs"].startswith(f"{r['syncs_per_step']} syncs")
                if r["aug"] == "flip-crop":  # its draws go up in one non-blocking copy: no sync
                    assert r["syncs_per_step"] == 0, (key, r)
    # the fp32/channels_last-off row, workers 0 and eager are the references: ratio 1
    for ref in ("step/smallcnn/fp32/cl0", "data/flip-crop/w0", "data/cutout+randaugment/w0", "similarity/eager"):
        assert rows[ref]["ratio"] == 1.0
    r = rows["step/smallcnn/fp32/cl1"]
    assert abs(r["ratio"] - r["images_per_s"] / rows["step/smallcnn/fp32/cl0"]["images_per_s"]) < 0.01

    table = proc.stdout
    assert "| kind | config | images/s | syncs/step | ratio |" in table
    assert f"device {doc['device']}" in table and f"torch {doc['torch']}" in table
    body = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(body) == 1 + len(EXPECTED)  # header + one line per row
    for r in rows.values():
        assert any(f"| {r['kind']} | {r['config']} |" in line for line in body), r["config"]
