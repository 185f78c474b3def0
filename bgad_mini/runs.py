"""What a run is: its identity and key, its folder's files, its lock, and `load_or_run`.

A run is one config trained and evaluated on one category. Its **identity** is the config (without runtime
fields such as threads, and without other methods' settings: `Config.identity`), the code fingerprint, the data
fingerprint (`fingerprint`) and the results schema. `run_key` turns it into a readable folder name
(`bgad_brick_missing_s0_<12 hex>`). A finished run is reused only when its stored identity equals the current
one; after a change to the code or the data the same folder trains again, from scratch.

    run = load_or_run(cfg, runs_root="runs")      # or run_dir="runs/my-run" for a folder of your choice
    run.status                                    # "reused" | "trained"
    run.results["metrics"]

Two processes asking for the same run (parallel grid jobs, Dask workers, two terminals) do not both train it:
the first takes `run.lock` (owner PID and host inside), the second waits and then reuses what the first wrote.
A lock left by a process that died is taken over (same host: its PID is gone; another host: no heartbeat for
`STALE_AFTER` seconds). Every file is written atomically (`utils.atomic_write`), results.json last.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import Config
from .errors import BgadError
from .fingerprint import code_fingerprint, data_fingerprint
from .pipeline import SCHEMA_VERSION, build_flows, prepare_data, reevaluate_into, train_and_evaluate
from .utils import resolve_device, write_json

RUNS = "runs"  # the runs folder inside an ablation's output folder
#: Seconds without a heartbeat after which another host's lock counts as abandoned.
STALE_AFTER = 120.0
HEARTBEAT = 20.0


@dataclass(frozen=True)
class RunFolder:
    """The files of one run folder (the only place their names are written down)."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    results = property(lambda self: self.path / "results.json")  # written last: the run is finished
    config = property(lambda self: self.path / "config.json")  # the full Config, runtime fields included
    identity = property(lambda self: self.path / "identity.json")  # what `finished` compares
    flows = property(lambda self: self.path / "flows.pt")  # final flow weights (nf, bgad, pushpull)
    head = property(lambda self: self.path / "contrastive.pt")  # projection head and its checkpoint (firm, supcon)
    checkpoint = property(lambda self: self.path / "checkpoint.pt")  # the flows' per-epoch checkpoint
    figure = property(lambda self: self.path / "anomaly_maps.png")
    error = property(lambda self: self.path / "error.txt")  # a failed grid job's traceback
    lock = property(lambda self: self.path / "run.lock")
    log = property(lambda self: self.path / "run.log")  # a grid job's progress bars and messages (`grid --log`)

    def trained_state(self) -> list[Path]:
        """Files that hold training state: removed when the run must start again."""
        return [self.results, self.flows, self.head, self.checkpoint, self.figure, self.error]


@dataclass
class Run:
    """What `load_or_run` returns."""

    results: dict[str, Any]
    run_dir: Path
    status: str  # "reused" or "trained"

    def __iter__(self):  # `results, run_dir = load_or_run(...)`
        return iter((self.results, self.run_dir))


# ----------------------------------------------------------------------------------------------
# Identity and key
# ----------------------------------------------------------------------------------------------
def identity(cfg: Config) -> dict[str, Any]:
    """Everything a run's numbers depend on: config identity, code and data fingerprints, results schema."""
    return {"config": cfg.identity(), "code": code_fingerprint(), "data": data_fingerprint(cfg.data_root, cfg.category),
            "schema": SCHEMA_VERSION}


def run_key(cfg: Config, ident: dict[str, Any] | None = None) -> str:
    """`<method>_<category>_<known types or multi>_s<seed>_<12 hex of the identity>`."""
    ident = identity(cfg) if ident is None else ident
    digest = hashlib.sha1(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:12]
    which = "+".join(cfg.known_types) if cfg.setting == "one-class" else "multi"
    prefix = f"{cfg.method}_{cfg.category}_{which or 'one'}_s{cfg.seed}_"
    return re.sub(r"[^A-Za-z0-9_.+-]", "-", prefix) + digest


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _comparable(ident: dict[str, Any]) -> dict[str, Any]:
    """JSON round trip: tuples become lists, as in a stored identity."""
    return json.loads(json.dumps(ident, default=str))


def finished(run_dir: str | os.PathLike, cfg: Config, ident: dict[str, Any] | None = None) -> dict | None:
    """The results of `cfg` in `run_dir` if they were computed by the current code on the current data, else None."""
    res = _read_json(RunFolder(run_dir).results)
    if res is None:
        return None
    ident = identity(cfg) if ident is None else ident
    return res if res.get("identity") == _comparable(ident) else None


def _changed(saved: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))


def prepared(cfg: Config) -> Config:
    """`cfg` with the one-class default known type filled in (reads the category), so keys agree."""
    return prepare_data(cfg, verbose=False).cfg


# ----------------------------------------------------------------------------------------------
# The lock
# ----------------------------------------------------------------------------------------------
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """`run.lock` in a run folder: one process trains, the others wait. Re-entrant within one process."""

    def __init__(self, path: str | os.PathLike, poll: float = 0.5, say=None) -> None:
        self.path = Path(path)
        self.poll = poll
        self.say = say or (lambda line: None)
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self.owner = {"pid": os.getpid(), "host": socket.gethostname()}

    def _stale(self, holder: dict | None) -> bool:
        if holder is None:  # unreadable: being written right now, or garbage; judge by age
            return self._age() > STALE_AFTER
        if holder.get("host") == self.owner["host"]:
            return not _pid_alive(int(holder.get("pid", -1)))
        return self._age() > STALE_AFTER

    def _age(self) -> float:
        try:
            return time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return 0.0

    def acquire(self) -> None:
        waited = False
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = _read_json(self.path)
                if holder == self.owner:  # this process already holds it
                    return
                if self._stale(holder):
                    try:  # only one of several waiters wins the rename; the others loop
                        os.rename(self.path, self.path.with_name(f"{self.path.name}.stale-{os.getpid()}"))
                        self.path.with_name(f"{self.path.name}.stale-{os.getpid()}").unlink()
                        self.say(f"taking over {self.path.parent.name}: its lock was left by a process that ended")
                    except FileNotFoundError:
                        pass
                    continue
                if not waited:
                    who = f"PID {holder.get('pid')} on {holder.get('host')}" if holder else "another process"
                    self.say(f"waiting for {who}, which is training {self.path.parent.name}")
                    waited = True
                time.sleep(self.poll)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(self.owner, f)
            break
        self._stop.clear()
        self._beat = threading.Thread(target=self._heartbeat, daemon=True)
        self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT):
            try:
                os.utime(self.path)
            except FileNotFoundError:
                return

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
            self._beat = None
        if _read_json(self.path) == self.owner:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


# ----------------------------------------------------------------------------------------------
# Load or run
# ----------------------------------------------------------------------------------------------
def _check_config(folder: RunFolder, cfg: Config) -> None:
    """A folder chosen by the user that holds a run of another config: one clear error, nothing overwritten."""
    saved = _read_json(folder.config)
    if saved is None:
        return
    a, b = Config.from_dict(saved).identity(), cfg.identity()
    if a != b:
        raise BgadError(f"run folder {folder.path} holds a run with a different config ({', '.join(_changed(a, b))}); "
                        "use another --out or delete the folder")


def load_or_run(cfg: Config, run_dir: str | os.PathLike | None = None, *, runs_root: str | os.PathLike | None = None,
                progress: bool = True, force: bool = False) -> Run:
    """The finished run of `cfg` if the current code and data made it, else train it (resuming a checkpoint of
    the same identity). Give `run_dir`, or `runs_root` for `runs_root/<run_key>`. `force` trains from scratch."""
    if (run_dir is None) == (runs_root is None):
        raise BgadError("load_or_run needs exactly one of run_dir and runs_root")
    say = (lambda line: print(line, file=sys.stderr)) if progress else (lambda line: None)
    t_data = time.perf_counter()
    data = prepare_data(cfg, verbose=progress)
    t_data = time.perf_counter() - t_data
    cfg = data.cfg
    ident = identity(cfg)
    folder = RunFolder(Path(runs_root) / run_key(cfg, ident) if run_dir is None else run_dir)
    _check_config(folder, cfg)
    if not force and (done := finished(folder.path, cfg, ident)) is not None:
        say(f"reusing finished run in {folder.path}")
        return Run(done, folder.path, "reused")
    folder.path.mkdir(parents=True, exist_ok=True)
    with RunLock(folder.lock, say=say):
        if not force and (done := finished(folder.path, cfg, ident)) is not None:  # another process just made it
            say(f"reusing the run another process finished in {folder.path}")
            return Run(done, folder.path, "reused")
        saved = _read_json(folder.identity)
        if force or saved != _comparable(ident):
            if saved is not None and saved != _comparable(ident) and progress:
                what = ", ".join(_changed(saved, _comparable(ident)))
                say(f"{folder.path.name}: {what} changed since it was trained; training it again from scratch")
            for f in folder.trained_state():
                f.unlink(missing_ok=True)
        if cfg.method != "nf" and not data.split.known:
            raise BgadError(f"method {cfg.method!r} needs known anomalies: set --n-known > 0")
        write_json(folder.config, cfg.to_dict())
        write_json(folder.identity, ident)
        results = train_and_evaluate(cfg, data, folder, progress=progress)
        timings = results["timings"]
        timings["data"] = t_data
        timings["total"] = timings.get("total", 0.0) + t_data
        results["identity"] = _comparable(ident)
        write_json(folder.results, results)
    return Run(results, folder.path, "trained")


# ----------------------------------------------------------------------------------------------
# Reading a finished run
# ----------------------------------------------------------------------------------------------
def _saved_config(folder: RunFolder, weights: Path) -> Config:
    if not folder.config.exists() or not weights.exists():
        raise BgadError(f"{folder.path} is not a finished run (needs {folder.config.name} and {weights.name}); "
                        "run `bgad-mini run` first")
    return Config.from_dict(json.loads(folder.config.read_text()))


def load_flows(run_dir: str | os.PathLike, device: str = "cpu"):
    """The trained flows and the config of a finished run folder."""
    import torch

    folder = RunFolder(run_dir)
    cfg = _saved_config(folder, folder.flows)
    state = torch.load(folder.flows, map_location=device)
    channels = [int(state[f"flows.{l}.module_list.0.w_perm"].shape[0]) for l in range(len(cfg.stages))]
    flows = build_flows(cfg, channels, device)
    flows.load_state_dict(state)
    return flows.eval(), cfg


def load_head(run_dir: str | os.PathLike, device: str = "cpu"):
    """The trained projection head and the config of a finished FIRM / SupCon run folder."""
    import torch

    from .contrastive import ProjectionHead

    folder = RunFolder(run_dir)
    cfg = _saved_config(folder, folder.head)
    state = torch.load(folder.head, map_location=device, weights_only=False)
    head = ProjectionHead(**state["head_config"]).to(device)
    head.load_state_dict(state["head"])
    return head.eval(), cfg


def reevaluate(run_dir: str | os.PathLike, progress: bool = True) -> dict[str, Any]:
    """Evaluate a saved run again with the current code from its config and final weights; rewrite results.json.

    The run keeps the identity it was trained with (`evaluated_with` records the code that scored it), so
    `load_or_run` still trains it again when the code that trained it has changed."""
    folder = RunFolder(run_dir)
    saved = _read_json(folder.config) or {}
    device = resolve_device(saved.get("device", "auto"))
    if saved.get("method") in ("firm", "supcon"):
        model, cfg = load_head(folder.path, device)
    else:
        model, cfg = load_flows(folder.path, device)
    old = _read_json(folder.results) or {}
    results = reevaluate_into(cfg, model, folder, old, progress=progress)
    results["identity"] = old.get("identity")
    results["evaluated_with"] = {"code": code_fingerprint()}
    write_json(folder.results, results)
    return results
