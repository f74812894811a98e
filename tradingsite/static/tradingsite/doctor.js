// Doctor tab: the latest checks, the confidence history, the heartbeat table and the chart
// of seconds between heartbeats, kept live.
(function () {
  "use strict";
  const confidence = JSON.parse(document.getElementById("confidence-data").textContent)
    .map((p) => [p.at, p.confidence]);
  const confidenceChart = echarts.init(document.getElementById("confidence-chart"));

  function renderConfidence() {
    confidenceChart.setOption({
      animation: false,
      tooltip: { trigger: "axis" },
      xAxis: { type: "time" },
      yAxis: { type: "value", min: 0, max: 1 },
      series: [{ name: "doctor confidence", type: "line", step: "end", showSymbol: confidence.length < 60, data: confidence }],
    }, { replaceMerge: ["series"] });
  }

  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  function applySnapshot(snap) {
    const empty = document.getElementById("doctor-empty");
    if (empty) { window.location.reload(); return; } // the first snapshot: render the page once
    const overall = document.getElementById("overall-status");
    overall.textContent = snap.status;
    overall.dataset.status = snap.status;
    document.getElementById("overall-confidence").textContent = snap.confidence.toFixed(2);
    const taken = document.getElementById("taken-at");
    taken.textContent = snap.taken_at;
    taken.dataset.at = snap.taken_at;
    document.querySelector("#checks tbody").replaceChildren(...snap.checks.map((check) => {
      const tr = document.createElement("tr");
      tr.className = "check";
      tr.dataset.name = check.name;
      tr.dataset.status = check.status;
      tr.append(cell(check.label), cell(check.status, "status-cell"),
        cell(check.confidence.toFixed(2), "num"), cell(`${Math.round(check.latency_ms)} ms`, "num"),
        cell(check.detail));
      return tr;
    }));
    confidence.push([snap.taken_at, snap.confidence]);
    renderConfidence();
    document.body.dataset.snapshotsSeen = String(Number(document.body.dataset.snapshotsSeen || 0) + 1);
  }

  function renderAge() {
    const taken = document.getElementById("taken-at");
    if (!taken) return;
    const age = Math.round((Date.now() - new Date(taken.dataset.at).getTime()) / 1000);
    document.getElementById("snapshot-age").textContent = `${age} s`;
  }

  const rows = new Map(); // component -> latest beat
  const series = new Map(); // component -> [[time, seconds since previous]]
  const chart = echarts.init(document.getElementById("heartbeat-chart"));

  function renderTable() {
    const body = document.querySelector("#heartbeats tbody");
    if (rows.size === 0) return;
    body.replaceChildren(
      ...[...rows.values()]
        .sort((a, b) => a.component.localeCompare(b.component))
        .map((beat) => {
          const tr = document.createElement("tr");
          tr.dataset.component = beat.component;
          const age = Math.round((Date.now() - new Date(beat.at).getTime()) / 1000);
          [beat.component, beat.hostname, beat.at, `${age} s`].forEach((text) => {
            const td = document.createElement("td");
            td.textContent = text;
            tr.appendChild(td);
          });
          return tr;
        })
    );
  }

  function renderChart() {
    chart.setOption({
      animation: false,
      tooltip: { trigger: "axis" },
      legend: {},
      xAxis: { type: "time" },
      yAxis: { type: "value", name: "s" },
      series: [...series.entries()].map(([name, points]) => ({
        name, type: "line", showSymbol: points.length < 60, data: points,
      })),
    }, { replaceMerge: ["series"] });
  }

  function add(beat) {
    const previous = rows.get(beat.component);
    rows.set(beat.component, beat);
    if (previous && previous.at !== beat.at) {
      const gap = (new Date(beat.at) - new Date(previous.at)) / 1000;
      const points = series.get(beat.component) || [];
      points.push([beat.at, gap]);
      series.set(beat.component, points.slice(-360));
    }
  }

  live.on("snapshot", (data) => {
    data.heartbeats.forEach(add);
    renderTable();
    renderChart();
  });
  live.on("doctor.snapshot", applySnapshot);
  live.on("doctor.heartbeat", (beat) => {
    add(beat);
    renderTable();
    renderChart();
  });
  window.setInterval(() => { renderTable(); renderAge(); }, 1000);
  window.addEventListener("resize", () => { chart.resize(); confidenceChart.resize(); });
  renderConfidence();
})();
