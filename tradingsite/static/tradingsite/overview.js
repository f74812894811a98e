// Overview: NAV and drawdown, positions, last ticks and fills, kept live.
(function () {
  "use strict";
  dashboard.navChart("nav-chart", dashboard.initialJson("nav-curve"));

  async function refreshNav() {
    const curve = await dashboard.getJson("/api/v1/nav/curve/");
    if (curve && curve.t.length) {
      const empty = document.getElementById("nav-empty");
      if (empty) empty.remove();
      dashboard.navChart("nav-chart", curve);
    }
  }

  async function refreshPositions() {
    const rows = await dashboard.getJson("/api/v1/positions/");
    if (!rows) return;
    const body = document.querySelector("#positions tbody");
    if (rows.length === 0) {
      body.innerHTML = '<tr class="empty-row"><td colspan="7">Flat: no open position.</td></tr>';
      return;
    }
    body.replaceChildren(...rows.map((p) => {
      const tr = document.createElement("tr");
      tr.dataset.symbol = p.symbol;
      [p.symbol, p.quantity, p.entry_price, p.mark || "–", p.unrealized_pnl, p.realized_pnl,
        p.stops.length ? p.stops.join(", ") : "none on the venue"].forEach((text, i) => {
        const td = document.createElement("td");
        if (i > 0 && i < 6) td.className = "num";
        td.textContent = text;
        tr.appendChild(td);
      });
      return tr;
    }));
  }

  function set(id, text) {
    const el = document.getElementById(id);
    if (el) el.textContent = text;
  }

  const money = (x) => Number(x).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  live.on("routing.nav", (point) => set("kpi-nav", money(point.nav)));
  live.on("routing.position", refreshPositions);
  live.on("routing.health", refreshNav);
  live.on("risk.state", (state) => {
    set("kpi-multiplier", state.size_multiplier);
    set("kpi-loss-streak", state.loss_streak);
    set("kpi-trading", state.halted ? "halted" : "on");
    const peak = Number(state.peak_index);
    if (peak > 0) set("kpi-drawdown", `${((1 - Number(state.index) / peak) * 100).toFixed(2)}%`);
  });
  live.on("risk.kill_switch", (change) => set("kpi-kill-switch", change.on ? "on" : "off"));
  live.on("doctor.heartbeat", (beat) => {
    if (beat.component !== "executor") return;
    const body = document.querySelector("#last-ticks tbody");
    const empty = body.querySelector(".empty-row");
    if (empty) empty.remove();
    const m = beat.metrics || {};
    const tr = document.createElement("tr");
    [beat.at, beat.hostname, m.signals || 0, m.orders || 0, m.fills || 0].forEach((text, i) => {
      const td = document.createElement("td");
      if (i >= 2) td.className = "num";
      td.textContent = String(text);
      tr.appendChild(td);
    });
    body.prepend(tr);
    while (body.children.length > 10) body.lastElementChild.remove();
  });
  live.on("snapshot", () => { refreshPositions(); refreshNav(); });
})();
