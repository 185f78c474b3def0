"""Fingerprints of what a result depends on besides its config: the package's code and the dataset's files.

A run is reused only when its config, `code_fingerprint()` and `data_fingerprint(root, category)` all equal the
current ones (see `runs`), so editing a loss or regenerating a dataset in place can never show old numbers.

- **Code:** the modules in `RESULT_MODULES`, the ones whose change can change a number in results.json. Each is
  parsed, its docstrings dropped and the syntax tree written back as source (`ast.unparse`), so comments,
  docstrings and formatting do not count and any change to what the code does does. Modules left out only
  orchestrate, draw, download or format (`runs`, `grid`, `summary`, `reproduce`, `ablation`, `cli`, `viz`,
  `widgets`, `download`, `paper_tables`, `synthetic`: a dataset it makes is covered by the data fingerprint).
- **Data:** SHA-256 of every image and mask file of the category (the digest the feature cache keys on), with
  its path inside the category, so a regenerated, edited, added or removed file changes it and a moved dataset
  does not.
"""
from __future__ import annotations

import ast
import hashlib
import os
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from .utils import file_digest

#: Package modules whose source can change a result (tested: each exists, and the list covers every module that
#: `pipeline` reaches when it trains and evaluates).
RESULT_MODULES = ("backbone", "boundary", "config", "contrastive", "data", "evaluate", "flow", "losses", "pipeline",
                  "train", "utils")
PACKAGE_DIR = Path(__file__).resolve().parent


def _normalised_source(path: Path) -> str:
    """The module's code without comments, docstrings or formatting."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree)


@lru_cache(maxsize=8)
def code_fingerprint(package_dir: str | None = None) -> str:
    """16 hex digits over the normalised source of `RESULT_MODULES` (in `package_dir`, default this package)."""
    root = Path(package_dir) if package_dir else PACKAGE_DIR
    h = hashlib.sha256()
    for name in RESULT_MODULES:
        h.update(f"{name}\n{_normalised_source(root / f'{name}.py')}\n".encode())
    return h.hexdigest()[:16]


_DIGESTS: dict[tuple[str, int, int], str] = {}


def _digest(path: Path) -> str:
    """`file_digest`, remembered per (path, size, mtime) within this process: a grid hashes each file once."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = file_digest(path)
    return _DIGESTS[key]


_HELD: dict[tuple[str, str], str] | None = None


@contextmanager
def held_data_fingerprints():
    """Inside the block each (data root, category) is fingerprinted once. Planning a grid asks for the same
    fingerprint hundreds of times (every run key and every finished-run check), and each time walks the folder; a
    caller that knows the files do not change meanwhile (the lab refreshing its plan) holds them."""
    global _HELD
    outer = _HELD
    _HELD = {} if outer is None else outer
    try:
        yield
    finally:
        _HELD = outer


def data_fingerprint(data_root: str | os.PathLike, category: str) -> str:
    """16 hex digits over every file of `data_root/category` (images and masks), or "missing" without the folder."""
    held = _HELD
    if held is not None:
        key = (str(Path(data_root).resolve()), category)
        if key not in held:
            held[key] = _data_fingerprint(data_root, category)
        return held[key]
    return _data_fingerprint(data_root, category)


def _data_fingerprint(data_root: str | os.PathLike, category: str) -> str:
    from .data import IMAGE_EXTENSIONS

    root = Path(data_root) / category
    if not root.is_dir():
        return "missing"
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    h = hashlib.sha256()
    for p in files:
        h.update(f"{p.relative_to(root).as_posix()} {_digest(p)}\n".encode())
    return h.hexdigest()[:16]
