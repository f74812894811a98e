// Replays: the runs with their progress, kept live from the replays' pushes (one after every
// chunk of bars), with the operators' stop / resume / delete buttons following the status.
(function () {
  "use strict";
  const table = document.getElementById("replays");
  const body = table.querySelector("tbody");
  const operator = table.dataset.operator === "1";
  const token = document.querySelector("input[name=csrfmiddlewaretoken]");

  // "2026-03-02T11:59:59.999000+00:00" -> "2026-03-02 11:59" (the times are UTC)
  function minute(iso) { return iso.slice(0, 16).replace("T", " "); }

  function td(field, className) {
    const cell = document.createElement("td");
    cell.dataset.field = field;
    if (className) cell.className = className;
    return cell;
  }

  function link(href, text, className) {
    const a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    a.className = className;
    return a;
  }

  function control(id, action) {
    const form = document.createElement("form");
    form.method = "post";
    form.action = `/controls/replays/${id}/${action}/`;
    form.className = action === "delete" ? "inline delete" : "inline";
    const csrf = document.createElement("input");
    csrf.type = "hidden";
    csrf.name = "csrfmiddlewaretoken";
    csrf.value = token ? token.value : "";
    const button = document.createElement("button");
    button.type = "submit";
    button.name = action;
    button.textContent = action;
    form.append(csrf, button);
    return form;
  }

  function fill(tr, run) {
    tr.dataset.status = run.status;
    const id = td("id");
    id.textContent = run.id;
    const symbols = td("symbols");
    symbols.textContent = run.symbols.join(", ");
    const period = td("period");
    period.textContent = `${minute(run.start)} to ${minute(run.end)}`;
    const status = td("status", "status-cell");
    status.textContent = run.status + (run.stop_requested && run.status === "running" ? " (stopping)" : "");
    if (run.error) {
      const error = document.createElement("div");
      error.className = "error";
      error.textContent = run.error;
      status.appendChild(error);
    }
    const progress = td("progress");
    const bar = document.createElement("progress");
    bar.max = 1;
    bar.value = run.progress;
    progress.append(bar, ` ${run.bars_done} / ${run.bars_total}`);
    const speed = td("speed", "num");
    speed.textContent = String(Math.round(run.bars_per_second));
    const pnl = td("pnl", "num");
    pnl.textContent = (run.summary && run.summary.pnl) || "–";
    const by = td("by");
    by.textContent = run.created_by;
    const links = td("links");
    if (run.status === "done") {
      links.append(
        link(`/router-health/?run=${run.id}`, "router health", "router-health-link"), " · ",
        link(`/replays/${run.id}/divergence/`, "divergence", "divergence-link"),
      );
    }
    const cells = [id, symbols, period, status, progress, speed, pnl, by, links];
    if (operator) {
      // A run stopping (or left running by a worker that died) can be resumed or deleted
      // once no worker holds it: the server says so when one still does.
      const controls = td("control");
      const stopping = run.status === "running" && run.stop_requested;
      if ((run.status === "queued" || run.status === "running") && !run.stop_requested) {
        controls.append(control(run.id, "stop"));
      }
      if (run.status === "interrupted" || run.status === "failed" || stopping) {
        controls.append(control(run.id, "resume"));
      }
      if (run.status !== "running" || stopping) controls.append(" ", control(run.id, "delete"));
      cells.push(controls);
    }
    tr.replaceChildren(...cells);
  }

  function show(run) {
    let tr = body.querySelector(`tr[data-run="${run.id}"]`);
    if (run.deleted) {
      if (tr) tr.remove();
      return;
    }
    if (!tr) {
      const empty = body.querySelector(".empty-row");
      if (empty) empty.remove();
      tr = document.createElement("tr");
      tr.dataset.run = String(run.id);
      const later = [...body.querySelectorAll("tr[data-run]")].find((row) => Number(row.dataset.run) < run.id);
      body.insertBefore(tr, later || null);
    }
    fill(tr, run);
    document.body.dataset.replayUpdates = String(Number(document.body.dataset.replayUpdates || 0) + 1);
  }

  // After a (re)connect, the newest runs as they are now: pushes missed meanwhile are not lost.
  async function refresh() {
    const response = await fetch("/api/v1/replays/?page_size=50", {
      credentials: "same-origin", headers: { Accept: "application/json" },
    });
    if (!response.ok) return;
    (await response.json()).results.forEach(show);
  }

  document.addEventListener("submit", (event) => {
    if (event.target.matches("form.delete")
        && !window.confirm("Delete this replay and its database?")) event.preventDefault();
  });
  live.on("routing.replay", show);
  live.on("snapshot", refresh);
})();
