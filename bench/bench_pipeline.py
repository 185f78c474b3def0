"""Benchmark of one category's pipeline on this machine: backbone, flow training, evaluation, memory, and the
cached-features training loop against a loop that recomputes the backbone every epoch (as the official code).

Writes JSON (default `bench/results/pipeline.json`) and prints a short summary. It never asserts on a time:
times depend on the machine and on what else runs on it (`loadavg_*` records that).

    python bench/bench_pipeline.py --data-root /tmp/synth_book --category brick --threads 1 --epochs 2
    python bench/bench_pipeline.py --profile smoke --data-root /tmp/synth_smoke --quick

Every time is wall-clock (`time.perf_counter`); the epoch comparison also records the process CPU time
(`time.process_time`), which other processes on the same cores disturb less.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = BENCH_DIR / "results" / "pipeline.json"
BACKBONE_BATCH = 4  # images per backbone call when timing the backbone alone (batch 1-4 is fastest per image on CPU)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default=None, help="dataset in the MVTec layout (default: the profile's, data/synthetic)")
    p.add_argument("--category", default="brick")
    p.add_argument("--profile", default="book", choices=("smoke", "book", "paper"))
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1, reproducible on a shared machine; 0 = every core this process may use)")
    p.add_argument("--epochs", type=int, default=2, help="epochs of each training loop in the comparison")
    p.add_argument("--out", default=str(DEFAULT_OUT), help=f"JSON output (default {DEFAULT_OUT.relative_to(BENCH_DIR.parent)})")
    p.add_argument("--cache-dir", default=None,
                   help="feature cache folder (default: a fresh temporary one, removed at the end, so the build is timed cold)")
    p.add_argument("--throughput-chunks", type=int, default=None, help="timed flow chunks per level (default 6, quick 2)")
    p.add_argument("--quick", action="store_true",
                   help="a fast look: 16 training images, 24 test images, 1 epoch, 2 timed chunks per level")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def _limit_threads(threads: int) -> int:
    """The thread budget, set in the environment before torch is imported (OpenMP reads it once)."""
    if threads <= 0:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    return threads


def _evenly(items: list, n: int | None) -> list:
    """At most n items spread evenly over the list (keeps every defect type and the good images in a sorted test list)."""
    if n is None or n >= len(items):
        return list(items)
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*.npz"))


def _cpu_wall() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


# ----------------------------------------------------------------------------------------------
# 1. backbone alone
# ----------------------------------------------------------------------------------------------
def bench_backbone(extractor, images, device: str) -> dict[str, Any]:
    """ms per image of the frozen backbone at batch 4, on images already in memory; the first batch is a warm-up."""
    from bgad_mini.backbone import extract

    extract(extractor, images[:BACKBONE_BATCH], device, BACKBONE_BATCH)  # warm-up, not timed
    rest = images[BACKBONE_BATCH:]
    t0 = time.perf_counter()
    for start in range(0, len(rest), BACKBONE_BATCH):
        extract(extractor, rest[start:start + BACKBONE_BATCH], device, BACKBONE_BATCH)
    seconds = time.perf_counter() - t0
    return {"backbone_ms_per_image": 1e3 * seconds / max(len(rest), 1), "backbone_timed_images": len(rest),
            "backbone_batch_images": BACKBONE_BATCH, "backbone_total_s": seconds}


# ----------------------------------------------------------------------------------------------
# 2. flow training throughput, per level, on cached features
# ----------------------------------------------------------------------------------------------
def bench_flow_throughput(cfg, feats: list, n_chunks: int, device: str) -> list[dict[str, Any]]:
    """Patches per second of forward + backward + Adam over chunks of cfg.flow_batch, one level at a time."""
    import numpy as np
    import torch

    from bgad_mini.flow import ConditionalFlows, positional_encoding_2d
    from bgad_mini.train import sample_patches

    torch.manual_seed(cfg.seed)
    flows = ConditionalFlows([f.shape[1] for f in feats], cfg.pos_dim, cfg.coupling_blocks, cfg.clamp_alpha).to(device)
    flows.train()
    gen = torch.Generator().manual_seed(cfg.seed)
    out = []
    for level, f in enumerate(feats):
        n, c, h, w = f.shape
        per_image = cfg.patches_per_image if 0 < cfg.patches_per_image < h * w else h * w
        need = (n_chunks + 1) * cfg.flow_batch  # +1: the warm-up chunk
        n_img = min(n, math.ceil(need / per_image))
        x_all = torch.from_numpy(np.ascontiguousarray(f[:n_img])).float().to(device)
        pos = positional_encoding_2d(cfg.pos_dim, h, w).to(device)
        x, cond, _ = sample_patches(x_all, torch.zeros(n_img, h, w, dtype=torch.bool, device=device), per_image, pos, gen)
        # repeat the sample if the category is too small to fill every chunk (speed does not depend on values)
        reps = math.ceil(need / x.shape[0])
        x, cond = x.repeat(reps, 1)[:need], cond.repeat(reps, 1)[:need]
        opt = torch.optim.Adam(flows.flows[level].parameters(), lr=cfg.lr)
        timed_patches, t0 = 0, 0.0
        for i in range(n_chunks + 1):
            if i == 1:
                t0 = time.perf_counter()
            sl = slice(i * cfg.flow_batch, (i + 1) * cfg.flow_batch)
            loss = -flows.log_likelihood(level, x[sl], cond[sl]).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if i >= 1:
                timed_patches += x[sl].shape[0]
        seconds = time.perf_counter() - t0
        out.append({"level": level, "channels": c, "grid": [h, w], "timed_chunks": n_chunks,
                    "chunk_patches": cfg.flow_batch, "timed_patches": timed_patches, "seconds": seconds,
                    "patches_per_s": timed_patches / seconds})
    return out


# ----------------------------------------------------------------------------------------------
# 5. the recompute loop (what the official code does): backbone on every batch of images, every epoch
# ----------------------------------------------------------------------------------------------
def recompute_training(flows, extractor, items, cfg, device: str, on_epoch_end: Callable[[int, dict], None]) -> None:
    """Train `flows` for cfg.phase1_epochs epochs with L_ml, reading and embedding every image again each epoch.

    Same images, batches (cfg.batch_images), patches per image, chunking (cfg.flow_batch) and per-batch lr
    schedule as `bgad_mini.train.train_flows`; only where the features come from differs: the images are read
    from disk and go through the frozen backbone in every batch, as the official code's DataLoader + encoder do.
    """
    import numpy as np
    import torch

    from bgad_mini.backbone import extract
    from bgad_mini.data import load_items
    from bgad_mini.flow import positional_encoding_2d
    from bgad_mini.losses import ml_loss
    from bgad_mini.train import learning_rate, sample_patches, split_chunks

    optims = [torch.optim.Adam(fl.parameters(), lr=cfg.lr) for fl in flows.flows]
    pos: list = [None] * len(flows)
    n_images = len(items)
    flows.train()
    for epoch in range(cfg.phase1_epochs):
        w0, c0 = _cpu_wall()
        load_s = backbone_s = 0.0
        n_patches = 0
        gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        order = np.random.default_rng([cfg.seed, epoch]).permutation(n_images)
        n_batches = math.ceil(n_images / cfg.batch_images)
        for b, start in enumerate(range(0, n_images, cfg.batch_images)):
            idx = np.sort(order[start:start + cfg.batch_images])
            t = time.perf_counter()
            images, _ = load_items([items[i] for i in idx], cfg.img_size)
            load_s += time.perf_counter() - t
            t = time.perf_counter()
            level_feats = extract(extractor, images, device, cfg.batch_images)
            backbone_s += time.perf_counter() - t
            lr = learning_rate(epoch + b / n_batches, cfg.total_epochs, cfg.warmup_epochs, cfg.lr)
            for level, f in enumerate(level_feats):
                for g in optims[level].param_groups:
                    g["lr"] = lr
                f = f.to(device)
                _, _, h, w = f.shape
                if pos[level] is None:
                    pos[level] = positional_encoding_2d(cfg.pos_dim, h, w).to(device)
                abn = torch.zeros(f.shape[0], h, w, dtype=torch.bool, device=device)
                x, cond, lab = sample_patches(f, abn, cfg.patches_per_image, pos[level], gen)
                n_patches += x.shape[0]
                for chunk in split_chunks(x.shape[0], cfg.flow_batch, gen):
                    loss = ml_loss(flows.log_likelihood(level, x[chunk], cond[chunk])[~lab[chunk]])
                    optims[level].zero_grad(set_to_none=True)
                    loss.backward()
                    optims[level].step()
        w1, c1 = _cpu_wall()
        on_epoch_end(epoch, {"wall_s": w1 - w0, "cpu_s": c1 - c0, "image_load_s": load_s, "backbone_s": backbone_s,
                             "flow_s": (w1 - w0) - load_s - backbone_s, "patches": n_patches})
    flows.eval()


def expected_patches(feats: list, per_image: int) -> int:
    """Patches one cached epoch trains on: every image, per level min(per_image, h·w) locations (0 = all)."""
    total = 0
    for f in feats:
        n, _, h, w = f.shape
        total += n * (h * w if per_image <= 0 or per_image >= h * w else per_image)
    return total


# ----------------------------------------------------------------------------------------------
# the run
# ----------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    threads_wanted = _limit_threads(args.threads)
    load_start = os.getloadavg() if hasattr(os, "getloadavg") else None

    import numpy as np
    import torch

    from bgad_mini.backbone import FeatureCache
    from bgad_mini.config import Config
    from bgad_mini.data import load_items
    from bgad_mini.evaluate import anomaly_maps, evaluate, pro_score
    from bgad_mini.flow import ConditionalFlows, level_log_likelihoods
    from bgad_mini.pipeline import package_versions, prepare_data
    from bgad_mini.train import TrainData, train_flows
    from bgad_mini.utils import peak_rss_mb, seed_everything, set_threads

    threads = set_threads(threads_wanted)
    if threads == 1:
        torch.set_num_interop_threads(1)
    epochs = 1 if args.quick else args.epochs
    n_chunks = args.throughput_chunks or (2 if args.quick else 6)
    overrides: dict[str, Any] = dict(category=args.category, threads=threads, device="cpu", seed=args.seed,
                                     phase1_epochs=epochs, phase2_epochs=0)
    if args.data_root:
        overrides["data_root"] = args.data_root
    cfg = Config.from_profile(args.profile, **overrides)
    device = "cpu"
    seed_everything(cfg.seed)
    t_all = time.perf_counter()
    rss: dict[str, float] = {}

    # data: the training images, and the test set a run evaluates (known anomalies removed)
    data = prepare_data(cfg, verbose=False)
    cfg = data.cfg
    train_items = _evenly(data.category.train, 16 if args.quick else None)
    test_items = _evenly(data.split.test, 24 if args.quick else None)

    cache_dir = args.cache_dir or tempfile.mkdtemp(prefix="bgad_bench_cache_")
    cfg = cfg.with_overrides(cache_dir=cache_dir)
    result: dict[str, Any] = {}
    try:
        # ---- 1. backbone ---------------------------------------------------------------------------
        t = time.perf_counter()
        cache = FeatureCache(cache_dir)
        extractor = cache.extractor(cfg.backbone, cfg.stages, device)
        extractor_build_s = time.perf_counter() - t
        t = time.perf_counter()
        train_images, _ = load_items(train_items, cfg.img_size)
        image_load_ms = 1e3 * (time.perf_counter() - t) / len(train_items)
        backbone = bench_backbone(extractor, train_images, device)
        del train_images
        rss["after_backbone_mib"] = peak_rss_mb()

        # ---- cache: built once (cold), then read back as a later run would --------------------------
        t = time.perf_counter()
        train_feats = cache.features(cfg.backbone, cfg.stages, cfg.img_size, train_items, device, progress=False)
        cache_build_train_s = time.perf_counter() - t
        t = time.perf_counter()
        FeatureCache(cache_dir).features(cfg.backbone, cfg.stages, cfg.img_size, train_items, device, progress=False)
        cache_load_train_s = time.perf_counter() - t
        train_cache_bytes = _folder_bytes(Path(cache_dir, "features"))
        t = time.perf_counter()
        test_feats = cache.features(cfg.backbone, cfg.stages, cfg.img_size, test_items, device, progress=False)
        cache_build_test_s = time.perf_counter() - t
        test_cache_bytes = _folder_bytes(Path(cache_dir, "features")) - train_cache_bytes
        rss["after_cache_mib"] = peak_rss_mb()

        # ---- 2. flow throughput per level -----------------------------------------------------------
        throughput = bench_flow_throughput(cfg, train_feats, n_chunks, device)
        rss["after_throughput_mib"] = peak_rss_mb()

        # ---- 5. the comparison: same flows init, images, patches, chunking ---------------------------
        channels = [f.shape[1] for f in train_feats]
        cached_epochs: list[dict] = []
        mark = list(_cpu_wall())

        def cached_end(epoch: int, record: dict) -> None:
            w, c = _cpu_wall()
            cached_epochs.append({"epoch": epoch, "wall_s": w - mark[0], "cpu_s": c - mark[1],
                                  "train_flows_reported_s": record["seconds"]})
            mark[:] = [w, c]

        torch.manual_seed(cfg.seed)
        flows = ConditionalFlows(channels, cfg.pos_dim, cfg.coupling_blocks, cfg.clamp_alpha).to(device)
        mark[:] = list(_cpu_wall())
        train_flows(flows, TrainData(train_feats), cfg, run_dir=None, device=device, progress=False,
                    on_epoch_end=cached_end)
        rss["after_cached_training_mib"] = peak_rss_mb()

        recompute_epochs: list[dict] = []
        torch.manual_seed(cfg.seed)
        flows_r = ConditionalFlows(channels, cfg.pos_dim, cfg.coupling_blocks, cfg.clamp_alpha).to(device)
        recompute_training(flows_r, extractor, train_items, cfg, device,
                           lambda e, r: recompute_epochs.append({"epoch": e, **r}))
        del flows_r
        rss["after_recompute_training_mib"] = peak_rss_mb()

        cached_s = float(np.mean([e["wall_s"] for e in cached_epochs]))
        recompute_s = float(np.mean([e["wall_s"] for e in recompute_epochs]))
        cached_cpu = float(np.mean([e["cpu_s"] for e in cached_epochs]))
        recompute_cpu = float(np.mean([e["cpu_s"] for e in recompute_epochs]))
        saving = recompute_s - cached_s
        comparison = {
            "what": ("one L_ml epoch over the same images, patches per image, chunks and flow init: 'cached' = "
                     "bgad_mini.train.train_flows on features computed once; 'recompute' = read every image and run "
                     "the frozen backbone on every batch of every epoch, as the official code does"),
            "epochs": epochs,
            "train_images": len(train_items),
            "patches_per_epoch_cached": expected_patches(train_feats, cfg.patches_per_image),
            "patches_per_epoch_recompute": recompute_epochs[0]["patches"],
            "cached_epoch_s": cached_s,
            "recompute_epoch_s": recompute_s,
            "recompute_over_cached_ratio": recompute_s / cached_s,
            "cached_epoch_cpu_s": cached_cpu,
            "recompute_epoch_cpu_s": recompute_cpu,
            "recompute_over_cached_cpu_ratio": recompute_cpu / cached_cpu,
            "recompute_image_load_s_per_epoch": float(np.mean([e["image_load_s"] for e in recompute_epochs])),
            "recompute_backbone_s_per_epoch": float(np.mean([e["backbone_s"] for e in recompute_epochs])),
            "recompute_flow_s_per_epoch": float(np.mean([e["flow_s"] for e in recompute_epochs])),
            "cache_build_train_s": cache_build_train_s,
            "cache_load_train_s": cache_load_train_s,
            "saving_s_per_epoch": saving,
            # cached total C + E·T_c equals recompute total E·T_r at E = C / (T_r − T_c)
            "break_even_epochs": cache_build_train_s / saving if saving > 0 else None,
            "break_even_epochs_warm_cache": cache_load_train_s / saving if saving > 0 else None,
            "cached_total_s_for_epochs": cache_build_train_s + epochs * cached_s,
            "recompute_total_s_for_epochs": epochs * recompute_s,
            "per_epoch_cached": cached_epochs,
            "per_epoch_recompute": recompute_epochs,
        }
        full_epochs = Config.from_profile(args.profile).total_epochs
        comparison["full_run_epochs"] = full_epochs
        comparison["full_run_saving_s"] = full_epochs * saving - cache_build_train_s  # negative: the cache costs more

        # ---- 3. evaluation ----------------------------------------------------------------------------
        import scipy.ndimage, skimage.measure, sklearn.metrics  # noqa: E401,F401  (imported before the clock starts)

        t = time.perf_counter()
        _, masks = load_items(test_items, cfg.img_size)
        mask_load_s = time.perf_counter() - t
        labels = np.array([it.label for it in test_items])
        types = [it.defect_type for it in test_items]
        masks_or_none = masks if data.category.has_masks else None
        t0 = time.perf_counter()
        logliks = level_log_likelihoods(flows, [np.asarray(f) for f in test_feats], cfg.pos_dim)
        t1 = time.perf_counter()
        maps = anomaly_maps(logliks, cfg.img_size)
        t2 = time.perf_counter()
        ev = evaluate(maps, masks_or_none, labels, types,
                      seen_types=data.split.seen_types if data.split.known else None, fpr_limit=cfg.pro_fpr_limit)
        t3 = time.perf_counter()
        pro = pro_score(masks_or_none, maps, fpr_limit=cfg.pro_fpr_limit)
        t4 = time.perf_counter()
        evaluation = {
            "test_images": len(test_items),
            "mask_load_s": mask_load_s,
            "level_log_likelihoods_s": t1 - t0,
            "anomaly_maps_s": t2 - t1,
            "evaluate_s": t3 - t2,
            "evaluation_total_s": t3 - t0,
            "pro_score_s": t4 - t3,
            "evaluate_pro_calls": 1 + sum(v is not None for v in ev["metrics_by_type"].values())
                                  + (ev["metrics_seen"] is not None) + (ev["metrics_unseen"] is not None),
            "metrics_after_epochs": ev["metrics"],
            "pro_score_value": pro,
        }
        rss["after_evaluation_mib"] = peak_rss_mb()

        load_end = os.getloadavg() if hasattr(os, "getloadavg") else None
        result = {
            "benchmark": "bench_pipeline",
            "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": {
                "cpu_count": os.cpu_count(),
                "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
                "torch_threads": torch.get_num_threads(),
                "torch_interop_threads": torch.get_num_interop_threads(),
                "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                "torch_version": torch.__version__,
                "platform": platform.platform(),
                "processor": platform.processor() or platform.machine(),
                "python": platform.python_version(),
                "loadavg_1min_start": load_start[0] if load_start else None,
                "loadavg_1min_end": load_end[0] if load_end else None,
            },
            "versions": package_versions(),
            "args": {k: v for k, v in vars(args).items()},
            "config": {**cfg.to_dict(), "cache_dir": "(temporary)" if args.cache_dir is None else cfg.cache_dir},
            "data": {"data_root": cfg.data_root, "category": cfg.category, "train_images": len(train_items),
                     "test_images": len(test_items), "quick_subset": args.quick},
            "backbone": {
                "name": cfg.backbone, "img_size_px": cfg.img_size, "extractor_build_s": extractor_build_s,
                "image_load_ms_per_image": image_load_ms, **backbone,
            },
            "feature_cache": {
                "cache_build_train_s": cache_build_train_s, "cache_build_train_ms_per_image": 1e3 * cache_build_train_s / len(train_items),
                "cache_load_train_s": cache_load_train_s, "cache_build_test_s": cache_build_test_s,
                "cache_size_train_mib": train_cache_bytes / 2**20, "cache_size_test_mib": test_cache_bytes / 2**20,
                "feature_shapes": [list(f.shape) for f in train_feats],
            },
            "flow_training_throughput": throughput,
            "epoch_comparison": comparison,
            "evaluation": evaluation,
            "peak_rss_mib": peak_rss_mb(),
            "peak_rss_by_stage_mib": rss,
            "bench_total_s": time.perf_counter() - t_all,
        }
    finally:
        if args.cache_dir is None:
            shutil.rmtree(cache_dir, ignore_errors=True)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(result, indent=2, default=float))
    os.replace(tmp, out)
    print_summary(result, out)
    return result


def print_summary(r: dict[str, Any], out: Path) -> None:
    c, b, e, m = r["epoch_comparison"], r["backbone"], r["evaluation"], r["machine"]
    be = c["break_even_epochs"]
    lines = [
        f"bench_pipeline: {r['data']['category']} ({r['config']['profile']} profile, {b['img_size_px']} px), "
        f"{m['torch_threads']} torch thread(s), load {m['loadavg_1min_start']:.2f} -> {m['loadavg_1min_end']:.2f}",
        f"  backbone          {b['backbone_ms_per_image']:.1f} ms/image (batch {b['backbone_batch_images']}, "
        f"{b['backbone_timed_images']} images); reading an image {b['image_load_ms_per_image']:.1f} ms",
        "  flow training     " + ", ".join(f"{t['channels']} ch {t['patches_per_s'] / 1e3:.1f}k"
                                            for t in r["flow_training_throughput"]) + " patches/s",
        f"  feature cache     build {c['cache_build_train_s']:.1f} s for {c['train_images']} images, "
        f"read back {c['cache_load_train_s']:.2f} s, {r['feature_cache']['cache_size_train_mib']:.0f} MiB (float16)",
        f"  one epoch         cached {c['cached_epoch_s']:.1f} s, recompute {c['recompute_epoch_s']:.1f} s "
        f"(load {c['recompute_image_load_s_per_epoch']:.1f} + backbone {c['recompute_backbone_s_per_epoch']:.1f} "
        f"+ flows {c['recompute_flow_s_per_epoch']:.1f}): ratio {c['recompute_over_cached_ratio']:.2f} "
        f"(CPU time ratio {c['recompute_over_cached_cpu_ratio']:.2f})",
        f"  break-even        " + (f"{be:.2f} epochs (cold cache)" if be is not None else "never (recompute was not slower)"),
        f"  evaluation        {e['evaluation_total_s']:.1f} s for {e['test_images']} images "
        f"(log-lik {e['level_log_likelihoods_s']:.1f}, maps {e['anomaly_maps_s']:.1f}, metrics {e['evaluate_s']:.1f}); "
        f"one pro_score {e['pro_score_s']:.2f} s",
        f"  peak RSS          {r['peak_rss_mib']:.0f} MiB; total {r['bench_total_s']:.0f} s",
        f"  written to {out}",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
