"""A live view of a drive in Foxglove: `drive --live` and `closed-loop --live` (docs/live_view.md).

`LiveView` runs a Foxglove WebSocket server (foxglove-sdk, the `live` extra) on
localhost, port `DEFAULT_PORT` (8765) unless told otherwise, and streams per frame:

- `/camera`: foxglove.RawImage (`rgb8` or `bgra8`), the frame the agent saw;
- `/steering`: JSON {timestamp, agent, expert}: the agent's and the expert's steer in
  [-1, 1] (CARLA's convention: right positive);
- `/speed`: JSON {timestamp, mps};
- `/lateral_error`: JSON {timestamp, m}: the signed distance from the lane centre.

Open Foxglove, "Open connection", `ws://localhost:8765`. Nothing is serialized while no
client subscribes to a channel. `LiveView` needs no rclpy (the `drive` verb uses it in
the gym loop); `main` is the ROS node that `closed-loop --live` starts as a process: it
subscribes to sim_bridge's topics and the agent's command and forwards them.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from typing import Any

import numpy as np

from steering_agent.common import extras

DEFAULT_PORT = 8765
CAMERA, STEERING, SPEED, LATERAL = "/camera", "/steering", "/speed", "/lateral_error"
CHANNELS = (CAMERA, STEERING, SPEED, LATERAL)

_TIME = {
    "type": "object",
    "properties": {"sec": {"type": "integer"}, "nsec": {"type": "integer"}},
}


def _schema(**fields: str) -> dict:
    props = {name: {"type": "number", "description": text} for name, text in fields.items()}
    return {"type": "object", "properties": {"timestamp": _TIME, **props}}


SCHEMAS = {
    STEERING: _schema(
        agent="the agent's steer, [-1, 1], right positive",
        expert="the expert's steer for the same frame",
    ),
    SPEED: _schema(mps="speed, m/s"),
    LATERAL: _schema(m="signed distance from the lane centre, m"),
}


_FIELD = {SPEED: "mps", LATERAL: "m"}


def _num(value: float | None) -> float | None:
    """JSON has no NaN: a missing or non-finite value is null."""
    return float(value) if value is not None and math.isfinite(value) else None


class LiveView:
    """A Foxglove WebSocket server with the four channels of the module doc.

    Args:
        port: TCP port on `host` (0: any free one; `self.port` says which).
        host: where to listen (default: localhost only).

    Raises:
        MissingExtra: foxglove-sdk is not installed (one line naming the extra).
    """

    def __init__(self, port: int = DEFAULT_PORT, host: str = "127.0.0.1") -> None:
        extras.require("live", "--live (the Foxglove live view)")
        import foxglove
        from foxglove.channels import RawImageChannel

        self._subscribed: dict[str, int] = dict.fromkeys(CHANNELS, 0)
        self._lock = threading.Lock()
        self._ctx = foxglove.Context()
        self.server = foxglove.start_server(
            name="steering_agent",
            host=host,
            port=port,
            context=self._ctx,
            server_listener=_Listener(self),
        )
        self.port = self.server.port
        self._camera = RawImageChannel(CAMERA, context=self._ctx)
        self._json = {
            topic: foxglove.Channel(
                topic, schema=schema, message_encoding="json", context=self._ctx
            )
            for topic, schema in SCHEMAS.items()
        }
        self._image_cls = foxglove.messages.RawImage
        self._time_cls = foxglove.messages.Timestamp
        self.frames = 0

    @property
    def url(self) -> str:
        return f"ws://localhost:{self.port}"

    def _on_subscribe(self, topic: str, delta: int) -> None:
        with self._lock:
            if topic in self._subscribed:
                self._subscribed[topic] = max(0, self._subscribed[topic] + delta)

    def subscribed(self, topic: str) -> bool:
        """Whether some client subscribes to `topic` now."""
        return self._subscribed.get(topic, 0) > 0

    def wait_for_subscribers(self, timeout_s: float) -> bool:
        """Block until some client subscribes to every channel, or `timeout_s` passes."""
        deadline = time.monotonic() + timeout_s
        while not all(self.subscribed(t) for t in CHANNELS):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def frame(
        self,
        stamp_ns: int,
        image: np.ndarray | None,
        agent_steer: float | None,
        expert_steer: float | None,
        speed_mps: float | None,
        lateral_m: float | None,
        encoding: str = "rgb8",
    ) -> None:
        """Stream one frame (`image`: HxWx3 rgb8 or HxWx4 bgra8, uint8; None: no image)."""
        self.frames += 1
        if image is not None:
            self.image(stamp_ns, image, encoding)
        self.steering(stamp_ns, agent_steer, expert_steer)
        self.value(SPEED, stamp_ns, speed_mps)
        self.value(LATERAL, stamp_ns, lateral_m)

    def image(self, stamp_ns: int, image: np.ndarray, encoding: str = "rgb8") -> None:
        """`/camera`: HxWxC uint8 pixels in `encoding` (rgb8, bgra8, ...)."""
        if not self.subscribed(CAMERA):
            return
        sec, nsec = divmod(int(stamp_ns), 1_000_000_000)
        h, w = image.shape[:2]
        channels = image.shape[2] if image.ndim == 3 else 1
        self._camera.log(
            self._image_cls(
                timestamp=self._time_cls(sec=sec, nsec=nsec),
                frame_id="camera",
                width=w,
                height=h,
                encoding=encoding,
                step=w * channels,
                data=np.ascontiguousarray(image).tobytes(),
            )
        )

    def steering(self, stamp_ns: int, agent: float | None, expert: float | None) -> None:
        """`/steering`: the agent's and the expert's steer of one frame."""
        self._log(STEERING, stamp_ns, agent=_num(agent), expert=_num(expert))

    def value(self, topic: str, stamp_ns: int, value: float | None) -> None:
        """`/speed` (m/s) or `/lateral_error` (m)."""
        self._log(topic, stamp_ns, **{_FIELD[topic]: _num(value)})

    def _log(self, topic: str, stamp_ns: int, **fields) -> None:
        if self.subscribed(topic):
            sec, nsec = divmod(int(stamp_ns), 1_000_000_000)
            self._json[topic].log({"timestamp": {"sec": sec, "nsec": nsec}, **fields})

    def gym_hook(self, next_hook=None):
        """A `vec_eval` frame hook streaming each step of `drive` (then `next_hook`).

        The hook sees the frame the policy saw, its command and the info *after* the step;
        the expert's steer for the frame shown is the label of the info before it (the
        first frame has none)."""
        last: dict = {"expert": None}

        def hook(env, image, cmd, info, interventions) -> None:
            expert = last["expert"]
            nxt = info.get("expert_action")
            last["expert"] = float(nxt[0]) if nxt is not None else None
            self.frame(
                round(float(info.get("sim_time_s", 0.0)) * 1e9),
                image,
                float(cmd[0]),
                expert,
                float(info.get("speed_mps", math.nan)),
                float(info.get("lateral_error_m", math.nan)),
            )
            if next_hook is not None:
                next_hook(env, image, cmd, info, interventions)

        return hook

    def close(self) -> None:
        self.server.stop()


class _Listener:
    """foxglove.ServerListener: counts the subscriptions of each channel."""

    def __init__(self, view: LiveView) -> None:
        self._view = view

    def on_subscribe(self, client: Any, channel: Any) -> None:
        self._view._on_subscribe(channel.topic, +1)

    def on_unsubscribe(self, client: Any, channel: Any) -> None:
        self._view._on_subscribe(channel.topic, -1)


def open_live_view(port: int, wait_s: float = 0.0) -> LiveView:
    """A started `LiveView`, announced on stderr; with `wait_s`, after waiting that long
    for a client to subscribe to every channel."""
    view = LiveView(port)
    print(f"live view: open Foxglove, connect to {view.url}", file=sys.stderr, flush=True)
    if wait_s > 0 and not view.wait_for_subscribers(wait_s):
        print(f"live view: no client after {wait_s:g} s; driving anyway", file=sys.stderr)
    return view


def main(args: list[str] | None = None) -> int:
    """`python -m steering_agent.ros.live_view --ros-args -p port:=8765`: the node that
    forwards sim_bridge's topics and the agent's command to a `LiveView`."""
    from steering_agent.ros.live_view_node import LiveViewNode
    from steering_agent.ros.spin import run_node

    return run_node("live_view", LiveViewNode, LiveViewNode.close, args)


if __name__ == "__main__":
    sys.exit(main())
