"""`bench data inspect`: a dataset's classes, split sizes, per-class counts, per-image labels.

File-based datasets are parsed with ``labels_only`` (annotations only: no image
is decoded and no pixel cache is built), so this is the quick check that a data
root is laid out right before a long run.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, TextIO

import numpy as np
import yaml

import bench.data as data
from bench.data.base import DataError, MultiLabelData
from bench.spec import schema

#: == bench.spec.suites.BUDGET_DEFAULTS (that module imports the method registry, and torch)
BUDGET_DEFAULTS: dict[str, Any] = schema.defaults(schema.BUDGET)

#: loaders with an annotations-only path (option labels_only)
LABELS_ONLY = ("coco2014", "voc2007", "generic")


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """["k=v", ...] -> {k: YAML-typed v} (so 0.2 is a float, true a bool, [a, b] a list)."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise DataError(f"--option {pair!r}: expected KEY=VALUE, e.g. class_order=alphabetical")
        options[key.strip()] = yaml.safe_load(value) if value else ""
    return options


def summary(d: MultiLabelData, per_image: bool) -> dict[str, Any]:
    """JSON-able description: classes, per split sizes/positive/ignored counts (and images)."""
    out: dict[str, Any] = {"dataset": d.name, "classes": list(d.classes), "fingerprint": d.fingerprint,
                           "conventions": dict(d.conventions), "splits": {}}
    for name in ("train", "val", "test"):
        split = d.split(name)
        t = np.asarray(split.targets)
        entry: dict[str, Any] = {
            "images": len(split),
            "positives": dict(zip(d.classes, (t == 1).sum(axis=0).tolist())),
            "ignored": dict(zip(d.classes, (t == -1).sum(axis=0).tolist())),
        }
        if per_image:
            entry["per_image"] = [
                {"file": i, "labels": [d.classes[c] for c in np.flatnonzero(row == 1)],
                 "ignored": [d.classes[c] for c in np.flatnonzero(row == -1)]}
                for i, row in zip(split.ids, t)]
        out["splits"][name] = entry
    return out


def print_text(info: dict[str, Any], out: TextIO) -> None:
    classes = info["classes"]
    out.write(f"dataset {info['dataset']}: {len(classes)} classes, fingerprint {info['fingerprint']}\n")
    for key, value in info["conventions"].items():
        out.write(f"  {key}: {value}\n")
    splits = info["splits"]
    out.write(f"\n{'index':>5} {'class':<20}")
    out.write("".join(f" {s + ' +/ign':>16}" for s in splits) + "\n")
    for i, c in enumerate(classes):
        counts = "".join(f" {splits[s]['positives'][c]:>9}/{splits[s]['ignored'][c]:<6}" for s in splits)
        out.write(f"{i:>5} {c:<20}{counts}\n")
    out.write(f"{'':>5} {'images':<20}" + "".join(f" {splits[s]['images']:>16}" for s in splits) + "\n")


def main(args: argparse.Namespace) -> int:
    if args.dataset not in data.names():
        raise DataError(f"--dataset {args.dataset}: unknown dataset"
                        f"{schema.did_you_mean(args.dataset, data.names())}; known: {', '.join(data.names())}")
    options = parse_options(args.option)
    if args.dataset in LABELS_ONLY:
        options["labels_only"] = True
    d = data.load(args.dataset, options, resolution=args.resolution or BUDGET_DEFAULTS["resolution"],
                  data_root=args.data_root or os.environ.get("BENCH_DATA_ROOT"))
    info = summary(d, per_image=args.format == "json")
    if args.format == "json":
        json.dump(info, sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
    else:
        print_text(info, sys.stdout)
    return 0
