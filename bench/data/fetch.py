"""`bench data fetch coco2014|voc2007 --data-root DIR`: download the official archives, check each
against the table below, extract into a temporary folder, move it into place only when every
archive is complete, then run `bench data inspect` on the result.

* Resumes: a download lands in ``<data_root>/.downloads/<file>.part`` and continues from its
  size with an HTTP ``Range`` request (a server that ignores Range restarts it from zero).
* Verifies: md5 from the table (a mismatch deletes the file and stops, exit 2, nothing
  extracted); an archive whose hash is unknown here is at least read through completely.
* Atomic: extraction goes to ``<data_root>/.extract-<dataset>-*/``; the folders move into the
  layout `bench data inspect` reads only after every archive extracted; a failure removes it.
* ``--mirror URL``: fetch ``URL/<file>`` instead of the official host.
* No network: one line naming the URLs and the layout to bring by hand.

Checksums: COCO-2014's md5s are not published by cocodataset.org; they are the values the
widely used download scripts check (LAVIS' download_coco.py and pystiche's, e.g.
train2014.zip 0da8c0bd...). VOC2007's are those torchvision 0.29 checks
(torchvision/datasets/voc.py). None was verified here against a download (no network here).
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from bench.errors import BenchError


@dataclass(frozen=True)
class Archive:
    file: str
    urls: tuple[str, ...]  # official host first
    md5: str | None  # None: unknown here (the archive is then read through instead)


@dataclass(frozen=True)
class Dataset:
    archives: tuple[Archive, ...]
    moves: tuple[tuple[str, str], ...]  # (path in the extracted tree, path under data_root)
    layout: str


_COCO = "http://images.cocodataset.org"
_VOC = ("http://host.robots.ox.ac.uk/pascal/VOC/voc2007", "https://thor.robots.ox.ac.uk/pascal/VOC/voc2007")
DATASETS: dict[str, Dataset] = {
    "coco2014": Dataset(
        archives=(Archive("annotations_trainval2014.zip", (f"{_COCO}/annotations/annotations_trainval2014.zip",),
                          "0a379cfc70b0e71301e0f377548639bd"),
                  Archive("train2014.zip", (f"{_COCO}/zips/train2014.zip",), "0da8c0bd3d6becc4dcb32757491aca88"),
                  Archive("val2014.zip", (f"{_COCO}/zips/val2014.zip",), "a3d79f5ed8d289b7a7554ce06a5782b3")),
        moves=(("annotations", "coco2014/annotations"), ("train2014", "coco2014/train2014"),
               ("val2014", "coco2014/val2014")),
        layout="<data_root>/coco2014/ with annotations/instances_train2014.json, annotations/instances_val2014.json, "
               "train2014/*.jpg, val2014/*.jpg"),
    "voc2007": Dataset(
        archives=(Archive("VOCtrainval_06-Nov-2007.tar", tuple(f"{h}/VOCtrainval_06-Nov-2007.tar" for h in _VOC),
                          "c52e279531787c972589f7e41ab4ae64"),
                  Archive("VOCtest_06-Nov-2007.tar", tuple(f"{h}/VOCtest_06-Nov-2007.tar" for h in _VOC),
                          "b6e924de25625d8de591ea690078ad9f")),
        moves=(("VOCdevkit/VOC2007", "VOCdevkit/VOC2007"),),
        layout="<data_root>/VOCdevkit/VOC2007/ with Annotations/*.xml, ImageSets/Main/{trainval,test}.txt, "
               "JPEGImages/*.jpg"),
}
CHUNK = 1 << 20


def _urls(archive: Archive, mirror: str | None) -> tuple[str, ...]:
    return (f"{mirror.rstrip('/')}/{archive.file}",) if mirror else archive.urls


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def download(url: str, dest: Path, timeout: float = 30.0) -> None:
    """``url`` into ``dest``, resuming ``dest.part`` with an HTTP Range request; ``dest`` appears
    only when the transfer ended at the length the server announced."""
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # the part is already whole
            part.rename(dest)
            return
        raise
    with response:
        resumed = response.status == 206
        length = response.headers.get("Content-Length")
        total = (have if resumed else 0) + int(length) if length is not None else None
        from tqdm import tqdm

        with open(part, "ab" if resumed else "wb") as out, \
                tqdm(total=total, initial=have if resumed else 0, unit="B", unit_scale=True, desc=dest.name,
                     disable=None, leave=False) as bar:
            try:
                for chunk in iter(lambda: response.read(CHUNK), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
            except (http.client.IncompleteRead, OSError):
                pass  # the connection dropped: what arrived is kept for the next run
    if total is not None and part.stat().st_size != total:
        raise BenchError(f"{url}: the download stopped at {part.stat().st_size} of {total} bytes; run the same "
                         f"command again to resume it ({part})")
    part.rename(dest)


def _check(archive: Archive, path: Path) -> None:
    if archive.md5 is not None:
        got = _md5(path)
        if got != archive.md5:
            path.unlink()
            raise BenchError(f"{path.name}: md5 {got}, expected {archive.md5} (corrupt or truncated download, "
                             "deleted; nothing extracted): run the same command again, or bring the file by hand")
        return
    try:  # no known hash: at least every member must read back
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
                if bad:
                    raise BenchError(f"{path.name}: member {bad} is corrupt")
        else:
            with tarfile.open(path) as t:
                for member in t:
                    if member.isfile():
                        t.extractfile(member).read()  # type: ignore[union-attr]
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as err:
        path.unlink()
        raise BenchError(f"{path.name}: unreadable archive ({err}); deleted, nothing extracted: run the "
                         "same command again") from None


def _extract(path: Path, into: Path) -> None:
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                for name in z.namelist():
                    if Path(name).is_absolute() or ".." in Path(name).parts:
                        raise BenchError(f"{path.name}: member {name!r} points outside the folder; not extracted")
                z.extractall(into)
        else:
            with tarfile.open(path) as t:
                t.extractall(into, filter="data")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as err:
        raise BenchError(f"{path.name}: cannot extract ({err}); delete it and run the same command again") from None


def no_network_line(name: str, spec: Dataset, mirror: str | None, why: str) -> str:
    urls = " ".join(u for a in spec.archives for u in _urls(a, mirror)[:1])
    return (f"bench data fetch {name}: no network ({why}); download {urls} on a machine with network, "
            f"extract them into the data root as {spec.layout}, then run bench data inspect --dataset {name} "
            "--data-root DIR")


def fetch(name: str, data_root: Path, mirror: str | None = None, keep_archives: bool = False) -> list[str]:
    """Fetch dataset ``name`` into ``data_root``; returns what it did, one line per step."""
    from bench.spec.weights_cmd import unreachable

    spec = DATASETS[name]
    if all((data_root / dst).exists() for _, dst in spec.moves):
        return [f"{name}: already in place under {data_root}"]
    data_root.mkdir(parents=True, exist_ok=True)
    downloads = data_root / ".downloads"
    downloads.mkdir(exist_ok=True)
    todo = [a for a in spec.archives if not (downloads / a.file).exists()]
    why = next((w for a in todo for w in [unreachable(_urls(a, mirror)[0])] if w), None) if todo else None
    if why:
        raise BenchError(no_network_line(name, spec, mirror, why))
    done = []
    for archive in spec.archives:
        path = downloads / archive.file
        if not path.exists():
            errors = []
            for url in _urls(archive, mirror):
                try:
                    download(url, path)
                    break
                except (urllib.error.URLError, OSError) as err:
                    errors.append(f"{url}: {getattr(err, 'reason', err)}")
            else:
                raise BenchError(f"{archive.file}: could not download ({'; '.join(errors)}); run the same command "
                                 "again to resume, or --mirror URL")
            done.append(f"downloaded {path}")
        _check(archive, path)
    staging = Path(tempfile.mkdtemp(prefix=f".extract-{name}-", dir=data_root))
    try:
        for archive in spec.archives:
            _extract(downloads / archive.file, staging)
        missing = [src for src, _ in spec.moves if not (staging / src).exists()]
        if missing:
            raise BenchError(f"{name}: the archives hold no {missing[0]}/; expected layout: {spec.layout}")
        for src, dst in spec.moves:
            if not (data_root / dst).exists():
                (data_root / dst).parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging / src, data_root / dst)
                done.append(f"extracted {data_root / dst}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not keep_archives:
        shutil.rmtree(downloads, ignore_errors=True)
    return done


def main(args: argparse.Namespace) -> int:
    root = args.data_root or os.environ.get("BENCH_DATA_ROOT")
    if not root:
        raise BenchError("bench data fetch: give --data-root DIR (or set $BENCH_DATA_ROOT)")
    for line in fetch(args.dataset, Path(root), args.mirror, args.keep_archives):
        print(line)
    sys.stdout.flush()
    from bench.data import inspect

    return inspect.main(argparse.Namespace(dataset=args.dataset, data_root=root, option=[], resolution=None,
                                           format="text"))
