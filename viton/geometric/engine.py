"""The `geometric` try-on engine: landmark TPS warp + layered, light-preserving composite.

No learned weights, no I/O. Pipeline (stage names as in `TryOnOutput.timings_ms`):
    anchors    body anchors from BODY_25 (viton.geometric.body), the region the try-on may change
    warp       garment landmarks -> body anchors, kornia TPS on a coarse grid, one remap
    composite  cloth-agnostic person (old upper clothes replaced by skin tone with the photo's
               shading), garment modulated by the old clothes' luminance detail, layered under
               hair/face/lower body and under arms that cross the torso (but over the upper arms
               its sleeves cover), soft edges
All the work happens inside the bounding box of the changeable region; pixels outside that
region are copied bit for bit. Deterministic: same input, same output.
"""

from __future__ import annotations

import time

import cv2
import numpy as np
import torch

from viton.checks import check_garment, check_person
from viton.engine import GarmentData, PersonData, TryOnOutput
from viton.geometric import regions, warp
from viton.geometric.body import CLOTH_SAMPLE_STRIDE, BodyFrame, body_frame, fit_hem_to_clothes

SHADE_STRENGTH = 0.8          # how much of the old clothes' luminance detail reaches the garment
SHADE_RANGE = (0.72, 1.22)    # clip of the luminance ratio (keeps prints on the old clothes faint)
SKIN_SHADE_STRENGTH = 0.6
DEFAULT_SKIN_RGB = (205.0, 160.0, 135.0)
MAX_GARMENT_OVERSAMPLING = 1.5  # garment px per output px kept before downscaling (anti-aliasing)
SKIN_LABELS = (10, 13, 14, 15)
ARM_ZONE_WIDTH = 0.23        # x body scale: old clothes this close to an arm become skin, not fabric
ARM_ZONE_CELL_PX = 4         # px: resolution of the arm zone
FABRIC_FILL_CELL_PX = 8      # px: resolution of the fabric fill
FABRIC_FILL_SIGMAS = (0, 1, 2, 4, 8, 16)  # cells
FABRIC_MIN_SUPPORT = 0.2     # garment coverage that makes a level's colour trustworthy
SKIN_SAMPLE_STRIDE = 4        # px: subsample for the skin colour median


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000.0, 3)


def _prepare_garment(garment: GarmentData, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Premultiplied RGBA uint8 garment, shrunk when it would be minified a lot, and its landmarks."""
    img, mask, lm = garment.image, garment.mask, garment.landmarks.astype(np.float64)
    factor = scale * MAX_GARMENT_OVERSAMPLING
    if factor < 1.0:
        h, w = mask.shape
        size = (max(int(round(w * factor)), 8), max(int(round(h * factor)), 8))
        fx, fy = size[0] / w, size[1] / h
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
        mask = cv2.resize(mask, size, interpolation=cv2.INTER_AREA)
        lm = np.stack([(lm[:, 0] + 0.5) * fx - 0.5, (lm[:, 1] + 0.5) * fy - 0.5], axis=1)
    alpha = np.where(mask >= 128, 255, 0).astype(np.uint8) if factor >= 1.0 else mask
    premultiplied = cv2.multiply(img, cv2.merge([alpha, alpha, alpha]), scale=1.0 / 255.0)
    return cv2.merge([premultiplied, alpha]), lm


def _skin_tone(image: np.ndarray, parse: np.ndarray) -> np.ndarray:
    """(3,) float32 median RGB over face, neck and arm pixels (a default tone when none)."""
    lut = np.zeros(256, dtype=bool)
    lut[list(SKIN_LABELS)] = True
    step = SKIN_SAMPLE_STRIDE  # a regular subsample is plenty for a median colour
    px = image[::step, ::step][lut[parse[::step, ::step]]]
    if len(px) < 16:
        return np.array(DEFAULT_SKIN_RGB, dtype=np.float32)
    return np.median(px, axis=0).astype(np.float32)


def _luminance_ratio(image: np.ndarray, cloth: np.ndarray, blur_sigma: float) -> np.ndarray | None:
    """(h, w) float32: luminance of the photo / mean luminance of the old clothes, clipped.

    Folds and shadows of the old clothes give < 1, highlights > 1. None when there is no cloth.
    """
    if cv2.countNonZero(cloth) < 16:
        return None
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    mean = float(cv2.mean(gray, mask=cloth)[0])
    lum = gray.astype(np.float32)
    smooth = cv2.GaussianBlur(lum, (0, 0), sigmaX=blur_sigma, sigmaY=blur_sigma)
    return np.clip(smooth / max(mean, 1.0), *SHADE_RANGE).astype(np.float32)


def arm_zone(body: BodyFrame, box: tuple[int, int, int, int], soft_px: float = 0.0) -> np.ndarray:
    """(h, w) float32 [0, 1] in the box: thick strokes along both arms (shoulder, elbow, wrist),
    drawn and blurred (sigma `soft_px`) at 1/ARM_ZONE_CELL_PX resolution, then upsampled."""
    x0, y0, x1, y1 = box
    c = ARM_ZONE_CELL_PX
    w, h = -(-(x1 - x0) // c), -(-(y1 - y0) // c)
    zone = np.zeros((h, w), dtype=np.float32)
    width = max(int(round(ARM_ZONE_WIDTH * body.scale / c)), 1)
    off = np.array([x0, y0], dtype=np.float64)
    for chain in ((body.shoulder_r, body.elbow_r, body.wrist_r), (body.shoulder_l, body.elbow_l, body.wrist_l)):
        pts = [tuple(int(round(v)) for v in (p - off) / c) for p in chain]
        for a, b in zip(pts[:-1], pts[1:], strict=True):
            cv2.line(zone, a, b, 1.0, thickness=width, lineType=cv2.LINE_8)
    blurred = cv2.GaussianBlur(zone, (0, 0), sigmaX=soft_px / c + 0.5) if soft_px > 0 else zone
    return cv2.resize(blurred, (w * c, h * c), interpolation=cv2.INTER_LINEAR)[: y1 - y0, : x1 - x0]


def fabric_fill(sampled: np.ndarray, cell: int) -> np.ndarray:
    """(h, w, 3) float32: the warped garment's colours diffused over the whole box.

    Push-pull at 1/cell resolution: the finest of a few Gaussian levels where the garment has
    support gives the colour (premultiplied colour / alpha), upsampled bilinearly.
    Args:
        sampled: (h, w, 4) uint8 premultiplied RGBA, the warped garment.
    """
    h, w = sampled.shape[:2]
    small = cv2.resize(sampled, (max(w // cell, 1), max(h // cell, 1)), interpolation=cv2.INTER_AREA)
    small = small.astype(np.float32)
    fill = np.zeros(small.shape[:2] + (3,), np.float32)
    done = np.zeros(small.shape[:2], bool)
    for sigma in FABRIC_FILL_SIGMAS:
        blurred = small if sigma == 0 else cv2.GaussianBlur(small, (0, 0), sigmaX=sigma, sigmaY=sigma)
        a = blurred[..., 3]
        ok = (a > FABRIC_MIN_SUPPORT * 255.0) & ~done
        fill[ok] = blurred[ok, :3] / a[ok, None] * 255.0
        done |= ok
    if not done.all():  # no garment anywhere near: its mean colour
        total = max(float(small[..., 3].sum()), 1e-6)
        fill[~done] = small[..., :3].reshape(-1, 3).sum(0) / total * 255.0
    return cv2.resize(fill, (w, h), interpolation=cv2.INTER_LINEAR)


class GeometricEngine:
    """Dresses a person in a garment by landmark TPS warping; needs no weights.

    Args:
        device: accepted for the Engine interface; the work (a small TPS solve and image
            remaps, memory-bound) runs on the CPU whatever is asked, and `device` says "cpu".
    """

    name = "geometric"
    reads: tuple[str, ...] = ("person", "parse", "keypoints")

    def __init__(self, device: str = "cpu") -> None:
        self.device = "cpu"
        self.requested_device = device

    def try_on(self, person: PersonData, garment: GarmentData) -> TryOnOutput:
        """Dress `person` in `garment` (shapes/dtypes in viton.engine). Raises InvalidInput/PoseIncomplete."""
        t_all = time.perf_counter()
        check_person(person)
        check_garment(garment)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        image, parse = person.image, person.parse
        H, W = parse.shape
        body = body_frame(person.keypoints)
        stride = CLOTH_SAMPLE_STRIDE
        body = fit_hem_to_clothes(body, regions.upper_mask(parse[::stride, ::stride]), stride=stride)
        region = regions.changeable_region(parse)
        box = regions.bounding_box(region, pad=2)
        timings["anchors"] = _ms(t0)
        if box is None:  # nothing to dress: no upper body in the parse map
            timings["total"] = _ms(t_all)
            return TryOnOutput(image.copy(), np.zeros_like(image), np.zeros((H, W), np.float32), timings)
        x0, y0, x1, y1 = box

        t0 = time.perf_counter()
        g_pts0 = np.asarray(garment.landmarks, dtype=np.float64)
        sim_scale = abs(warp.seam_similarity(g_pts0, body).a)
        rgba, lm = _prepare_garment(garment, sim_scale)
        g_pts, b_pts, sim = warp.correspondences(lm, body)
        map_x, map_y, sleeve = warp.garment_sampling_maps(g_pts, b_pts, sim, box, lm)
        sampled = warp.remap_garment(rgba, map_x, map_y)
        timings["warp"] = _ms(t0)

        t0 = time.perf_counter()
        crop = image[y0:y1, x0:x1]
        parse_crop = parse[y0:y1, x0:x1]
        change = region[y0:y1, x0:x1].astype(np.float32)
        sigma = regions.edge_sigma(parse.shape)
        soft = regions.soft_label_masks(parse_crop, sigma)
        kept, arms, upper, background = soft["kept"], soft["arms"], soft["upper"], soft["background"]
        # arms in front of the garment's body, behind its sleeves; the garment stays on the
        # person's silhouette (a flat-lay garment is wider than a body seen from the front) with
        # an anti-aliased edge that reaches a pixel or two into the background
        # The per-pixel arithmetic below runs as torch ops on zero-copy views: they are vectorised
        # and use both cores (numpy's are single-threaded), ~2x faster at 1024x768.
        t = torch.from_numpy
        with torch.inference_mode():
            layer = t(change)
            layer *= 1.0 - t(kept)
            removed = t(upper) * layer
            layer *= 1.0 - t(arms) * (1.0 - t(sleeve))
            layer *= 1.0 - t(background)
            alpha = t(np.ascontiguousarray(sampled[..., 3])).float()
            alpha *= layer
            alpha *= 1.0 / 255.0

            # Old clothes the garment does not reach: along the arms they become skin (when the new
            # sleeves end above the elbow); elsewhere (coat tails, a bulky back) the garment's fabric
            # carries on (its colours diffused outward, `fabric_fill`), so the old garment never shows.
            # Both fills are one colour image, `fill`, shaded by the old clothes' light.
            fill = t(fabric_fill(sampled, FABRIC_FILL_CELL_PX))
            near_arm: torch.Tensor | None = None
            if warp.has_long_sleeves(lm, body, abs(sim.a)):
                extend = removed  # the sleeves clothe the whole arm: fabric everywhere
            else:
                near_arm = t(arm_zone(body, box, soft_px=2 * sigma))
                extend = removed * (1.0 - near_arm)
                fill += near_arm[..., None] * (t(_skin_tone(image, parse)) - fill)
            ratio_np = _luminance_ratio(crop, regions.upper_mask(parse_crop), blur_sigma=max(1.0, 0.015 * body.scale))
            ratio = torch.ones_like(layer) if ratio_np is None else t(ratio_np)
            ratio -= 1.0
            shade = t(upper) * ratio
            shade *= SHADE_STRENGTH
            shade += 1.0
            fill_shade = shade
            if near_arm is not None:  # skin takes the light more softly than fabric
                fill_shade = shade + near_arm * (1.0 + SKIN_SHADE_STRENGTH * ratio - shade)
            keep_photo = 1.0 - alpha
            fill_w = removed * keep_photo
            fill_w *= fill_shade
            keep_photo *= 1.0 - removed
            out_t = t(crop).float()
            out_t *= keep_photo[..., None]
            fill *= fill_w[..., None]
            out_t += fill
            cloth = t(np.ascontiguousarray(sampled[..., :3])).float()
            cloth *= (layer * shade)[..., None]  # the garment, premultiplied, in the photo's light
            out_t += cloth
            alpha += extend * (1.0 - alpha)
            alpha.clamp_(0.0, 1.0)  # float round-off of the products above
            out_crop = out_t.numpy()
            alpha_np = alpha.numpy()
        out = image.copy()
        # outside the changeable region alpha = removed = 0, so out_crop holds the photo's
        # integers exactly and rounds back to them: those pixels stay bit for bit (tested)
        out[y0:y1, x0:x1] = cv2.convertScaleAbs(out_crop)  # round + saturate to uint8

        warped = np.zeros_like(image)
        warped[y0:y1, x0:x1] = sampled[..., :3]  # the warped garment over black (premultiplied)
        alpha_full = np.zeros((H, W), dtype=np.float32)
        alpha_full[y0:y1, x0:x1] = alpha_np
        timings["composite"] = _ms(t0)
        timings["total"] = _ms(t_all)
        return TryOnOutput(image=out, warped_garment=warped, garment_alpha=alpha_full, timings_ms=timings)
