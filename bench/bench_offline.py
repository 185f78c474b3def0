"""How fast bgad_mini gives up on ImageNet weights it cannot download (the times the tests used to assert).

Offline, huggingface_hub retries for about 45 s before it fails; bgad_mini probes the weight host first and
fails at once with a one-line error. This writes the measured seconds to JSON (default
`bench/results/offline.json`); it never asserts on a time.

    python bench/bench_offline.py
"""
from __future__ import annotations

import argparse
import datetime
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from bgad_mini import backbone
from bgad_mini.errors import BgadError
from bgad_mini.utils import write_json

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "offline.json"


def _seconds(fn: Callable[[], Any], repeats: int) -> dict[str, Any]:
    times, outcome = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        try:
            outcome = repr(fn())
        except BgadError as exc:
            outcome = f"BgadError: {exc}"
        times.append(time.perf_counter() - t0)
    return {"seconds": times, "max_seconds": max(times), "outcome": outcome[:200]}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    os.environ.pop("HF_HUB_OFFLINE", None)
    result: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "hub_probe_unreachable_host_timeout_1s": _seconds(
            lambda: backbone._hub_reachable("weights.invalid", timeout=1.0), args.repeats),
        "hub_probe_default_host": _seconds(backbone._hub_reachable, args.repeats),
    }
    offline = not (backbone._hub_reachable() or backbone._behind_proxy()
                   or backbone._cached_weight_file("tf_efficientnet_b6.aa_in1k"))
    if offline:  # the unpatched path a user hits: build B6 with no network and no local weights
        result["build_b6_offline"] = _seconds(lambda: backbone.build_extractor("tf_efficientnet_b6"), args.repeats)
    else:
        result["build_b6_offline"] = "skipped: a network, a proxy or cached weights are present"
    write_json(args.out, result)
    for k, v in result.items():
        if isinstance(v, dict):
            print(f"{k}: max {v['max_seconds']:.2f} s over {len(v['seconds'])} ({v['outcome'][:70]})")
    print(f"written to {args.out}")
    return result


if __name__ == "__main__":
    main()
