"""ParsingModule: CIHP-20 labels from the photo, the person mask, the pose and the face detector.

One torch module, no per-pixel Python and no branches on tensor values, so it runs on any torch
device and is registered as a single module on a gvirtus device (make_fx capture at fixed shapes).

Method (all on a working grid whose long side is about WORK_LONG_SIDE px; labels are brought back
to the photo's resolution with nearest upsampling and cut by the full-resolution person mask):
1. Face: the short-range face detector on a head crop placed by the pose's face landmarks gives an
   ellipse (box, roll); without a detection a pose-only ellipse is used when the face is clearly
   visible, else the head gets no face label (a back view is all hair).
2. Skin colour model: per-channel mean/std of chroma (r, g) and brightness inside the face's inner
   ellipse; pixels within SKIN_SIGMAS of it (majority-filtered 3x3) are skin. Without a face a
   broad default skin tone is used.
3. Body parts: every pixel goes to the nearest part in normalised distance (distance / part
   radius, radii in units of the body scale): head ellipse, torso (shoulder-hip polygon + neck),
   each arm (shoulder-elbow-wrist capsules + hand), each leg (hip-knee-ankle + foot). Mask pixels
   farther than MAX_PART_SCORE radii from every part (a held camera, a tripod) stay background.
4. Labels by part and colour (CIHP semantics): head -> face (ellipse core, or skin in the outer
   ellipse) else hair; torso -> torso-skin if skin else upper-clothes; arm -> left/right-arm if skin,
   glove on a non-skin hand, else upper-clothes (a sleeve); leg -> left/right-leg if skin, shoe on a
   non-skin foot, upper-clothes just below the hips where the colour matches the top (a long top or
   coat), else pants.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from node1.parsing import labels as L
from node1.parsing.face import detect_face, face_anchors, face_from_pose
from node1.parsing.geometry import ellipse_radius_sq, pixel_grid, polygon_distance_sq, segment_distance_sq

WORK_LONG_SIDE = 256            # px: long side of the working grid (stills)
MIN_WORK_LONG_SIDE = 32         # px: the coarsest grid a ParsingModule may be built with
MASK_THRESHOLD = 0.5            # person mask level that counts as the person
CHROMA_DARK_OFFSET = 60.0      # RGB-sum counts added to the chromaticity denominator
SKIN_SIGMAS = 2.0               # a pixel is skin within this many (floored) std of the face's colour
SKIN_STD_FLOOR = (0.018, 0.012, 0.12)      # r, g chroma and brightness: the narrowest skin model
DEFAULT_SKIN = ((0.44, 0.31, 0.55), (0.05, 0.03, 0.3))   # mean/std when there is no face to learn from
GARMENT_SIGMAS = 3.0            # below-hip pixels this close to the top's colour belong to it
GARMENT_STD_FLOOR = (0.02, 0.02, 0.10)
GARMENT_BELOW_HIP = 0.5        # x torso length: how far below the hips a top may reach
# radii in units of the body scale (max of shoulder width, 0.6 x torso length, 2.2 x face width)
UPPER_ARM_R, FOREARM_R, HAND_R = 0.17, 0.14, 0.13
THIGH_R, SHIN_R, FOOT_R = 0.22, 0.16, 0.11
NECK_R, TORSO_EDGE_R = 0.16, 0.12
MAX_PART_SCORE = 3.0            # mask pixels beyond this many part radii from every part stay unlabelled
ARM_OVER_TORSO = 0.6            # inside the torso polygon an arm wins within this fraction of its radius
HAND_FOOT_VISIBILITY = 0.5     # mean landmark visibility for a hand / foot to get glove / shoe labels
HAND_EXTENSION = 1.3            # hand segment: wrist -> wrist + this x (mean of pinky, index, thumb - wrist)
FACE_CORE, FACE_OUTER = 0.85, 1.3   # face ellipse scales: always face / face where skin-coloured

# part codes of the `parts` output
HEAD, TORSO, LEFT_ARM_PART, RIGHT_ARM_PART, LEFT_LEG_PART, RIGHT_LEG_PART = 1, 2, 3, 4, 5, 6
# BlazePose ids
L_SH, R_SH, L_EL, R_EL, L_WR, R_WR = 11, 12, 13, 14, 15, 16
L_PINKY, R_PINKY, L_INDEX, R_INDEX, L_THUMB, R_THUMB = 17, 18, 19, 20, 21, 22
L_HIP, R_HIP, L_KNEE, R_KNEE, L_ANKLE, R_ANKLE, L_HEEL, R_HEEL, L_FOOT, R_FOOT = range(23, 33)


def work_stride(height: int, width: int, long_side: int = WORK_LONG_SIDE) -> int:
    """Integer cell size (photo px) of the working grid whose long side is about `long_side` px."""
    return max(1, round(max(height, width) / long_side))


def _colour_features(img: torch.Tensor) -> torch.Tensor:
    """(3, h, w) float RGB [0, 255] -> (3, h, w): r and g chromaticity, brightness in [0, 1].

    The chromaticity denominator has an offset so the noisy colour of near-black pixels shrinks to 0
    (a dark garment must not look like skin because its few counts happen to be reddish).
    """
    total = img.sum(dim=0, keepdim=True)
    chroma = img[:2] / (total + CHROMA_DARK_OFFSET)
    return torch.cat([chroma, total / 765.0], dim=0)


def _weighted_stats(feat: torch.Tensor, weight: torch.Tensor, floor: tuple[float, ...],
                    default: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and floored std of (C, h, w) features under (h, w) weights.

    With (almost) no weight the `default` (mean, std) is returned (or the floors around 0.5).
    """
    n = weight.sum()
    mean = (feat * weight).sum(dim=(1, 2)) / n.clamp_min(1.0)
    var = (((feat - mean[:, None, None]) ** 2) * weight).sum(dim=(1, 2)) / n.clamp_min(1.0)
    floor_t = torch.tensor(floor, dtype=feat.dtype, device=feat.device)
    std = torch.maximum(torch.sqrt(var), floor_t)
    d_mean, d_std = default if default is not None else ((0.5,) * len(floor), floor)
    enough = n >= 16.0
    mean = torch.where(enough, mean, torch.tensor(d_mean, dtype=feat.dtype, device=feat.device))
    std = torch.where(enough, std, torch.tensor(d_std, dtype=feat.dtype, device=feat.device))
    return mean, std


def _within(feat: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, sigmas: float) -> torch.Tensor:
    """(h, w) bool: every channel lies within `sigmas` std of its mean."""
    z = ((feat - mean[:, None, None]) / std[:, None, None]).abs().amax(dim=0)
    return z < sigmas


def _open(mask: torch.Tensor) -> torch.Tensor:
    """3x3 morphological opening of an (h, w) bool map: drops specks narrower than 3 cells."""
    m = mask.float()[None, None]
    eroded = -F.max_pool2d(-m, 3, stride=1, padding=1)
    return F.max_pool2d(eroded, 3, stride=1, padding=1)[0, 0] > 0.5


def _majority(mask: torch.Tensor) -> torch.Tensor:
    """3x3 majority filter of an (h, w) bool map (removes speckle of per-pixel colour tests)."""
    m = F.avg_pool2d(mask.float()[None, None], 3, stride=1, padding=1, count_include_pad=False)
    return m[0, 0] > 0.5


def _label_for(part: int, *, skin: bool, hand_foot: bool, top: bool, face_outer: bool, below_chin: bool,
               face_core: bool) -> int:
    """The CIHP label of a cell from its part and colour/geometry bits (step 4 of the module docstring)."""
    if face_core:
        return L.FACE
    torso = L.TORSO_SKIN if skin else L.UPPER_CLOTHES
    if part == HEAD:
        return torso if below_chin else (L.FACE if skin and face_outer else L.HAIR)
    if part == TORSO:
        return torso
    if part in (LEFT_ARM_PART, RIGHT_ARM_PART):
        return (L.LEFT_ARM if part == LEFT_ARM_PART else L.RIGHT_ARM) if skin else (
            L.GLOVE if hand_foot else L.UPPER_CLOTHES)
    if part in (LEFT_LEG_PART, RIGHT_LEG_PART):
        left = part == LEFT_LEG_PART
        if skin:
            return L.LEFT_LEG if left else L.RIGHT_LEG
        if hand_foot:
            return L.LEFT_SHOE if left else L.RIGHT_SHOE
        return L.UPPER_CLOTHES if top else L.PANTS
    return L.BACKGROUND


def label_table() -> torch.Tensor:
    """(7 * 64,) uint8: label of code = part * 64 + skin * 32 + hand_foot * 16 + top * 8 + face_outer * 4
    + below_chin * 2 + face_core."""
    names = ("skin", "hand_foot", "top", "face_outer", "below_chin", "face_core")   # bit 5 .. bit 0
    rows = [_label_for(p, **{n: bool(code >> (5 - k) & 1) for k, n in enumerate(names)})
            for p in range(7) for code in range(64)]
    return torch.tensor(rows, dtype=torch.uint8)


class ParsingModule(torch.nn.Module):
    """CIHP-20 parsing of one photo (see the module docstring for the method).

    forward(image, mask, landmarks):
        image: (1, H, W, 3) RGB, uint8 or float32 with values in [0, 255] (the photo's own layout).
        mask: (1, 1, H, W) person mask, uint8 in [0, 255] (node1.pose's mask) or float32 in [0, 1].
        landmarks: (1, 33, 4) float32 BlazePose landmarks as node1.pose returns them: x, y in photo
            pixels (pixel-index coordinates), z (unused), visibility in [0, 1].
    returns (parse, parts, face):
        parse: (1, H, W) uint8 CIHP labels, 0 outside the person mask.
        parts: (1, h, w) uint8 body part of each working-grid cell (0 none, 1 head, 2 torso, 3/4 the
            subject's left/right arm, 5/6 left/right leg), h, w = ceil(H / s), ceil(W / s),
            s = work_stride(H, W, work_long_side).
        face: (1, 6) float32: valid (0/1), centre x, y, width, height (px), roll (rad).

    Args:
        face_detector: the short-range face detector (default: loaded from models/).
        work_long_side: long side of the working grid, px (WORK_LONG_SIDE for stills; the live mirror
            uses a coarser one: the labels come back at full resolution, cut by the full-resolution
            mask, so a coarser grid moves only the part boundaries inside the person).
    """

    anchors: torch.Tensor
    label_table: torch.Tensor
    hand_ids: torch.Tensor
    wrist_ids: torch.Tensor
    seg_a_ids: torch.Tensor
    seg_b_ids: torch.Tensor
    seg_radii: torch.Tensor
    part_of: torch.Tensor

    def __init__(self, face_detector: torch.nn.Module | None = None, work_long_side: int = WORK_LONG_SIDE) -> None:
        super().__init__()
        if not isinstance(work_long_side, int) or work_long_side < MIN_WORK_LONG_SIDE:
            raise ValueError(f"work_long_side must be an int >= {MIN_WORK_LONG_SIDE} px, got {work_long_side!r}")
        self.work_long_side = work_long_side
        if face_detector is None:
            from node1.tflite import load_model

            face_detector = load_model("face_detection_short_range.tflite", layout="nchw")
        self.face_detector = face_detector
        self.register_buffer("anchors", face_anchors(), persistent=False)
        self.register_buffer("label_table", label_table(), persistent=False)
        # limb segments (index into the 33 landmarks + 2 hand tips): L arm x3, R arm x3, L leg x3, R leg x3
        def ids(v: list[int]) -> torch.Tensor:
            return torch.tensor(v, dtype=torch.long)

        self.register_buffer("hand_ids", ids([L_PINKY, L_INDEX, L_THUMB, R_PINKY, R_INDEX, R_THUMB]), persistent=False)
        self.register_buffer("wrist_ids", ids([L_WR, R_WR]), persistent=False)
        self.register_buffer("seg_a_ids", ids([L_SH, L_EL, L_WR, R_SH, R_EL, R_WR, L_HIP, L_KNEE, L_HEEL,
                                               R_HIP, R_KNEE, R_HEEL]), persistent=False)
        self.register_buffer("seg_b_ids", ids([L_EL, L_WR, 33, R_EL, R_WR, 34, L_KNEE, L_ANKLE, L_FOOT,
                                               R_KNEE, R_ANKLE, R_FOOT]), persistent=False)
        self.register_buffer("seg_radii", torch.tensor([UPPER_ARM_R, FOREARM_R, HAND_R] * 2
                                                       + [THIGH_R, SHIN_R, FOOT_R] * 2), persistent=False)
        # score channel -> part code: head, torso, then the 12 limb segments
        self.register_buffer("part_of", torch.tensor([HEAD, TORSO] + [LEFT_ARM_PART] * 3 + [RIGHT_ARM_PART] * 3
                                                     + [LEFT_LEG_PART] * 3 + [RIGHT_LEG_PART] * 3,
                                                     dtype=torch.uint8), persistent=False)

    def forward(self, image: torch.Tensor, mask: torch.Tensor, landmarks: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        H, W = int(image.shape[1]), int(image.shape[2])
        s = work_stride(H, W, self.work_long_side)
        h, w = -(-H // s), -(-W // s)
        dev = image.device
        lm = landmarks[0]
        mask_scale = 255.0 if mask.dtype == torch.uint8 else 1.0
        # one sample per cell, near its centre: strided views (static offsets), no resampling kernel
        oy, ox = min(s // 2, H - 1 - (h - 1) * s), min(s // 2, W - 1 - (w - 1) * s)
        img = image[0, oy::s, ox::s, :].permute(2, 0, 1).float()
        person = mask[0, 0, oy::s, ox::s].float() >= MASK_THRESHOLD * mask_scale
        gx, gy = pixel_grid(h, w, float(s), dev)
        feat = _colour_features(img)

        # 1. face
        det = detect_face(image[0], lm, self.face_detector, self.anchors)
        guess = face_from_pose(lm)
        use_det = det["valid"]
        f_centre = torch.where(use_det, det["centre"], guess["centre"])
        f_size = torch.where(use_det, det["size"], guess["size"])
        f_angle = torch.where(use_det, det["angle"], guess["angle"])
        face_ok = use_det | guess["valid"]
        down = torch.stack([-torch.sin(f_angle), torch.cos(f_angle)])      # the face's "down" direction
        face_rho2 = ellipse_radius_sq(gx, gy, f_centre - 0.05 * f_size[1] * down,
                                      torch.stack([0.5 * f_size[0], 0.58 * f_size[1]]), f_angle)

        # 2. skin colour, learnt on the inner face
        cheeks = ellipse_radius_sq(gx, gy, f_centre + 0.1 * f_size[1] * down,
                                   torch.stack([0.3 * f_size[0], 0.25 * f_size[1]]), f_angle) < 1.0
        skin_w = (cheeks & person & face_ok).float()
        s_mean, s_std = _weighted_stats(feat, skin_w, SKIN_STD_FLOOR, DEFAULT_SKIN)
        skin = _open(_majority(_within(feat, s_mean, s_std, SKIN_SIGMAS)))

        # 3. body parts by normalised distance
        sh_l, sh_r, hip_l, hip_r = lm[L_SH, :2], lm[R_SH, :2], lm[L_HIP, :2], lm[R_HIP, :2]
        mid_sh, mid_hip = 0.5 * (sh_l + sh_r), 0.5 * (hip_l + hip_r)
        torso_len = torch.linalg.vector_norm(mid_sh - mid_hip)
        body = torch.maximum(torch.maximum(torch.linalg.vector_norm(sh_l - sh_r), 0.6 * torso_len),
                             2.2 * f_size[0]).clamp_min(8.0)
        chin = f_centre + 0.5 * f_size[1] * down
        # squared normalised distances throughout (argmin and thresholds need no sqrt)
        head2 = ellipse_radius_sq(gx, gy, f_centre - 0.2 * f_size[1] * down,
                                  torch.stack([0.85 * f_size[0], 0.85 * f_size[1]]), f_angle)
        poly = torch.stack([sh_l, sh_r, hip_r, hip_l])
        torso_in2 = polygon_distance_sq(gx, gy, poly)
        neck2 = segment_distance_sq(gx, gy, chin[None], mid_sh[None])[0] / (NECK_R * body) ** 2
        torso2 = torch.minimum(torch.where(torso_in2 > 0, torso_in2 / (TORSO_EDGE_R * body) ** 2,
                                           torch.full_like(torso_in2, ARM_OVER_TORSO ** 2)), neck2)

        pts = lm[:, :2]
        hands = pts.index_select(0, self.hand_ids).reshape(2, 3, 2).mean(dim=1)      # (2, 2) L, R hand centres
        wrists = pts.index_select(0, self.wrist_ids)
        tips = wrists + HAND_EXTENSION * (hands - wrists)
        ends = torch.cat([pts, tips], dim=0)                        # (35, 2): 33 = L tip, 34 = R tip
        seg_a, seg_b = ends.index_select(0, self.seg_a_ids), ends.index_select(0, self.seg_b_ids)
        radii = self.seg_radii
        limbs2 = segment_distance_sq(gx, gy, seg_a, seg_b) / ((radii * body) ** 2)[:, None, None]   # (12, h, w)
        best2, nearest = torch.min(torch.cat([head2[None], torso2[None], limbs2], dim=0), dim=0)
        # channel -> part code: head, torso, L arm x3, R arm x3, L leg x3, R leg x3; 0 when farther than
        # MAX_PART_SCORE radii from every part (something held or leaned on)
        parts = self.part_of[nearest] * (best2 <= MAX_PART_SCORE ** 2).to(torch.uint8)
        # a leg starts at the hip line: leg-nearest cells above it are the torso's lower edge
        hip_dir = (mid_hip - mid_sh) / torso_len.clamp_min(1.0)
        below_hip = (gx - mid_hip[0]) * hip_dir[0] + (gy - mid_hip[1]) * hip_dir[1]
        leg = (parts == LEFT_LEG_PART) | (parts == RIGHT_LEG_PART)
        parts = torch.where(leg & (below_hip < 0), torch.tensor(TORSO, dtype=torch.uint8, device=dev), parts)
        # gloves and shoes only where the hand / foot itself is visible (not extrapolated or hidden)
        vis = lm[:, 3]
        hand_foot = (((nearest == 4) & (vis[[L_PINKY, L_INDEX, L_THUMB]].mean() >= HAND_FOOT_VISIBILITY))
                     | ((nearest == 7) & (vis[[R_PINKY, R_INDEX, R_THUMB]].mean() >= HAND_FOOT_VISIBILITY))
                     | ((nearest == 10) & (vis[[L_HEEL, L_FOOT]].mean() >= HAND_FOOT_VISIBILITY))
                     | ((nearest == 13) & (vis[[R_HEEL, R_FOOT]].mean() >= HAND_FOOT_VISIBILITY)))

        # 4. labels: one table lookup on a per-cell code of (part, skin, hand/foot, top, face, chin) bits
        garment_w = ((torso_in2 <= 0) & person & ~skin).float()
        g_mean, g_std = _weighted_stats(feat, garment_w, GARMENT_STD_FLOOR)
        like_top = _majority(_within(feat, g_mean, g_std, GARMENT_SIGMAS))
        top_extends = like_top & (below_hip < GARMENT_BELOW_HIP * torso_len)
        below_chin = (gx - chin[0]) * down[0] + (gy - chin[1]) * down[1] > 0
        face_outer = face_ok & (face_rho2 < FACE_OUTER ** 2)
        face_core = face_ok & (face_rho2 < FACE_CORE ** 2)
        code = parts.long()
        for bit in (skin, hand_foot, top_extends, face_outer, below_chin, face_core):
            code = code * 2 + bit.long()
        label = self.label_table[code]

        if h * s == H and w * s == W:  # nearest upsampling by a whole factor is a repeat (same values, ~4x faster)
            full = label[:, None, :, None].expand(h, s, w, s).reshape(1, H, W)
        else:
            full = F.interpolate(label[None, None], size=(H, W), mode="nearest")[0]
        parse = full * (mask[0] >= MASK_THRESHOLD * mask_scale).to(torch.uint8)
        face = torch.stack([face_ok.float(), f_centre[0], f_centre[1], f_size[0], f_size[1], f_angle])[None]
        return parse, (parts * person.to(torch.uint8))[None], face
