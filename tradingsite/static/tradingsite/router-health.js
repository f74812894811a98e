// Router Health: tables and charts of the selected window, updated in place on every refresh.
(function () {
  "use strict";
  const windowKey = document.getElementById("windows").dataset.window;
  const hasSummary = document.getElementById("health-empty") === null;

  function applyTables(tables) {
    if (tables.overall) dashboard.renderTable("overall", [tables.overall]);
    dashboard.renderTable("by-source", tables.by_source);
    dashboard.renderTable("by-symbol", tables.by_symbol);
    dashboard.renderTable("execution-by-source", tables.by_source);
    dashboard.renderTable("execution-by-symbol", tables.by_symbol);
    const at = document.getElementById("computed-at");
    if (at) at.textContent = tables.computed_at;
    document.body.dataset.healthUpdates = String(Number(document.body.dataset.healthUpdates || 0) + 1);
  }

  // The doctor confidence over the window (the snapshots are kept 30 days).
  const overlayHours = { "24h": 24, "7d": 168, "30d": 720, all: 720 }[windowKey] || 168;

  async function confidenceOverlay() {
    const series = await dashboard.getJson(`/api/v1/doctor/confidence/?hours=${overlayHours}`);
    if (!series) return null;
    return { name: "doctor confidence", points: series.points.map((p) => [p.at, p.confidence]) };
  }

  async function refreshCharts() {
    const [curves, overlay] = await Promise.all([
      dashboard.getJson(`/api/v1/router-health/${windowKey}/curves/`), confidenceOverlay(),
    ]);
    if (curves) {
      dashboard.linesChart("cum-pnl-chart", curves.source, "cum_pnl", false, overlay);
      dashboard.linesChart("hit-rate-chart", curves.source, "hit_rate", true);
    }
    dashboard.navChart("nav-chart", await dashboard.getJson("/api/v1/nav/curve/"));
  }

  live.on("routing.health", (data) => {
    const tables = data.windows[windowKey];
    if (!tables) return;
    if (!hasSummary) {
      window.location.reload(); // the first summary: render the whole page once
      return;
    }
    applyTables(tables);
    refreshCharts();
  });
  live.on("snapshot", async () => {
    if (!hasSummary) return;
    const tables = await dashboard.getJson(`/api/v1/router-health/${windowKey}/`);
    if (tables) applyTables(tables);
    refreshCharts();
  });
  live.on("doctor.snapshot", () => { if (hasSummary) refreshCharts(); });
  if (hasSummary) refreshCharts();
})();
