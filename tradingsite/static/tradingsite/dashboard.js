// Shared by the Overview and Router Health tabs: ECharts charts, tables rebuilt from the
// selectors' rows (the server formats every number, so page, API and pushes agree), and
// the recent fills list fed by live pushes.
(function () {
  "use strict";
  const charts = {};

  function chart(id) {
    const el = document.getElementById(id);
    if (!el) return null;
    el.hidden = false;
    if (!charts[id]) {
      charts[id] = echarts.init(el);
      window.addEventListener("resize", () => charts[id].resize());
    }
    return charts[id];
  }

  function seconds(t) { return t.map((s) => s * 1000); }

  function navChart(id, curve) {
    const c = chart(id);
    if (!c || !curve || !curve.t || curve.t.length === 0) return;
    const t = seconds(curve.t);
    c.setOption({
      animation: false,
      tooltip: { trigger: "axis" },
      legend: {},
      grid: { left: 70, right: 60 },
      xAxis: { type: "time" },
      yAxis: [
        { type: "value", name: "NAV", scale: true },
        { type: "value", name: "drawdown", max: 0, min: (extent) => Math.min(extent.min, -0.01), axisLabel: { formatter: (v) => `${(v * 100).toFixed(0)}%` } },
      ],
      series: [
        { name: "NAV", type: "line", showSymbol: false, data: t.map((x, i) => [x, curve.nav[i]]) },
        {
          name: "drawdown", type: "line", yAxisIndex: 1, showSymbol: false, areaStyle: { opacity: 0.25 },
          lineStyle: { width: 1 }, data: t.map((x, i) => [x, curve.drawdown[i]]),
        },
      ],
    }, { replaceMerge: ["series"] });
  }

  // overlay (optional): [[time, value in 0..1], ...] drawn on a second axis, e.g. the doctor
  // confidence over the router's curves.
  function linesChart(id, groups, field, percent, overlay) {
    const c = chart(id);
    if (!c || !groups) return;
    const yAxis = [{
      type: "value", scale: true,
      axisLabel: percent ? { formatter: (v) => `${(v * 100).toFixed(0)}%` } : {},
    }];
    const series = Object.entries(groups).map(([name, curve]) => ({
      name, type: "line", showSymbol: false, connectNulls: true,
      data: seconds(curve.t).map((x, i) => [x, curve[field][i]]),
    }));
    if (overlay) {
      yAxis.push({ type: "value", name: overlay.name, min: 0, max: 1, splitLine: { show: false } });
      series.push({
        name: overlay.name, type: "line", yAxisIndex: 1, step: "end", showSymbol: false,
        lineStyle: { type: "dashed", width: 1 }, itemStyle: { color: "#888" }, data: overlay.points,
      });
    }
    c.setOption({
      animation: false,
      tooltip: { trigger: "axis" },
      legend: { type: "scroll" },
      grid: { left: 70, right: overlay ? 60 : 20 },
      xAxis: { type: "time" },
      yAxis,
      series,
    }, { replaceMerge: ["series", "yAxis"] });
  }

  function renderTable(id, rows) {
    const table = document.getElementById(id);
    if (!table) return;
    const columns = table.dataset.columns.split(",");
    const body = table.querySelector("tbody");
    if (rows.length === 0) return; // keep the empty state
    body.replaceChildren(...rows.map((row) => {
      const tr = document.createElement("tr");
      tr.dataset.name = row.name;
      const first = document.createElement("td");
      first.textContent = row.name;
      tr.appendChild(first);
      columns.forEach((column) => {
        const td = document.createElement("td");
        td.className = "num";
        td.dataset.field = column;
        td.textContent = row.display[column];
        tr.appendChild(td);
      });
      return tr;
    }));
  }

  let fillsLive = true;
  function followFills(on) { fillsLive = on; }

  function prependFill(fill) {
    const body = document.querySelector("#recent-fills tbody");
    if (!body || !fillsLive) return;
    const empty = body.querySelector(".empty-row");
    if (empty) empty.remove();
    const tr = document.createElement("tr");
    tr.className = "fresh";
    [fill.at, fill.source, fill.symbol, fill.side, fill.quantity, fill.price, fill.fee,
      fill.closing ? fill.realized_pnl : "–"].forEach((text, i) => {
      const td = document.createElement("td");
      if (i >= 4) td.className = "num";
      td.textContent = text;
      tr.appendChild(td);
    });
    body.prepend(tr);
    while (body.children.length > 20) body.lastElementChild.remove();
    document.body.dataset.fillsSeen = String(Number(document.body.dataset.fillsSeen || 0) + 1);
  }

  async function getJson(url) {
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!response.ok) return null;
    return response.json();
  }

  function initialJson(id) {
    const el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  live.on("routing.fill", prependFill);
  window.dashboard = { navChart, linesChart, renderTable, getJson, initialJson, followFills };
})();
