// Doctor tab: the heartbeat table and the chart of seconds between heartbeats, kept live.
(function () {
  "use strict";
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
  live.on("doctor.heartbeat", (beat) => {
    add(beat);
    renderTable();
    renderChart();
  });
  window.setInterval(renderTable, 1000);
  window.addEventListener("resize", () => chart.resize());
})();
