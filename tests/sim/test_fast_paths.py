"""The per-step fast paths of the varied look give what straightforward references give.

The references here are the earlier, plainly vectorised forms: footprint and traffic
overlap tests over all rows at once, and the polygon fill drawn in a plain Python loop.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from sim.env import DriveEnv
from sim.scenery import EGO_HALF_LEN, EGO_HALF_WID
from sim.scenery_draw import ONE, SHIFT, ZNEAR

SEEDS = (1, 5, 10)  # rain with 4 lanes; clear with 3; night


def _reference_collides(sc, s, lateral, t_s) -> bool:
    f = sc._foot
    if len(f):
        hit = (
            (f[:, 1] > s - EGO_HALF_LEN)
            & (f[:, 0] < s + EGO_HALF_LEN)
            & (f[:, 3] > lateral - EGO_HALF_WID)
            & (f[:, 2] < lateral + EGO_HALF_WID)
        )
        if hit.any():
            return True
    tr = sc.traffic
    if tr is None or not tr.s0.size:
        return False
    st = tr.s_at(t_s)
    hit = (np.abs(st - s) < EGO_HALF_LEN + tr.half_len) & (
        np.abs(tr.lane - lateral) < EGO_HALF_WID + tr.half_wid
    )
    return bool(hit.any())


@pytest.mark.parametrize("seed", SEEDS)
def test_collides_matches_the_vectorised_reference(seed):
    env = DriveEnv(look="varied", route_length_m=300.0)
    env.reset(seed=seed)
    sc = env.scenery
    rng = np.random.default_rng(seed)
    lo, hi = float(env.road.s[0]), float(env.road.s[-1])
    hits = 0
    # points spread over the road and its sides, and points right on objects and cars
    cases = [(rng.uniform(lo, hi), rng.uniform(-15, 15), rng.uniform(0, 60)) for _ in range(600)]
    for f in sc._foot[:: max(1, len(sc._foot) // 60)]:
        cases.append((0.5 * (f[0] + f[1]), 0.5 * (f[2] + f[3]), 0.0))
    if sc.traffic is not None and sc.traffic.s0.size:
        st = sc.traffic.s_at(7.0)
        cases += [(float(a), float(b), 7.0) for a, b in zip(st, sc.traffic.lane, strict=True)]
    for s, lat, t in cases:
        want = _reference_collides(sc, s, lat, t)
        assert sc.collides(s, lat, t) == want, (seed, s, lat, t)
        hits += want
    assert hits > 20  # the cases do reach objects and vehicles


def _reference_fill(raster, img, p, front, depth, cols) -> None:
    """The fill as one loop of `cv2.fillConvexPoly` after numpy culling (the earlier form);
    `p` in the homogeneous pixel frame (z, U, V)."""
    import cv2

    z = p[:, 0]
    zlo = z.min(axis=0)
    uv = p[:, 1:] / np.maximum(z, ZNEAR)[:, None, :]
    lo, hi = uv.min(axis=0), uv.max(axis=0)
    d = hi - lo
    show = (
        front
        & (zlo >= ZNEAR)
        & (hi >= 0).all(axis=0)
        & (lo < raster._wh).all(axis=0)
        & (d > 0.3).all(axis=0)
        & (d[0] + d[1] > 1.2)
    )
    crossing = np.flatnonzero(front & (zlo < ZNEAR) & (z.max(axis=0) >= ZNEAR))
    special = set(raster._keep_crossing(p, crossing).tolist()) if crossing.size else set()
    show[list(special)] = True
    g = 8000.0
    big = show & ((lo < -g).any(axis=0) | (hi > raster._guard_hi).any(axis=0))
    special.update(np.flatnonzero(big).tolist())
    idx = np.flatnonzero(show)
    idx = idx[np.argsort(-depth[idx], kind="stable")]
    for k in idx.tolist():
        if k in special:
            q = raster.clipped(p[:, :, k])
        else:
            q = np.empty((8, 2), np.int32)
            np.rint(uv[:, :, k] * ONE, out=q, casting="unsafe")
        if q is not None:
            cv2.fillConvexPoly(img, q, cols[k], cv2.LINE_8, SHIFT)


@pytest.mark.parametrize("size", [(200, 66), (320, 240)])
def test_scenery_fill_matches_the_reference_loop(size):
    """Every frame of drives with objects and traffic: the fast fill draws the same
    pixels as the reference (drawn on copies of the same frame)."""
    w, h = size
    env = DriveEnv(width=w, height=h, look="varied", route_length_m=300.0, weather=False)
    frames = drawn = 0
    for seed in SEEDS:
        _, info = env.reset(seed=seed)
        raster = env.scenery._raster
        fast_fill = raster.fill
        got: list = []

        def spy(img, p, front, depth, cols, fast_fill=fast_fill, raster=raster, got=got):
            ref = img.copy()
            _reference_fill(raster, ref, p, front, depth, cols)
            before = img.copy()
            fast_fill(img, p, front, depth, cols)
            got.append((np.array_equal(img, ref), not np.array_equal(img, before)))

        raster.fill = spy
        for _ in range(120):
            _, _, term, trunc, info = env.step(info["expert_action"])
            if term or trunc:
                break
        assert got and all(same for same, _ in got), seed
        frames += len(got)
        drawn += sum(changed for _, changed in got)
    assert drawn > frames // 2  # the drives do draw things


def test_varied_with_everything_on_is_deterministic():
    """Same seed, same frames and infos, with scenery, traffic and every weather extra
    that seed draws (seed 1: rain, noise, vignette, exposure drift; seed 0: glare)."""

    def drive(seed):
        env = DriveEnv(look="varied", route_length_m=200.0)
        obs, info = env.reset(seed=seed)
        frames, infos = [obs["image"].copy()], []
        for _ in range(40):
            obs, r, term, trunc, info = env.step(info["expert_action"])
            frames.append(obs["image"].copy())
            infos.append(repr((r, term, trunc, info)))
            if term or trunc:
                break
        return np.stack(frames), infos

    for seed in (0, 1):
        a, ia = drive(seed)
        b, ib = drive(seed)
        assert np.array_equal(a, b) and ia == ib


def _camera_frame_front(normals_cam: np.ndarray, v0_cam: np.ndarray) -> np.ndarray:
    """The earlier back-face test: camera-frame normal . first vertex <= 0."""
    return (normals_cam * v0_cam).sum(axis=1) <= 0.0


@pytest.mark.parametrize("seed", SEEDS)
def test_world_plane_back_faces_match_the_camera_frame_test(seed):
    """Back faces found by world planes (static objects) and in each car's template frame
    (traffic) are the faces the camera-frame normal test finds, pose after pose."""
    from sim.vehicles import place_template

    env = DriveEnv(look="varied", route_length_m=300.0, weather=False)
    _, info = env.reset(seed=seed)
    sc = env.scenery
    tr = sc.traffic
    checked = seen = 0
    for _ in range(90):
        _, _, term, trunc, info = env.step(info["expert_action"])
        if term or trunc:
            break
        x, y, yaw = info["pose"]
        m, off = sc._to_camera(x, y, yaw)
        eye = -(off @ m)
        v0 = sc._verts[0].T  # (n, 3) first vertices, world
        got = sc._normals @ eye >= sc._plane_d
        want = _camera_frame_front(sc._normals @ m.T, v0 @ m.T + off)
        margin = np.abs((sc._normals * (eye - v0)).sum(axis=1)) > 1e-9  # not edge-on
        assert np.array_equal(got[margin], want[margin])
        checked += int(margin.sum())
        seen += int(got.sum())
        if tr is None or not len(tr):
            continue
        t_s = env._steps * env.dt
        s = env._located[0]
        mk, offk = sc._raster.homogeneous(m, off)
        dyn = tr.camera_polys(s, t_s, 12.0, 85.0, mk, offk, eye)
        if dyn is None:
            continue
        st = tr.s_at(t_s)
        idx = np.flatnonzero(np.abs(st - (s + 0.5 * (85.0 - 12.0))) < 0.5 * (85.0 + 12.0))
        road = env.road  # the cars placed as `camera_polys` places them, then in world
        k = np.minimum(((st[idx] - road.s[0]) / road.ds).astype(np.int64), road.s.size - 1)
        along, hd, lat = st[idx] - road.s[k], road.heading[k], tr.lane[idx]
        cx = road.x[k] + along * np.cos(hd) - lat * np.sin(hd)
        cy = road.y[k] + along * np.sin(hd) + lat * np.cos(hd)
        hd = hd + np.where(tr.flip[idx] < 0, np.pi, 0.0)
        vw, nw = place_template(tr.tv, tr.tn, cx, cy, hd)
        want = _camera_frame_front(nw @ m.T, vw[:, 0] @ m.T + off)
        margin = np.abs((nw * (eye - vw[:, 0])).sum(axis=1)) > 1e-6
        assert np.array_equal(dyn[1][margin], want[margin])
        checked += int(margin.sum())
    assert checked > 1000 and seen > 100


def test_merged_shadow_groups_cover_the_pixels_of_separate_groups():
    """The road's tree shadows and the scenery's ground shadows are one sorted group
    (one transform per frame); over the part of each patch the camera reads, its
    polygons cover exactly the pixels the two groups drawn separately cover."""
    from sim.render import SHIFT as RSHIFT

    env = DriveEnv(look="varied", route_length_m=300.0, weather="clear")
    _, info = env.reset(seed=2)  # clear: the style's tree shadows and the scenery's
    rend, sc = env.renderer, env.scenery
    from sim.road_geometry import CrossSection

    rng = np.random.default_rng([env.road.seed, 0x44415348])  # as the renderer draws them
    CrossSection(env.road, rend.style, rng)
    groups = [rend._make_shadows(rng), sc.ground_shadows()]
    assert all(g is not None and len(g[1]) for g in groups)
    assert len(rend._shadow_groups) == 1  # the two that env made, merged
    m = rend.maps
    differ = covered = 0
    for _ in range(60):
        _, _, term, trunc, info = env.step(info["expert_action"])
        if term or trunc:
            break
        x, y, yaw = info["pose"]
        s = env._located[0]
        for top, left, res, lo, hi, roi, shape in (
            (m.near_top, m.near_left, m.near_res, s - 8.0, s + m.near_top * 1.6 + 8.0,
             m.near_roi, (m.near_h, m.near_w)),
            (90.0, m.far_left, m.far_res, s - 8.0, s + 90.0 * 1.6, m.far_roi,
             (m.far_h, m.far_w)),
        ):  # fmt: skip
            aff = rend._affine(x, y, yaw, top, left, res)
            got = np.zeros(shape, np.uint8)
            polys = rend._shadow_polys(aff, lo, hi, roi)
            if polys is not None:
                cv2.fillPoly(got, polys, 255, cv2.LINE_8, RSHIFT)
            want = np.zeros(shape, np.uint8)
            ref = []
            for pg, sg in groups:  # the earlier form: each group on its own, no roi test
                pg, sg = pg[np.argsort(sg, kind="stable")], np.sort(sg)
                i, j = np.searchsorted(sg, lo - 5.0), np.searchsorted(sg, hi + 5.0)
                ref += list((pg[i:j] @ aff[:, :2].T + aff[:, 2]).astype(np.int32))
            if ref:
                cv2.fillPoly(want, ref, 255, cv2.LINE_8, RSHIFT)
            r0, r1, c0, c1 = roi
            differ += int((got[r0:r1, c0:c1] != want[r0:r1, c0:c1]).sum())
            covered += int(want[r0:r1, c0:c1].astype(bool).sum())
    assert covered > 1000 and differ == 0


def test_far_patch_of_other_layouts_is_sampled_coarser_within_a_grey_level():
    """Layouts other than the plain one draw the far patch from every other road sample;
    the patch stays within a grey level (mean) of the full sampling, the plain one is
    drawn as it always was."""
    env = DriveEnv(look="varied", route_length_m=300.0)
    diffs = []
    for seed in (1, 2, 4):
        env.reset(seed=seed)
        rend = env.renderer
        xs = rend._xsec
        assert xs._far_mul == 2
        m = rend.maps
        for s in (40.0, 120.0, 200.0):
            x, y, yaw = env.road.pose_at(s)
            aff = rend._affine(x, y, yaw, 90.0, m.far_left, m.far_res)
            out = []
            for mul in (1, 2):
                xs._far_mul = mul
                img = np.zeros((m.far_h, m.far_w, 3), np.uint8)
                xs.draw(img, aff, s - 8.0, s + 90.0 * 1.6, m.far_res, False)
                out.append(img)
            xs._far_mul = 2
            diffs.append(np.abs(out[0].astype(np.int16) - out[1]).mean())
    assert max(diffs) > 0  # the sampling is coarser...
    assert max(diffs) < 1.0, diffs  # ...and the patch nearly the same
    plain = DriveEnv(route_length_m=300.0)
    plain.reset(seed=1)
    assert plain.renderer._xsec._far_mul == 1
