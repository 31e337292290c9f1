"""The two named blocks of a suite, ``dataset:`` and ``backbone:`` ({name, options}): their
names against the registries and their options against each one's own domain, without reading
data or building a model (bench/spec/schema.py declares the other sections)."""
from __future__ import annotations

import importlib
from typing import Any, Mapping, Sequence

from bench.errors import SpecError
from bench.spec.schema import Choice, Int, Num, did_you_mean, is_int


def need_int(where: str, key: str, v: Any, low: int, *, none_ok: bool = False) -> None:
    Int(low, null=none_ok).check(where, key, v, {})


def need_num(where: str, key: str, v: Any, low: float | None = None, high: float | None = None, *,
             low_open: bool = False, high_open: bool = False, none_ok: bool = False) -> None:
    Num(low, high, low_open, high_open, none_ok).check(where, key, v, {})


def need_choice(where: str, key: str, v: Any, allowed: Sequence[Any]) -> None:
    Choice(tuple(allowed)).check(where, key, v, {})


def min_resolution(backbone: str) -> int:
    """Smallest input side a backbone takes: smallcnn (total stride 8) 16 px, timm models 32."""
    return 16 if backbone == "smallcnn" else 32


def check_backbone(where: str, backbone: Mapping[str, Any], resolution: Any) -> None:
    name, options = backbone["name"], dict(backbone.get("options") or {})
    if "pretrained_path" in options and not isinstance(options["pretrained_path"], str):
        raise SpecError(f"{where}: backbone.options.pretrained_path={options['pretrained_path']!r} "
                        "must be a file path")
    from bench.spec.method_facts import backbone_weights_names

    NAMED_WEIGHTS, WEIGHT_OPTIONS = backbone_weights_names()  # noqa: N806 (methods.backbones', from source)

    weights = options.get("weights")
    if weights is not None and not isinstance(weights, str):
        raise SpecError(f"{where}: backbone.options.weights={weights!r} must be imagenet, in-domain or a file path")
    from bench.spec.weights import REGISTRY, check_declared

    if weights == "imagenet" and name not in NAMED_WEIGHTS and name not in REGISTRY:
        raise SpecError(f"{where}: backbone.options.weights=imagenet: no ImageNet weights known for {name!r} "
                        f"(known: {', '.join([*NAMED_WEIGHTS, *REGISTRY])}); give a local file path instead")
    if weights == "none" and name == "smallcnn":
        raise SpecError(f"{where}: backbone.options.weights=none is for timm backbones; smallcnn without "
                        "weights: remove the key")
    if weights == "in-domain" and name != "smallcnn":
        raise SpecError(f"{where}: backbone.options.weights=in-domain is made for smallcnn only, not {name!r}")
    if name == "smallcnn":
        extra = sorted(set(options) - {"widths", *WEIGHT_OPTIONS})
        if extra:
            raise SpecError(f"{where}: backbone 'smallcnn' has no option {extra[0]!r}; known: "
                            f"{', '.join(sorted({'widths', *WEIGHT_OPTIONS}))}")
        widths = options.get("widths", [24, 48, 96, 192])
        if (not isinstance(widths, (list, tuple)) or len(widths) != 4
                or not all(is_int(w) and w >= 1 for w in widths)):
            raise SpecError(f"{where}: backbone.options.widths={widths!r} must be 4 positive integers")
    else:
        import timm

        if not timm.is_model(name):
            raise SpecError(f"{where}: unknown backbone {name!r}: neither 'smallcnn' nor a timm model "
                            "name (timm.list_models() lists them)")
    check_declared(where, name, options)  # a timm backbone says imagenet, a file, or none
    low = min_resolution(name)
    if not is_int(resolution) or resolution < low:
        raise SpecError(f"{where}: budget.resolution={resolution!r} must be an integer >= {low} "
                        f"for backbone {name!r}")
    if name.startswith("tresnet") and resolution % 4:
        raise SpecError(f"{where}: budget.resolution={resolution} must be a multiple of 4 for backbone "
                        f"{name!r} (its space-to-depth stem)")


def check_dataset(where: str, dataset: Mapping[str, Any], resolution: Any) -> None:
    """Name and options of the dataset, checked without reading any data."""
    from bench import data as datasets
    from bench.data.base import DataError

    name, options = dataset["name"], dict(dataset.get("options") or {})
    if name not in datasets.names():
        raise SpecError(f"{where}: unknown dataset {name!r}{did_you_mean(name, datasets.names())}; "
                        f"known: {', '.join(datasets.names())}")
    try:
        if name == "mnist-mosaic":
            from bench.data.embedded import MosaicOptions

            MosaicOptions.parse(options)
            if is_int(resolution) and not 16 <= resolution <= 512:
                raise SpecError(f"{where}: budget.resolution={resolution} must be in [16, 512] for "
                                "dataset 'mnist-mosaic'")
            return
        from bench.data.cache import resolve_options

        module = importlib.import_module(f"bench.data.{ {'coco2014': 'coco', 'voc2007': 'voc'}.get(name, name) }")
        opts = resolve_options(name, getattr(module, "DEFAULTS", {}), options)
    except DataError as err:
        raise SpecError(f"{where}: dataset.options: {err}") from None
    need_num(where, "dataset.options.val_fraction", opts["val_fraction"], 0, 1, low_open=True, high_open=True)
    need_int(where, "dataset.options.split_seed", opts["split_seed"], 0)
    for key in ("skip_bad_images", "labels_only"):
        if not isinstance(opts[key], bool):
            raise SpecError(f"{where}: dataset.options.{key}={opts[key]!r} must be true or false")
    choices = {"coco2014": ("class_order", ("id", "alphabetical")),
               "voc2007": ("difficult_train", ("positive", "negative", "ignore")),
               "generic": ("unknown_train", ("negative", "ignore"))}
    if name in choices:
        key, allowed = choices[name]
        need_choice(where, f"dataset.options.{key}", opts[key], allowed)
    if name == "generic":
        need_num(where, "dataset.options.test_fraction", opts["test_fraction"], 0, 1, low_open=True,
                  high_open=True, none_ok=True)
