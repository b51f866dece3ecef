"""The `agent` node as a robot integrator runs it, between real processes over DDS: its
/diagnostics status, the manual override (silent while a human drives, driving again on
release) and the parameters set while it runs (target speed, watchdog timeout)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.ros_helpers import Probe, log_text, stamp_ns, time_msg

pytestmark = [pytest.mark.ros, pytest.mark.slow]

W, H = 64, 48
DT_NS = 50_000_000
WATCHDOG_S = 0.4
SPEED_MPS = 10.0  # the speed reading published while the throttle is watched


def _image(ns: int):
    from sensor_msgs.msg import Image

    from steering_agent.data.imageconv import fill_image_msg

    rgb = np.random.default_rng(ns % 101).integers(0, 256, (H, W, 3), dtype=np.uint8)
    msg = fill_image_msg(Image(), rgb, "bgra8")
    msg.header.stamp = time_msg(ns)
    return msg


class Agent:
    """An agent process; a probe that feeds it frames, a speed and the override, and
    records its commands (with their wall time of arrival) and its diagnostics."""

    def __init__(self, tmp, checkpoint) -> None:
        from carla_msgs.msg import CarlaEgoVehicleControl
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image
        from std_msgs.msg import Bool, Float32

        from steering_agent.interfaces import topics
        from steering_agent.ros.closed_loop import start_node

        self.log = tmp / "agent.log"
        params = {"checkpoint": str(checkpoint), "control_type": "carla",
                  "watchdog_timeout_s": WATCHDOG_S, "error_log_period_s": 0.0}  # fmt: skip
        self.proc = start_node("agent", params, self.log)
        self.probe = Probe("ops_probe")
        node = self.probe.node
        self.got: list[tuple[float, object]] = []  # (wall time received, command)
        node.create_subscription(
            CarlaEgoVehicleControl, topics.CONTROL,
            lambda m: self.got.append((time.monotonic(), m)), QoSProfile(depth=100),
        )  # fmt: skip
        self.diagnostics = self.probe.record(DiagnosticArray, "/diagnostics")
        self.pub = node.create_publisher(Image, topics.IMAGE, QoSProfile(depth=1))
        self.speed_pub = node.create_publisher(Float32, topics.SPEEDOMETER, QoSProfile(depth=1))
        latched = QoSProfile(
            depth=1,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
        )
        self.override_pub = node.create_publisher(Bool, topics.MANUAL_OVERRIDE, latched)
        self.next_ns = DT_NS
        up = self.probe.spin_until(
            lambda: (
                (
                    self.pub.get_subscription_count() > 0
                    and self.override_pub.get_subscription_count() > 0
                    and node.count_publishers(topics.CONTROL) > 0
                )
                or self.proc.poll() is not None
            ),
            60.0,
        )
        assert up and self.proc.poll() is None, log_text(self.log)

    def send(self, speed: float | None = None) -> int:
        """One frame with the next stamp (after `speed` on the speed topic); its stamp."""
        from std_msgs.msg import Float32

        if speed is not None:
            self.speed_pub.publish(Float32(data=speed))
            self.probe.spin_for(0.02)
        ns = self.next_ns
        self.next_ns += DT_NS
        self.pub.publish(_image(ns))
        self.probe.spin_for(0.05)
        return ns

    def reply_to(self, ns: int, timeout_s: float = 10.0):
        found = []

        def has_reply():
            found[:] = [m for _, m in self.got if stamp_ns(m.header.stamp) == ns]
            return bool(found)

        self.probe.spin_until(has_reply, timeout_s)
        return found[0] if found else None

    def drive(self, speed: float | None = None):
        """A frame and the command answering it."""
        reply = self.reply_to(self.send(speed))
        assert reply is not None, log_text(self.log)
        return reply

    def status(self, predicate=lambda s: True, after: int = 0, timeout_s: float = 5.0):
        """The first of our diagnostics statuses from message `after` on that satisfies
        `predicate` (a dict of its key-values gets the level, name and message too)."""
        found = []

        def match():
            for array in self.diagnostics[after:]:
                for s in array.status:
                    if s.name != "steering_agent: agent":
                        continue
                    d = {kv.key: kv.value for kv in s.values}
                    d.update(level=s.level, message=s.message, hardware_id=s.hardware_id)
                    if predicate(d):
                        found.append(d)
                        return True
            return False

        self.probe.spin_until(match, timeout_s)
        return found[0] if found else None

    def override(self, active: bool) -> None:
        from std_msgs.msg import Bool

        text = "manual override: publishing nothing" if active else "override released"
        before = log_text(self.log).count(text)
        self.override_pub.publish(Bool(data=active))
        assert self.probe.spin_until(lambda: log_text(self.log).count(text) > before, 10.0), (
            log_text(self.log)
        )

    def set_parameters(self, **values):
        """Set parameters through the node's parameter service; the results."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        client = self.probe.node.create_client(SetParameters, "/agent/set_parameters")
        assert client.wait_for_service(timeout_sec=10.0)
        request = SetParameters.Request()
        request.parameters = [Parameter(k, value=v).to_parameter_msg() for k, v in values.items()]
        future = client.call_async(request)
        assert self.probe.spin_until(future.done, 10.0)
        self.probe.node.destroy_client(client)
        return future.result().results

    def get_float_parameter(self, name: str) -> float:
        from rcl_interfaces.msg import ParameterType
        from rcl_interfaces.srv import GetParameters

        client = self.probe.node.create_client(GetParameters, "/agent/get_parameters")
        assert client.wait_for_service(timeout_sec=10.0)
        future = client.call_async(GetParameters.Request(names=[name]))
        assert self.probe.spin_until(future.done, 10.0)
        self.probe.node.destroy_client(client)
        value = future.result().values[0]
        assert value.type == ParameterType.PARAMETER_DOUBLE, value
        return value.double_value

    def brakes_after(self, t: float) -> list[float]:
        return [w for w, m in self.got if w >= t and m.header.frame_id == "watchdog"]

    def close(self) -> None:
        from steering_agent.ros.closed_loop import stop_process

        # The agent first: a participant whose TCP peers are up can hang when deleted.
        stop_process(self.proc)
        self.probe.close()


@pytest.fixture(scope="module")
def agent(domain, checkpoint, tmp_path_factory):
    a = Agent(tmp_path_factory.mktemp("ops_agent"), checkpoint)
    try:
        yield a
    finally:
        a.close()


def _level(name: str) -> bytes:
    from diagnostic_msgs.msg import DiagnosticStatus

    return getattr(DiagnosticStatus, name)


def test_diagnostics_say_no_frames_then_driving_then_braking(agent):
    from steering_agent.ros.diagnostics import HealthMonitor

    first = agent.status()  # before any frame
    assert first is not None, "no /diagnostics from the agent"
    assert set(HealthMonitor.KEYS) <= set(first), set(HealthMonitor.KEYS) - set(first)
    assert first["level"] == _level("WARN") and first["message"] == "no frames yet"
    assert first["hardware_id"] == "agent" and first["calibration"] == "canonical"
    assert first["manual override"] == "inactive" and first["target speed (m/s)"] == "6"
    n = len(agent.diagnostics)
    for _ in range(25):  # about 1.2 s of frames
        agent.send()
    driving = agent.status(lambda s: float(s["frame rate (Hz)"]) > 0, after=n)
    assert driving is not None, log_text(agent.log)
    assert driving["watchdog"] == "driving"
    assert float(driving["model time p99 (ms)"]) >= float(driving["model time p50 (ms)"]) > 0
    assert 0.0 <= float(driving["frame drop (%)"]) <= 100.0
    # OK, unless a loaded machine made the agent miss many frames (which it then says)
    assert driving["level"] == _level("OK") or "dropped" in driving["message"], driving
    # no more frames: the watchdog brakes, and the status says so
    braking = agent.status(lambda s: s["watchdog"] == "braking: watchdog", after=n)
    assert braking is not None, log_text(agent.log)
    assert braking["level"] == _level("WARN") and braking["message"].startswith("braking")


def test_override_silences_the_agent_and_release_resumes_it(agent):
    agent.drive()
    agent.override(True)
    n, t0 = len(agent.got), time.monotonic()
    steps = len(agent.diagnostics)
    for _ in range(10):  # frames while a human drives: stepped, not answered
        agent.send()
    agent.probe.spin_for(2 * WATCHDOG_S + 0.2)  # no frames: no watchdog brakes either
    assert len(agent.got) == n, [(w - t0, m.header.frame_id) for w, m in agent.got[n:]]
    stepping = agent.status(
        lambda s: s["manual override"].startswith("active") and s["model time p50 (ms)"] != "n/a",
        after=steps,
    )
    assert stepping is not None, "the network did not keep stepping under the override"
    assert stepping["level"] == _level("OK") and "manual override" in stepping["message"]
    agent.override(False)
    resumed = agent.drive()
    assert resumed.header.frame_id == "" and resumed.brake < 1.0
    # released: the watchdog is armed again
    t_last = time.monotonic()
    assert agent.probe.spin_until(lambda: agent.brakes_after(t_last), 5.0)


def test_target_speed_set_while_running_changes_the_throttle(agent):
    assert all(r.successful for r in agent.set_parameters(target_speed_mps=40.0))
    replies = [agent.drive(SPEED_MPS) for _ in range(3)]
    assert replies[-1].throttle == 1.0 and replies[-1].brake == 0.0  # far below 40 m/s
    assert agent.status(lambda s: s["target speed (m/s)"] == "40") is not None
    assert all(r.successful for r in agent.set_parameters(target_speed_mps=0.5))
    slow = [agent.drive(SPEED_MPS) for _ in range(3)]
    assert slow[-1].throttle == 0.0 and slow[-1].brake > 0.0  # far above 0.5 m/s
    assert all(r.successful for r in agent.set_parameters(target_speed_mps=0.0))
    assert agent.status(lambda s: s["target speed (m/s)"] == "6") is not None  # checkpoint's


def test_an_integer_for_a_float_parameter_at_runtime(agent):
    from rclpy.node import Node

    result = agent.set_parameters(target_speed_mps=40)[0]  # INTEGER, as `ros2 param set ... 40`
    if hasattr(Node, "add_pre_set_parameters_callback"):  # Iron and newer: taken as 40.0
        assert result.successful, result.reason
        assert agent.get_float_parameter("target_speed_mps") == 40.0
        assert agent.drive(SPEED_MPS).throttle > 0.0
    else:  # Humble: rclpy refuses the type before any node callback
        assert not result.successful and "type" in result.reason
    assert agent.set_parameters(target_speed_mps=0.0)[0].successful


@pytest.mark.parametrize("value", [100.0, -1.0, float("nan")])
def test_out_of_range_values_are_refused_and_change_nothing(agent, value):
    result = agent.set_parameters(target_speed_mps=value)[0]
    assert not result.successful and "target_speed_mps" in result.reason
    assert agent.get_float_parameter("target_speed_mps") == 0.0
    result = agent.set_parameters(watchdog_timeout_s=value)[0]
    assert not result.successful and "watchdog_timeout_s" in result.reason
    assert agent.get_float_parameter("watchdog_timeout_s") == WATCHDOG_S


def test_read_only_parameters_stay_read_only(agent):
    result = agent.set_parameters(max_failures=5)[0]
    assert not result.successful and "read-only" in result.reason


def test_watchdog_timeout_set_while_running(agent):
    assert agent.set_parameters(watchdog_timeout_s=1.6)[0].successful
    try:
        for _ in range(3):
            agent.drive()
        last_good = max(w for w, m in agent.got if m.header.frame_id == "")
        assert agent.probe.spin_until(lambda: agent.brakes_after(last_good), 6.0)
        waited = agent.brakes_after(last_good)[0] - last_good
        # checked every 0.4 s (a quarter of the timeout) from the change on
        assert 1.6 - 0.1 <= waited <= 1.6 + 0.4 + 0.5, waited
    finally:
        assert agent.set_parameters(watchdog_timeout_s=WATCHDOG_S)[0].successful
    assert agent.status(lambda s: s["watchdog timeout (s)"] == "0.4") is not None
