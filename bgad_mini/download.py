"""Download, verify and safely extract the real datasets (MVTecAD, BTAD) into the MVTec layout.

Used by `bgad-mini data mvtec|btad` and `data_scripts/download_*.py`. The steps, each one restartable:

1. fetch `ROOT/.downloads/<filename>.part` over HTTP, resuming with a `Range` request, and rename it to
   `ROOT/.downloads/<filename>` only once it is complete (a hand-downloaded archive can be put there);
2. check its SHA-256 before opening it (a corrupt archive is removed, so that the next run fetches it again);
3. extract into `ROOT/.extract-tmp`, refusing absolute paths, `..` and links that leave the tree, then move
   each finished category folder to `ROOT/CATEGORY`, carrying a `.complete` marker written beforehand,
   so a half-extracted category never looks complete.

Nothing here can reach the real URLs on our own machines: `tests/test_download.py` serves a fake archive
in the same layout from 127.0.0.1.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import posixpath
import re
import shutil
import stat
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from .errors import BgadError

DOWNLOADS_DIR = ".downloads"
EXTRACT_TMP = ".extract-tmp"
COMPLETE_MARKER = ".complete"
_CHUNK = 1 << 20  # 1 MiB
_SKIP_PARTS = {"__MACOSX", ".DS_Store", "Thumbs.db"}


@dataclass(frozen=True)
class DatasetSource:
    """Where a real dataset comes from: URL, checksum, archive name, categories, licence."""

    name: str
    url: str
    sha256: str
    filename: str
    env_var: str
    categories: tuple[str, ...]
    manual_page: str
    licence: str
    citation: str = ""


MVTEC = DatasetSource(
    name="mvtec",
    url=(
        "https://www.mydrive.ch/shares/150996/b52ecdcbf521176e9db9c731f2304b27/download/"
        "420938113-1629960298/mvtec_anomaly_detection.tar.xz"
    ),
    sha256="cf4313b13603bec67abb49ca959488f7eedce2a9f7795ec54446c649ac98cd3d",
    filename="mvtec_anomaly_detection.tar.xz",
    env_var="BGAD_MVTEC_URL",
    categories=(
        "bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut",
        "pill", "screw", "tile", "toothbrush", "transistor", "wood", "zipper",
    ),
    manual_page="https://www.mvtec.com/company/research/datasets/mvtec-ad",
    licence="CC BY-NC-SA 4.0 (non-commercial use only)",
    citation="Bergmann et al., MVTec AD, CVPR 2019 and IJCV 2021",
)

BTAD = DatasetSource(
    name="btad",
    url="https://avires.dimi.uniud.it/papers/btad/btad.zip",
    sha256="461c9387e515bfed41ecaae07c50cf6b10def647b36c9e31d239ab2736b10d2a",
    filename="btad.zip",
    env_var="BGAD_BTAD_URL",
    categories=("01", "02", "03"),
    manual_page="https://avires.dimi.uniud.it/papers/btad/",
    licence="see the authors' page; cite Mishra et al., VT-ADL, ISIE 2021",
    citation="Mishra et al., VT-ADL, ISIE 2021",
)

SOURCES = {s.name: s for s in (MVTEC, BTAD)}


# --------------------------------------------------------------------------- paths and markers


def archive_path(source: DatasetSource, root: str | os.PathLike) -> Path:
    """`ROOT/.downloads/<filename>`: where the verified archive lives (and where a hand download goes)."""
    return Path(root) / DOWNLOADS_DIR / source.filename


def is_complete(root: str | os.PathLike, category: str) -> bool:
    """True when `ROOT/CATEGORY` was fully extracted by this module (it carries the `.complete` marker)."""
    return (Path(root) / category / COMPLETE_MARKER).is_file()


def resolve_url(source: DatasetSource, url: str | None = None) -> str:
    """The URL to use: the argument, else the environment variable `source.env_var`, else the official one."""
    return url or os.environ.get(source.env_var) or source.url


def check_categories(source: DatasetSource, categories: Iterable[str] | str | None) -> tuple[str, ...]:
    """Validate a category subset (None = all); an unknown name raises a BgadError listing the valid ones."""
    if categories is None:
        return source.categories
    if isinstance(categories, str):
        categories = [categories]
    chosen = tuple(dict.fromkeys(categories))  # keep order, drop repeats
    unknown = [c for c in chosen if c not in source.categories]
    if unknown:
        raise BgadError(
            f"unknown {source.name} categor{'y' if len(unknown) == 1 else 'ies'} "
            f"{', '.join(map(repr, unknown))}; valid: {', '.join(source.categories)}"
        )
    if not chosen:
        raise BgadError(f"no {source.name} category given; valid: {', '.join(source.categories)}")
    return chosen


def sha256_of(path: str | os.PathLike, progress: bool = False) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    from tqdm.auto import tqdm

    path = Path(path)
    digest = hashlib.sha256()
    with open(path, "rb") as f, tqdm(
        total=path.stat().st_size, unit="B", unit_scale=True, unit_divisor=1024,
        desc=f"sha256 {path.name}", disable=not progress, leave=False,
    ) as bar:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


# --------------------------------------------------------------------------- download


class _Interrupted(Exception):
    """A transfer that stopped early; the `.part` file keeps what arrived."""


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _content_range_start_total(header: str | None) -> tuple[int | None, int | None]:
    """Parse `Content-Range: bytes START-END/TOTAL` (or `bytes */TOTAL`)."""
    m = re.match(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)", header or "")
    if not m:
        return None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    total = int(m.group(2)) if m.group(2) != "*" else None
    return start, total


def _fetch_once(url: str, part: Path, progress: bool, timeout: float) -> None:
    """One HTTP attempt: resume `part` with a Range request when it exists; raise `_Interrupted` if cut short."""
    from tqdm.auto import tqdm

    from . import __version__

    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": f"bgad-mini/{__version__}"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # nothing left to send: the .part may already be whole
            _, total = _content_range_start_total(err.headers.get("Content-Range"))
            err.close()
            if total == have:
                return
            part.unlink()  # larger than the file, or unknowable: start again
            raise _Interrupted("the server refused to resume; restarting from zero") from err
        raise
    with response:
        status = response.status or 200  # file:// URLs have no status
        length = response.headers.get("Content-Length")
        if status == 206:
            start, total = _content_range_start_total(response.headers.get("Content-Range"))
            if start != have:  # a range we did not ask for: do not splice it in
                part.unlink()
                raise _Interrupted(f"the server sent bytes from {start}, not {have}; restarting")
            mode, offset = "ab", have
        else:  # 200: the server ignored the Range header, so the whole file comes again
            mode, offset, total = "wb", 0, None
        if total is None and length is not None:
            total = offset + int(length)
        try:
            f = open(part, mode)
        except OSError as err:
            raise BgadError(f"cannot write {part}: {_one_line(err)}") from err
        with f, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
            desc=part.name.removesuffix(".part"), disable=not progress,
        ) as bar:
            while True:
                chunk = response.read(_CHUNK)  # network errors propagate to the retry loop
                if not chunk:
                    break
                try:
                    f.write(chunk)
                except OSError as err:  # e.g. disk full: not a network problem, do not retry
                    raise BgadError(f"cannot write {part}: {_one_line(err)}") from err
                bar.update(len(chunk))
    size = part.stat().st_size
    if total is not None and size != total:
        raise _Interrupted(f"connection closed after {size} of {total} bytes")


def fetch(
    url: str, dest: str | os.PathLike, progress: bool = True, timeout: float = 60.0, retries: int = 5
) -> Path:
    """Download `url` to `dest` through `dest.part` (resumable); the final name appears only when complete.

    Attempts that fail before any byte arrives (refused, unknown host, HTTP 4xx) are not retried;
    a transfer cut short is resumed up to `retries` times. Raises the underlying error on failure.
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    attempt = 0
    while True:
        before = part.stat().st_size if part.exists() else 0
        try:
            _fetch_once(url, part, progress, timeout)
            break
        except _Interrupted as err:
            last: BaseException = err
        except urllib.error.HTTPError as err:
            if err.code < 500:  # 4xx: asking again will not help
                raise
            last = err
        except (OSError, http.client.HTTPException) as err:  # URLError, timeouts, resets, bad status lines
            if (part.stat().st_size if part.exists() else 0) <= before:  # nothing arrived: do not insist
                raise
            last = err
        attempt += 1
        if attempt > retries:
            raise last
        time.sleep(min(0.5 * attempt, 5.0))
    os.replace(part, dest)
    return dest


# --------------------------------------------------------------------------- safe extraction


def _clean_parts(name: str) -> list[str]:
    """Split an archive member name into safe path parts, or raise BgadError for absolute / `..` names."""
    norm = name.replace("\\", "/")
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm):
        raise BgadError(f"unsafe archive member {name!r} (absolute path); refusing to extract this archive")
    parts = [p for p in norm.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise BgadError(f"unsafe archive member {name!r} ('..' in path); refusing to extract this archive")
    return parts


def _check_link(name: str, parts: list[str], target: str, hard: bool) -> list[str]:
    """Parts (from the archive root) of a link's target; raise BgadError if it points outside the archive."""
    norm = target.replace("\\", "/")
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm):
        raise BgadError(f"unsafe archive member {name!r} (link to absolute path {target!r}); refusing to extract")
    base = "" if hard else "/".join(parts[:-1])  # hard links are relative to the archive root
    joined = posixpath.normpath(posixpath.join(base, norm)) if norm else "."
    if joined == ".." or joined.startswith("../"):
        raise BgadError(f"unsafe archive member {name!r} (link to {target!r} outside the archive); refusing")
    return [p for p in joined.split("/") if p not in ("", ".")]


@dataclass
class _Member:
    """What extraction needs from a tar or zip member."""

    name: str
    kind: str  # "file", "dir", "symlink", "hardlink"
    link: str = ""
    source: object = None


def _tar_members(tf: tarfile.TarFile) -> Iterator[_Member]:
    for m in tf:  # streaming: an .xz archive is decompressed once
        if m.isdir():
            yield _Member(m.name, "dir")
        elif m.isfile():
            yield _Member(m.name, "file", source=m)
        elif m.issym():
            yield _Member(m.name, "symlink", link=m.linkname)
        elif m.islnk():
            yield _Member(m.name, "hardlink", link=m.linkname)
        else:
            raise BgadError(f"unsafe archive member {m.name!r} (device or fifo); refusing to extract this archive")


def _zip_members(zf: zipfile.ZipFile) -> Iterator[_Member]:
    for info in zf.infolist():
        mode = info.external_attr >> 16
        if info.is_dir():
            yield _Member(info.filename, "dir")
        elif stat.S_ISLNK(mode):
            yield _Member(info.filename, "symlink", link=zf.read(info).decode("utf-8", "replace"))
        else:
            yield _Member(info.filename, "file", source=info)


def _place(parts: list[str], categories: Sequence[str]) -> tuple[str, tuple[str, ...], list[str]] | None:
    """Map member parts to (category or '', prefix, rest); '' = a top-level file such as license.txt.

    Categories may sit at the top of the archive (MVTecAD) or under one folder (BTAD's zip).
    """
    if not parts or any(p in _SKIP_PARTS or p.startswith("._") for p in parts):
        return None
    if parts[0] in categories:
        return parts[0], (), parts[1:]
    if len(parts) >= 2 and parts[1] in categories:
        return parts[1], (parts[0],), parts[2:]
    if len(parts) <= 2:
        return "", tuple(parts[:-1]), parts[-1:]
    return None


def _open_archive(archive: Path):
    """Open a .zip or a tar (any compression tarfile knows): (handle to close, member iterator, member opener)."""
    if zipfile.is_zipfile(archive):
        zf = zipfile.ZipFile(archive)
        return zf, _zip_members(zf), zf.open
    try:
        tf = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError) as err:
        raise BgadError(f"{archive} is neither a zip nor a tar archive ({_one_line(err)})") from err
    return tf, _tar_members(tf), tf.extractfile


def _check_targets(root: Path, todo: Iterable[str]) -> None:
    """Refuse to overwrite a category folder that this module did not complete (it may be the user's)."""
    for c in todo:
        if (root / c).exists() or (root / c).is_symlink():
            raise BgadError(
                f"{root / c} exists but was not made by this downloader (no {COMPLETE_MARKER} marker); "
                "if it is a full copy you can use it as is, otherwise move or delete it and rerun"
            )


def extract(
    archive: str | os.PathLike,
    root: str | os.PathLike,
    source: DatasetSource,
    categories: Iterable[str] | None = None,
    progress: bool = True,
    archive_sha256: str = "",
) -> list[str]:
    """Safely extract the chosen categories of `archive` into `ROOT/CATEGORY` (MVTec layout); return those extracted.

    Every member is checked, selected or not; one unsafe member refuses the whole archive and leaves
    `root` as it was. Categories that are already complete are skipped.
    """
    from tqdm.auto import tqdm

    archive, root = Path(archive), Path(root)
    wanted = check_categories(source, categories)
    todo = [c for c in wanted if not is_complete(root, c)]
    _check_targets(root, todo)
    if not todo:
        return []
    tmp = root / EXTRACT_TMP
    shutil.rmtree(tmp, ignore_errors=True)  # leftovers of an interrupted run
    tmp.mkdir(parents=True)
    counts: dict[str, int] = {}
    prefixes: dict[tuple[str, ...], str] = {}
    try:
        handle, members, open_member = _open_archive(archive)
        with handle, tqdm(unit=" files", desc=f"extract {archive.name}", disable=not progress) as bar:
            for m in members:
                parts = _clean_parts(m.name)
                link_parts: list[str] = []
                if m.kind in ("symlink", "hardlink"):
                    link_parts = _check_link(m.name, parts, m.link, hard=m.kind == "hardlink")
                placed = _place(parts, source.categories)
                if placed is None:
                    continue
                category, prefix, rest = placed
                if category:
                    prefixes.setdefault(prefix, category)
                    if len(prefixes) > 1:
                        raise BgadError(
                            f"{archive.name} has {source.name} categories under several folders "
                            f"({', '.join('/'.join(p) or '.' for p in prefixes)}); not the expected layout"
                        )
                    counts[category] = counts.get(category, 0) + (m.kind != "dir")
                    if category not in todo:
                        continue
                    if m.kind == "symlink" and (_place(link_parts, source.categories) or ("",))[0] != category:
                        raise BgadError(
                            f"unsafe archive member {m.name!r} (link to {m.link!r} outside its category folder); "
                            "refusing to extract this archive"
                        )
                    dest = tmp / category / Path(*rest) if rest else tmp / category
                elif m.kind == "file":  # top-level file (license.txt, readme.txt), kept by prefix
                    dest = tmp / "_top" / Path(*prefix, *rest)
                else:
                    continue
                if not (dest.resolve() == tmp.resolve() or dest.resolve().is_relative_to(tmp.resolve())):
                    raise BgadError(f"unsafe archive member {m.name!r} (escapes through a link); refusing")
                _write_member(m, dest, open_member, tmp, link_parts, source.categories)
                bar.update(1)
        missing = [c for c in todo if not counts.get(c)]
        if missing:
            found = sorted(c for c, n in counts.items() if n) or ["none"]
            raise BgadError(
                f"{archive.name} has no files for {source.name} categor{'y' if len(missing) == 1 else 'ies'} "
                f"{', '.join(missing)} (found: {', '.join(found)}); is it the right archive?"
            )
        # Everything is on disk: mark each category complete *inside* tmp, then move it with one rename.
        for c in todo:
            marker = {"dataset": source.name, "category": c, "archive": archive.name,
                      "sha256": archive_sha256, "files": counts[c]}
            (tmp / c / COMPLETE_MARKER).write_text(json.dumps(marker, indent=1) + "\n")
            os.replace(tmp / c, root / c)
        top = tmp / "_top" / Path(*next(iter(prefixes), ()))
        if top.is_dir():
            for f in top.iterdir():
                if f.is_file():
                    os.replace(f, root / f.name)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as err:
        raise BgadError(f"could not extract {archive}: {_one_line(err)}") from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return todo


def _write_member(m: _Member, dest: Path, open_member, tmp: Path, link_parts: list[str], categories) -> None:
    """Write one checked member at `dest` (dir, file, or a link that stays inside the archive)."""
    if m.kind == "dir":
        dest.mkdir(parents=True, exist_ok=True)
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    if m.kind == "file":
        src = open_member(m.source)
        with src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, _CHUNK)
    elif m.kind == "symlink":
        os.symlink(m.link.replace("\\", "/"), dest)
    else:  # hard link: copy the target, which an archive stores earlier
        placed = _place(link_parts, categories)
        target = tmp / placed[0] / Path(*placed[2]) if placed and placed[0] else None
        if target is None or not target.is_file():
            raise BgadError(f"archive member {m.name!r} is a hard link to {m.link!r}, which was not extracted")
        shutil.copyfile(target, dest)


# --------------------------------------------------------------------------- the one call


def download_dataset(
    source: DatasetSource,
    root: str | os.PathLike,
    url: str | None = None,
    sha256: str | None = None,
    categories: Iterable[str] | str | None = None,
    keep_archive: bool = True,
    progress: bool = True,
    *,
    timeout: float = 60.0,
    retries: int = 5,
) -> Path:
    """Fetch (resumable), verify (SHA-256) and safely extract a real dataset into `root`; return `root`.

    `url`: argument, else `$source.env_var`, else the official URL. `sha256=None` uses the source's checksum.
    `categories=None` extracts all of them. Categories already complete are skipped without any download.
    Every failure is a one-line BgadError that says what to do next.
    """
    root = Path(root)
    wanted = check_categories(source, categories)
    if all(is_complete(root, c) for c in wanted):
        return root
    _check_targets(root, [c for c in wanted if not is_complete(root, c)])  # before a long download
    archive = archive_path(source, root)
    expected = (sha256 or source.sha256).lower()
    if not archive.is_file():
        where = resolve_url(source, url)
        try:
            fetch(where, archive, progress=progress, timeout=timeout, retries=retries)
        except (OSError, http.client.HTTPException, _Interrupted, ValueError) as err:
            part = archive.with_name(archive.name + ".part")
            kept = (f" The {part.stat().st_size} bytes received are kept in {part.name} and resumed next time."
                    if part.is_file() and part.stat().st_size else "")
            raise BgadError(
                f"could not download {source.name} from {where}: {_describe(err)}. "
                f"Download {source.filename} by hand from {source.manual_page} (licence: {source.licence}) "
                f"and put it at {archive.absolute()}; re-running then verifies and extracts it without "
                f"downloading (or set {source.env_var} to a mirror URL).{kept}"
            ) from err
    actual = sha256_of(archive, progress=progress)
    if actual != expected:
        archive.unlink()
        raise BgadError(
            f"checksum mismatch for {archive}: expected SHA-256 {expected}, got {actual}; the file was removed "
            f"so that the next run downloads it again (if you use a different archive on purpose, pass its checksum)"
        )
    extract(archive, root, source, wanted, progress=progress, archive_sha256=actual)
    if not keep_archive:
        archive.unlink()
    return root


def _describe(err: BaseException) -> str:
    """A short one-line reason for a failed download."""
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {_one_line(err.reason)}"
    if isinstance(err, urllib.error.URLError):
        return _one_line(getattr(err.reason, "strerror", None) or err.reason)
    if isinstance(err, TimeoutError):
        return "timed out"
    return _one_line(err) or type(err).__name__


__all__ = [
    "BTAD", "MVTEC", "SOURCES", "DatasetSource", "archive_path", "check_categories", "download_dataset",
    "extract", "fetch", "is_complete", "resolve_url", "sha256_of",
]
