"""Constructed test data: drawn garments with exact landmarks, a drawn person with an exact parse
map, and a hand-labelled astronaut (keypoints read off the photo, parse from colour thresholds).

These stand in for node1 preprocessing and the garments demo catalog where those are absent;
the real-photo acceptance tests (test_real_photos.py) use the real ones.
"""

from __future__ import annotations

import cv2
import numpy as np

from viton.engine import GarmentData, PersonData

GARMENT_H, GARMENT_W = 512, 384


def _poly(points: list[tuple[float, float]]) -> np.ndarray:
    return np.round(np.array(points, dtype=np.float64)).astype(np.int32)


def make_garment(kind: str = "tshirt", colour: tuple[int, int, int] = (40, 90, 200)) -> GarmentData:
    """(512, 384) drawn garment on white: body colour, white stripes, a yellow chest logo."""
    neck = [(150, 60), (168, 84), (192, 95), (216, 84), (234, 60)]
    if kind == "tank":
        sr, sl, ar, al = (135, 62), (249, 62), (112, 190), (272, 190)
        right, left = [sr, ar], [al, sl]
        cr, cl = sr, sl
    elif kind == "longsleeve":
        sr, sl, ar, al = (95, 80), (289, 80), (112, 175), (272, 175)
        cr, cl = (22, 420), (362, 420)
        right, left = [sr, cr, (62, 428), ar], [al, (322, 428), cl, sl]
    else:
        sr, sl, ar, al = (95, 80), (289, 80), (112, 175), (272, 175)
        cr, cl = (48, 150), (336, 150)
        right, left = [sr, cr, (88, 184), ar], [al, (296, 184), cl, sl]
    hr, hl = (110, 470), (274, 470)
    outline = [neck[0], *right, hr, hl, *left, neck[-1], *neck[::-1][1:-1]]
    mask = np.zeros((GARMENT_H, GARMENT_W), np.uint8)
    cv2.fillPoly(mask, [_poly(outline)], 255, lineType=cv2.LINE_8)
    img = np.full((GARMENT_H, GARMENT_W, 3), 255, np.uint8)
    body = np.zeros_like(img)
    body[:] = colour
    for y in range(120, 470, 60):
        body[y:y + 14] = (245, 245, 245)
    cv2.circle(body, (192, 180), 34, (250, 200, 30), -1)
    img[mask > 0] = body[mask > 0]
    lm = np.array([(192, 95), sr, sl, ar, al, hr, hl, cr, cl], np.float32)
    return GarmentData(image=img, mask=mask, landmarks=lm, kind=kind)


def _keypoints(points: dict[int, tuple[float, float]]) -> np.ndarray:
    kp = np.zeros((25, 3), np.float32)
    for i, (x, y) in points.items():
        kp[i] = (x, y, 0.9)
    return kp


def drawn_person(h: int = 512, w: int = 384) -> PersonData:
    """A flat drawn person with an exact CIHP parse: shirt (5), pants (9), arms, face, hair, neck."""
    s = w / 384.0
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = (120, 170, 110)
    parse = np.zeros((h, w), np.uint8)

    def fill(points: list[tuple[float, float]], label: int, colour: tuple[int, int, int]) -> None:
        p = _poly([(x * s, y * s) for x, y in points])
        cv2.fillPoly(parse, [p], label)
        cv2.fillPoly(img, [p], colour)

    fill([(150, 380), (234, 380), (240, 512), (144, 512)], 9, (40, 40, 60))                # pants
    fill([(120, 150), (264, 150), (250, 390), (134, 390)], 5, (200, 60, 50))                # shirt
    fill([(120, 150), (96, 170), (78, 300), (98, 305), (118, 200)], 15, (220, 170, 140))     # right arm
    fill([(264, 150), (288, 170), (306, 300), (286, 305), (266, 200)], 14, (220, 170, 140))  # left arm
    fill([(180, 110), (204, 110), (206, 152), (178, 152)], 10, (215, 165, 135))             # neck
    cv2.ellipse(parse, (int(192 * s), int(80 * s)), (int(36 * s), int(44 * s)), 0, 0, 360, 2, -1)
    cv2.ellipse(img, (int(192 * s), int(80 * s)), (int(36 * s), int(44 * s)), 0, 0, 360, (60, 40, 20), -1)
    cv2.ellipse(parse, (int(192 * s), int(92 * s)), (int(28 * s), int(34 * s)), 0, 0, 360, 13, -1)
    cv2.ellipse(img, (int(192 * s), int(92 * s)), (int(28 * s), int(34 * s)), 0, 0, 360, (225, 175, 145), -1)
    # folds: darker diagonal bands on the shirt, to see the shading transfer
    shirt = parse == 5
    yy, xx = np.mgrid[0:h, 0:w]
    fold = (np.sin((xx + yy) / (9.0 * s)) > 0.7) & shirt
    img[fold] = (img[fold] * 0.7).astype(np.uint8)
    kp = _keypoints({0: (192 * s, 92 * s), 1: (192 * s, 152 * s), 2: (125 * s, 155 * s), 3: (92 * s, 230 * s),
                     4: (88 * s, 300 * s), 5: (259 * s, 155 * s), 6: (292 * s, 230 * s), 7: (296 * s, 300 * s),
                     8: (192 * s, 380 * s), 9: (165 * s, 380 * s), 12: (219 * s, 380 * s)})
    return PersonData(image=img, parse=parse, keypoints=kp)


def astronaut_person(image: np.ndarray) -> PersonData:
    """skimage's astronaut with hand-read BODY_25 keypoints and a colour-threshold CIHP parse."""
    h, w = image.shape[:2]
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    orange = (hsv[..., 0] < 22) & (hsv[..., 1] > 110) & (hsv[..., 2] > 90)
    parse = np.zeros((h, w), np.uint8)
    suit = np.zeros((h, w), np.uint8)
    suit[orange] = 1
    suit[:, 380:] = 0
    suit[:150] = 0
    suit = cv2.morphologyEx(suit, cv2.MORPH_CLOSE, np.ones((25, 25), np.uint8))
    ring = np.zeros((h, w), np.uint8)
    cv2.ellipse(ring, (215, 215), (95, 70), 0, 0, 360, 1, -1)
    parse[(suit > 0) | ((ring > 0) & (np.arange(h)[:, None] > 150))] = 5
    cv2.ellipse(parse, (222, 90), (78, 80), 0, 180, 360, 2, -1)
    cv2.ellipse(parse, (222, 118), (42, 55), 0, 0, 360, 13, -1)
    neck = np.zeros((h, w), np.uint8)
    cv2.ellipse(neck, (218, 195), (40, 32), 0, 0, 360, 1, -1)
    parse[(neck > 0) & (parse != 13)] = 10
    kp = _keypoints({0: (222, 130), 1: (220, 262), 2: (105, 262), 3: (55, 410), 4: (140, 495),
                     5: (335, 262), 6: (365, 440), 15: (205, 112), 16: (240, 112)})
    return PersonData(image=np.ascontiguousarray(image), parse=parse, keypoints=kp)


def drawn_full_person(h: int = 1024, w: int = 512, *, bent_knee: bool = True) -> PersonData:
    """A flat drawn person seen whole, with an exact CIHP parse: a shirt (5) hanging over the waist of
    long trousers (9), arms (15 right, 14 left) hanging beside the hips, face, hair, neck, shoes (18, 19).
    The subject's left leg bends at the knee (`bent_knee`). Keypoints: BODY_25 down to the ankles."""
    s = w / 512.0
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = (120, 170, 110)
    parse = np.zeros((h, w), np.uint8)
    pts = {0: (256, 96), 1: (256, 170), 2: (180, 172), 3: (150, 320), 4: (140, 460), 5: (332, 172),
           6: (362, 320), 7: (372, 460), 8: (256, 480), 9: (215, 480), 10: (205, 700), 11: (200, 920),
           12: (297, 480), 13: (330 if bent_knee else 307, 700), 14: (310 if bent_knee else 312, 920)}

    def fill(points: list[tuple[float, float]], label: int, colour: tuple[int, int, int]) -> None:
        p = _poly([(x * s, y * s) for x, y in points])
        cv2.fillPoly(parse, [p], label)
        cv2.fillPoly(img, [p], colour)

    def limb(a: int, b: int, c: int, half: float, label: int, colour: tuple[int, int, int]) -> None:
        for i, j in ((a, b), (b, c)):
            (x0, y0), (x1, y1) = pts[i], pts[j]
            d = np.array([x1 - x0, y1 - y0], np.float64)
            n = np.array([-d[1], d[0]]) / np.hypot(*d) * half
            fill([(x0 + n[0], y0 + n[1]), (x1 + n[0], y1 + n[1]), (x1 - n[0], y1 - n[1]), (x0 - n[0], y0 - n[1])],
                 label, colour)
        x, y = pts[b]
        cv2.circle(parse, (int(x * s), int(y * s)), int(half * s), label, -1)
        cv2.circle(img, (int(x * s), int(y * s)), int(half * s), colour, -1)

    fill([(196, 440), (316, 440), (316, 520), (196, 520)], 9, (40, 40, 60))      # trousers' seat
    limb(9, 10, 11, 40, 9, (40, 40, 60))                                        # right trouser leg
    limb(12, 13, 14, 40, 9, (40, 40, 60))                                       # left trouser leg
    for i, label in ((11, 18), (14, 19)):                                       # shoes
        x, y = pts[i]
        fill([(x - 44, y - 6), (x + 44, y - 6), (x + 48, y + 40), (x - 48, y + 40)], label, (30, 20, 15))
    fill([(180, 168), (332, 168), (322, 540), (190, 540)], 5, (200, 60, 50))    # shirt over the waist
    limb(2, 3, 4, 20, 15, (220, 170, 140))                                      # right arm
    limb(5, 6, 7, 20, 14, (220, 170, 140))                                      # left arm
    fill([(240, 130), (272, 130), (274, 172), (238, 172)], 10, (215, 165, 135))  # neck
    cv2.ellipse(parse, (int(256 * s), int(84 * s)), (int(44 * s), int(54 * s)), 0, 0, 360, 2, -1)
    cv2.ellipse(img, (int(256 * s), int(84 * s)), (int(44 * s), int(54 * s)), 0, 0, 360, (60, 40, 20), -1)
    cv2.ellipse(parse, (int(256 * s), int(98 * s)), (int(34 * s), int(42 * s)), 0, 0, 360, 13, -1)
    cv2.ellipse(img, (int(256 * s), int(98 * s)), (int(34 * s), int(42 * s)), 0, 0, 360, (225, 175, 145), -1)
    trousers = parse == 9
    yy, xx = np.mgrid[0:h, 0:w]
    fold = (np.sin((xx - yy) / (11.0 * s)) > 0.75) & trousers
    img[fold] = (img[fold] * 0.75).astype(np.uint8)
    kp = _keypoints({i: (x * s, y * s) for i, (x, y) in pts.items()})
    return PersonData(image=img, parse=parse, keypoints=kp)
