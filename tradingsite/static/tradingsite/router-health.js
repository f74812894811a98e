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

  async function refreshCharts() {
    const curves = await dashboard.getJson(`/api/v1/router-health/${windowKey}/curves/`);
    if (curves) {
      dashboard.linesChart("cum-pnl-chart", curves.source, "cum_pnl", false);
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
  if (hasSummary) refreshCharts();
})();
