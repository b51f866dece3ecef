"""Randomised cameras and cars for recording: per episode, a camera mount, field of view,
image size and a vehicle drawn around real-world set-ups (`record --randomize-camera`).

The calibrated view (`steering_agent.policy.calibration`) maps any of these cameras onto
the canonical one, and `convert_steer` turns any car's steering into the canonical car's,
so a network trained on them learns what the calibration leaves: bumps, the flat-ground
assumption, the view beyond the real camera's frame, lenses of another field of view.

The set-ups (mount in the car frame: x ahead of the reference point, height, pitch down):

| set-up | x m | height m | pitch deg | FOV deg | image |
| --- | --- | --- | --- | --- | --- |
| training (canonical) | 1.0 | 1.5 | 15 | 90 | 200x66 |
| CARLA ROS bridge rgb_front | 2.0 | 2.0 | 0 | 90 | 320x240 (4:3) |
| windscreen dash camera | 1.4 | 1.3 | 4 | 110 | 384x216 (16:9) |
| roof camera | 0.3 | 1.9 | 9 | 60..90 | 320x240 |
| high mast | 0.8 | 2.4 | 19 | 90 | 400x300 |
| low nose | 2.3 | 1.2 | 10 | 90 | 320x180 |

Each draw jitters its set-up's mount (pitch +-3 deg, height +-0.15 m, x +-0.3 m,
y +-0.25 m, roll and yaw +-2 deg, FOV +-5 deg; every value kept within the evaluation
grid's range where the set-up is at its edge) and draws a car: wheelbase 2.4..3.3 m,
steering lock 38..75 deg. One draw in four is the canonical camera exactly, on the
canonical car (the set-up the shipped networks keep driving best).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CANONICAL = "training"


@dataclass(frozen=True)
class Setup:
    name: str
    x_m: float
    height_m: float
    pitch_deg: float
    fov: tuple[float, float]  # drawn uniformly in this range (before jitter)
    size: tuple[int, int]  # width, height


SETUPS = (
    Setup(CANONICAL, 1.0, 1.5, 15.0, (90.0, 90.0), (200, 66)),
    Setup("carla_bridge", 2.0, 2.0, 0.0, (90.0, 90.0), (320, 240)),
    Setup("dash_camera", 1.4, 1.3, 4.0, (110.0, 110.0), (384, 216)),
    Setup("roof", 0.3, 1.9, 9.0, (60.0, 90.0), (320, 240)),
    Setup("high_mast", 0.8, 2.4, 19.0, (90.0, 90.0), (400, 300)),
    Setup("low_nose", 2.3, 1.2, 10.0, (90.0, 90.0), (320, 180)),
)
CANONICAL_SHARE = 0.25


def draw_setup(seed: int) -> tuple[str, dict]:
    """(set-up name, env keyword arguments) of the camera and car of episode `seed`;
    the same seed always gives the same draw."""
    rng = np.random.default_rng([int(seed), 0x43414D])
    if rng.random() < CANONICAL_SHARE:
        return CANONICAL, {}
    s = SETUPS[1 + int(rng.integers(len(SETUPS) - 1))]

    def jitter(value: float, amp: float, lo: float, hi: float) -> float:
        return round(float(np.clip(value + rng.uniform(-amp, amp), lo, hi)), 3)

    fov = float(rng.uniform(*s.fov))
    width, height = s.size
    kwargs = {
        "width": width,
        "height": height,
        "fov_deg": jitter(fov, 5.0, 55.0, 115.0),
        "camera_x_m": jitter(s.x_m, 0.3, 0.0, 2.6),
        "camera_y_m": jitter(0.0, 0.25, -0.3, 0.3),
        "camera_height_m": jitter(s.height_m, 0.15, 1.1, 2.5),
        "camera_pitch_deg": jitter(s.pitch_deg, 3.0, -1.0, 21.0),
        "camera_roll_deg": jitter(0.0, 2.0, -2.0, 2.0),
        "camera_yaw_deg": jitter(0.0, 2.0, -2.0, 2.0),
        "wheelbase_m": round(float(rng.uniform(2.4, 3.3)), 3),
        "max_steer_deg": round(float(rng.uniform(38.0, 75.0)), 2),
    }
    return s.name, kwargs
