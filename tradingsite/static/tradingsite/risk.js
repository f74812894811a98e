// Risk tab: the size multiplier, kill switch, limits, autotune history and snapshots kept live.
// A push updates what it carries at once; the tables are then re-fetched from the API, which
// uses the same selectors as the page (risk.dashboard), so every cell shows the server's text.
(function () {
  "use strict";
  const root = document.getElementById("risk-tab");
  if (!root) return;
  const DASH = "—";
  const urls = {
    limits: root.dataset.limitsUrl,
    autotune: root.dataset.autotuneUrl,
    refusals: root.dataset.refusalsUrl,
    snapshots: root.dataset.snapshotsUrl,
  };
  const autotuneShown = Number(root.dataset.autotuneShown) || 50;

  // "500.00000000" -> "500", "0.10" -> "0.1": the form of risk.dashboard.decimal_text.
  function plain(value) {
    const text = String(value);
    if (!/^-?\d+\.\d+$/.test(text)) return text;
    return text.replace(/0+$/, "").replace(/\.$/, "");
  }

  function orDash(value) {
    return value === null || value === undefined ? DASH : String(value);
  }

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

  // "2026-03-02T12:00:00.123+00:00" -> "2026-03-02 12:00:00", as the template slices it.
  function timeCell(at) {
    return el("td", { "data-col": "at" }, [
      el("time", { datetime: at }, [`${at.slice(0, 10)} ${at.slice(11, 19)}`]),
    ]);
  }

  function emptyRow(columns, text) {
    return el("tr", { class: "empty-row" }, [el("td", { colspan: String(columns) }, [text])]);
  }

  // Only the newest response of each kind is applied (fetches may finish out of order).
  const generation = {};
  function refresh(kind, render) {
    const mine = (generation[kind] = (generation[kind] || 0) + 1);
    return fetch(urls[kind], { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then((response) => (response.ok ? response.json() : Promise.reject(response.status)))
      .then((data) => {
        if (mine === generation[kind]) render(data);
      })
      .catch((error) => console.warn(`risk: refreshing ${kind} failed`, error));
  }

  // --- status: multiplier, kill switch, trading ------------------------------------------------

  function setKillSwitch(on, title) {
    const flag = document.getElementById("kill-switch-state");
    flag.dataset.on = on ? "true" : "false";
    flag.textContent = on ? "on" : "off";
    if (title) flag.title = title;
  }

  function setTrading(halted, reason) {
    const flag = document.getElementById("trading-state");
    if (halted === null || halted === undefined) {
      flag.dataset.state = "none";
      flag.textContent = "no risk state yet";
      flag.removeAttribute("title");
    } else if (halted) {
      flag.dataset.state = "halted";
      flag.textContent = `halted: ${reason || ""}`;
      flag.title = reason || "";
    } else {
      flag.dataset.state = "trading";
      flag.textContent = "trading";
      flag.removeAttribute("title");
    }
  }

  function setMultiplier(text) {
    document.getElementById("size-multiplier").textContent = orDash(text);
    document.getElementById("no-state-note").hidden = text !== null && text !== undefined;
  }

  // --- limits ------------------------------------------------------------------------------

  function renderLimits(data) {
    setMultiplier(data.size_multiplier);
    setKillSwitch(data.kill_switch);
    setTrading(data.halted, data.halt_reason);
    document.getElementById("state-warning").hidden = data.state_checksum_ok !== false;
    const table = document.getElementById("limits-table");
    const symbols = data.symbols || [];
    table.dataset.symbols = symbols.join(",");
    const span = symbols.length ? { rowspan: "2" } : {};
    const head = [
      el("tr", {}, [
        el("th", span, ["limit"]),
        el("th", span, ["unit"]),
        el("th", { class: "num", ...span }, ["configured"]),
        el("th", { class: "num", ...span }, ["effective"]),
        ...symbols.map((symbol) => el("th", { colspan: "2", "data-symbol": symbol }, [symbol])),
      ]),
    ];
    if (symbols.length) {
      head.push(
        el("tr", {}, symbols.flatMap(() => [
          el("th", { class: "num" }, ["configured"]),
          el("th", { class: "num" }, ["effective"]),
        ]))
      );
    }
    table.tHead.replaceChildren(...head);
    const body = table.tBodies[0];
    if (!data.rows || data.rows.length === 0) {
      const admin = root.dataset.limitsAdminUrl;
      const row = emptyRow(4, data.problem || "No risk limits yet.");
      if (admin) {
        row.firstChild.append(" ", el("a", { href: admin }, ["Open the risk limits admin."]));
      }
      body.replaceChildren(row);
    } else {
      body.replaceChildren(...data.rows.map((row) => limitRow(row, symbols)));
    }
    const more = document.getElementById("more-symbols");
    if (more) more.hidden = !data.more_symbols;
  }

  function limitRow(row, symbols) {
    const cell = (kind, text, symbol) =>
      el("td", { class: "num", "data-field": row.field, "data-kind": kind, "data-symbol": symbol }, [
        orDash(text),
      ]);
    const cells = [
      el("th", { scope: "row" }, [row.label + (row.scaled ? " *" : "")]),
      el("td", { class: "muted" }, [row.unit]),
      cell("configured", row.configured),
      cell("effective", row.effective),
    ];
    if (symbols.length) {
      if (row.account_wide) {
        cells.push(
          el("td", { class: "account-wide", colspan: String(2 * symbols.length) }, ["account-wide"])
        );
      } else {
        row.overrides.forEach((override) => {
          cells.push(cell("override", override.configured, override.symbol));
          cells.push(cell("override-effective", override.effective, override.symbol));
        });
      }
    }
    return el("tr", { "data-field": row.field, class: row.scaled ? "scaled" : null }, cells);
  }

  // --- autotune ----------------------------------------------------------------------------

  const seriesData = JSON.parse(document.getElementById("autotune-series-data").textContent || "null");
  let points = seriesData && Array.isArray(seriesData.points) ? seriesData.points : [];
  let chart = null;

  function renderChart() {
    const box = document.getElementById("autotune-chart");
    document.getElementById("autotune-chart-empty").hidden = points.length > 0;
    box.hidden = points.length === 0;
    if (points.length === 0) return;
    // Created once visible: ECharts measures its container when it starts.
    chart = chart || echarts.init(box);
    const final = points[points.length - 1];
    const last = [final[0], Number(final[1])];
    chart.setOption({
      animation: false,
      color: ["#1f6feb"], // both series: one line, the dashed part is its continuation
      grid: { left: 48, right: 24, top: 32, bottom: 32 },
      tooltip: { trigger: "axis" },
      xAxis: { type: "time" },
      yAxis: { type: "value", name: "size multiplier", min: 0, max: 1 },
      series: [
        {
          name: "size multiplier",
          type: "line",
          step: "end",
          showSymbol: points.length < 60,
          data: points.map(([at, multiplier]) => [at, Number(multiplier)]),
        },
        {
          // The last multiplier holds until now (dashed; not an event).
          name: "since the last change",
          type: "line",
          showSymbol: false,
          lineStyle: { type: "dashed" },
          tooltip: { show: false },
          data: [last, [new Date().toISOString(), last[1]]],
        },
      ],
    }, { replaceMerge: ["series"] });
  }

  function autotuneRow(event, pending) {
    const inputs = event.inputs && event.inputs.length
      ? el("details", {}, [
          el("summary", {}, [`${event.inputs.length} inputs`]),
          el("dl", {}, event.inputs.flatMap((input) => [
            el("dt", {}, [input.name]),
            el("dd", {}, [input.value]),
          ])),
        ])
      : DASH;
    return el("tr", { "data-id": event.id, "data-pending": pending ? "true" : null }, [
      timeCell(event.at),
      el("td", { class: "num", "data-col": "old_multiplier" }, [event.old_multiplier]),
      el("td", { class: "num", "data-col": "new_multiplier" }, [event.new_multiplier]),
      el("td", { class: "text", "data-col": "reason" }, [event.reason]),
      el("td", { "data-col": "inputs" }, [inputs]),
    ]);
  }

  function renderAutotune(data) {
    const body = document.querySelector("#autotune-table tbody");
    body.replaceChildren(
      ...(data.events.length
        ? data.events.map((event) => autotuneRow(event, false))
        : [emptyRow(5, "No autotune event yet: the size multiplier has stayed where it started (events appear when the executor's autotune step changes it).")])
    );
    points = data.series.points;
    renderChart();
  }

  // A push has no event time or inputs: show it now, then take the server's rows.
  function autotunePushed(push) {
    const at = new Date().toISOString();
    const body = document.querySelector("#autotune-table tbody");
    body.querySelectorAll("tr.empty-row").forEach((row) => row.remove());
    const event = { id: "", at, old_multiplier: plain(push.old), new_multiplier: plain(push.new), reason: push.reason, inputs: [] };
    body.prepend(autotuneRow(event, true));
    while (body.rows.length > autotuneShown) body.deleteRow(-1);
    if (points.length === 0) points.push([at, event.old_multiplier]);
    points.push([at, event.new_multiplier]);
    renderChart();
    refresh("autotune", renderAutotune);
  }

  // --- refusals and snapshots ------------------------------------------------------------------

  function renderRefusals(refusals) {
    const body = document.querySelector("#refusals-table tbody");
    body.replaceChildren(
      ...(refusals.length
        ? refusals.map((refusal) =>
            el("tr", { "data-id": refusal.id }, [
              timeCell(refusal.at),
              el("td", { "data-col": "source" }, [refusal.source]),
              el("td", { "data-col": "symbol" }, [refusal.symbol]),
              el("td", { "data-col": "side" }, [refusal.side]),
              el("td", { "data-col": "risk_code" }, [refusal.risk_code]),
              el("td", { class: "text", "data-col": "risk_reason" }, [refusal.risk_reason]),
            ])
          )
        : [emptyRow(6, "No refusals: no signal has been refused by the pre-trade checks.")])
    );
  }

  function renderSnapshots(snapshots) {
    const body = document.querySelector("#snapshots-table tbody");
    body.replaceChildren(
      ...(snapshots.length
        ? snapshots.map((snapshot) =>
            el("tr", { "data-id": snapshot.id }, [
              timeCell(snapshot.at),
              el("td", { class: "num", "data-col": "id" }, [String(snapshot.id)]),
              el("td", { "data-col": "reason", "data-reason": snapshot.reason }, [snapshot.reason_label]),
              el("td", { class: "num", "data-col": "state_version" }, [String(snapshot.state_version)]),
              el("td", { class: "num", "data-col": "nav" }, [orDash(snapshot.nav)]),
              el("td", { class: "num", "data-col": "size_multiplier" }, [orDash(snapshot.size_multiplier)]),
              el("td", { "data-col": "halted" }, [
                snapshot.halted === null ? DASH : snapshot.halted ? "yes" : "no",
              ]),
              el("td", { "data-col": "checksum_ok" }, [
                el("span", { class: "flag", "data-ok": String(snapshot.checksum_ok), title: snapshot.checksum }, [
                  snapshot.checksum_ok ? "valid" : "damaged",
                ]),
              ]),
              el("td", { "data-col": "actor" }, [snapshot.actor || DASH]),
              el("td", { class: "text", "data-col": "note" }, [snapshot.note]),
            ])
          )
        : [emptyRow(10, "No snapshot yet: one is written when the risk state is created, on every change and every 5 minutes.")])
    );
  }

  // --- live pushes -------------------------------------------------------------------------

  live.on("risk.state", (state) => {
    if (state.size_multiplier !== undefined) setMultiplier(plain(state.size_multiplier));
    setTrading(state.halted, state.halt_reason);
    // The push carries the global effective limits; the per-symbol ones come with the refresh.
    Object.entries(state.effective_limits || {}).forEach(([field, value]) => {
      const cell = document.querySelector(
        `#limits-table td[data-field="${field}"][data-kind="effective"]`
      );
      if (cell) cell.textContent = typeof value === "string" ? plain(value) : String(value);
    });
    refresh("limits", renderLimits);
    refresh("snapshots", renderSnapshots); // a change writes a snapshot
  });
  live.on("risk.kill_switch", (push) => {
    setKillSwitch(push.on, push.actor ? `${push.actor}: ${push.reason}` : push.reason);
  });
  live.on("risk.autotune", autotunePushed);

  // The first snapshot arrives on connect and matches the page; a later one means pushes may
  // have been missed (reconnect or sequence gap): catch up on every table.
  let synced = false;
  live.on("snapshot", () => {
    if (!synced) {
      synced = true;
      return;
    }
    refresh("limits", renderLimits);
    refresh("autotune", renderAutotune);
    refresh("refusals", renderRefusals);
    refresh("snapshots", renderSnapshots);
  });

  renderChart();
  window.addEventListener("resize", () => chart && chart.resize());
})();
