"""What a video file holds, read from its bytes: container, codec, size, browser support.

MP4 (ISO base media): the first video track's sample entry in ``moov/trak/mdia/minf/
stbl/stsd`` (``avc1`` with its ``avcC`` profile, ``mp4v``, ``hvc1``, ``vp09``, ``av01``)
and whether ``moov`` precedes ``mdat`` (faststart: a browser starts playing before the
whole file has arrived). WebM/Matroska (EBML): DocType, the video track's CodecID
(``V_VP9``, ``V_VP8``, ``V_AV1``, ...), its pixel size and, for VP9, the profile in the
first frame's header (profile 0 is 8-bit 4:2:0, the one every browser decodes).
"""

from __future__ import annotations

import struct
from pathlib import Path

# codecs every current browser plays (in MP4: H.264; in WebM: VP8, VP9; AV1 in both)
BROWSER_CODECS = frozenset({"h264", "vp8", "vp9", "av1"})
# H.264 profiles browsers decode: Constrained Baseline/Baseline, Main, High (8-bit 4:2:0)
_H264_BROWSER_PROFILES = {66: "baseline", 77: "main", 100: "high"}
_MP4_CODECS = {b"avc1": "h264", b"avc3": "h264", b"mp4v": "mpeg4", b"hvc1": "hevc",
               b"hev1": "hevc", b"vp09": "vp9", b"av01": "av1"}  # fmt: skip
_MKV_CODECS = {"V_VP9": "vp9", "V_VP8": "vp8", "V_AV1": "av1", "V_MPEG4/ISO/AVC": "h264",
               "V_MPEGH/ISO/HEVC": "hevc", "V_MPEG4/ISO/ASP": "mpeg4"}  # fmt: skip
_MP4_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl"}


def probe_video(path: Path | str) -> dict:
    """{"container", "codec", "width", "height", "browser_playable", ...} of a video file.

    Extra keys: MP4 ``faststart`` (moov before mdat) and, for H.264, ``profile``; WebM
    ``doctype`` and, for VP9, ``profile`` (0..3). `codec` is None where no video track
    was found; ``browser_playable`` is whether a current browser plays it as written.

    Raises:
        ValueError: the file is neither MP4 nor EBML (WebM/Matroska).
    """
    data = Path(path).read_bytes()
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return _probe_ebml(data)
    if data[4:8] == b"ftyp":
        return _probe_mp4(data)
    raise ValueError(f"{path}: neither MP4 (ftyp) nor WebM/Matroska (EBML) data")


# ---------------------------------------------------------------- MP4 (ISO BMFF)


def _boxes(data: bytes, start: int, end: int):
    """(type, payload start, box end) of the boxes in data[start:end]."""
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        head = 8
        if size == 1:
            size, head = struct.unpack_from(">Q", data, pos + 8)[0], 16
        elif size == 0:
            size = end - pos
        if size < head:
            return
        yield kind, pos + head, min(pos + size, end)
        pos += size


def _probe_mp4(data: bytes) -> dict:
    out = {"container": "mp4", "codec": None, "width": None, "height": None}
    order = [kind for kind, _, _ in _boxes(data, 0, len(data))]
    out["faststart"] = (
        b"moov" in order and b"mdat" in order and order.index(b"moov") < order.index(b"mdat")
    )
    stack = [(0, len(data))]
    while stack and out["codec"] is None:
        start, end = stack.pop()
        for kind, body, box_end in _boxes(data, start, end):
            if kind in _MP4_CONTAINERS:
                stack.append((body, box_end))
            elif kind == b"stsd":
                _read_stsd(data, body, box_end, out)
    out["browser_playable"] = out["codec"] in BROWSER_CODECS and (
        out["codec"] != "h264" or out.get("profile") in _H264_BROWSER_PROFILES.values()
    )
    return out


def _read_stsd(data: bytes, body: int, end: int, out: dict) -> None:
    """The first visual sample entry of an stsd box (version/flags, count, entries)."""
    for kind, entry, entry_end in _boxes(data, body + 8, end):
        if kind not in _MP4_CODECS:
            continue
        out["codec"] = _MP4_CODECS[kind]
        # VisualSampleEntry: 6 reserved + 2 index + 16 pre-defined, then width, height
        out["width"], out["height"] = struct.unpack_from(">HH", data, entry + 24)
        children = entry + 78  # after compressor name, depth and pre-defined
        for child, cbody, _ in _boxes(data, children, entry_end):
            if child == b"avcC":
                profile = data[cbody + 1]
                out["profile"] = _H264_BROWSER_PROFILES.get(profile, f"profile_idc {profile}")
        return


# ---------------------------------------------------------------- WebM / Matroska (EBML)

_EBML_MASTERS = {0x18538067, 0x1654AE6B, 0xAE, 0xE0, 0x1F43B675, 0xA0}  # Segment, Tracks,
# TrackEntry, Video, Cluster, BlockGroup
_DOCTYPE, _CODEC_ID, _TRACK_TYPE = 0x4282, 0x86, 0x83
_PIXEL_W, _PIXEL_H, _SIMPLE_BLOCK, _BLOCK = 0xB0, 0xBA, 0xA3, 0xA1
_EBML_HEADER = 0x1A45DFA3


def _vint(data: bytes, pos: int, keep_marker: bool) -> tuple[int, int, bool]:
    """(value, length, all value bits set) of the variable-length integer at `pos`."""
    first = data[pos]
    length = 1
    while length <= 8 and not first & (0x80 >> (length - 1)):
        length += 1
    if length > 8:
        raise ValueError(f"invalid EBML variable-length integer at byte {pos}")
    value = first if keep_marker else first & (0xFF >> length)
    for b in data[pos + 1 : pos + length]:
        value = (value << 8) | b
    unknown = not keep_marker and value == (1 << (7 * length)) - 1
    return value, length, unknown


def _ebml_elements(data: bytes, start: int, end: int):
    """(id, payload start, payload end) of the elements in data[start:end]; an element
    of unknown size (live muxing) runs to `end`."""
    pos = start
    while pos < end:
        eid, n, _ = _vint(data, pos, keep_marker=True)
        size, m, unknown = _vint(data, pos + n, keep_marker=False)
        body = pos + n + m
        stop = end if unknown else min(body + size, end)
        yield eid, body, stop
        pos = stop


def _probe_ebml(data: bytes) -> dict:
    out = {"container": "matroska", "codec": None, "width": None, "height": None}
    state = {"video_track": False, "first_block": None}
    _walk_ebml(data, 0, len(data), out, state)
    if out.get("doctype") == "webm":
        out["container"] = "webm"
    block = state["first_block"]
    if out["codec"] == "vp9" and block is not None:
        _, n, _ = _vint(data, block, keep_marker=False)  # track number
        header = data[block + n + 3]  # after the 16-bit timecode and the flags byte
        if header >> 6 == 0b10:  # frame_marker
            out["profile"] = ((header >> 5) & 1) | (((header >> 4) & 1) << 1)
    out["browser_playable"] = (
        out["container"] == "webm"
        and out["codec"] in {"vp8", "vp9", "av1"}
        and (out["codec"] != "vp9" or out.get("profile") == 0)
    )
    return out


def _walk_ebml(data: bytes, start: int, end: int, out: dict, state: dict) -> None:
    for eid, body, stop in _ebml_elements(data, start, end):
        if eid == _DOCTYPE:
            out["doctype"] = data[body:stop].decode("ascii", "replace").rstrip("\0")
        elif eid == _CODEC_ID and out["codec"] is None:
            codec_id = data[body:stop].decode("ascii", "replace").rstrip("\0")
            if codec_id.startswith("V_"):
                out["codec"] = _MKV_CODECS.get(codec_id, codec_id)
                out["codec_id"] = codec_id
        elif eid == _PIXEL_W and out["width"] is None:
            out["width"] = int.from_bytes(data[body:stop], "big")
        elif eid == _PIXEL_H and out["height"] is None:
            out["height"] = int.from_bytes(data[body:stop], "big")
        elif eid in (_SIMPLE_BLOCK, _BLOCK):
            if state["first_block"] is None:
                state["first_block"] = body
            return  # one block is all the header check needs
        elif eid in _EBML_MASTERS or eid == _EBML_HEADER:
            _walk_ebml(data, body, stop, out, state)
            if state["first_block"] is not None:
                return
