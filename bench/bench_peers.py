"""Side by side: anomalib's CFlow and PatchCore against bgad-mini's `nf` and `bgad`, same backbone weights, same
data, same test images, same metric code. Writes `bench/results/peers.json` and prints a table.

    .venv/bin/python bench/bench_peers.py --categories brick grass gravel --seeds 0

- The peers run anomalib (PyPI) in a venv of their own, `bench/.peers-venv` (created and filled by this script on
  first use; never a dependency of bgad_mini), through `bench/peers_worker.py`: anomalib's `Engine.fit` on the
  category's normal training images, then its torch model on each test image alone (batch size 1: anomalib's CFlow
  normalises its maps over each test batch). The worker writes the raw maps to .npy.
- Backbone: timm `tf_efficientnet_lite0` with bgad_mini's offline ImageNet weights
  (`bgad_mini.backbone.lite0_state_dict`), written as `model.safetensors` into a Hugging Face cache under the peer
  venv and read by timm with `HF_HUB_OFFLINE=1`: nothing is downloaded. Before any run, both anomalib models'
  encoders must give bgad_mini's features of one test image to 1e-4, or the bench stops.
- anomalib's defaults otherwise: 256 px, no crop; CFlow on the stride 4/8/16 stages (8 coupling blocks, condition
  128, fiber batch 64, lr 1e-4, training batch 32); PatchCore on the stride 8/16 stages, coreset 0.1, 9
  neighbours. CFlow's epochs: see `--cflow-epochs`.
- `nf` and `bgad`: `bgad_mini.runs.load_or_run` with the `book` profile, one-class, seen type `missing`, N = 10, one
  torch thread, a fresh feature cache (so that the backbone's cost is counted) and no shared phase 1 (each run pays
  its own phase 1).
- Every method is scored by `bgad_mini.evaluate.evaluate` on exactly `split.test`
  (`split_known_anomalies(cat.test, 10, "one-class", ("missing",), seed)`); nf/bgad's results.json must have the
  same n_test and known images, or the bench stops.

Finished (method, category, seed) entries are written to the JSON at once and reused by the next invocation when
their settings, data and code are unchanged (`--force` recomputes), so an interrupted bench loses nothing finished.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from bgad_mini.published import cpu_model
from bgad_mini.utils import write_json

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
DEFAULT_OUT = BENCH_DIR / "results" / "peers.json"
DEFAULT_VENV = BENCH_DIR / ".peers-venv"
WORKER = BENCH_DIR / "peers_worker.py"
SCHEMA = 1

# The peer venv: anomalib pinned to a release that installs around the torch this machine has on disk.
ANOMALIB_VERSION = "2.7.0"
PEER_REQUIREMENTS = ("torch==2.14.1", "torchvision==0.29.1", f"anomalib=={ANOMALIB_VERSION}")
HF_REPO = "timm/tf_efficientnet_lite0.in1k"  # where timm looks for tf_efficientnet_lite0's pretrained weights

PEERS = ("cflow", "patchcore")
OURS = ("nf", "bgad")
METHODS = PEERS + OURS
SEEN_TYPE = "missing"
N_KNOWN = 10
SETTING = "one-class"
FEATURE_TOL = 1e-4
# anomalib's CFlow config (examples/configs/model/cflow.yaml) says max_epochs 50 with early stopping on the *test*
# pixel AUROC (patience 2). Early stopping on test labels is not used here, and 50 epochs cost about 50 min per
# category on one CPU thread (one epoch of 100 images: ~60 s), so the default is 10 (~10 min).
DEFAULT_CFLOW_EPOCHS = 10
CFLOW_EPOCHS_NOTE = ("anomalib's cflow.yaml: max_epochs 50 with EarlyStopping(monitor=pixel_AUROC, patience=2) on the "
                     "test set; here no early stopping (it reads test labels) and a smaller max_epochs, because one "
                     "epoch of 100 images takes about 60 s on one CPU thread (50 epochs: about 50 min per category)")


class BenchError(Exception):
    """A one-line problem with what the bench needs; printed as `bench_peers: error: ...` with exit code 2."""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--categories", nargs="+", default=["brick", "grass", "gravel"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--data-root", default=str(ROOT / "data" / "synthetic"))
    p.add_argument("--out", default=str(DEFAULT_OUT), help="JSON output (default bench/results/peers.json)")
    p.add_argument("--work-dir", default=None, help="run folders and maps (default: bench/results/peers_work)")
    p.add_argument("--venv", default=str(DEFAULT_VENV), help="the peer venv (default bench/.peers-venv)")
    p.add_argument("--cflow-epochs", type=int, default=DEFAULT_CFLOW_EPOCHS,
                   help=f"CFlow's max_epochs (default {DEFAULT_CFLOW_EPOCHS}; anomalib's config says 50, see the JSON)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of every run (default 1)")
    p.add_argument("--force", action="store_true", help="recompute finished entries too")
    p.add_argument("--_ours-job", dest="ours_job", default=None, help=argparse.SUPPRESS)  # internal: one nf/bgad run
    return p.parse_args(argv)


def _limit_threads(threads: int) -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)


def _say(msg: str) -> None:
    print(f"[bench_peers {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


# ----------------------------------------------------------------------------------------------
# The peer venv and the offline weights
# ----------------------------------------------------------------------------------------------
def ensure_peer_venv(venv: Path) -> Path:
    """The peer venv's python, creating the venv and installing anomalib into it when its stamp is missing."""
    py = venv / "bin" / "python"
    stamp = venv / ".bench-peers-stamp"
    wanted = "\n".join(PEER_REQUIREMENTS)
    if py.is_file() and stamp.is_file() and stamp.read_text() == wanted:
        return py
    log = venv / "install.log"
    _say(f"installing {' '.join(PEER_REQUIREMENTS)} into {venv} (a few minutes; log: {log})")
    if not py.is_file():
        rc = subprocess.run([sys.executable, "-m", "venv", str(venv)]).returncode
        if rc != 0 or not py.is_file():
            raise BenchError(f"could not create the peer venv {venv} with {sys.executable} -m venv (exit {rc})")
    with open(log, "w") as f:
        for cmd in ([str(py), "-m", "pip", "install", "--upgrade", "pip"],
                    [str(py), "-m", "pip", "install", *PEER_REQUIREMENTS]):
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode
            if rc != 0:
                raise BenchError(f"`{shlex.join(cmd)}` failed (exit {rc}); see {log}")
    stamp.write_text(wanted)
    return py


def write_offline_weights(hf_home: Path) -> dict[str, Any]:
    """bgad_mini's EfficientNet-Lite0 weights as timm's `tf_efficientnet_lite0.in1k` in a Hugging Face cache."""
    import torch
    from safetensors.torch import save_file

    from bgad_mini.backbone import lite0_state_dict, lite0_weight_file

    repo_dir = hf_home / "hub" / ("models--" + HF_REPO.replace("/", "--"))
    repo_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".safetensors", dir=repo_dir)
    os.close(fd)
    state = {k: v.detach().to(torch.float32).contiguous() for k, v in lite0_state_dict().items()}
    save_file(state, tmp, metadata={"format": "pt"})
    sha = hashlib.sha1(Path(tmp).read_bytes()).hexdigest()
    snapshot = repo_dir / "snapshots" / sha
    snapshot.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, snapshot / "model.safetensors")
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(sha)
    return {"source": lite0_weight_file(), "hf_repo": HF_REPO, "file": str(snapshot / "model.safetensors"),
            "sha1": sha, "tensors": len(state),
            "how": "bgad_mini.backbone.lite0_state_dict() (the package's 296 tensors mapped in order onto timm "
                   "tf_efficientnet_lite0) saved as model.safetensors in a Hugging Face cache layout; the worker "
                   "runs with HF_HOME pointing there and HF_HUB_OFFLINE=1"}


def worker_env(venv: Path, threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HOME=str(venv / "hf"), HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore", PYTHONUNBUFFERED="1",
               OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    env.pop("PYTHONPATH", None)
    return env


def run_worker(cmd: list[str], env: dict[str, str], log: Path, what: str) -> tuple[float, float]:
    """Run a child, echo its progress lines, keep its full output in `log`; (wall s, CPU s of the child)."""
    cpu0, t0 = _children_cpu(), time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
        assert proc.stdout is not None
        for line in proc.stdout:
            f.write(line)
            if line.startswith("  ") or "error" in line.lower():
                print(line.rstrip()[:200], flush=True)
        rc = proc.wait()
    if rc != 0:
        tail = [ln for ln in log.read_text().splitlines() if ln.strip()][-1:] or ["(no output)"]
        raise BenchError(f"{what} failed (exit {rc}): {tail[0][:300]}; full log: {log}")
    return time.perf_counter() - t0, _children_cpu() - cpu0


def check_weights(py: Path, venv: Path, work: Path, data, threads: int) -> dict[str, Any]:
    """anomalib's CFlow and PatchCore encoders give bgad_mini's features of one test image (max |diff| <= 1e-4)."""
    import numpy as np

    from bgad_mini.backbone import build_extractor, extract
    from bgad_mini.data import load_image, normalize

    folder = work / "weights_check"
    folder.mkdir(parents=True, exist_ok=True)
    item = data.split.test[-1]
    image = load_image(item.path, 256)[None]
    np.save(folder / "input.npy", normalize(image))
    ours = [f.numpy() for f in extract(build_extractor("efficientnet_lite0", (1, 2, 3, 4)), image)]  # strides 4..32
    (folder / "job.json").write_text(json.dumps({"mode": "features", "out": str(folder), "threads": threads}))
    run_worker([str(py), str(WORKER), str(folder / "job.json")], worker_env(venv, threads), folder / "worker.log",
               "the weight check in the peer venv")
    by_stride = {4: ours[0], 8: ours[1], 16: ours[2]}
    result: dict[str, Any] = {"image": item.name, "tolerance": FEATURE_TOL}
    for method, strides in (("cflow", (4, 8, 16)), ("patchcore", (8, 16))):
        diffs = []
        for i, stride in enumerate(strides):
            theirs = np.load(folder / f"features_{method}_{i}.npy")
            if theirs.shape != by_stride[stride].shape:
                raise BenchError(f"weight check: {method}'s level {i} has shape {theirs.shape}, bgad_mini's stride-"
                                 f"{stride} features {by_stride[stride].shape}; the layers do not match")
            diffs.append(float(np.abs(theirs - by_stride[stride]).max()))
        result[f"{method}_max_abs_diff"] = diffs
        if max(diffs) > FEATURE_TOL:
            raise BenchError(f"weight check: anomalib's {method} features differ from bgad_mini's by {max(diffs):.3g} "
                             f"(> {FEATURE_TOL}); anomalib did not load the offline EfficientNet-Lite0 weights")
    result["passed"] = True
    return result


# ----------------------------------------------------------------------------------------------
# Data: the one-class split every method is tested on
# ----------------------------------------------------------------------------------------------
def prepare(data_root: str, category: str, seed: int):
    from bgad_mini.config import Config
    from bgad_mini.errors import BgadError
    from bgad_mini.pipeline import prepare_data

    if not (Path(data_root) / category).is_dir():
        raise BenchError(f"no category {category!r} under {data_root}; make the offline data with `make data`")
    cfg = Config.from_profile("book", category=category, data_root=data_root, known_types=(SEEN_TYPE,),
                              setting=SETTING, n_known=N_KNOWN, seed=seed)
    try:
        return prepare_data(cfg, verbose=False)
    except BgadError as exc:
        raise BenchError(str(exc)) from None


def data_fingerprint(data) -> dict[str, Any]:
    meta = Path(data.cfg.data_root) / "meta.json"
    return {"meta_sha256": hashlib.sha256(meta.read_bytes()).hexdigest()[:16] if meta.is_file() else None,
            "train": _digest([Path(it.path).name for it in data.category.train]),
            "test": _digest([it.name for it in data.split.test]),
            "known": [it.name for it in data.split.known]}


def code_fingerprint(paths: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def score_maps(maps, data, extra_scores=None, scores=None) -> dict[str, Any]:
    """bgad_mini's metrics of `maps` on `split.test` (the same call for every method); `scores`: image scores
    when they are not the maps' maxima (bgad-mini's default score), `extra_scores`: a second image score."""
    import numpy as np

    from bgad_mini.data import load_items
    from bgad_mini.evaluate import evaluate, image_auroc

    _, masks = load_items(data.split.test, data.cfg.img_size)
    if maps.shape != masks.shape:
        raise BenchError(f"maps have shape {maps.shape}, masks {masks.shape}: not the same test images or size")
    labels = np.array([it.label for it in data.split.test])
    types = [it.defect_type for it in data.split.test]
    kw = {} if scores is None else {"scores": scores}
    ev = evaluate(maps, masks, labels, types, seen_types=data.split.seen_types, fpr_limit=data.cfg.pro_fpr_limit,
                  official_pro=True, **kw)
    out = {k: ev[k] for k in ("metrics", "metrics_unseen", "metrics_seen", "metrics_by_type")}
    if extra_scores is not None:
        unseen = np.isin(types, data.split.unseen_types) | (labels == 0)
        out["image_auroc_own_score"] = {"all": image_auroc(labels, extra_scores),
                                        "unseen": image_auroc(labels[unseen], np.asarray(extra_scores)[unseen])}
    return out


# ----------------------------------------------------------------------------------------------
# One entry
# ----------------------------------------------------------------------------------------------
def run_peer(method: str, data, seed: int, args, py: Path, venv: Path, folder: Path) -> dict[str, Any]:
    import numpy as np

    job = {"method": method, "seed": seed, "threads": args.threads, "out": str(folder),
           "train": [str(Path(it.path).resolve()) for it in data.category.train],
           "test": [str(Path(it.path).resolve()) for it in data.split.test],
           "train_batch_size": 32, "coreset_sampling_ratio": 0.1, "num_neighbors": 9}
    if method == "cflow":
        job["max_epochs"] = args.cflow_epochs
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "job.json").write_text(json.dumps(job, indent=1))
    wall, cpu = run_worker([str(py), str(WORKER), str(folder / "job.json")], worker_env(venv, args.threads),
                           folder / "worker.log", f"anomalib {method} on {data.cfg.category}")
    info = json.loads((folder / "worker.json").read_text())
    maps, scores = np.load(folder / "maps.npy"), np.load(folder / "scores.npy")
    if len(maps) != len(data.split.test):
        raise BenchError(f"{method} returned {len(maps)} maps for {len(data.split.test)} test images")
    entry = score_maps(maps, data, extra_scores=scores)
    entry.update(
        train={**info["train"]}, infer={**info["infer"], "per_image_ms": round(1000 * info["infer"]["wall_s"] / len(maps), 1)},
        process={"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "note": "the whole worker: imports, setup, training, inference, writing"},
        torch_threads=info["torch_threads"], versions=info["versions"], layers=info["layers"],
        settings={"backbone": info["backbone"], "img_size": 256, "crop": None, "train_batch_size": 32,
                  "test_batch_size": 1, **({"max_epochs": args.cflow_epochs, "epochs_run": info["epochs_run"]}
                                           if method == "cflow" else
                                           {"coreset_sampling_ratio": 0.1, "num_neighbors": 9,
                                            "memory_bank": info.get("memory_bank")})},
        score="anomalib's raw anomaly map of each test image alone (no post-processing); image score = bgad_mini's "
              "image_scores(map); image_auroc_own_score uses anomalib's pred_score")
    return entry


def run_ours(method: str, data, seed: int, args, folder: Path) -> dict[str, Any]:
    """A `bgad_mini.runs.load_or_run` in a child process of the project venv (`--_ours-job`), metrics from results.json."""
    folder.mkdir(parents=True, exist_ok=True)
    run_dir = folder / "run"
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a fresh run, so that its times are measured
    job = {"method": method, "category": data.cfg.category, "seed": seed, "data_root": data.cfg.data_root,
           "threads": args.threads, "out": str(run_dir), "cache_dir": str(folder / "cache")}
    (folder / "job.json").write_text(json.dumps(job, indent=1))
    env = dict(os.environ, PYTHONUNBUFFERED="1", **{v: str(args.threads) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
    wall, cpu = run_worker([sys.executable, str(Path(__file__).resolve()), "--_ours-job", str(folder / "job.json")],
                           env, folder / "worker.log", f"bgad-mini {method} on {data.cfg.category}")
    shutil.rmtree(folder / "cache", ignore_errors=True)
    res = json.loads((run_dir / "results.json").read_text())
    times = json.loads((folder / "times.json").read_text())
    if res.get("n_test") != len(data.split.test):
        raise BenchError(f"{method} results.json has n_test={res.get('n_test')}, the split has {len(data.split.test)} "
                         "test images: not the same test set")
    if sorted(res.get("known_images", [])) != sorted(it.name for it in data.split.known):
        raise BenchError(f"{method} results.json drew other known anomalies than the bench's split")
    entry: dict[str, Any] = {k: res.get(k) for k in ("metrics", "metrics_unseen", "metrics_seen", "metrics_by_type")}
    for k in ("metrics_official", "metrics_official_unseen", "metrics_official_seen"):
        if res.get(k) is not None:
            entry[k] = res[k]
    import numpy as np

    scores_file = folder / "scores.npy"
    rescored = score_maps(np.load(folder / "maps.npy"), data,
                          scores=np.load(scores_file) if times["infer"].get("score_sigma") else None)
    entry["check_one_by_one"] = {
        "what": "the maps of the one-image-at-a-time pass, scored by the bench; max |difference| from results.json",
        "max_abs_diff": max(abs(rescored[g][k] - entry[g][k]) for g in ("metrics", "metrics_unseen")
                            for k in ("image_auroc", "pixel_auroc", "pro") if entry.get(g) and entry[g].get(k) is not None),
        "metrics": rescored["metrics"], "metrics_unseen": rescored["metrics_unseen"]}
    stages_wall, stages_cpu = res["timings"], times["cpu_s"]
    train_stages = ("data", "features", "train")
    entry.update(
        train={"wall_s": round(sum(stages_wall.get(k, 0.0) for k in train_stages), 3),
               "cpu_s": round(sum(stages_cpu.get(k, 0.0) for k in train_stages), 3)},
        infer={**times["infer"], "per_image_ms": round(1000 * times["infer"]["wall_s"] / max(res["n_test"], 1), 1)},
        timing_note="train = results.json stages data + features + train: reading, backbone features of the train AND "
                    "test images (cold cache), phase 1 (+ phase 2 for bgad); infer = a separate pass over the test "
                    "images one at a time, as the peers: read, backbone, flows, inductive map (no metrics). The "
                    "pipeline's own evaluate stage (batch maps of both scores and every metric) is in `stages`",
        stages={"wall_s": res["timings"], "cpu_s": times["cpu_s"]},
        process={"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "note": "the whole child: imports, run, figure"},
        torch_threads=res.get("threads"), versions=res.get("versions"), n_test=res["n_test"],
        settings={k: res["config"].get(k) for k in ("profile", "img_size", "backbone", "stages", "phase1_epochs",
                                                     "phase2_epochs", "patches_per_image", "flow_batch", "lr",
                                                     "coupling_blocks", "share_phase1")},
        score=res.get("score"), run_dir=str(run_dir))
    return entry


def ours_child(job_path: str) -> None:
    """Inside the child: `runs.load_or_run` with a Timer that also records CPU seconds per stage."""
    job = json.loads(Path(job_path).read_text())
    from bgad_mini import pipeline, runs
    from bgad_mini.config import Config

    cpu_by_stage: dict[str, float] = {}
    base = pipeline.Timer

    class CpuTimer(base):  # type: ignore[misc, valid-type]
        def __call__(self, name: str):
            outer = super().__call__(name)

            class _Both:
                def __enter__(self_inner):
                    self_inner.c0 = time.process_time()
                    return outer.__enter__()

                def __exit__(self_inner, *exc):
                    cpu_by_stage[name] = cpu_by_stage.get(name, 0.0) + time.process_time() - self_inner.c0
                    return outer.__exit__(*exc)

            return _Both()

    pipeline.Timer = CpuTimer
    cfg = Config.from_profile("book", method=job["method"], category=job["category"], known_types=(SEEN_TYPE,),
                              setting=SETTING, n_known=N_KNOWN, seed=job["seed"], threads=job["threads"],
                              data_root=job["data_root"], cache_dir=job["cache_dir"], share_phase1=False)
    c0 = time.process_time()
    res = runs.load_or_run(cfg, job["out"], progress=False, force=True).results
    times = {"cpu_total_s": round(time.process_time() - c0, 3), "cpu_s": {k: round(v, 3) for k, v in cpu_by_stage.items()}}
    print(f"  {job['method']} trained and evaluated: {times['cpu_total_s']:.1f} s CPU; now scoring each test image alone",
          flush=True)
    times["infer"] = score_one_by_one(job["out"], res, pipeline.prepare_data(cfg, verbose=False), Path(job_path).parent)
    (Path(job_path).parent / "times.json").write_text(json.dumps(times, indent=2))


def score_one_by_one(run_dir: str, res: dict, data, folder: Path) -> dict[str, float]:
    """Inference as the peers do it: each test image alone, from its file to its (inductive) anomaly map.

    Backbone features are rounded to float16 as the pipeline's feature cache stores them, so the maps are the
    pipeline's own; `maps.npy` is rescored by the bench and compared with results.json.
    """
    import numpy as np
    import torch

    from bgad_mini.backbone import build_extractor, extract
    from bgad_mini.data import load_image
    from bgad_mini.evaluate import inductive_maps, smooth_maps
    from bgad_mini.flow import level_log_likelihoods
    from bgad_mini.runs import load_flows

    reference = res.get("score_reference")
    if not reference:
        raise BenchError("results.json has no score_reference (the inductive score's m_l); cannot score images alone")
    flows, cfg = load_flows(run_dir)
    sigma = float(getattr(cfg, "score_sigma", 0.0))  # the default score: pixel maps smoothed, image score from the raw map
    extractor = build_extractor(cfg.backbone, cfg.stages)
    maps, scores = [], []
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.no_grad():
        for it in data.split.test:
            feats = [f.half().float() for f in extract(extractor, load_image(it.path, cfg.img_size)[None])]
            raw = inductive_maps(level_log_likelihoods(flows, feats, cfg.pos_dim), reference, cfg.img_size)
            scores.append(float(raw[0].max()))
            maps.append(smooth_maps(raw, sigma)[0])
    out = {"wall_s": round(time.perf_counter() - t0, 3), "cpu_s": round(time.process_time() - c0, 3), "score_sigma": sigma}
    np.save(folder / "maps.npy", np.stack(maps).astype(np.float32))
    np.save(folder / "scores.npy", np.asarray(scores, np.float32))
    return out


# ----------------------------------------------------------------------------------------------
# The report
# ----------------------------------------------------------------------------------------------
def add_ratios(entries: dict[str, dict]) -> None:
    """Each method's train / infer / total wall and CPU seconds divided by CFlow's on the same category and seed."""
    for key, e in entries.items():
        method, cat, seed = key.split("/")
        ref = entries.get(f"cflow/{cat}/{seed}")
        if ref is None:
            e.pop("vs_cflow", None)
            continue
        ratios = {}
        for clock in ("wall_s", "cpu_s"):
            for part in ("train", "infer"):
                ratios[f"{part}_{clock}"] = round(e[part][clock] / ref[part][clock], 4) if ref[part][clock] else None
            tot, ref_tot = e["train"][clock] + e["infer"][clock], ref["train"][clock] + ref["infer"][clock]
            ratios[f"total_{clock}"] = round(tot / ref_tot, 4) if ref_tot else None
        e["vs_cflow"] = ratios


def table(entries: dict[str, dict]) -> str:
    def f(x: Any) -> str:
        return "  -  " if x is None else f"{x:.3f}"

    head = ("| method | category | seed | img AUROC | pix AUROC | PRO | img AUROC unseen | pix AUROC unseen | "
            "PRO unseen | train wall s | train CPU s | infer wall s | infer CPU s | total wall / CFlow |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for key in sorted(entries, key=lambda k: (k.split("/")[1], int(k.split("/")[2]), METHODS.index(k.split("/")[0]))):
        e = entries[key]
        method, cat, seed = key.split("/")
        m, u = e.get("metrics") or {}, e.get("metrics_unseen") or {}
        ratio = (e.get("vs_cflow") or {}).get("total_wall_s")
        lines.append(f"| {method} | {cat} | {seed} | {f(m.get('image_auroc'))} | {f(m.get('pixel_auroc'))} | "
                     f"{f(m.get('pro'))} | {f(u.get('image_auroc'))} | {f(u.get('pixel_auroc'))} | {f(u.get('pro'))} | "
                     f"{e['train']['wall_s']:.1f} | {e['train']['cpu_s']:.1f} | {e['infer']['wall_s']:.1f} | "
                     f"{e['infer']['cpu_s']:.1f} | {f(ratio)} |")
    return "\n".join(lines)


def machine(threads: int) -> dict[str, Any]:
    return {"cpu_model": cpu_model(), "cores": os.cpu_count(), "torch_threads": threads, "platform": platform.platform(),
            "python": platform.python_version(), "loadavg_at_start": list(os.getloadavg())}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    _limit_threads(args.threads)
    if args.ours_job:
        ours_child(args.ours_job)
        return 0
    out = Path(args.out)
    work = Path(args.work_dir) if args.work_dir else out.parent / "peers_work"
    venv = Path(args.venv).resolve()
    if args.cflow_epochs < 1:
        raise BenchError("--cflow-epochs must be >= 1")

    import torch

    torch.set_num_threads(args.threads)
    from bgad_mini.pipeline import package_versions

    report: dict[str, Any] = {}
    if out.is_file():
        try:
            report = json.loads(out.read_text())
        except json.JSONDecodeError:
            _say(f"{out} is not valid JSON; starting a new one")
    if report.get("schema") != SCHEMA:
        report = {}
    entries: dict[str, dict] = report.get("entries", {})
    report.update(
        schema=SCHEMA, bench="peers", date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        command=shlex.join([Path(sys.executable).name, *sys.argv]), machine=machine(args.threads),
        protocol={"data_root": args.data_root, "setting": SETTING, "seen_types": [SEEN_TYPE], "n_known": N_KNOWN,
                  "test_set": "split_known_anomalies(cat.test, 10, 'one-class', ('missing',), seed).test, same for "
                              "every method; peers train on the normal training images only",
                  "metrics": "bgad_mini.evaluate.evaluate(maps, masks, labels, types, seen_types, fpr_limit=0.3, "
                             "official_pro=True) on 256 px maps and masks",
                  "cflow_max_epochs": args.cflow_epochs, "cflow_epochs_note": CFLOW_EPOCHS_NOTE,
                  "peers": "anomalib Engine.fit (CPU, 1 device, no logger), then the torch model on each test image "
                           "alone; backbone tf_efficientnet_lite0 with bgad_mini's offline weights",
                  "ours": "bgad_mini.runs.load_or_run, book profile, share_phase1=false, fresh feature cache"},
        versions={"project": package_versions()})

    py = ensure_peer_venv(venv)
    report["weights"] = write_offline_weights(venv / "hf")
    peer_code = code_fingerprint([WORKER])

    checked = False
    todo = [(s, c, m) for s in args.seeds for c in args.categories for m in args.methods]
    for i, (seed, cat, method) in enumerate(todo, 1):
        key = f"{method}/{cat}/{seed}"
        data = prepare(args.data_root, cat, seed)
        if method in PEERS and not checked:
            _say("checking that anomalib's encoders load bgad_mini's weights (features of one test image)")
            report["weights"]["check"] = check_weights(py, venv, work, data, args.threads)
            _say(f"weights check passed: max |diff| cflow {max(report['weights']['check']['cflow_max_abs_diff']):.2g}, "
                 f"patchcore {max(report['weights']['check']['patchcore_max_abs_diff']):.2g}")
            checked = True
        ident = {"data": data_fingerprint(data), "threads": args.threads,
                 # bgad_mini may change between entries of one invocation: fingerprint it for each entry
                 "code": peer_code if method in PEERS else
                 code_fingerprint([*(ROOT / "bgad_mini").glob("*.py"), Path(__file__).resolve()]),
                 **({"cflow_epochs": args.cflow_epochs, "anomalib": ANOMALIB_VERSION} if method == "cflow" else {}),
                 **({"anomalib": ANOMALIB_VERSION} if method == "patchcore" else {})}
        old = entries.get(key)
        if old is not None and old.get("identity") == _digest(ident) and not args.force:
            _say(f"[{i}/{len(todo)}] {key}: finished before, reused")
            continue
        _say(f"[{i}/{len(todo)}] {key}: running ({len(data.category.train)} train, {len(data.split.test)} test images)")
        folder = work / f"{method}_{cat}_s{seed}"
        t0 = time.perf_counter()
        entry = (run_peer(method, data, seed, args, py, venv, folder) if method in PEERS
                 else run_ours(method, data, seed, args, folder))
        entry.update(identity=_digest(ident), method=method, category=cat, seed=seed,
                     n_test=len(data.split.test), finished=datetime.datetime.now().astimezone().isoformat(timespec="seconds"))
        entries[key] = entry
        add_ratios(entries)
        report["entries"] = entries
        if method in PEERS:
            report["versions"]["peers"] = entry["versions"]
        write_json(out, report)
        m = entry["metrics"]
        _say(f"{key}: image AUROC {m['image_auroc']:.3f}, pixel AUROC {m['pixel_auroc']:.3f}, PRO {m['pro']:.3f}; "
             f"{time.perf_counter() - t0:.0f} s; saved to {out}")
    add_ratios(entries)
    report["entries"] = entries
    peer_versions = [e["versions"] for k, e in entries.items() if k.split("/")[0] in PEERS]
    if peer_versions:
        report["versions"]["peers"] = peer_versions[-1]
    report["table"] = table(entries)
    write_json(out, report)
    print(report["table"])
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"bench_peers: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("bench_peers: interrupted; finished entries are kept in the JSON", file=sys.stderr)
        sys.exit(130)
