// ML Insights: one model version's insights, updated in place. Every number is the server's
// text (mlinsights.dashboard formats it once for the page and the API); the charts take the
// raw series beside it. A new insights computation or a new prediction makes the page fetch
// the JSON endpoints again; a sequence gap (a later snapshot) re-fetches everything.
(function () {
  "use strict";
  const root = document.getElementById("ml-tab");
  if (!root) return;
  const requested = root.dataset.requested; // "" follows the default model
  const insightsUrl = requested
    ? `${root.dataset.insightsUrl}${encodeURIComponent(requested)}/`
    : root.dataset.insightsUrl;
  let shown = JSON.parse((document.getElementById("ml-data") || {}).textContent || "null");
  const charts = {};

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([name, value]) => {
      if (value !== null && value !== undefined && value !== false) node.setAttribute(name, value);
    });
    (children || []).forEach((child) =>
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child)
    );
    return node;
  }

  function text(id, value) {
    const node = document.getElementById(id);
    if (node) node.textContent = value === null || value === undefined ? "–" : String(value);
  }

  function bump(name) {
    document.body.dataset[name] = String(Number(document.body.dataset[name] || 0) + 1);
  }

  // --- charts ------------------------------------------------------------------------------

  function chart(id, emptyId, hasData) {
    const box = document.getElementById(id);
    const empty = document.getElementById(emptyId);
    if (!box) return null;
    if (empty) empty.hidden = hasData;
    box.hidden = !hasData;
    if (!hasData) return null;
    // Created once visible: ECharts measures its container when it starts.
    if (!charts[id]) charts[id] = echarts.init(box);
    return charts[id];
  }

  const pct = (v) => `${(v * 100).toFixed(0)}%`;

  function predictionChart(recent) {
    const c = chart("prediction-chart", "prediction-chart-empty", recent.length > 0);
    if (!c) return;
    const groups = [
      ["rose", (row) => row.outcome === 1, "#2e7d32"],
      ["fell", (row) => row.outcome === 0, "#c62828"],
      ["pending", (row) => (row.outcome === null || row.outcome === undefined) && !row.void, "#9aa4b1"],
    ];
    c.setOption({
      animation: false,
      legend: { top: 0 },
      grid: { left: 56, right: 44, top: 48, bottom: 32 },
      tooltip: {
        trigger: "item",
        formatter: (item) => {
          const row = item.data.row;
          return `${row.as_of_display} ${row.symbol}<br>P(rise) ${row.probability_display}: ${row.outcome_display}`;
        },
      },
      xAxis: { type: "time" },
      yAxis: { type: "value", name: "P(rise)", min: 0, max: 1, axisLabel: { formatter: pct } },
      series: groups.map(([name, test, color], index) => ({
        name,
        type: "scatter",
        color,
        symbolSize: 8,
        data: recent.filter(test).map((row) => ({ value: [row.as_of, row.probability], row })),
        markLine: index === 0
          ? { silent: true, symbol: "none", lineStyle: { type: "dashed", color: "#5b6675" }, data: [{ yAxis: 0.5 }], label: { formatter: "50%" } }
          : undefined,
      })),
    }, { replaceMerge: ["series"] });
  }

  function calibrationChart(live, training) {
    const c = chart("calibration-chart", "calibration-chart-empty", live.length + training.length > 0);
    if (!c) return;
    const points = (bins) => bins.map((bin) => ({ value: [bin.mean_predicted, bin.observed_frequency], count: bin.count }));
    c.setOption({
      animation: false,
      legend: { top: 0 },
      grid: { left: 56, right: 24, top: 48, bottom: 44 },
      tooltip: {
        trigger: "item",
        formatter: (item) => item.data.count === undefined
          ? item.seriesName
          : `${item.seriesName}: predicted ${pct(item.data.value[0])}, observed ${pct(item.data.value[1])} (${item.data.count} predictions)`,
      },
      xAxis: { type: "value", name: "predicted", nameLocation: "middle", nameGap: 24, min: 0, max: 1, axisLabel: { formatter: pct } },
      yAxis: { type: "value", name: "observed", min: 0, max: 1, axisLabel: { formatter: pct } },
      series: [
        { name: "live", type: "line", data: points(live), symbolSize: 8 },
        { name: "walk-forward", type: "line", data: points(training), symbolSize: 6, lineStyle: { type: "dashed" } },
        {
          name: "perfectly calibrated", type: "line", showSymbol: false, silent: true,
          lineStyle: { type: "dotted", color: "#9aa4b1" }, itemStyle: { color: "#9aa4b1" },
          data: [{ value: [0, 0] }, { value: [1, 1] }],
        },
      ],
    }, { replaceMerge: ["series"] });
  }

  function rollingChart(curves) {
    const c = chart("rolling-chart", "rolling-chart-empty", curves.time.length > 0);
    text("rolling-window", curves.window);
    if (!c) return;
    c.setOption({
      animation: false,
      legend: { top: 0 },
      tooltip: { trigger: "axis" },
      grid: { left: 56, right: 64, top: 48, bottom: 32 },
      xAxis: { type: "time" },
      yAxis: [
        { type: "value", name: "hit rate", min: 0, max: 1, axisLabel: { formatter: pct } },
        { type: "value", name: "Brier", min: 0, scale: true },
      ],
      series: [
        { name: "hit rate", type: "line", showSymbol: false, data: curves.time.map((t, i) => [t, curves.hit_rate[i]]) },
        { name: "Brier", type: "line", yAxisIndex: 1, showSymbol: false, data: curves.time.map((t, i) => [t, curves.brier[i]]) },
      ],
    }, { replaceMerge: ["series"] });
  }

  // --- tables and figures --------------------------------------------------------------------

  function kpis(id, rows) {
    const list = document.getElementById(id);
    if (!list) return;
    list.replaceChildren(...rows.map((kpi) =>
      el("div", {}, [el("dt", {}, [kpi.label]), el("dd", { "data-kpi": kpi.key }, [kpi.display])])
    ));
  }

  function body(tableId, rows, makeRow, emptyText, columns) {
    const tbody = document.querySelector(`#${tableId} tbody`);
    if (!tbody) return;
    tbody.replaceChildren(...(rows.length
      ? rows.map(makeRow)
      : [el("tr", { class: "empty-row" }, [el("td", { colspan: String(columns) }, [emptyText])])]));
  }

  function renderRecent(recent) {
    body("recent-table", recent, (row) =>
      el("tr", { "data-id": String(row.id) }, [
        el("td", { "data-col": "as_of" }, [el("time", { datetime: row.as_of }, [row.as_of_display])]),
        el("td", { "data-col": "symbol" }, [row.symbol]),
        el("td", { class: "num", "data-col": "probability" }, [row.probability_display]),
        el("td", { "data-col": "outcome", "data-result": row.result }, [row.outcome_display]),
      ]), "No prediction of this model yet.", 4);
    predictionChart(recent);
  }

  function renderPromotion(promotion) {
    const card = document.getElementById("promotion-card");
    if (!card) return;
    card.hidden = !promotion;
    if (!promotion) return;
    const status = document.getElementById("promotion-status");
    status.dataset.passes = promotion.passes ? "true" : "false";
    status.textContent = promotion.passes ? "passes the rule" : "stays in shadow";
    text("promotion-incumbent", promotion.incumbent);
    text("promotion-incumbent-label", promotion.incumbent);
    text("promotion-samples", promotion.display.samples);
    text("promotion-brier", promotion.display.brier);
    text("promotion-brier-incumbent", promotion.display.brier_incumbent);
    text("promotion-reason", promotion.reason);
  }

  function renderInsights(data) {
    shown = data;
    text("model-title", `v${data.version} · ${data.algorithm_label}`);
    const badge = document.getElementById("state-badge");
    badge.dataset.state = data.state;
    badge.textContent = data.state_label;
    text("horizon", data.horizon_bars);
    text("trained-symbols", data.trained.symbols.join(", "));
    text("trained-start", data.trained.start_display);
    text("trained-end", data.trained.end_display);
    const at = document.getElementById("computed-at");
    at.dataset.at = data.computed_at;
    at.textContent = data.computed_at_display;
    kpis("live-kpis", data.live);
    kpis("training-kpis", data.training);
    renderPromotion(data.promotion);
    renderRecent(data.recent);
    calibrationChart(data.calibration, data.training_calibration);
    rollingChart(data.curves);
    body("importance-table", data.importance, (row) =>
      el("tr", { "data-feature": row.feature }, [
        el("td", { "data-col": "feature" }, [row.feature]),
        el("td", { class: "num", "data-col": "importance" }, [row.display]),
        el("td", { class: "bar-cell" }, [el("div", { class: "bar", style: `width: ${Number(row.bar)}%` })]),
      ]), "No feature importance recorded for this model.", 3);
    text("drift-hours", data.drift_hours);
    text("drift-rows", data.drift_rows_display);
    body("drift-table", data.drift, (row) =>
      el("tr", { "data-feature": row.feature, "data-level": row.level }, [
        el("td", { "data-col": "feature" }, [row.feature]),
        el("td", { class: "num", "data-col": "psi" }, [row.display]),
        el("td", { "data-col": "level" }, [row.level]),
      ]), "No drift reference recorded for this model.", 3);
    body("stale-table", data.stale, (row) =>
      el("tr", { "data-symbol": row.symbol }, [
        el("td", {}, [row.symbol]),
        el("td", { class: "num", "data-col": "count" }, [row.display]),
      ]), "", 2);
    document.querySelectorAll("#models-table tbody tr").forEach((tr) => {
      if (tr.dataset.version === String(data.version)) tr.setAttribute("aria-current", "true");
      else tr.removeAttribute("aria-current");
    });
    bump("mlUpdates");
  }

  function renderModels(models) {
    body("models-table", models, (model) =>
      el("tr", {
        "data-version": String(model.version),
        "data-state": model.state,
        "aria-current": shown && shown.version === model.version ? "true" : null,
      }, [
        el("td", { "data-col": "version" }, [el("a", { href: `?version=${model.version}` }, [`v${model.version}`])]),
        el("td", { "data-col": "state" }, [model.state_label]),
        el("td", { "data-col": "algorithm" }, [model.algorithm_label]),
        el("td", { class: "num", "data-col": "horizon" }, [String(model.horizon_bars)]),
        el("td", { "data-col": "created" }, [el("time", { datetime: model.created_at }, [model.created_display])]),
        el("td", { class: "num", "data-col": "auc" }, [model.display.auc]),
        el("td", { class: "num", "data-col": "brier" }, [model.display.brier]),
      ]), "No model yet.", 7);
    const select = document.getElementById("version-select");
    if (select) {
      const first = select.options[0];
      select.replaceChildren(first, ...models.map((model) =>
        el("option", { value: String(model.version), selected: String(model.version) === requested ? "selected" : null }, [
          `v${model.version} · ${model.state} · ${model.algorithm_label} · ${model.created_display} · AUC ${model.display.auc} · Brier ${model.display.brier}`,
        ])
      ));
    }
  }

  // --- fetching ------------------------------------------------------------------------------

  // Only the newest response of each kind is applied (fetches may finish out of order).
  const generation = {};
  async function fetchJson(kind, url) {
    const mine = (generation[kind] = (generation[kind] || 0) + 1);
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!response.ok) return null;
      const data = await response.json();
      return mine === generation[kind] ? data : null;
    } catch (error) {
      console.warn(`ml insights: fetching ${url} failed`, error);
      return null;
    }
  }

  async function refreshRecent() {
    if (!shown) return;
    const version = shown.version;
    const recent = await fetchJson("recent", `${root.dataset.recentUrl}?version=${version}`);
    if (recent && shown && shown.version === version) renderRecent(recent);
  }

  async function refreshInsights() {
    const data = await fetchJson("insights", insightsUrl);
    if (!data) return;
    if (!shown) {
      window.location.reload(); // the first insights: render the whole page once
      return;
    }
    renderInsights(data);
    // Predictions scored since the computation are in the database, not in the cache.
    await refreshRecent();
  }

  async function refreshModels() {
    const models = await fetchJson("models", root.dataset.modelsUrl);
    if (models && document.getElementById("models-table")) renderModels(models);
  }

  live.on("mlinsights.insights", (push) => {
    const versions = push.versions || [];
    // The default model may change with a computation (a promotion): always follow it.
    if (!requested || versions.includes(Number(requested)) || (shown && versions.includes(shown.version))) {
      refreshInsights();
    }
    refreshModels();
  });
  live.on("mlinsights.prediction", (push) => {
    if (!shown) return;
    if ((push.predictions || []).some((row) => row.version === shown.version)) refreshRecent();
  });
  // The first snapshot arrives on connect and matches the page; a later one means pushes may
  // have been missed (reconnect or sequence gap): catch up on everything.
  let synced = false;
  live.on("snapshot", () => {
    if (!synced) {
      synced = true;
      return;
    }
    refreshInsights();
    refreshModels();
  });

  const select = document.getElementById("version-select");
  if (select) select.addEventListener("change", () => select.form.submit());

  if (shown) {
    predictionChart(shown.recent);
    calibrationChart(shown.calibration, shown.training_calibration);
    rollingChart(shown.curves);
  }
  window.addEventListener("resize", () => Object.values(charts).forEach((c) => c.resize()));
})();
