"""`bench data fetch` against an HTTP server on 127.0.0.1 (Range support, a switch to cut a
transfer short) serving small fixture archives of the real layouts."""
from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from bench.cli import main
from bench.data import fetch as F
from tests.fixtures_data import make_coco_fixture, make_voc_fixture


class Server:
    """Serves ``files`` {name: bytes}; ``cut`` {name: n} sends the full Content-Length but only n
    bytes, then closes (once); records the Range header of each request."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut: dict[str, int] = {}
        self.ranges: list[str | None] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                body = outer.files.get(self.path.rsplit("/", 1)[-1])
                if body is None:
                    self.send_error(404)
                    return
                rng = self.headers.get("Range")
                outer.ranges.append(rng)
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                n = outer.cut.pop(self.path.rsplit("/", 1)[-1], None)
                self.wfile.write(body[start:] if n is None else body[start:start + n])
                if n is not None:
                    self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/mirror"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.httpd.shutdown()


def _zip(root: Path, folder: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for path in sorted((root / folder).rglob("*")):
            z.write(path, path.relative_to(root).as_posix())
    return buf.getvalue()


def _tar(root: Path, names: list[str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name in names:
            t.add(root / name, name)
    return buf.getvalue()


@pytest.fixture
def coco(tmp_path, server, monkeypatch):
    src = make_coco_fixture(tmp_path / "src") / "coco2014"
    files = {"annotations_trainval2014.zip": _zip(src, "annotations"), "train2014.zip": _zip(src, "train2014"),
             "val2014.zip": _zip(src, "val2014")}
    server.files.update(files)
    spec = F.DATASETS["coco2014"]
    archives = tuple(replace(a, md5=hashlib.md5(files[a.file]).hexdigest()) for a in spec.archives)
    monkeypatch.setitem(F.DATASETS, "coco2014", replace(spec, archives=archives))
    return files


def _fetch(root: Path, server: Server, name: str = "coco2014") -> int:
    return main(["data", "fetch", name, "--data-root", str(root), "--mirror", server.url])


def test_good_archives_land_and_inspect(tmp_path, server, coco, capsys):
    root = tmp_path / "data"
    assert _fetch(root, server) == 0
    out = capsys.readouterr().out
    assert "dataset coco2014:" in out and "images" in out  # bench data inspect ran
    assert (root / "coco2014" / "annotations" / "instances_train2014.json").is_file()
    assert sorted(p.name for p in root.iterdir()) == ["coco2014"]  # no archives, no staging left
    assert _fetch(root, server) == 0 and "already in place" in capsys.readouterr().out


@pytest.mark.parametrize("damage", ["corrupt", "truncated"])
def test_a_bad_archive_exits_2_with_nothing_extracted(tmp_path, server, coco, capsys, damage):
    body = coco["train2014.zip"]
    server.files["train2014.zip"] = (body[:100] + b"x" + body[101:]) if damage == "corrupt" else body[: len(body) // 2]
    root = tmp_path / "data"
    assert _fetch(root, server) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "train2014.zip: md5" in err and "nothing extracted" in err
    assert not (root / "coco2014").exists() and not list(root.glob(".extract-*"))
    assert not (root / ".downloads" / "train2014.zip").exists()  # deleted: the next run downloads afresh


def test_an_interrupted_download_resumes(tmp_path, server, coco, capsys):
    size = len(coco["train2014.zip"])
    server.cut["train2014.zip"] = size // 3
    root = tmp_path / "data"
    assert _fetch(root, server) == 2
    err = capsys.readouterr().err
    assert "stopped at" in err and "again to resume" in err and not (root / "coco2014").exists()
    assert (root / ".downloads" / "train2014.zip.part").stat().st_size == size // 3
    server.ranges.clear()
    assert _fetch(root, server) == 0
    assert f"bytes={size // 3}-" in server.ranges  # continued, not restarted
    assert (root / "coco2014" / "train2014").is_dir()


def test_voc_tars_merge_into_one_tree(tmp_path, server, monkeypatch, capsys):
    src = make_voc_fixture(tmp_path / "src")
    body = _tar(src, ["VOCdevkit"])
    server.files.update({"VOCtrainval_06-Nov-2007.tar": body, "VOCtest_06-Nov-2007.tar": body})
    spec = F.DATASETS["voc2007"]
    monkeypatch.setitem(F.DATASETS, "voc2007", replace(spec, archives=tuple(
        replace(a, md5=hashlib.md5(body).hexdigest()) for a in spec.archives)))
    root = tmp_path / "data"
    assert _fetch(root, server, "voc2007") == 0
    assert "dataset voc2007:" in capsys.readouterr().out
    assert (root / "VOCdevkit" / "VOC2007" / "Annotations").is_dir()


def test_without_network_one_line_with_urls_and_layout(tmp_path, capsys):
    assert main(["data", "fetch", "coco2014", "--data-root", str(tmp_path), "--mirror", "http://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no network" in err
    assert "http://127.0.0.1:9/train2014.zip" in err and "annotations/instances_train2014.json" in err


def test_official_urls_and_checksums_are_in_the_table():
    coco = {a.file: a for a in F.DATASETS["coco2014"].archives}
    assert coco["train2014.zip"].urls == ("http://images.cocodataset.org/zips/train2014.zip",)
    assert coco["train2014.zip"].md5 == "0da8c0bd3d6becc4dcb32757491aca88"
    from torchvision.datasets.voc import DATASET_YEAR_DICT  # the md5s torchvision checks

    voc = {a.file: a.md5 for a in F.DATASETS["voc2007"].archives}
    assert voc == {DATASET_YEAR_DICT[k]["filename"]: DATASET_YEAR_DICT[k]["md5"] for k in ("2007", "2007-test")}
