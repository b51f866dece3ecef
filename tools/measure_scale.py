"""Measures the Ray fan-out (docs/scale.md): `eval` and `record` with --workers 1 and
--workers 2 on the same seeds, alternated, REPEATS times each; wall time of the whole
command (Ray's start included). Writes each eval run's JSON and one summary JSON (with
the commands) under docs/measurements/scale/.

    .venv/bin/python tools/measure_scale.py [REPEATS [EPISODES [ROUTE_M]]]

(default 3 repeats of 4 episodes of 500 m; files named by episodes and route length)
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "measurements" / "scale"
CLI = [sys.executable, "-m", "steering_agent.cli"]


def timed(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([*CLI, *argv], cwd=REPO, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    episodes = sys.argv[2] if len(sys.argv) > 2 else "4"
    route = sys.argv[3] if len(sys.argv) > 3 else "500"
    tag = f"{episodes}x{route}m"
    eval_argv = ["eval", "--policy", "expert", "--policy", "checkpoints/cnn_lstm.pt",
            "--episodes", episodes, "--route-length-m", route, "--quiet"]  # fmt: skip
    record_argv = ["record", "--episodes", episodes, "--route-length", route, "--noise", "0.1",
              "--no-progress"]  # fmt: skip
    OUT.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[float]] = {}
    commands: dict[str, str] = {}
    for r in range(repeats):
        for verb, base in (("eval", eval_argv), ("record", record_argv)):
            for workers in (1, 2):
                key = f"{verb}_workers{workers}"
                name = f"{tag}_{key}"
                tmp = Path(tempfile.mkdtemp())
                extra = ["--workers", str(workers)]
                if verb == "eval":
                    extra += ["--json", str(OUT / f"{name}_run{r + 1}.json")]
                else:
                    extra += ["--out", str(tmp / "bags")]
                argv = [*base, *extra]
                commands[key] = " ".join(["steering-agent", *argv]).replace(str(tmp), "TMP")
                runs.setdefault(key, []).append(round(timed(argv), 2))
                shutil.rmtree(tmp, ignore_errors=True)
                print(key, runs[key][-1], flush=True)
    med = {k: statistics.median(v) for k, v in runs.items()}
    summary = {
        "what": "wall seconds of the whole command, Ray's start included; runs alternated",
        "machine": f"{os.cpu_count()} cores (shared with other jobs)",
        "commands": commands,
        "wall_s": runs,
        "median_wall_s": med,
        "speedup_median": {
            v: round(med[f"{v}_workers1"] / med[f"{v}_workers2"], 2) for v in ("eval", "record")
        },
        "command": "python tools/measure_scale.py " + " ".join(sys.argv[1:]),
    }
    (OUT / f"summary_{tag}.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary["speedup_median"]))


if __name__ == "__main__":
    main()
