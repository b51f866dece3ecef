"""Publishing a serialized message straight from a buffer, without a copy first.

rclpy's `Publisher.publish(bytes)` needs a `bytes` object, and its C++ side then copies
that into a `std::string` before it calls `rcl_publish_serialized_message`: for an
800x600 bgra8 frame, two copies of 1.9 MB (`bytes(buffer)`, then the string) before DDS
makes its own. `RawPublisher` calls `rcl_publish_serialized_message` itself (ctypes)
with an `rcl_serialized_message_t` that points into the caller's buffer, e.g. the
`ImageCdr` a frame was rendered into: DDS's copy into its sample is the only one.

The struct is rcutils_uint8_array_t (buffer, length, capacity, an rcutils_allocator_t
of four function pointers and a state pointer), the same in Humble, Jazzy and Kilted;
rcl only reads the buffer and its length. The rcl publisher comes from the rclpy
publisher's `handle.pointer`. Where any of this is missing (another rclpy, rcl not
loaded), `RawPublisher` falls back to `publish(bytes(buffer))`, and says so in `direct`.
"""

from __future__ import annotations

import ctypes
from functools import cache


class _Allocator(ctypes.Structure):
    _fields_ = [
        ("allocate", ctypes.c_void_p),
        ("deallocate", ctypes.c_void_p),
        ("reallocate", ctypes.c_void_p),
        ("zero_allocate", ctypes.c_void_p),
        ("state", ctypes.c_void_p),
    ]


class _SerializedMessage(ctypes.Structure):
    _fields_ = [
        ("buffer", ctypes.c_void_p),
        ("buffer_length", ctypes.c_size_t),
        ("buffer_capacity", ctypes.c_size_t),
        ("allocator", _Allocator),
    ]


@cache
def _library(name: str) -> ctypes.CDLL | None:
    """The already loaded `name` (e.g. librcl.so): by name, else by its path in this
    process's memory map; None if neither works."""
    lib = None
    candidates = [name]
    try:
        with open("/proc/self/maps") as maps:
            candidates += sorted({
                line.split()[-1] for line in maps if line.rstrip().endswith("/" + name)
            })  # fmt: skip
    except OSError:
        pass
    for candidate in candidates:
        try:
            lib = ctypes.CDLL(candidate)
            break
        except OSError:
            continue
    return lib


@cache
def _rcl_publish():
    """(rcl_publish_serialized_message, rcutils_reset_error or None), typed once;
    (None, None) without rcl."""
    rcl = _library("librcl.so")
    if rcl is None:
        return None, None
    try:
        fn = rcl.rcl_publish_serialized_message
    except AttributeError:
        return None, None
    fn.argtypes = (ctypes.c_void_p, ctypes.POINTER(_SerializedMessage), ctypes.c_void_p)
    fn.restype = ctypes.c_int
    reset = None
    rcutils = _library("librcutils.so")
    if rcutils is not None:
        reset = getattr(rcutils, "rcutils_reset_error", None)
    return fn, reset


class RawPublisher:
    """Publishes the bytes of a fixed buffer (bytearray) through an rclpy publisher of
    its message type, the buffer holding the whole CDR-serialized message."""

    def __init__(self, publisher, buffer: bytearray) -> None:
        self.publisher = publisher
        self.buffer = buffer
        self._msg = None
        self._fn, self._reset = _rcl_publish()
        pointer = getattr(getattr(publisher, "handle", None), "pointer", None)
        if self._fn is not None and isinstance(pointer, int) and pointer:
            # A ctypes view exports the bytearray: it cannot be resized while this lives.
            self._view = (ctypes.c_char * len(buffer)).from_buffer(buffer)
            msg = _SerializedMessage()
            msg.buffer = ctypes.addressof(self._view)
            msg.buffer_length = msg.buffer_capacity = len(buffer)
            self._msg = msg

    @property
    def direct(self) -> bool:
        """True: published from the buffer itself; False: through `bytes(buffer)`."""
        return self._msg is not None

    def publish(self) -> None:
        """Publish the buffer as it is now.

        Raises:
            RuntimeError: rcl refused it (e.g. the publisher was destroyed).
        """
        if self._msg is None:
            self.publisher.publish(bytes(self.buffer))
            return
        with self.publisher.handle:  # as rclpy does: not destroyed while in use
            ret = self._fn(self.publisher.handle.pointer, ctypes.byref(self._msg), None)
        if ret != 0:
            if self._reset is not None:
                self._reset()
            topic = self.publisher.topic_name
            raise RuntimeError(f"rcl_publish_serialized_message on {topic} returned {ret}")
