// Router Health: tables and charts of the selected window, updated in place on every refresh.
// With a replay selected (?run=) the page shows that run's figures: its charts are fetched
// with ?run= too, and live pushes leave the page alone.
(function () {
  "use strict";
  const windows = document.getElementById("windows");
  const windowKey = windows.dataset.window;
  const run = windows.dataset.run;
  const ofRun = run ? `?run=${encodeURIComponent(run)}` : "";
  const hasSummary = document.getElementById("health-empty") === null;
  const choice = document.getElementById("run-choice");
  if (choice) choice.addEventListener("change", () => choice.form.submit());

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
    if (run) return null; // live's doctor, not the replay's period
    const series = await dashboard.getJson(`/api/v1/doctor/confidence/?hours=${overlayHours}`);
    if (!series) return null;
    return { name: "doctor confidence", points: series.points.map((p) => [p.at, p.confidence]) };
  }

  async function refreshCharts() {
    const [curves, overlay] = await Promise.all([
      dashboard.getJson(`/api/v1/router-health/${windowKey}/curves/${ofRun}`), confidenceOverlay(),
    ]);
    if (curves) {
      dashboard.linesChart("cum-pnl-chart", curves.source, "cum_pnl", false, overlay);
      dashboard.linesChart("hit-rate-chart", curves.source, "hit_rate", true);
    }
    dashboard.navChart("nav-chart", await dashboard.getJson(`/api/v1/nav/curve/${ofRun}`));
    document.body.dataset.chartsDrawn = String(Number(document.body.dataset.chartsDrawn || 0) + 1);
  }

  if (run) {
    dashboard.followFills(false); // the recent fills are the replay's
    if (hasSummary) refreshCharts();
    return;
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
