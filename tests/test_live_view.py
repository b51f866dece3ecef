"""The Foxglove live view: a WebSocket client speaking the Foxglove protocol (advertise,
subscribe, message data) receives every channel of `LiveView`, of `drive --live` and of
`closed-loop --live`; without foxglove-sdk, `--live` is one line naming the extra."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import threading
import time

import numpy as np
import pytest

from steering_agent.cli import main
from steering_agent.ros import live_view

pytest.importorskip("foxglove", reason="the `live` extra (foxglove-sdk) is not installed")

# The Foxglove WebSocket protocol: foxglove-sdk 0.30's server speaks it under the name
# `foxglove.sdk.v1` (and refuses the older `foxglove.websocket.v1` alone); the client
# offers both and checks that the server picks one (the messages are the same).
SUBPROTOCOLS = ("foxglove.sdk.v1", "foxglove.websocket.v1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FoxgloveClient:
    """A minimal WebSocket client (RFC 6455) for the Foxglove protocol: text frames are
    JSON control messages, binary frames with opcode 1 are message data."""

    def __init__(self, port: int, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:  # the server may still be starting
            try:
                self.sock = socket.create_connection(("127.0.0.1", port), timeout=5.0)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Protocol: {', '.join(SUBPROTOCOLS)}\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            assert chunk, "the server closed the connection during the handshake"
            head += chunk
        status, *headers = head.decode().split("\r\n")
        assert " 101 " in status, head
        chosen = [h.split(":", 1)[1].strip() for h in headers if ":" in h and
                  h.split(":", 1)[0].lower() == "sec-websocket-protocol"]  # fmt: skip
        assert len(chosen) == 1 and chosen[0] in SUBPROTOCOLS, head
        self.subprotocol = chosen[0]
        self.channels: dict[int, dict] = {}  # channel id -> advertised channel
        self.subscriptions: dict[int, int] = {}  # subscription id -> channel id

    def _read(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            assert chunk, "connection closed"
            out += chunk
        return out

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def recv(self) -> tuple[int, bytes]:
        """The next data frame (opcode 1 text / 2 binary, payload); answers pings."""
        parts, first_op = [], None
        while True:
            b0, b1 = self._read(2)
            op, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else None
            data = self._read(n)
            if mask:
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            if op == 0x9:
                self._send(0xA, data)
                continue
            if op == 0x8:
                raise ConnectionError("server closed the connection")
            if op in (0x1, 0x2):
                first_op = op
            if op in (0x0, 0x1, 0x2):
                parts.append(data)
                if b0 & 0x80:
                    return first_op, b"".join(parts)

    def subscribe_all(self, topics, timeout_s: float = 30.0) -> None:
        """Wait for the advertisement of every topic in `topics`, subscribe to each."""
        deadline = time.monotonic() + timeout_s
        while {c["topic"] for c in self.channels.values()} < set(topics):
            assert time.monotonic() < deadline, f"advertised: {self.channels}"
            op, data = self.recv()
            if op == 1:
                msg = json.loads(data)
                if msg.get("op") == "advertise":
                    self.channels.update({c["id"]: c for c in msg["channels"]})
        subs = []
        for i, (cid, ch) in enumerate(sorted(self.channels.items()), start=1):
            if ch["topic"] in topics:
                self.subscriptions[i] = cid
                subs.append({"id": i, "channelId": cid})
        self._send(0x1, json.dumps({"op": "subscribe", "subscriptions": subs}).encode())

    def messages(self, timeout_s: float, until=None):
        """{topic: [payload, ...]} of message data until `until(received)` or the timeout."""
        got: dict[str, list[bytes]] = {}
        deadline = time.monotonic() + timeout_s
        self.sock.settimeout(1.0)
        while time.monotonic() < deadline and not (until and until(got)):
            try:
                op, data = self.recv()
            except TimeoutError:
                continue
            if op == 2 and data[0] == 0x01:  # message data: sub id u32, log time u64
                sub_id = struct.unpack_from("<I", data, 1)[0]
                topic = self.channels[self.subscriptions[sub_id]]["topic"]
                got.setdefault(topic, []).append(data[13:])
        return got

    def close(self) -> None:
        self.sock.close()


STEER = live_view.STEERING


def _every_channel(got: dict) -> bool:
    return all(got.get(t) for t in live_view.CHANNELS)


def test_each_channel_reaches_a_websocket_client():
    view = live_view.LiveView(port=0)
    client = None
    try:
        assert view.port > 0 and view.url == f"ws://localhost:{view.port}"
        client = FoxgloveClient(view.port)
        client.subscribe_all(live_view.CHANNELS)
        assert view.wait_for_subscribers(10.0)
        by_topic = {c["topic"]: c for c in client.channels.values()}
        assert by_topic["/camera"]["schemaName"] == "foxglove.RawImage"
        assert all(by_topic[t]["encoding"] == "json" for t in live_view.SCHEMAS)
        rgb = np.random.default_rng(1).integers(0, 256, (6, 8, 3), dtype=np.uint8)
        got: dict = {}
        for k in range(50):  # frames until each channel has arrived
            view.frame(k * 50_000_000, rgb, 0.25, -0.5, 6.0, 0.125)
            for topic, payloads in client.messages(0.2).items():
                got.setdefault(topic, []).extend(payloads)
            if _every_channel(got):
                break
        assert _every_channel(got), {t: len(v) for t, v in got.items()}
        assert rgb.tobytes() in got["/camera"][0]  # the pixels, verbatim in the RawImage
        steering = json.loads(got["/steering"][0])
        assert steering["agent"] == 0.25 and steering["expert"] == -0.5
        assert json.loads(got["/speed"][0])["mps"] == 6.0
        assert json.loads(got["/lateral_error"][0])["m"] == 0.125
        assert set(steering["timestamp"]) == {"sec", "nsec"}
    finally:
        if client:
            client.close()
        view.close()


def test_a_missing_value_is_null_not_nan():
    view = live_view.LiveView(port=0)
    client = FoxgloveClient(view.port)
    try:
        client.subscribe_all([live_view.STEERING])
        deadline = time.monotonic() + 10
        while not view.subscribed(live_view.STEERING) and time.monotonic() < deadline:
            time.sleep(0.05)
        view.steering(0, float("nan"), None)
        got = client.messages(10.0, until=lambda g: g.get(live_view.STEERING))
        msg = json.loads(got[live_view.STEERING][0])
        assert msg["agent"] is None and msg["expert"] is None
    finally:
        client.close()
        view.close()


def _drive_in_thread(args: list[str]) -> tuple[threading.Thread, dict]:
    result: dict = {}

    def run() -> None:
        result["rc"] = main(args)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def test_drive_live_streams_every_channel(tmp_path):
    port = free_port()
    thread, result = _drive_in_thread(
        ["drive", "--policy", "expert", "--route-length-m", "15", "--no-video",
         "--out", str(tmp_path), "--live", "--live-port", str(port), "--live-wait", "60"]
    )  # fmt: skip
    client = FoxgloveClient(port)
    try:
        client.subscribe_all(live_view.CHANNELS)
        got = client.messages(60.0, until=lambda g: _every_channel(g) and len(g[STEER]) > 3)
    finally:
        client.close()
        thread.join(120)
    assert not thread.is_alive() and result.get("rc") == 0, result
    assert _every_channel(got), {t: len(v) for t, v in got.items()}
    speeds = [json.loads(m)["mps"] for m in got["/speed"]]
    assert all(isinstance(v, float) and v >= 0 for v in speeds), speeds
    # the expert drives: its label and the executed steer are the same command
    both = [json.loads(m) for m in got["/steering"] if json.loads(m)["expert"] is not None]
    assert both and all(abs(m["agent"] - m["expert"]) < 1e-6 for m in both), both[:3]


def test_live_without_the_extra_is_one_line(monkeypatch, tmp_path, capsys):
    from steering_agent.common import extras

    real = extras.importlib.util.find_spec
    monkeypatch.setattr(
        extras.importlib.util, "find_spec", lambda n, *a: None if n == "foxglove" else real(n)
    )
    rc = main(["drive", "--policy", "expert", "--out", str(tmp_path), "--live"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert 'pip install "steering_agent[live]"' in err


@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.usefixtures("domain")
def test_closed_loop_live_streams_every_channel(tmp_path, checkpoint):
    port = free_port()
    thread, result = _drive_in_thread(
        ["closed-loop", "--route-length-m", "40", "--checkpoint", str(checkpoint),
         "--control-type", "carla", "--timeout", "180", "--workdir", str(tmp_path / "w"),
         "--live", "--live-port", str(port)]
    )  # fmt: skip
    client = FoxgloveClient(port, timeout_s=60.0)
    try:
        client.subscribe_all(live_view.CHANNELS)
        got = client.messages(120.0, until=_every_channel)
    finally:
        client.close()
        thread.join(200)
    assert _every_channel(got), {t: len(v) for t, v in got.items()}
    assert result.get("rc") == 0, result
    # the agent's command beside the expert's label of the same frame (paired by stamp)
    rows = [json.loads(m) for m in got["/steering"]]
    assert any(r["expert"] is not None and r["agent"] is not None for r in rows), rows[:3]
    assert any(b"bgra8" in m for m in got["/camera"])
