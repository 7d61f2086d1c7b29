// The Live mode: the webcam over WebRTC to node 1 (POST /api/live/offer), the dressed video back,
// mirrored; garment switches over the data channel; delivered fps and latency shown; falls back to the
// still mode (Snap / Upload) with a clear message when WebRTC or the camera is unavailable.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const els = {
    start: $("live-start"), stop: $("live-stop"), card: $("live-card"), video: $("live-video"),
    stats: $("live-stats"), message: $("live-message"), garments: $("garments"),
  };
  if (!els.start) return;
  const WIDTH = 640, HEIGHT = 480, CONNECT_TIMEOUT_MS = 60000, STATS_PERIOD_MS = 1000;
  const live = { pc: null, channel: null, stream: null, session: null, timer: null, last: null, server: null };

  const REASONS = {
    no_webrtc: "This browser cannot stream video to the mirror (no WebRTC).",
    no_camera: "The camera is not available for live video.",
    live_sessions_full: "The live mirror is busy with other shoppers.",
    unknown_garment: "That garment is no longer in the catalog.",
    failed: "The live connection failed.",
  };

  function setState(s) { document.body.dataset.live = s; }

  function fallBack(code, detail) {
    const why = REASONS[code] || detail || "Live video is not available right now.";
    els.message.textContent = why + " Use Snap or Upload photo for a still try-on instead.";
    els.message.dataset.code = code;
    els.message.hidden = false;
    stop(false);
    setState("failed");
  }

  function garment() {
    const checked = els.garments.querySelector('.garment[aria-checked="true"]');
    const first = els.garments.querySelector(".garment");
    const pick = checked || first;
    if (pick && !checked) pick.click();
    return pick ? pick.dataset.id : null;
  }

  async function start() {
    if (!window.RTCPeerConnection) return fallBack("no_webrtc");
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) return fallBack("no_camera");
    const id = garment();
    if (!id) return fallBack("unknown_garment", "Pick a garment first.");
    els.message.hidden = true;
    els.card.hidden = false;
    els.start.disabled = true;
    setState("connecting");
    try {
      live.stream = await navigator.mediaDevices.getUserMedia({
        video: { width: { ideal: WIDTH }, height: { ideal: HEIGHT }, frameRate: { ideal: 30 } }, audio: false,
      });
    } catch (err) {
      return fallBack("no_camera", null);
    }
    const pc = new RTCPeerConnection({ iceServers: [] });
    live.pc = pc;
    live.channel = pc.createDataChannel("control");
    live.channel.onmessage = (ev) => onMessage(ev.data);
    for (const track of live.stream.getVideoTracks()) pc.addTrack(track, live.stream);
    pc.ontrack = (ev) => {
      // a mirror wants the newest frame now, not a smoother one later: no playout delay where supported
      if ("jitterBufferTarget" in ev.receiver) ev.receiver.jitterBufferTarget = 0;
      else if ("playoutDelayHint" in ev.receiver) ev.receiver.playoutDelayHint = 0;
      els.video.srcObject = ev.streams[0] || new MediaStream([ev.track]);
    };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "failed") fallBack("failed");
      if (pc.connectionState === "connected") setState("streaming");
    };
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc);
      const resp = await fetch("/api/live/offer", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ sdp: pc.localDescription.sdp, type: "offer", garment: id }),
      });
      const body = await resp.json();
      if (!resp.ok) return fallBack(body.error && body.error.code, body.error && body.error.message);
      live.session = body.session;
      document.body.dataset.liveSession = body.session;
      await pc.setRemoteDescription({ type: body.type, sdp: body.sdp });
    } catch (err) {
      return fallBack("failed", null);
    }
    els.stop.disabled = false;
    live.timer = setInterval(showStats, STATS_PERIOD_MS);
    setTimeout(() => { if (document.body.dataset.live === "connecting") fallBack("failed"); }, CONNECT_TIMEOUT_MS);
  }

  function gathered(pc) {  // the server takes one offer with every candidate (no trickle)
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => { if (pc.iceGatheringState === "complete") resolve(); };
      pc.addEventListener("icegatheringstatechange", done);
      setTimeout(resolve, 3000);
    });
  }

  function onMessage(data) {
    let msg;
    try { msg = JSON.parse(data); } catch (e) { return; }
    if (msg.type === "stats") live.server = msg;
    else if (msg.type === "garment") document.body.dataset.liveGarment = msg.garment;
    else if (msg.type === "error") {
      els.message.textContent = msg.error.message;
      els.message.hidden = false;
    }
  }

  async function showStats() {
    if (!live.pc) return;
    const report = await live.pc.getStats();
    let decoded = 0, rtt = null;
    report.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") decoded = s.framesDecoded || 0;
      if (s.type === "candidate-pair" && s.nominated && s.currentRoundTripTime !== undefined) {
        rtt = s.currentRoundTripTime * 1000;
      }
    });
    const now = performance.now();
    const fps = live.last ? (decoded - live.last.decoded) * 1000 / (now - live.last.t) : 0;
    live.last = { decoded, t: now };
    document.body.dataset.framesDecoded = String(decoded);
    const server = live.server && live.server.latency_ms;
    const latency = server != null ? server + (rtt || 0) : null;
    let text = `${fps.toFixed(1)} fps`;
    if (latency != null) text += ` · ${Math.round(latency)} ms latency`;
    if (live.server && live.server.status === "no_person") text += " · step into the frame";
    if (live.server && live.server.status === "error") {
      text += live.server.code === "legs_not_in_view"
        ? " · step back so the camera sees your legs for this garment"
        : " · try-on unavailable, showing the camera";
    }
    els.stats.textContent = text;
  }

  function switchGarment(id) {
    if (live.channel && live.channel.readyState === "open") live.channel.send(JSON.stringify({ garment: id }));
  }

  function stop(tellServer) {
    if (live.timer) clearInterval(live.timer);
    if (tellServer !== false && live.session) {
      fetch(`/api/live/${encodeURIComponent(live.session)}`, { method: "DELETE" }).catch(() => {});
    }
    if (live.pc) live.pc.close();
    if (live.stream) for (const t of live.stream.getTracks()) t.stop();
    Object.assign(live, {
      pc: null, channel: null, stream: null, session: null, timer: null, last: null, server: null,
    });
    els.video.srcObject = null;
    els.start.disabled = false;
    els.stop.disabled = true;
    if (tellServer !== false) { els.card.hidden = true; setState("stopped"); }
  }

  els.garments.addEventListener("click", (ev) => {
    const btn = ev.target.closest && ev.target.closest(".garment");
    if (btn && live.session) switchGarment(btn.dataset.id);
  });
  els.start.addEventListener("click", start);
  els.stop.addEventListener("click", () => stop(true));
  window.addEventListener("pagehide", () => stop(true));
})();
