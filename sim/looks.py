"""The `look` switch of `DriveEnv`: which world one episode drives through.

look "plain" is the original world exactly (two-lane road, no scenery, no weather);
look "varied" draws from the road seed a `RoadLayout` (1-4 lanes per direction, markings,
shoulders, medians), roadside objects, traffic and light/weather. `lanes_per_direction`,
`traffic`, `objects` and `weather` left at None follow the look; an explicit value wins
(on the plain look too: e.g. `lanes_per_direction=3` gives a three-lane varied layout).
Scenery (`sim.scenery`) and weather (`sim.weather`) are optional modules: a look that
needs one that is missing raises ImportError when the env is made.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from sim.camera import IpmCamera
from sim.lanes import check_lanes_per_direction
from sim.render import CameraMaps, RoadRenderer, RoadStyle
from sim.road import LOOKS, LaneRoad

WEATHER_KINDS = ("clear", "overcast", "dusk", "night", "fog", "rain")
CAR_HALF_WIDTH_M = 0.9  # a wheel is over a lane line beyond lane_width / 2 - this
PLAIN_SPEED_MPS = 10.0


@dataclass(frozen=True)
class LookSpec:
    """The resolved look: every switch a definite value."""

    look: str
    varied_road: bool
    lanes_per_direction: int | None  # None: drawn from the seed (varied roads)
    traffic: bool
    objects: bool
    weather: str | bool | None  # False: off; None: from the seed; else a WEATHER_KINDS kind


def resolve_look(
    look: Any = "plain",
    lanes_per_direction: Any = None,
    traffic: Any = None,
    objects: Any = None,
    weather: Any = None,
) -> LookSpec:
    """Check the look keywords (ValueError naming the keyword and what it allows) and
    fill in what the look implies."""
    if look not in LOOKS:
        raise ValueError(f"look must be one of {LOOKS}, got {look!r}")
    varied = look == "varied"
    check_lanes_per_direction(lanes_per_direction)
    for name, val in (("traffic", traffic), ("objects", objects)):
        if val is not None and not isinstance(val, (bool, np.bool_)):
            raise ValueError(f"{name} must be None, True or False, got {val!r}")
    if weather is None:
        kind: str | bool | None = None if varied else False
    elif weather is True:
        kind = None
    elif weather is False:
        kind = False
    elif isinstance(weather, str) and weather in WEATHER_KINDS:
        kind = weather
    else:
        raise ValueError(
            f"weather must be None, True, False or one of {WEATHER_KINDS}, got {weather!r}"
        )
    return LookSpec(
        look=look,
        varied_road=varied or lanes_per_direction is not None,
        lanes_per_direction=None if lanes_per_direction is None else int(lanes_per_direction),
        traffic=varied if traffic is None else bool(traffic),
        objects=varied if objects is None else bool(objects),
        weather=kind,
    )


@dataclass
class World:
    """One episode's world: road, renderer and the optional scenery and weather."""

    road: LaneRoad
    renderer: RoadRenderer
    scenery: Any = None  # sim.scenery.Scenery or None
    weather: Any = None  # sim.weather.Weather or None

    @property
    def weather_name(self) -> str:
        return "none" if self.weather is None else str(self.weather.name)


def build_world(
    spec: LookSpec,
    seed: int,
    route_length_m: float,
    camera: IpmCamera,
    maps: CameraMaps,
    speed_mps: float | None = None,
) -> World:
    """The road, renderer, scenery and weather for road `seed` in look `spec`.

    `speed_mps` fixes a varied road's speed (its curves suit it); None draws it."""
    if spec.varied_road:
        road = LaneRoad.generate(
            seed, route_length_m, "varied", spec.lanes_per_direction, speed_mps
        )
    else:
        road = LaneRoad.generate(seed, route_length_m)
    weather = None
    style = None
    if spec.weather is not False:
        Weather = _optional("sim.weather", "Weather", "weather=False")

        weather = Weather.build(seed, camera, spec.weather)
        base = RoadStyle.from_seed(road.seed)
        over = weather.style_overrides(base)
        if over:
            style = dataclasses.replace(base, **over)
    renderer = RoadRenderer(road, camera, style=style, maps=maps)
    scenery = None
    if spec.traffic or spec.objects:
        Scenery = _optional("sim.scenery", "Scenery", "traffic=False, objects=False")

        scenery = Scenery.build(road, camera, seed, spec.objects, spec.traffic, weather=weather)
        shadows = scenery.ground_shadows()
        if shadows is not None:
            renderer.add_shadows(*shadows)
    return World(road, renderer, scenery, weather)


def _optional(module: str, name: str, off: str) -> Any:
    """`module.name`, or an ImportError that says how to go without it."""
    import importlib

    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as e:
        raise ImportError(
            f"this look needs {module}.{name}, which cannot be imported ({e}); "
            f"pass {off} to DriveEnv to go without it"
        ) from e


def collision_kind(scenery: Any, s: float, lateral: float, t_s: float) -> str:
    """ "none", "vehicle" (overlapping traffic) or "static" (a roadside object) for the ego
    at road coordinates (s, lateral) at time t_s."""
    if scenery is None or not scenery.collides(s, lateral, t_s):
        return "none"
    from sim.scenery import EGO_HALF_LEN, EGO_HALF_WID

    traffic = getattr(scenery, "traffic", None)
    if traffic is not None and traffic.overlaps(s, lateral, t_s, EGO_HALF_LEN, EGO_HALF_WID):
        return "vehicle"
    return "static"


def lane_departure(road: LaneRoad, lateral: float) -> bool:
    """Whether a wheel is over one of the ego lane's lines (car centre `lateral` m off)."""
    return bool(abs(lateral) > 0.5 * road.lane_width - CAR_HALF_WIDTH_M)
