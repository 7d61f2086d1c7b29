"""The live API and media against the REAL LOCAL deployment (tests/live/conftest.py): a real aiortc
client streams the swaying astronaut (640x480, frame numbers stamped in the pixels) and gets the dressed
video back; bad offers, the session limit, unknown garments and vanished peers."""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import subprocess
import sys
import time

import numpy as np
import pytest

from mirror.config import ROOT
from testing.deployment import LocalDeployment
from testing.live_client import LiveClient, api_request
from tests.live.conftest import IDLE_TIMEOUT_S, garment_ids, metric

STILL_WARMUP_FRAMES, STILL_WINDOW_FRAMES = 30, 40
FIRST_FRAMES_S = 300.0      # the first frames register the models on node 2 (busy 2-core machine)
GAUGE_WAIT_S = 10.0
FACE = (slice(95, 150), slice(270, 320))      # rows, cols of the astronaut's face in the 640x480 frame
CHEST = (slice(290, 370), slice(240, 340))


def _wait_gauge_zero(dep: LocalDeployment, timeout_s: float) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if metric(dep, "live_sessions") == 0:
            return time.monotonic()
        time.sleep(0.2)
    raise AssertionError(f"live_sessions stayed at {metric(dep, 'live_sessions')}")


def _frame_of(client: LiveClient, sequence: list[np.ndarray], index: int) -> tuple[np.ndarray, np.ndarray]:
    """(received frame, the source frame it was made from) of the index-th received frame."""
    number, _, rgb = client.received[index]
    assert number is not None and rgb is not None and number in client.source.sent_at
    return rgb.astype(np.float32), sequence[number % len(sequence)].astype(np.float32)


def _is_red(rgb: np.ndarray) -> bool:
    r, g, b = rgb[CHEST].reshape(-1, 3).mean(axis=0)
    return bool(r > g + 40 and r > b + 40)


def test_streams_the_dressed_video_switches_garments_and_ends(live_deployment: LocalDeployment,
                                                              sequence: list[np.ndarray]) -> None:
    ids = garment_ids(live_deployment)
    red = next(i for n, i in ids.items() if "red" in n.lower())
    navy = next(i for n, i in ids.items() if "navy" in n.lower())
    in_before = metric(live_deployment, "live_frames_in_total")

    async def run() -> None:
        async with LiveClient(live_deployment.url, live_deployment.cafile, sequence, red) as client:
            assert metric(live_deployment, "live_sessions") == 1
            await client.wait_frames(6, FIRST_FRAMES_S)
            got, src = _frame_of(client, sequence, len(client.received) - 1)
            assert got.shape == (480, 640, 3)
            assert np.abs(got[FACE] - src[FACE]).mean() < 10.0         # the face is the camera's (VP8 noise)
            assert np.abs(got[CHEST] - src[CHEST]).mean() > 25.0       # the torso is redrawn ...
            assert _is_red(got)                                         # ... in the red tee
            await client.switch(navy)
            deadline = time.monotonic() + FIRST_FRAMES_S
            while not any(m.get("type") == "garment" for m in client.messages):
                assert time.monotonic() < deadline, client.messages
                await asyncio.sleep(0.1)
            seen = len(client.received)
            await client.wait_frames(seen + 4, FIRST_FRAMES_S)
            got, src = _frame_of(client, sequence, len(client.received) - 1)
            assert not _is_red(got) and np.abs(got[CHEST] - src[CHEST]).mean() > 25.0   # now navy
            assert got[CHEST].mean() < src[CHEST].mean()  # navy is darker than the white suit
            stats = [m for m in client.messages if m.get("type") == "stats"]
            assert stats and stats[-1]["garment"] == navy and stats[-1]["status"] == "dressed"
        # the client hung up with DELETE: the session is gone at once
        assert metric(live_deployment, "live_sessions") == 0

    asyncio.run(run())
    assert metric(live_deployment, "live_frames_in_total") > in_before
    assert metric(live_deployment, 'live_frames_processed_total{status="dressed"}') >= 10


def _offer_sdp() -> str:
    """A real browser-like offer (an aiortc peer with a camera track and a data channel)."""
    from aiortc import RTCConfiguration, RTCPeerConnection, VideoStreamTrack

    async def make() -> str:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTransceiver(VideoStreamTrack(), direction="sendrecv")
        pc.createDataChannel("control")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        await pc.close()
        return str(sdp)

    return asyncio.run(make())


def _post(dep: LocalDeployment, body: object) -> tuple[int, dict]:
    ctx = ssl.create_default_context(cafile=dep.cafile)
    status, answer = api_request(dep.url, ctx, "POST", "/api/live/offer", body if body is not None else b"not json")
    return status, answer or {}


@pytest.mark.parametrize(("body", "status", "code", "named"), [
    ({"sdp": "hello", "type": "offer", "garment": "G"}, 400, "bad_offer", "'sdp'"),
    ({"sdp": "v=0\r\nthis is not SDP\r\nm=video x\r\n", "type": "offer", "garment": "G"}, 400, "bad_offer", "SDP"),
    ({"sdp": "OFFER", "type": "pranswer", "garment": "G"}, 400, "bad_offer", "'type'"),
    (None, 400, "bad_offer", "JSON"),
    ({"sdp": "OFFER", "type": "offer", "garment": "no-such-garment"}, 404, "unknown_garment", "no-such-garment"),
])
def test_bad_offers_get_typed_json_errors(live_deployment: LocalDeployment, body: object, status: int, code: str,
                                          named: str) -> None:
    if isinstance(body, dict):
        body = dict(body, garment=next(iter(garment_ids(live_deployment).values()))
                    if body["garment"] == "G" else body["garment"])
        if body["sdp"] == "OFFER":
            body["sdp"] = _offer_sdp()
    got, answer = _post(live_deployment, body)
    assert got == status, answer
    assert answer["error"]["code"] == code and named in answer["error"]["message"], answer
    assert metric(live_deployment, "live_sessions") == 0


def test_over_the_session_limit_is_503_and_delete_of_unknown_is_404(live_deployment: LocalDeployment,
                                                                     sequence: list[np.ndarray]) -> None:
    gid = next(iter(garment_ids(live_deployment).values()))
    second = {"sdp": _offer_sdp(), "type": "offer", "garment": gid}

    async def run() -> None:
        async with LiveClient(live_deployment.url, live_deployment.cafile, sequence, gid) as client:
            status, answer = await asyncio.to_thread(_post, live_deployment, second)
            assert status == 503 and answer["error"]["code"] == "live_sessions_full", answer
            assert "1 live sessions" in answer["error"]["message"]
            status, answer = await asyncio.to_thread(client.request, "DELETE", "/api/live/no-such-session")
            assert status == 404 and answer["error"]["code"] == "unknown_session"
            status, answer = await asyncio.to_thread(client.request, "POST", f"/api/live/{client.session}/garment",
                                                     {"garment": "no-such-garment"})
            assert status == 404 and answer["error"]["code"] == "unknown_garment"

    asyncio.run(run())
    assert metric(live_deployment, "live_sessions") == 0


VANISHING_PEER = """
import asyncio, sys
import numpy as np
from testing.live_client import LiveClient, api_request
frames = [np.full((480, 640, 3), 100, np.uint8)]
async def main():
    c = LiveClient(sys.argv[1], sys.argv[2], frames, sys.argv[3])
    await c.connect()
    print("connected", c.session, flush=True)
    await asyncio.sleep(3600)
asyncio.run(main())
"""


def test_a_peer_that_vanishes_is_cleaned_up_within_the_idle_timeout(live_deployment: LocalDeployment) -> None:
    gid = next(iter(garment_ids(live_deployment).values()))
    in_before = metric(live_deployment, "live_frames_in_total")
    peer = subprocess.Popen([sys.executable, "-c", VANISHING_PEER, live_deployment.url, live_deployment.cafile, gid],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        assert peer.stdout is not None and peer.stdout.readline().startswith("connected")
        deadline = time.monotonic() + 60
        while metric(live_deployment, "live_frames_in_total") <= in_before:   # media flows
            assert time.monotonic() < deadline, "no frame reached the server"
            time.sleep(0.2)
        assert metric(live_deployment, "live_sessions") == 1
    finally:
        peer.send_signal(signal.SIGKILL)   # gone without a word: no DELETE, no DTLS close
        peer.wait()
    killed = time.monotonic()
    gone = _wait_gauge_zero(live_deployment, IDLE_TIMEOUT_S + GAUGE_WAIT_S)
    assert gone - killed <= IDLE_TIMEOUT_S + 2.0


def test_frames_without_a_person_pass_through_with_a_hint(live_deployment: LocalDeployment) -> None:
    from skimage import data

    from testing.live_client import photo_sequence

    empty = photo_sequence(data.rocket(), 4, amplitude_px=2)     # a launch pad: nobody there
    gid = next(iter(garment_ids(live_deployment).values()))

    async def run() -> None:
        async with LiveClient(live_deployment.url, live_deployment.cafile, empty, gid) as client:
            await client.wait_frames(4, FIRST_FRAMES_S)
            got, src = _frame_of(client, empty, len(client.received) - 1)
            inner = (slice(40, 440), slice(40, 600))                 # inside the hint frame
            assert np.abs(got[inner] - src[inner]).mean() < 8.0       # unchanged (VP8 noise only)
            edge = got[200:280, 1:4].reshape(-1, 3).mean(axis=0)      # the amber hint frame on the side
            assert edge[0] > 180 and edge[2] < 90, edge
            deadline = time.monotonic() + 30
            while not any(m.get("type") == "stats" and m.get("status") == "no_person" for m in client.messages):
                assert time.monotonic() < deadline, client.messages
                await asyncio.sleep(0.2)

    asyncio.run(run())
    assert metric(live_deployment, 'live_frames_processed_total{status="no_person"}') >= 1


def _warp_memo(dep: LocalDeployment) -> dict[str, int]:
    """The VITON engine's warp-memo counters from node 2's /health (viton.geometric.memo)."""
    import json
    import urllib.request

    url = f"http://127.0.0.1:{dep.config['node2']['health_port']}/health"
    with urllib.request.urlopen(url, timeout=30) as resp:  # noqa: S310 (loopback http)
        return dict(json.loads(resp.read())["viton"]["meta"]["warp_memo"])


def test_a_still_shopper_reuses_the_prepared_garment(live_deployment: LocalDeployment, astronaut: np.ndarray) -> None:
    """A still shopper streamed through the running deployment: node 2 reuses the garment prepared at their
    scale, counted over STILL_WINDOW_FRAMES frames after STILL_WARMUP_FRAMES (the first frames are slow: the
    models register and the processing scale steps down). The whole warp's reuse is checked where it is
    deterministic (test_still_reuse.py): through the video codec it varies from run to run, 0 to 40 of the
    40 frames measured (with the scale steady: the codec's noise moves a landmark past the band or not)."""
    from testing.live_client import photo_sequence

    still = photo_sequence(astronaut, 1) * 2          # nobody moves: only the video codec's noise changes
    gid = next(i for n, i in garment_ids(live_deployment).items() if "red" in n.lower())
    marks: list[dict[str, int]] = []
    stats: list[tuple[float, str]] = []   # (processing scale, status) of the session's stats, one a second

    async def run() -> None:
        async with LiveClient(live_deployment.url, live_deployment.cafile, still, gid) as client:
            for n in (STILL_WARMUP_FRAMES, STILL_WARMUP_FRAMES + STILL_WINDOW_FRAMES):
                await client.wait_frames(n, FIRST_FRAMES_S)
                marks.append(await asyncio.to_thread(_warp_memo, live_deployment))
            stats.extend((m.get("scale"), m.get("status")) for m in client.messages if m.get("type") == "stats")

    asyncio.run(run())
    before, after = marks
    tried = sum(after[k] - before[k] for k in ("prepared_hits", "prepared_misses"))
    assert tried >= STILL_WINDOW_FRAMES * 3 // 4, (before, after, stats)
    # measured: 39 or 40 of 40 in every run; a miss is a change of the processing scale
    assert after["prepared_hits"] - before["prepared_hits"] >= tried * 3 // 4, (before, after, stats)
