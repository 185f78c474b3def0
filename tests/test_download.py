"""Real-dataset download code, tested offline: fake archives in the real layouts, served from 127.0.0.1."""
from __future__ import annotations

import hashlib
import io
import json
import socket
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bgad_mini.download import BTAD, MVTEC, archive_path, download_dataset, is_complete
from bgad_mini.errors import BgadError

MVTEC_CATS = ("bottle", "cable")


# --------------------------------------------------------------------------- fake archives


def _png(value: int, mask: bool = False, fmt: str = "PNG") -> bytes:
    arr = np.full((8, 8) if mask else (8, 8, 3), value, dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def mvtec_files() -> dict[str, bytes]:
    """MVTecAD layout: CATEGORY/{train/good, test/good, test/DEFECT, ground_truth/DEFECT}, licence at top."""
    files = {"license.txt": b"CC BY-NC-SA 4.0 (fake)\n", "readme.txt": b"fake MVTec AD\n"}
    for c in MVTEC_CATS:
        for i in range(3):
            files[f"{c}/train/good/{i:03d}.png"] = _png(100 + i)
        files[f"{c}/test/good/000.png"] = _png(90)
        for i in range(2):
            files[f"{c}/test/crack/{i:03d}.png"] = _png(200 + i)
            files[f"{c}/ground_truth/crack/{i:03d}_mask.png"] = _png(255, mask=True)
    return files


def btad_files(top: str) -> dict[str, bytes]:
    """BTAD layout: [TOP/]NN/{train/ok, test/ok, test/ko, ground_truth/ko}; masks are .bmp for 03."""
    files = {}
    for c in ("01", "02", "03"):
        ext = "bmp" if c == "03" else "png"
        files[f"{top}{c}/train/ok/0000.png"] = _png(120)
        files[f"{top}{c}/test/ok/0000.png"] = _png(121)
        files[f"{top}{c}/test/ko/0000.png"] = _png(200)
        files[f"{top}{c}/ground_truth/ko/0000.{ext}"] = _png(255, mask=True, fmt=ext.upper())
    if top:
        files["__MACOSX/" + top + "01/train/ok/._0000.png"] = b"apple double"
    return files


def make_tar(path: Path, files: dict[str, bytes], extra: list[tarfile.TarInfo] = ()) -> Path:
    with tarfile.open(path, "w:xz") as tf:
        dirs = sorted({str(Path(n).parent) for n in files} - {"."})
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            tf.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for info in extra:
            tf.addfile(info, io.BytesIO(b"evil" * (info.size > 0)) if info.isfile() else None)
    return path


def make_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- local HTTP server


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        server = self.server
        server.requests.append({"path": self.path, "range": self.headers.get("Range")})
        data = server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and server.honour_range:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if server.drop_first and len(server.requests) == 1:  # cut the first transfer in half
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    """A ThreadingHTTPServer on 127.0.0.1 serving `server.files` (path -> bytes), with Range support."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.requests = {}, []
    httpd.honour_range, httpd.drop_first = True, False
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def closed_url():
    """A URL on 127.0.0.1 where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/{MVTEC.filename}"


def serve(server, path: Path) -> str:
    server.files["/" + path.name] = path.read_bytes()
    return f"{server.base}/{path.name}"


@pytest.fixture
def mvtec_archive(tmp_path):
    return make_tar(tmp_path / MVTEC.filename, mvtec_files())


def _mvtec(root, url, archive, **kw):
    kw.setdefault("categories", MVTEC_CATS)
    return download_dataset(MVTEC, root, url=url, sha256=sha(archive), progress=False, **kw)


# --------------------------------------------------------------------------- tests


def test_download_verify_extract_mvtec_layout(server, mvtec_archive, tmp_path):
    url = serve(server, mvtec_archive)
    root = tmp_path / "data"
    assert _mvtec(root, url, mvtec_archive) == root
    for c in MVTEC_CATS:
        assert is_complete(root, c)
        assert len(list((root / c / "train" / "good").glob("*.png"))) == 3
        assert (root / c / "test" / "crack" / "001.png").is_file()
        mask = np.asarray(Image.open(root / c / "ground_truth" / "crack" / "000_mask.png"))
        assert set(np.unique(mask)) == {255}
        marker = json.loads((root / c / ".complete").read_text())
        assert marker["dataset"] == "mvtec" and marker["sha256"] == sha(mvtec_archive) and marker["files"] == 8
    assert (root / "license.txt").read_bytes() == b"CC BY-NC-SA 4.0 (fake)\n"
    assert archive_path(MVTEC, root).read_bytes() == mvtec_archive.read_bytes()
    assert not (root / ".extract-tmp").exists()
    assert not list((root / ".downloads").glob("*.part"))
    # a second run finds everything complete and touches no network
    n = len(server.requests)
    _mvtec(root, "http://127.0.0.1:9/never", mvtec_archive)
    assert len(server.requests) == n


def test_category_subset_then_the_rest(server, mvtec_archive, tmp_path):
    url = serve(server, mvtec_archive)
    root = tmp_path / "data"
    _mvtec(root, url, mvtec_archive, categories=["bottle"])
    assert is_complete(root, "bottle") and not (root / "cable").exists()
    _mvtec(root, url, mvtec_archive)  # the kept archive is reused, bottle is skipped
    assert is_complete(root, "cable")
    assert len(server.requests) == 1


def test_all_categories_by_default(server, mvtec_archive, tmp_path):
    import dataclasses

    small = dataclasses.replace(MVTEC, categories=MVTEC_CATS)
    root = tmp_path / "data"
    download_dataset(small, root, url=serve(server, mvtec_archive), sha256=sha(mvtec_archive), progress=False,
                     keep_archive=False)
    assert all(is_complete(root, c) for c in MVTEC_CATS)
    assert not archive_path(MVTEC, root).exists()


def test_unknown_category_lists_valid_ones(tmp_path, closed_url):
    with pytest.raises(BgadError, match="unknown mvtec category 'bottel'.*bottle, cable, capsule"):
        download_dataset(MVTEC, tmp_path, url=closed_url, categories=["bottel"], progress=False)


def test_category_missing_from_archive(server, mvtec_archive, tmp_path):
    with pytest.raises(BgadError, match="no files for mvtec category zipper"):
        _mvtec(tmp_path / "data", serve(server, mvtec_archive), mvtec_archive, categories=["bottle", "zipper"])
    assert not (tmp_path / "data" / "bottle").exists()


def test_checksum_mismatch_refused_and_removed(server, mvtec_archive, tmp_path):
    root = tmp_path / "data"
    url = serve(server, mvtec_archive)
    with pytest.raises(BgadError) as exc:
        download_dataset(MVTEC, root, url=url, sha256="0" * 64, categories=MVTEC_CATS, progress=False)
    msg = str(exc.value)
    assert "checksum mismatch" in msg and "0" * 64 in msg and sha(mvtec_archive) in msg and "removed" in msg
    assert "\n" not in msg
    assert not archive_path(MVTEC, root).exists()
    assert not any((root / c).exists() for c in MVTEC_CATS)
    assert not (root / ".extract-tmp").exists()


def test_official_checksum_is_the_default(server, mvtec_archive, tmp_path):
    url = serve(server, mvtec_archive)
    with pytest.raises(BgadError, match=MVTEC.sha256):
        download_dataset(MVTEC, tmp_path, url=url, categories=["bottle"], progress=False)


def test_resume_from_part_file_with_range(server, mvtec_archive, tmp_path):
    url = serve(server, mvtec_archive)
    root = tmp_path / "data"
    data = mvtec_archive.read_bytes()
    part = archive_path(MVTEC, root).with_name(MVTEC.filename + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(data[: len(data) // 2])
    _mvtec(root, url, mvtec_archive)
    assert server.requests[0]["range"] == f"bytes={len(data) // 2}-"
    assert archive_path(MVTEC, root).read_bytes() == data
    assert not part.exists() and is_complete(root, "bottle")


def test_connection_dropped_midway_is_resumed(server, mvtec_archive, tmp_path):
    url = serve(server, mvtec_archive)
    server.drop_first = True
    root = tmp_path / "data"
    _mvtec(root, url, mvtec_archive)
    assert len(server.requests) == 2
    assert server.requests[0]["range"] is None
    assert server.requests[1]["range"] and server.requests[1]["range"] != "bytes=0-"
    assert archive_path(MVTEC, root).read_bytes() == mvtec_archive.read_bytes()
    assert is_complete(root, "cable")


def test_server_without_range_support_restarts(server, mvtec_archive, tmp_path):
    url = serve(server, mvtec_archive)
    server.honour_range = False
    root = tmp_path / "data"
    part = archive_path(MVTEC, root).with_name(MVTEC.filename + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"stale bytes from another file")
    _mvtec(root, url, mvtec_archive)  # 200 instead of 206: the .part is rewritten from zero
    assert archive_path(MVTEC, root).read_bytes() == mvtec_archive.read_bytes()


def test_complete_part_file_416(server, mvtec_archive, tmp_path):
    url = serve(server, mvtec_archive)
    root = tmp_path / "data"
    part = archive_path(MVTEC, root).with_name(MVTEC.filename + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(mvtec_archive.read_bytes())
    _mvtec(root, url, mvtec_archive, categories=["bottle"])
    assert is_complete(root, "bottle")


def _evil_members() -> dict[str, list[tarfile.TarInfo]]:
    dotdot = tarfile.TarInfo("../evil.txt")
    dotdot.size = 4
    absolute = tarfile.TarInfo("/tmp/bgad-evil.txt")
    absolute.size = 4
    link_out = tarfile.TarInfo("bottle/train/good/link.png")
    link_out.type, link_out.linkname = tarfile.SYMTYPE, "../../../../outside.txt"
    link_abs = tarfile.TarInfo("bottle/train/good/passwd.png")
    link_abs.type, link_abs.linkname = tarfile.SYMTYPE, "/etc/passwd"
    hard_out = tarfile.TarInfo("cable/train/good/hard.png")
    hard_out.type, hard_out.linkname = tarfile.LNKTYPE, "../outside.txt"
    return {"dotdot": [dotdot], "absolute": [absolute], "symlink": [link_out], "symlink_abs": [link_abs],
            "hardlink": [hard_out]}


@pytest.mark.parametrize("kind", list(_evil_members()))
def test_unsafe_tar_members_refused(server, tmp_path, kind):
    archive = make_tar(tmp_path / MVTEC.filename, mvtec_files(), extra=_evil_members()[kind])
    root = tmp_path / "a" / "b" / "data"
    with pytest.raises(BgadError, match="unsafe archive member"):
        _mvtec(root, serve(server, archive), archive)
    assert not any((root / c).exists() for c in MVTEC_CATS)
    assert not (root / ".extract-tmp").exists()
    assert not list(tmp_path.rglob("evil.txt")) and not list(tmp_path.rglob("outside.txt"))


def test_links_inside_a_category_are_kept(server, tmp_path):
    link = tarfile.TarInfo("bottle/train/good/alias.png")
    link.type, link.linkname = tarfile.SYMTYPE, "000.png"
    hard = tarfile.TarInfo("bottle/test/good/copy.png")
    hard.type, hard.linkname = tarfile.LNKTYPE, "bottle/train/good/001.png"
    archive = make_tar(tmp_path / MVTEC.filename, mvtec_files(), extra=[link, hard])
    root = tmp_path / "data"
    _mvtec(root, serve(server, archive), archive, categories=["bottle"])
    good = root / "bottle" / "train" / "good"
    assert (good / "alias.png").is_symlink() and (good / "alias.png").read_bytes() == (good / "000.png").read_bytes()
    assert (root / "bottle" / "test" / "good" / "copy.png").read_bytes() == (good / "001.png").read_bytes()


def test_unsafe_zip_member_refused(server, tmp_path):
    archive = make_zip(tmp_path / BTAD.filename, {**btad_files(""), "../evil.txt": b"evil"})
    root = tmp_path / "data"
    with pytest.raises(BgadError, match="unsafe archive member '../evil.txt'"):
        download_dataset(BTAD, root, url=serve(server, archive), sha256=sha(archive), progress=False)
    assert not list(tmp_path.rglob("evil.txt")) and not (root / "01").exists()


@pytest.mark.parametrize("top", ["BTech_Dataset_transformed/", ""])
def test_btad_zip_with_or_without_top_folder(server, tmp_path, top):
    archive = make_zip(tmp_path / BTAD.filename, btad_files(top))
    root = tmp_path / "btad"
    download_dataset(BTAD, root, url=serve(server, archive), sha256=sha(archive), progress=False)
    for c in BTAD.categories:
        assert is_complete(root, c)
        assert (root / c / "train" / "ok" / "0000.png").is_file()
        assert (root / c / "test" / "ko" / "0000.png").is_file()
    assert (root / "03" / "ground_truth" / "ko" / "0000.bmp").is_file()
    assert not list(root.rglob("._*")) and not (root / "__MACOSX").exists()


def test_unreachable_url_says_how_to_download_by_hand(mvtec_archive, tmp_path, closed_url):
    root = tmp_path / "data"
    with pytest.raises(BgadError) as exc:
        download_dataset(MVTEC, root, url=closed_url, categories=["bottle"], progress=False, retries=0)
    msg = str(exc.value)
    target = archive_path(MVTEC, root)
    assert "\n" not in msg
    assert MVTEC.manual_page in msg and str(target) in msg and "CC BY-NC-SA" in msg and closed_url in msg
    # the user follows the advice: puts the archive there and reruns, still offline
    target.write_bytes(mvtec_archive.read_bytes())
    _mvtec(root, closed_url, mvtec_archive, categories=["bottle"])
    assert is_complete(root, "bottle")


def test_http_error_is_one_line(server, tmp_path):
    with pytest.raises(BgadError, match=r"HTTP 404.*by hand") as exc:
        download_dataset(BTAD, tmp_path, url=f"{server.base}/missing.zip", progress=False)
    assert "\n" not in str(exc.value) and BTAD.manual_page in str(exc.value)


def test_env_var_overrides_default_url_and_argument_overrides_env(server, mvtec_archive, tmp_path, monkeypatch,
                                                                  closed_url):
    url = serve(server, mvtec_archive)
    monkeypatch.setenv(MVTEC.env_var, url)
    _mvtec(tmp_path / "a", None, mvtec_archive, categories=["bottle"])
    assert is_complete(tmp_path / "a", "bottle") and len(server.requests) == 1
    monkeypatch.setenv(MVTEC.env_var, closed_url)
    _mvtec(tmp_path / "b", url, mvtec_archive, categories=["bottle"])
    assert is_complete(tmp_path / "b", "bottle") and len(server.requests) == 2


def test_foreign_category_folder_is_not_overwritten(tmp_path, closed_url):
    (tmp_path / "bottle").mkdir()
    (tmp_path / "bottle" / "mine.txt").write_text("keep me")
    with pytest.raises(BgadError, match="not made by this downloader"):
        download_dataset(MVTEC, tmp_path, url=closed_url, categories=["bottle"], progress=False)
    assert (tmp_path / "bottle" / "mine.txt").read_text() == "keep me"
