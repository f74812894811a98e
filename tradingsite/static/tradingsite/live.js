// One websocket per page. Every push carries a sequence number: a page that sees a gap asks
// for a fresh snapshot instead of drifting (Channels delivers at most once).
(function () {
  "use strict";
  const listeners = {};
  let lastSeq = null; // null while waiting for a snapshot
  let retryMs = 1000;

  function on(event, handler) {
    (listeners[event] = listeners[event] || []).push(handler);
  }

  function emit(event, data) {
    (listeners[event] || []).forEach((handler) => handler(data));
  }

  function setStatus(state, text) {
    const pill = document.getElementById("live-status");
    if (pill) {
      pill.dataset.state = state;
      pill.textContent = text;
    }
  }

  function connect() {
    const scheme = window.location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${window.location.host}/ws/dashboard/`);
    socket.onopen = () => {
      retryMs = 1000;
      setStatus("live", "live");
    };
    socket.onmessage = (message) => {
      const push = JSON.parse(message.data);
      if (push.event === "snapshot") {
        lastSeq = push.seq;
        document.body.dataset.liveSeq = String(lastSeq);
        emit("snapshot", push.data);
        return;
      }
      if (lastSeq === null || push.seq <= lastSeq) {
        return; // waiting for a snapshot, or already contained in it
      }
      if (push.seq !== lastSeq + 1) {
        lastSeq = null;
        document.body.dataset.resyncs = String(Number(document.body.dataset.resyncs || 0) + 1);
        socket.send(JSON.stringify({ action: "resync" }));
        return;
      }
      lastSeq = push.seq;
      document.body.dataset.liveSeq = String(lastSeq);
      emit(push.event, push.data);
    };
    socket.onclose = () => {
      lastSeq = null;
      setStatus("offline", "offline, reconnecting…");
      window.setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 30000);
    };
  }

  // The header's "last worker heartbeat" indicator, on every page.
  let lastWorkerBeat = null;
  function showWorkerBeat(beat) {
    if (beat.component !== "worker") return;
    lastWorkerBeat = new Date(beat.at);
    const el = document.getElementById("last-heartbeat");
    el.dataset.at = beat.at;
    el.title = `${beat.hostname} at ${beat.at}`;
    renderAge();
  }
  function renderAge() {
    const el = document.getElementById("last-heartbeat");
    if (!el || lastWorkerBeat === null) return;
    const seconds = Math.max(0, Math.round((Date.now() - lastWorkerBeat.getTime()) / 1000));
    el.textContent = `${lastWorkerBeat.toLocaleTimeString()} (${seconds} s ago)`;
    el.classList.toggle("stale", seconds > 60);
  }
  on("snapshot", (data) => data.heartbeats.forEach(showWorkerBeat));
  on("doctor.heartbeat", showWorkerBeat);
  window.setInterval(renderAge, 1000);

  // Every tab's banner while trading is halted (with the reason) or the kill switch is on.
  const status = JSON.parse((document.getElementById("trading-status") || {}).textContent || "{}") || {};
  function renderBanner() {
    const banner = document.getElementById("halt-banner");
    if (!banner) return;
    banner.hidden = !(status.halted || status.kill_switch);
    document.getElementById("halt-title").textContent = status.halted
      ? "Trading is halted" : "Kill switch is on";
    document.getElementById("halt-reason").textContent = status.halted
      ? status.halt_reason
      : "no new entries are sent; stops and reduce-only orders still are";
  }
  on("risk.state", (state) => {
    status.halted = state.halted;
    status.halt_reason = state.halt_reason;
    renderBanner();
  });
  on("risk.kill_switch", (change) => {
    status.kill_switch = change.on;
    renderBanner();
  });

  window.live = { on, connect };
})();
