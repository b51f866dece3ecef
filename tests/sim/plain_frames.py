"""A fixed drive whose frames are hashed: the plain look must keep rendering them
byte for byte (tests/sim/data/plain_frame_hashes.json was written by the code before
multi-lane roads existed; `python -m tests.sim.plain_frames` prints the current hashes)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

FIXTURE = Path(__file__).with_name("data") / "plain_frame_hashes.json"

CASES = {
    "default_200x66": dict(),
    "mount_160x120": dict(
        width=160,
        height=120,
        camera_y_m=0.3,
        camera_roll_deg=2.0,
        camera_yaw_deg=-3.0,
        fov_deg=100.0,
    ),
}
SEEDS = (0, 3, 6, 11, 13, 22, 1_000_002)  # shadows, gravel, no edge lines, kerb, yellow


def frame_hashes(**extra) -> dict[str, list[str]]:
    """{case/seed: sha1 of every 15th frame of an expert drive, then topdown and render}."""
    from sim.env import DriveEnv

    out = {}
    for name, kw in CASES.items():
        env = DriveEnv(route_length_m=200.0, render_mode="rgb_array", **kw, **extra)
        for seed in SEEDS:
            obs, info = env.reset(seed=seed)
            hashes = [hashlib.sha1(obs["image"].tobytes()).hexdigest()]
            for k in range(90):
                obs, _, term, trunc, info = env.step(info["expert_action"])
                if k % 15 == 14:
                    hashes.append(hashlib.sha1(obs["image"].tobytes()).hexdigest())
                if term or trunc:
                    break
            hashes.append(hashlib.sha1(env.topdown().tobytes()).hexdigest())
            hashes.append(hashlib.sha1(env.render().tobytes()).hexdigest())
            out[f"{name}/{seed}"] = hashes
    return out


if __name__ == "__main__":
    print(json.dumps(frame_hashes(), indent=1))
