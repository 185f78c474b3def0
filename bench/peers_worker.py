"""Runs inside the peer venv (bench/.peers-venv), never in the project's: anomalib's CFlow or PatchCore on one
category, through anomalib's own `Engine.fit`, then its torch model on each test image alone (batch size 1).

Started by `bench_peers.py` as `python peers_worker.py JOB.json`; it does not import `bgad_mini`. The job file
names the train and test images, the model's settings and an output folder, where this writes

    maps.npy     (N, H, W) float32, the raw anomaly map of each test image in the job's order
    scores.npy   (N,) float32, anomalib's own image score (`pred_score`)
    worker.json  wall and CPU seconds of setup / training / inference, torch threads, versions

With `"mode": "features"` it only builds each model's feature extractor, as anomalib builds it, and writes the
features of `input.npy` (normalised images, N x 3 x H x W) to `features_<method>_<i>.npy`: bench_peers.py compares
them with bgad_mini's extractor, which proves that anomalib loaded the same offline weights.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

# one torch thread (set before torch is imported): the machine is shared, more threads than free cores is far slower
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

BACKBONE = "tf_efficientnet_lite0"
LAYERS = {"cflow": ["blocks.1", "blocks.2", "blocks.4"],  # timm feature modules at strides 4 / 8 / 16
          "patchcore": ["blocks.2", "blocks.4"]}  # strides 8 / 16


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> dict[str, float]:
    return {"wall_s": round(time.perf_counter() - start[0], 3), "cpu_s": round(time.process_time() - start[1], 3)}


def build_model(method: str, job: dict):
    """The anomalib Lightning module with anomalib's defaults, except backbone and layers (and nothing else)."""
    from anomalib.models import Cflow, Patchcore

    if method == "cflow":
        return Cflow(backbone=BACKBONE, layers=LAYERS["cflow"], pre_trained=True, visualizer=False)
    if method == "patchcore":
        return Patchcore(backbone=BACKBONE, layers=LAYERS["patchcore"], pre_trained=True,
                         coreset_sampling_ratio=job.get("coreset_sampling_ratio", 0.1),
                         num_neighbors=job.get("num_neighbors", 9), visualizer=False)
    raise SystemExit(f"peers_worker: unknown method {method!r} (cflow or patchcore)")


class _Images(torch.utils.data.Dataset):
    """Normal training images as anomalib's datasets give them: RGB float in [0, 1], label 0."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        from anomalib.data import ImageItem
        from anomalib.data.utils import read_image

        return ImageItem(image=read_image(self.paths[i], as_tensor=True), gt_label=torch.tensor(0),
                         image_path=self.paths[i])


def _epoch_printer(method: str):
    from lightning.pytorch.callbacks import Callback

    class EpochPrinter(Callback):
        def on_train_epoch_start(self, trainer, pl_module) -> None:
            self.t0 = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            print(f"  {method} epoch {trainer.current_epoch + 1}/{trainer.max_epochs}: "
                  f"{time.perf_counter() - self.t0:.1f} s", flush=True)

    return EpochPrinter()


def run(job: dict, out: Path) -> None:
    from anomalib.data import ImageBatch
    from anomalib.data.utils import read_image
    from anomalib.engine import Engine

    method = job["method"]
    torch.manual_seed(int(job.get("seed", 0)))
    t = _clock()
    model = build_model(method, job)
    setup = _since(t)

    loader = torch.utils.data.DataLoader(_Images(job["train"]), batch_size=int(job.get("train_batch_size", 32)),
                                         shuffle=True, num_workers=0, collate_fn=ImageBatch.collate)
    trainer_args = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=str(out / "engine"),
                        callbacks=[_epoch_printer(method)])
    if method == "cflow":
        trainer_args["max_epochs"] = int(job["max_epochs"])
    engine = Engine(**trainer_args)
    t = _clock()
    engine.fit(model=model, train_dataloaders=loader)
    if hasattr(model, "_is_fitted") and not bool(model._is_fitted):  # memory bank (PatchCore): fitted at epoch end
        model.fit()
    train = _since(t)
    print(f"  {method} trained in {train['wall_s']:.1f} s wall, {train['cpu_s']:.1f} s CPU", flush=True)

    # inference: each test image alone, anomalib's pre-processing then its torch model (raw maps, no post-processing)
    model.eval()
    transform = model.pre_processor.transform
    maps, scores = [], []
    t = _clock()
    with torch.no_grad():
        for i, path in enumerate(job["test"]):
            x = transform(read_image(path, as_tensor=True)).unsqueeze(0)
            pred = model.model(x)
            maps.append(pred.anomaly_map.reshape(pred.anomaly_map.shape[-2:]).float().numpy())
            scores.append(float(pred.pred_score.reshape(-1)[0]))
            if (i + 1) % 25 == 0 or i + 1 == len(job["test"]):
                print(f"  {method} scored {i + 1}/{len(job['test'])} test images", flush=True)
    infer = _since(t)
    np.save(out / "maps.npy", np.stack(maps).astype(np.float32))
    np.save(out / "scores.npy", np.asarray(scores, np.float32))
    info = {"setup": setup, "train": train, "infer": infer, "torch_threads": torch.get_num_threads(),
            "epochs_run": int(engine.trainer.current_epoch) if method == "cflow" else 1,
            "layers": LAYERS[method], "backbone": BACKBONE, "versions": versions(),
            "map_shape": list(maps[0].shape)}
    if method == "patchcore":
        info["memory_bank"] = list(model.model.memory_bank.shape)
    (out / "worker.json").write_text(json.dumps(info, indent=2))


def features(job: dict, out: Path) -> None:
    """Each method's backbone features of `input.npy`, through the model's own encoder."""
    x = torch.from_numpy(np.load(out / "input.npy"))
    for method in ("cflow", "patchcore"):
        model = build_model(method, job)
        encoder = model.model.encoder if method == "cflow" else model.model.feature_extractor
        encoder.eval()
        with torch.no_grad():
            feats = encoder(x)
        for i, layer in enumerate(LAYERS[method]):
            np.save(out / f"features_{method}_{i}.npy", feats[layer].float().numpy())
    (out / "worker.json").write_text(json.dumps({"versions": versions()}, indent=2))


def versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in ("anomalib", "torch", "torchvision", "timm", "lightning", "FrEIA", "huggingface-hub"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit("usage: peers_worker.py JOB.json")
    job = json.loads(Path(sys.argv[1]).read_text())
    torch.set_num_threads(int(job.get("threads", 1)))
    out = Path(job["out"])
    out.mkdir(parents=True, exist_ok=True)
    if job.get("mode") == "features":
        features(job, out)
    else:
        run(job, out)


if __name__ == "__main__":
    main()
