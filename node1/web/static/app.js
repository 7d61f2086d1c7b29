// The shopper's page: camera or upload -> garment -> POST /api/tryon?mode=async -> SSE progress -> result.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const els = {
    video: $("camera"), preview: $("photo-preview"), empty: $("frame-empty"),
    snap: $("snap"), retake: $("retake"), upload: $("upload"),
    garments: $("garments"), tryon: $("tryon"),
    progress: $("progress"), message: $("message"), compare: $("compare"),
    before: $("before"), after: $("after"), resultActions: $("result-actions"),
    download: $("download"), meta: $("meta"), placeholder: $("placeholder"),
  };
  const maxMb = Number(document.body.dataset.uploadMaxMb || "10");
  const state = { stream: null, photo: null, photoUrl: null, garment: null, busy: false, events: null };

  // Readable text for the errors a shopper can meet; other codes show the server's message.
  const FRIENDLY = {
    no_person: "We could not find a person in the photo. Stand facing the camera with your head " +
      "and upper body in view, then snap again (or upload another photo).",
    legs_not_in_view: "This garment needs your legs in the picture: step back until the camera sees you " +
      "down to the knees at least, then snap again (or pick a top).",
    node2_unavailable: "The try-on server is not reachable right now. Please try again in a moment.",
    timeout: "The try-on took too long. Please try again.",
    busy: "The mirror is busy with other shoppers. Please try again in a few seconds.",
    rate_limited: "You are going a little fast. Wait a few seconds and try again.",
    camera_denied: "Camera permission was denied. Allow camera access for this site in your " +
      "browser's settings and reload the page — or upload a photo instead.",
    camera_missing: "No camera was found. Upload a photo instead.",
    camera_busy: "The camera is in use by another application. Close it and reload, or upload a photo.",
    camera_insecure: "The camera needs a secure (https://) page. Upload a photo instead.",
    network: "The connection to the mirror was lost. Check the network and try again.",
    worker_lost: "The mirror restarted while working on your try-on. Please try again.",
    store_unavailable: "The mirror is having trouble right now. Please try again in a moment.",
  };

  function showMessage(code, serverMessage, kind) {
    const text = FRIENDLY[code] || serverMessage || "Something went wrong. Please try again.";
    els.message.textContent = text;
    els.message.dataset.code = code || "";
    els.message.className = "message " + (kind || "error");
    els.message.hidden = false;
  }
  function clearMessage() { els.message.hidden = true; els.message.textContent = ""; els.message.dataset.code = ""; }

  // ------------------------------------------------------------------ camera
  async function startCamera() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      cameraFailed("camera_insecure");
      return;
    }
    try {
      state.stream = await navigator.mediaDevices.getUserMedia({
        video: { facingMode: "user", width: { ideal: 1280 }, height: { ideal: 960 } }, audio: false,
      });
    } catch (err) {
      const name = err && err.name;
      if (name === "NotAllowedError" || name === "SecurityError") cameraFailed("camera_denied");
      else if (name === "NotFoundError" || name === "OverconstrainedError") cameraFailed("camera_missing");
      else if (name === "NotReadableError") cameraFailed("camera_busy");
      else cameraFailed("camera_missing");
      return;
    }
    els.video.srcObject = state.stream;
    els.video.addEventListener("loadeddata", () => {
      els.empty.hidden = true;
      els.snap.disabled = false;
    }, { once: true });
  }

  function cameraFailed(code) {
    els.empty.innerHTML = "";
    const p = document.createElement("p");
    p.textContent = FRIENDLY[code];
    els.empty.appendChild(p);
    els.empty.hidden = false;
    els.empty.dataset.code = code;
    els.video.hidden = true;
    els.snap.disabled = true;
  }

  function snap() {
    const v = els.video;
    if (!v.videoWidth) return;
    const canvas = document.createElement("canvas");
    canvas.width = v.videoWidth;
    canvas.height = v.videoHeight;
    canvas.getContext("2d").drawImage(v, 0, 0);
    canvas.toBlob((blob) => { if (blob) setPhoto(blob); }, "image/jpeg", 0.92);
  }

  function setPhoto(blob) {
    if (state.photoUrl) URL.revokeObjectURL(state.photoUrl);
    state.photo = blob;
    state.photoUrl = URL.createObjectURL(blob);
    els.preview.src = state.photoUrl;
    els.preview.hidden = false;
    els.video.hidden = true;
    els.empty.hidden = true;
    els.retake.hidden = !state.stream;
    els.snap.hidden = true;
    clearMessage();
    updateTryon();
  }

  function retake() {
    state.photo = null;
    els.preview.hidden = true;
    els.video.hidden = false;
    els.retake.hidden = true;
    els.snap.hidden = false;
    updateTryon();
  }

  function onUpload() {
    const file = els.upload.files && els.upload.files[0];
    els.upload.value = "";
    if (!file) return;
    if (file.size > maxMb * 1024 * 1024) {
      showMessage("upload_too_large", `That file is ${(file.size / 1048576).toFixed(1)} MB; the limit is ${maxMb} MB.`);
      return;
    }
    setPhoto(file);
  }

  // ------------------------------------------------------------------ garments
  async function loadGarments() {
    let body;
    try {
      const resp = await fetch("/api/garments", { headers: { Accept: "application/json" } });
      body = await resp.json();
      if (!resp.ok) throw new Error((body.error && body.error.message) || resp.statusText);
    } catch (err) {
      els.garments.innerHTML = "";
      showMessage("catalog", "Could not load the garment catalog: " + err.message);
      return;
    }
    els.garments.innerHTML = "";
    if (!body.garments.length) {
      const li = document.createElement("li");
      li.className = "loading";
      li.textContent = "No garments in the catalog yet.";
      els.garments.appendChild(li);
      return;
    }
    // grouped by category (tops, bottoms, dresses), each under its heading, in catalog order within
    const groups = [["top", "Tops"], ["bottom", "Bottoms"], ["dress", "Dresses"]];
    for (const [category, title] of groups) {
      const members = body.garments.filter((g) => (g.category || "top") === category);
      if (!members.length) continue;
      const heading = document.createElement("li");
      heading.className = "group";
      heading.setAttribute("role", "presentation");
      heading.textContent = title;
      els.garments.appendChild(heading);
      for (const g of members) els.garments.appendChild(garmentItem(g));
    }
  }

  function garmentItem(g) {
    const li = document.createElement("li");
    const btn = document.createElement("button");
    btn.type = "button";
    btn.className = "garment";
    btn.setAttribute("role", "radio");
    btn.setAttribute("aria-checked", "false");
    btn.dataset.id = g.id;
    btn.dataset.category = g.category || "top";
    const img = document.createElement("img");
    img.src = g.thumbnail_url;
    img.alt = "";
    const name = document.createElement("span");
    name.textContent = g.name;
    btn.append(img, name);
    btn.addEventListener("click", () => selectGarment(g.id));
    li.appendChild(btn);
    return li;
  }

  function selectGarment(id) {
    state.garment = id;
    for (const b of els.garments.querySelectorAll(".garment")) {
      b.setAttribute("aria-checked", String(b.dataset.id === id));
    }
    updateTryon();
  }

  function updateTryon() {
    els.tryon.disabled = state.busy || !state.photo || !state.garment;
  }

  // ------------------------------------------------------------------ try-on
  // A "stage" event says that stage has FINISHED (with its measured ms): it and those before it are
  // done, the next one is the one running now.
  function setStage(stage, ms) {
    let passed = false;
    for (const li of els.progress.children) {
      if (passed) { li.className = "active"; passed = false; break; }
      li.className = "done";
      if (li.dataset.stage === stage) {
        if (typeof ms === "number") li.title = `${ms.toFixed(0)} ms`;
        passed = true;
      }
    }
  }

  function startProgress() {
    resetProgress();
    const first = els.progress.children[0];
    if (first) first.className = "active";
  }

  function resetProgress(cls) {
    for (const li of els.progress.children) li.className = cls || "";
  }

  function finish() {
    state.busy = false;
    els.tryon.textContent = "Try it on";
    if (state.events) { state.events.close(); state.events = null; }
    updateTryon();
  }

  function fail(code, message) {
    for (const li of els.progress.children) if (li.className === "active") li.className = "failed";
    showMessage(code, message);
    finish();
  }

  function showResult(res) {
    resetProgress("done");
    els.before.src = state.photoUrl;
    els.after.src = res.result_url;
    els.after.dataset.id = res.id;
    els.download.href = res.result_url + "?download=1";
    els.download.setAttribute("download", `tryon-${res.id.slice(0, 12)}.jpg`);
    const total = res.timings_ms && res.timings_ms.total;
    els.meta.textContent = (total ? `${Math.round(total)} ms` : "") + ` · ${res.device} · ${res.transport}`;
    els.compare.hidden = false;
    els.resultActions.hidden = false;
    els.placeholder.hidden = true;
    document.body.dataset.result = "shown";
    finish();
    els.compare.scrollIntoView({ behavior: "smooth", block: "nearest" });
  }

  // A web worker may die mid-request (crash, kill -9): the page sends each try-on with an
  // Idempotency-Key (random per attempt) and re-sends it when the connection dropped without an
  // answer or the server says the worker running it was lost; the server maps the key to its job,
  // so nothing runs twice (docs/web.md, "Workers and shared state").
  const RESEND_LIMIT = 1;          // re-sends of one try-on after a dropped connection / lost worker
  const RESEND_DELAY_MS = 500;
  const STREAM_REOPEN_LIMIT = 3;   // re-opened event streams of one job

  function newIdempotencyKey() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  async function tryOn() {
    if (!state.photo || !state.garment || state.busy) return;
    state.busy = true;
    els.tryon.textContent = "Working…";
    updateTryon();
    clearMessage();
    resetProgress();
    document.body.dataset.result = "pending";
    submit({ key: newIdempotencyKey(), resends: RESEND_LIMIT, photo: state.photo, garment: state.garment });
  }

  async function submit(attempt) {
    const form = new FormData();
    form.append("photo", attempt.photo, attempt.photo.name || "photo.jpg");
    form.append("garment", attempt.garment);
    let resp, body;
    try {
      resp = await fetch("/api/tryon?mode=async",
        { method: "POST", body: form, headers: { "Idempotency-Key": attempt.key } });
      body = await resp.json();
    } catch (err) {
      resend(attempt, "network", null);   // the connection dropped without an answer
      return;
    }
    if (!resp.ok) {
      fail(body.error && body.error.code, body.error && body.error.message);
      return;
    }
    follow(body, attempt, STREAM_REOPEN_LIMIT);
  }

  function resend(attempt, code, message) {
    if (!state.busy) return;
    if (attempt.resends < 1) { fail(code, message); return; }
    attempt.resends -= 1;
    document.body.dataset.resent = String(Number(document.body.dataset.resent || 0) + 1);
    setTimeout(() => submit(attempt), RESEND_DELAY_MS);
  }

  function failedJob(attempt, err) {
    if (err.code === "worker_lost") resend(attempt, err.code, err.message);
    else fail(err.code, err.message);
  }

  function follow(job, attempt, reopens) {
    const es = new EventSource(job.events_url);
    state.events = es;
    startProgress();
    es.addEventListener("stage", (e) => { const d = JSON.parse(e.data); setStage(d.stage, d.ms); });
    es.addEventListener("done", (e) => { es.close(); showResult(JSON.parse(e.data)); });
    es.addEventListener("failed", (e) => { es.close(); failedJob(attempt, JSON.parse(e.data).error || {}); });
    es.onerror = () => {
      // The stream broke before done/failed (its worker may have died): ask for the job's state,
      // follow it again while it runs (any worker can serve it with the shared store).
      if (!state.busy) return;
      es.close();
      fetch(job.status_url).then((r) => r.json()).then((st) => {
        if (st.state === "done") showResult(st);
        else if (st.error) failedJob(attempt, st.error);
        else if (reopens > 0) follow(job, attempt, reopens - 1);
        else fail("network", null);
      }).catch(() => resend(attempt, "network", null));
    };
  }

  els.snap.addEventListener("click", snap);
  els.retake.addEventListener("click", retake);
  els.upload.addEventListener("change", onUpload);
  els.tryon.addEventListener("click", tryOn);
  startCamera();
  loadGarments();
})();
