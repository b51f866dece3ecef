"""Route geometry over CARLA waypoints and a privileged pure-pursuit expert (pure numpy).

CARLA's world frame is left-handed (x forward, y to the right, yaw clockwise seen from
above). Everything here works in the right-handed ROS frame instead (y and yaw negated,
as the CARLA ROS bridge does), so "+ lateral = left of the centre line" and yaw counts
counter-clockwise, exactly like the embedded simulator. `carla_to_ros_pose` converts.
"""

from __future__ import annotations

import math

import numpy as np

from sim.polyline import Polyline, search_window, to_frame


def carla_to_ros_pose(x: float, y: float, yaw_deg: float) -> tuple[float, float, float]:
    """A CARLA location/yaw (left-handed, degrees) as (x, y, yaw_rad) in the ROS frame."""
    return float(x), -float(y), math.radians(-float(yaw_deg))


def ros_to_carla_pose(x: float, y: float, yaw_rad: float) -> tuple[float, float, float]:
    """The inverse of `carla_to_ros_pose`: a ROS (x, y, yaw_rad) as CARLA (x, y, yaw_deg)."""
    return float(x), -float(y), -math.degrees(float(yaw_rad))


def wrap_angle(a: np.ndarray | float) -> np.ndarray | float:
    """Angle(s) wrapped to [-pi, pi)."""
    return (np.asarray(a) + np.pi) % (2.0 * np.pi) - np.pi


class RoutePolyline(Polyline):
    """A route's centre line: points in the ROS frame, arc length, projection.

    Args:
        points_xy: float array [N, 2], N >= 2, consecutive points distinct.
        lane_width_m: lane width per point (scalar or [N]); used for off-lane checks.
    """

    def __init__(self, points_xy: np.ndarray, lane_width_m: float | np.ndarray = 3.5):
        pts = np.asarray(points_xy, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 2:
            raise ValueError(f"RoutePolyline: points_xy must be [N>=2, 2], got {pts.shape}")
        seg = np.diff(pts, axis=0)
        keep = np.concatenate([[True], np.hypot(seg[:, 0], seg[:, 1]) > 1e-6])  # no repeats
        pts = pts[keep]
        if len(pts) < 2:
            raise ValueError("RoutePolyline: the route has fewer than 2 distinct points")
        super().__init__(pts[:, 0], pts[:, 1])
        seg = np.diff(pts, axis=0)
        self.seg_yaw = np.arctan2(seg[:, 1], seg[:, 0])
        widths = np.broadcast_to(np.asarray(lane_width_m, dtype=np.float64), (len(keep),))
        self.lane_width = np.asarray(widths)[keep]

    @property
    def length_m(self) -> float:
        return float(self.s[-1])

    def locate(
        self, x: float, y: float, yaw: float, hint_index: int | None = None, window: int = 60
    ) -> tuple[float, float, float, int]:
        """Project a pose onto the route.

        Returns:
            (s, lateral_m, heading_error_rad, segment_index): arc length of the nearest
            point, signed distance (+ = left), yaw minus the route's yaw (wrapped), and the
            segment index to pass back as `hint_index` next step (searches stay local).
        """
        lo, hi = search_window(hint_index, len(self.seg_len), 5, window)
        i, t, lateral = self.nearest_on_segments(x, y, lo, hi)
        heading = float(wrap_angle(yaw - self.seg_yaw[i]))
        return float(self.s[i] + t), lateral, heading, i

    def point_at(self, s: float) -> tuple[float, float, float]:
        """(x, y, yaw) on the centre line at arc length `s` (clamped to the route)."""
        s = float(np.clip(s, 0.0, self.length_m))
        i = min(self.index(s), len(self.seg_len) - 1)
        p = self.points[i] + self.seg_dir[i] * (s - self.s[i])
        return float(p[0]), float(p[1]), float(self.seg_yaw[i])


class PurePursuitExpert:
    """Privileged route follower: pure pursuit for steering, P control for speed.

    Needs no CARLA autopilot or traffic manager, only the route and the car's pose, so
    recorded CARLA drives carry the same kind of clean label as the embedded simulator.
    Steering follows CARLA's sign: + = turn right.
    """

    def __init__(
        self,
        route: RoutePolyline,
        target_speed_mps: float = 8.0,
        wheelbase_m: float = 2.9,
        max_steer_rad: float = math.radians(70.0),
        lookahead_min_m: float = 4.0,
        lookahead_gain_s: float = 0.6,
    ):
        self.route = route
        self.target_speed_mps = float(target_speed_mps)
        self.wheelbase_m = float(wheelbase_m)
        self.max_steer_rad = float(max_steer_rad)
        self.lookahead_min_m = float(lookahead_min_m)
        self.lookahead_gain_s = float(lookahead_gain_s)

    def act(self, x: float, y: float, yaw: float, speed_mps: float, s: float) -> np.ndarray:
        """Action [steer, throttle, brake] (float32) for a ROS-frame pose at arc length `s`."""
        lookahead = self.lookahead_min_m + self.lookahead_gain_s * max(speed_mps, 0.0)
        tx, ty, _ = self.route.point_at(s + lookahead)
        dx, dy = tx - x, ty - y
        local_x, local_y = to_frame(dx, dy, math.cos(yaw), math.sin(yaw))
        dist = max(math.hypot(local_x, local_y), 1e-3)
        alpha = math.atan2(local_y, local_x)
        wheel = math.atan2(2.0 * self.wheelbase_m * math.sin(alpha), dist)
        steer = float(np.clip(-wheel / self.max_steer_rad, -1.0, 1.0))  # CARLA: + = right
        speed_err = self.target_speed_mps - speed_mps
        throttle = float(np.clip(0.5 * speed_err, 0.0, 0.75))
        brake = float(np.clip(-0.3 * speed_err, 0.0, 1.0)) if speed_err < -1.0 else 0.0
        return np.array([steer, throttle, brake], dtype=np.float32)


def route_from_waypoints(
    carla, cmap, location, length_m: float, spacing_m: float, rng: np.random.Generator
) -> RoutePolyline:
    """The route ahead of `location` on CARLA map `cmap`: its driving lane's waypoints
    every `spacing_m` until `length_m`, in the ROS frame; at a junction `rng` picks the
    successor (so the seed picks the turns, reproducibly)."""
    wp = cmap.get_waypoint(location, project_to_road=True, lane_type=carla.LaneType.Driving)
    points, widths, length = [], [], 0.0
    while wp is not None:
        loc = wp.transform.location
        x, y, _ = carla_to_ros_pose(loc.x, loc.y, 0.0)
        if points:
            length += math.hypot(x - points[-1][0], y - points[-1][1])
        points.append((x, y))
        widths.append(wp.lane_width)
        if length >= length_m:
            break
        nxt = wp.next(spacing_m)
        wp = nxt[int(rng.integers(len(nxt)))] if nxt else None
    if len(points) < 2:
        raise RuntimeError(
            f"CARLA map {cmap.name}: no drivable route from ({location.x:.1f}, {location.y:.1f})"
        )
    return RoutePolyline(np.asarray(points), np.asarray(widths))
