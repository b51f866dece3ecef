"""The camera mounts and vehicles the envs accept, and the one range check they use.

Keys are the keywords of `DriveEnv` and `CarlaDriveEnv` (`camera_*`, `fov_deg`) and of
`DriveEnv` alone (`wheelbase_m`, `max_steer_deg`). Sign conventions: `sim.camera`.
"""

from __future__ import annotations

from numbers import Real

# keyword -> (low, high, unit): the mounts the renderer supports
MOUNT_LIMITS: dict[str, tuple[float, float, str]] = {
    "camera_height_m": (0.2, 10.0, "m above the ground"),
    "camera_pitch_deg": (-30.0, 60.0, "degrees, positive looks down"),
    "camera_roll_deg": (-45.0, 45.0, "degrees, positive clockwise seen from behind"),
    "camera_yaw_deg": (-45.0, 45.0, "degrees, positive looks left"),
    "camera_x_m": (-5.0, 5.0, "m, positive ahead of the car's reference point"),
    "camera_y_m": (-3.0, 3.0, "m, positive left of the car's centre line"),
    "fov_deg": (10.0, 170.0, "degrees, horizontal"),
}
# keyword -> (low, high, unit): the vehicles the model and the expert support
VEHICLE_LIMITS: dict[str, tuple[float, float, str]] = {
    "wheelbase_m": (1.5, 6.0, "m between the axles"),
    "max_steer_deg": (10.0, 89.0, "degrees of front wheel angle at steer = 1"),
}
LIMITS = {**MOUNT_LIMITS, **VEHICLE_LIMITS}


def check_range(name: str, value: object, lo: float, hi: float, unit: str = "") -> float:
    """`value` as a float if it is a finite number within lo..hi, else a clear error
    naming `name` and the range (TypeError for a non-number, ValueError otherwise)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if not lo <= v <= hi:  # False for NaN too
        what = f" ({unit})" if unit else ""
        raise ValueError(f"{name}={value!r} is out of range: must be within {lo:g}..{hi:g}{what}")
    return v


def check_limits(**kwargs: object) -> dict[str, float]:
    """Each keyword (a key of `LIMITS`) checked against its range: floats by keyword."""
    return {k: check_range(k, v, *LIMITS[k]) for k, v in kwargs.items()}
