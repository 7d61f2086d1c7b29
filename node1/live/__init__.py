"""node1.live: the live mirror - the shopper's webcam over WebRTC, dressed frame by frame (docs/live.md).

    session.py   LiveManager, LiveSettings, check_offer: signaling, session limits and timeouts, the
                 asyncio loop thread (what node1.web.live imports; no models)
    media.py     LiveSession: aiortc peer connection, newest-frame mailbox, worker thread, data channel
    frames.py    FrameProcessor: pose tracking (node1.pose.tracking), One-Euro smoothing, parsing, the
                 runner's node-2 leg, adaptive processing scale, pass-through with a hint
    errors.py    BadOffer, UnknownLiveGarment, UnknownSession, LiveSessionsFull, LiveUnavailable
"""
