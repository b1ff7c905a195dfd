"""`mribench data fetch` against a local HTTP server: layout, checksum, and malicious archives."""
from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import io
import json
import shutil
import tarfile
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mribench.cli.data import register
from mribench.data import DataError
from mribench.data import fetch as fetch_module
from mribench.data.fetch import fetch, safe_extract
from mribench.data.registry import KNOWN, DatasetSpec


@pytest.fixture
def server(tmp_path):
    """Serves tmp_path/www on 127.0.0.1; yields the base URL."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a: None
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("L", (8, 8), 90).save(out, "JPEG")
    return out.getvalue()


def good_zip(path: Path) -> bytes:
    """Publisher-style archive: a top folder, then Training/Testing class folders."""
    with zipfile.ZipFile(path, "w") as zf:
        for split, n in (("Training", 3), ("Testing", 2)):
            for cls in ("yes", "no"):
                for i in range(n):
                    zf.writestr(f"Repo-master/{split}/{cls}/{i}.jpg", jpeg())
        zf.writestr("Repo-master/README.md", "hello")
    return path.read_bytes()


def spec(url: str, sha: str | None) -> DatasetSpec:
    return DatasetSpec(name="tiny-set", folder="tiny-set", class_map={"yes": "yes", "no": "no"},
                       splits=("Training", "Testing"), expected={"Training": 6, "Testing": 4},
                       url=url, sha256=sha)


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="mribench")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_fetch_command_downloads_checks_and_arranges(server, tmp_path, monkeypatch, capsys):
    www, base = server
    sha = hashlib.sha256(good_zip(www / "tiny.zip")).hexdigest()
    monkeypatch.setitem(KNOWN, "tiny-set", spec(f"{base}/tiny.zip", sha))
    dest = tmp_path / "data"
    assert cli("data", "fetch", "tiny-set", "--dest", str(dest), "--json") == 0
    row = json.loads(capsys.readouterr().out)["rows"][0]
    assert row["status"] == "complete" and row["archive_sha256"] == sha
    assert sorted(p.name for p in (dest / "tiny-set" / "Training").iterdir()) == ["no", "yes"]
    assert [p.name for p in dest.iterdir()] == ["tiny-set"]  # no temporary leftovers
    assert cli("data", "fetch", "tiny-set", "--dest", str(dest), "--json") == 0  # idempotent
    assert json.loads(capsys.readouterr().out)["rows"][0]["status"] == "already present"


def test_checksum_mismatch_is_refused(server, tmp_path):
    www, base = server
    good_zip(www / "tiny.zip")
    with pytest.raises(DataError, match="sha256 .* does not match"):
        fetch(spec(f"{base}/tiny.zip", "0" * 64), tmp_path / "data")
    assert not (tmp_path / "data" / "tiny-set").exists()


def test_download_size_limit_and_missing_url(server, tmp_path):
    www, base = server
    good_zip(www / "tiny.zip")
    with pytest.raises(DataError, match="limit"):
        fetch(spec(f"{base}/tiny.zip", None), tmp_path / "data", max_bytes=100)
    with pytest.raises(DataError, match="cannot download .*missing.zip"):
        fetch(spec(f"{base}/missing.zip", None), tmp_path / "data")


def _tar(path: Path, add) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        add(tf)
    return path


def _file(tf: tarfile.TarFile, name: str, data: bytes = b"x") -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def _link(tf: tarfile.TarFile, name: str, target: str, kind=tarfile.SYMTYPE) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    tf.addfile(info)


MALICIOUS = {
    "absolute": (lambda tf: _file(tf, "/tmp/evil.txt"), "absolute"),
    "dotdot": (lambda tf: _file(tf, "ok/../../evil.txt"), r"'\.\.'"),
    "symlink": (lambda tf: (_link(tf, "ok/link", "/etc/passwd"), _file(tf, "ok/link", b"pwned")), "link"),
    "hardlink": (lambda tf: _link(tf, "ok/hard", "/etc/passwd", tarfile.LNKTYPE), "link"),
}


@pytest.mark.parametrize("case", sorted(MALICIOUS))
def test_malicious_tar_members_are_refused(tmp_path, case):
    add, message = MALICIOUS[case]
    archive = _tar(tmp_path / "evil.tar.gz", add)
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(DataError, match=message):
        safe_extract(archive, dest)
    assert list(dest.iterdir()) == []  # checked before anything is written


def test_zip_symlink_is_refused(tmp_path):
    link = zipfile.ZipInfo("ok/link")
    link.external_attr = (0o120777 << 16)
    with zipfile.ZipFile(tmp_path / "link.zip", "w") as zf:
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(DataError, match="link member 'ok/link'"):
        safe_extract(tmp_path / "link.zip", tmp_path)


def _written(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _bomb(path: Path, members: dict[str, int]) -> Path:
    """A zip with the tiny set's layout whose members are zeros (compress ~1000:1)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, size in members.items():
            zf.writestr(name, b"\0" * size)
    return path


def test_zip_bombs_are_refused_before_writing_the_bulk(tmp_path, server):
    www, base = server
    one = _bomb(www / "one.zip", {"Repo/Training/yes/0.jpg": 64 * 2**20,
                                  "Repo/Testing/no/0.jpg": 10})
    many = _bomb(www / "many.zip", {f"Repo/Training/yes/{i}.jpg": 2**20 for i in range(64)})
    assert one.stat().st_size < 200_000 and many.stat().st_size < 200_000
    # no size limit in the way (8 GiB cap): the compression ratio alone refuses them
    for archive, message in ((one, "refusing member 'Repo/Training/yes/0.jpg'"),
                             (many, "expand to 67108864")):
        out = tmp_path / archive.stem
        out.mkdir()
        with pytest.raises(DataError, match=message) as err:
            safe_extract(archive, out, source=f"{base}/{archive.name}")
        assert f"{base}/{archive.name}" in str(err.value) and "zip bomb" in str(err.value)
        assert _written(out) < 3 * 2**20
    # end to end: refused naming the URL (not the temporary file), nothing installed or left
    with pytest.raises(DataError, match=f"{base}/one.zip: refusing member"):
        fetch(spec(f"{base}/one.zip", None), tmp_path / "data")
    assert list((tmp_path / "data").iterdir()) == []


def test_archives_larger_than_the_dataset_or_the_free_disk_are_refused(tmp_path, server,
                                                                          monkeypatch):
    www, base = server
    noise = np.random.default_rng(0).bytes(3 * 2**20)  # incompressible, like real images
    with zipfile.ZipFile(www / "big.zip", "w") as zf:
        zf.writestr("Repo/Training/yes/0.jpg", noise)
    known = dataclasses.replace(spec(f"{base}/big.zip", None), expected_bytes=100_000)
    monkeypatch.setattr(fetch_module, "SIZE_EXTRA", 0)
    # the download stops at the limit already (the server announces the size)
    with pytest.raises(DataError, match=r"big.zip: archive is \d+ bytes, over the 800000-byte "
                                        r"limit \(8x the dataset's known size of 100000 bytes\)"):
        fetch(known, tmp_path / "data")
    # an archive already on disk: refused from its declared size, before extracting
    archive, out = www / "big.zip", tmp_path / "out"
    with pytest.raises(DataError, match="expands to 3145728 bytes, over the limit of 800000"):
        safe_extract(archive, out, max_bytes=800_000, source=f"{base}/big.zip")
    assert _written(out) == 0
    real = shutil.disk_usage
    monkeypatch.setattr(fetch_module.shutil, "disk_usage", lambda p: real(p)._replace(
        free=fetch_module.DISK_RESERVE + 2**20))
    with pytest.raises(DataError, match="free space in"):
        fetch(spec(f"{base}/big.zip", None), tmp_path / "data")
    assert list((tmp_path / "data").iterdir()) == []


def test_lying_zip_header_is_stopped_by_counting_bytes(tmp_path, monkeypatch):
    with zipfile.ZipFile(tmp_path / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.bin", b"\0" * 3_000_000)
    real = fetch_module._members

    def understated(archive, label, max_bytes, why):  # as if the headers declared a tiny size
        monkeypatch.setattr(fetch_module, "MAX_RATIO", 10**9)
        return real(archive, label, 10**12, why)

    monkeypatch.setattr(fetch_module, "_members", understated)
    with pytest.raises(DataError, match="expands beyond .* the 1000000-byte limit"):
        safe_extract(tmp_path / "bomb.zip", tmp_path / "out", max_bytes=1_000_000)


def test_kaggle_sets_need_the_official_client(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_kaggle(name, *args, **kwargs):
        if name == "kaggle":
            raise ImportError("No module named 'kaggle'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_kaggle)
    with pytest.raises(DataError, match="pip install kaggle"):
        fetch(KNOWN["brain-mri-binary-253"], tmp_path / "data")
