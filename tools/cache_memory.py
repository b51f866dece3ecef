"""Peak resident memory per training frame, raw frames in memory against the frame cache.

    python tools/cache_memory.py --data data/train_v2 --cache data/cache_v2 --json OUT

Two child processes each load the episodes of --data the way training holds them and
read every frame once: `raw` keeps the decoded RGB frames (what training did before the
cache: `dataset.load_episodes`), `cache` maps the prepared network inputs from --cache
(`frame_cache.prepared_episodes`, filled first if empty). Each reports its peak resident
set (VmHWM) and, for the cache, how much of it is private (anonymous) memory: the mapped
frames are page cache, shared by every process that trains on them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package


def _status() -> dict:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0]) * 1024
    return out


def child(mode: str, data: str, cache: str, limit: int) -> dict:
    import numpy as np

    base = _status()
    t0 = time.perf_counter()
    frames, total, keep = 0, 0, []
    if mode == "raw":
        from steering_agent.data.dataset import iter_episodes

        for ep in iter_episodes(data, warn=False):
            keep.append(ep.images)
            frames += len(ep)
            total += int(ep.images[:, ::8, ::8].sum() % 7)
            if frames >= limit:
                break
    else:
        from steering_agent.data.frame_cache import prepared_episodes
        from steering_agent.policy.preprocess import PreprocessConfig

        for ep in prepared_episodes(data, PreprocessConfig(), cache_dir=cache):
            keep.append(ep.frames)
            frames += len(ep.steer)
            total += int(np.asarray(ep.frames).sum() % 7)  # every byte read once
            if frames >= limit:
                break
    end = _status()
    return {
        "mode": mode,
        "frames": frames,
        "seconds": round(time.perf_counter() - t0, 1),
        "peak_rss_bytes": end["VmHWM"],
        "peak_rss_growth_per_frame_bytes": round((end["VmHWM"] - base["VmRSS"]) / frames),
        "private_growth_per_frame_bytes": round((end["RssAnon"] - base["RssAnon"]) / frames),
        "file_backed_growth_per_frame_bytes": round((end["RssFile"] - base["RssFile"]) / frames),
        "checksum": total,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--cache", required=True)
    p.add_argument("--frames", type=int, default=20000, help="stop after this many frames")
    p.add_argument("--json", default=None)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.data, a.cache, a.frames)))
        return 0
    rows = []
    for mode in ("cache", "raw"):
        cmd = [sys.executable, __file__, "--data", a.data, "--cache", a.cache,
               "--frames", str(a.frames), "--child", mode]  # fmt: skip
        rows.append(json.loads(subprocess.run(cmd, check=True, capture_output=True,
                                              text=True).stdout.splitlines()[-1]))  # fmt: skip
        print(rows[-1])
    doc = {"command": "python " + " ".join(sys.argv), "rows": rows}
    if a.json:
        with open(a.json, "w") as f:
            json.dump(doc, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
