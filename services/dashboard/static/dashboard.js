// The fedseg operator dashboard: polls the read-only status API and renders each panel.
// Same-origin only: served by `fedseg-admin dashboard` (which forwards /api/v1 reads over
// mutual TLS) or by the aggregator itself under /dashboard/. Every string from the API is
// put in the page with textContent or append(string), never as markup. What to show is
// computed in model.js (FedsegModel), how to draw a chart in charts.js (FedsegCharts).
"use strict";

(() => {
  const M = FedsegModel;
  const API = "/api/v1";
  const query = new URLSearchParams(window.location.search);
  const POLL_MS = Math.min(60, Math.max(1, Number(query.get("interval")) || 3)) * 1000;
  const CLOSED_BAR = "#4a7ab5";
  const OPEN_BAR = "#f0a04b";

  const state = {
    health: null, runs: [], nodes: [], rounds: [], run: null,
    chosenRun: Number(query.get("run")) || null,
    error: null, updatedAt: null, clockOffsetMs: 0, refreshes: 0,
  };

  const $ = (id) => document.getElementById(id);
  /** The aggregator's clock, from the Date of its answers, so countdowns match its deadlines. */
  const now = () => Date.now() + state.clockOffsetMs;

  /** An element with attributes and children; strings become text nodes. */
  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "dataset") Object.assign(node.dataset, value);
      else if (key === "onclick") node.addEventListener("click", value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child !== null && child !== undefined) {
        node.append(child instanceof Node ? child : String(child));
      }
    }
    return node;
  }

  const chip = (stateName, text) => h("span", { class: "chip", dataset: { state: stateName } }, text);
  const swatch = (name) => h("span", { class: "swatch", dataset: { colour: nodeColour(name) } });
  const placeholder = (columns, text) => h("tr", {}, h("td", { colspan: columns, class: "none" }, text));

  // --- data -------------------------------------------------------------------------
  async function getJson(path) {
    const response = await fetch(API + path, {
      cache: "no-store", headers: { Accept: "application/json" },
    });
    const date = Date.parse(response.headers.get("Date") || "");
    if (!Number.isNaN(date)) {
      // The header has one-second resolution: only a real skew is corrected.
      const offset = date + 500 - Date.now();
      state.clockOffsetMs = Math.abs(offset) > 2000 ? offset : 0;
    }
    if (!response.ok) {
      let detail = response.statusText;
      try {
        const body = await response.json();
        if (body && body.detail !== undefined) {
          detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
        }
      } catch (_) { /* not JSON: keep the status text */ }
      throw new Error(`GET ${API}${path} answered ${response.status}: ${detail}`);
    }
    return response.json();
  }

  async function roundsOf(run) {
    const rounds = run ? await getJson(`/runs/${run.id}/rounds`) : [];
    return rounds.sort((a, b) => a.round - b.round);
  }

  async function load(withStatus) {
    try {
      if (withStatus) {
        const [health, runs, nodes] = await Promise.all(
          [getJson("/health"), getJson("/runs"), getJson("/nodes")]);
        Object.assign(state, { health, runs, nodes });
      }
      const run = M.pickRun(state.runs, state.chosenRun);
      Object.assign(state, { run, rounds: await roundsOf(run), error: null });
      state.updatedAt = Date.now();
      state.refreshes += 1;
    } catch (err) {
      state.error = err instanceof Error ? err.message : String(err);
    }
    render();
  }

  async function poll() {
    await load(true);
    window.setTimeout(poll, POLL_MS);
  }

  function nodeColour(name) {
    const names = new Set(state.nodes.map((n) => n.name));
    for (const n of (state.run ? state.run.expected_nodes : [])) names.add(n);
    return FedsegCharts.colour([...names].sort().indexOf(name));
  }

  // --- panels -----------------------------------------------------------------------
  function renderStatus() {
    if (state.health) {
      $("status").textContent = `fedseg ${state.health.version} · updated ${M.clock(state.updatedAt)}`;
      $("status").dataset.version = state.health.version;
    }
    const banner = $("error");
    banner.hidden = !state.error;
    banner.textContent = state.error ? `${state.error} (showing the last data received)` : "";
  }

  function renderRuns() {
    const rows = [...state.runs].sort((a, b) => b.id - a.id).map((run) => h("tr", {
      class: state.run && run.id === state.run.id ? "selected" : null,
      dataset: { runId: run.id, state: run.state },
      title: "show this run",
      onclick: () => { state.chosenRun = run.id; load(false); },
    },
    h("td", {}, String(run.id)), h("td", {}, run.name), h("td", {}, chip(run.state, run.state)),
    h("td", { class: "progress" }, M.progressText(run)),
    h("td", {}, `${run.expected_nodes.join(", ")} (min ${run.min_nodes})`),
    h("td", {}, M.privacyText(run.privacy)),
    h("td", {}, M.clock(M.parseTime(run.created_at))),
    h("td", { class: "detail" }, run.detail || "")));
    if (rows.length === 0) rows.push(placeholder(8, "no runs yet: create one with fedseg-admin create-run"));
    $("runs-body").replaceChildren(...rows);
  }

  function roundTitle(run, round) {
    if (!run) return "no run yet";
    if (!round) return `run ${run.id} (${run.name}): no round opened yet`;
    const which = round.kind === "evaluate"
      ? `evaluation of the final model (after ${run.rounds} rounds)`
      : `round ${round.round} of ${run.rounds}`;
    return `run ${run.id} (${run.name}) · ${which}${round.attempt > 1 ? ` · attempt ${round.attempt}` : ""}`;
  }

  function renderEta(run, round) {
    const eta = $("eta");
    for (const key of ["roundEtaS", "runEtaS", "meanRoundS"]) delete eta.dataset[key];
    if (!M.ACTIVE_RUN.has(run.state)) {
      const closed = state.rounds.map((r) => M.parseTime(r.closed_at)).filter((t) => t !== null);
      const took = closed.length
        ? ` in ${M.duration(M.seconds(M.parseTime(run.created_at), Math.max(...closed)))}` : "";
      eta.textContent = `run ${run.state}${took}`;
      return;
    }
    const guess = M.estimate(run, round, state.rounds, now());
    if (guess === null) {
      eta.textContent = "ETA: known once the first round has closed";
      return;
    }
    eta.dataset.roundEtaS = guess.thisLeft.toFixed(1);
    eta.dataset.runEtaS = guess.runLeft.toFixed(1);
    eta.dataset.meanRoundS = guess.perRound.toFixed(1);
    eta.textContent = `ETA: this round ~${M.duration(guess.thisLeft)}, whole run `
      + `~${M.duration(guess.runLeft)} (mean of the last ${guess.count} `
      + `round${guess.count === 1 ? "" : "s"}: ${M.duration(guess.perRound)})`
      + `${run.state === "paused" ? ", once resumed" : ""}`;
  }

  function renderRound() {
    const run = state.run;
    const round = M.currentRound(state.rounds);
    $("round-title").textContent = roundTitle(run, round);
    const box = $("round-body");
    box.hidden = !round;
    if (!run || !round) return;
    Object.assign(box.dataset, { runId: run.id, round: round.round, kind: round.kind });
    $("round-state").textContent = round.state;
    $("round-state").dataset.state = round.state;
    const reported = round.reported_nodes.length;
    const expected = round.expected_nodes.length;
    const declined = round.declined_nodes.length;
    const progress = $("round-progress");
    Object.assign(progress.dataset, { reported, expected, declined });
    progress.replaceChildren(
      h("progress", { max: Math.max(expected, 1), value: reported }),
      ` ${reported}/${expected} reported${declined ? `, ${declined} declined` : ""}`
        + ` (at least ${run.min_nodes} needed at the deadline)`);
    $("round-nodes").replaceChildren(...round.expected_nodes.map((name) => {
      const status = M.nodeStatus(round, name, now());
      return h("li", { dataset: { node: name, status } }, swatch(name), h("strong", {}, name),
        " ", chip(status, M.nodeStatusText(round, name, now())));
    }));
    $("deadline-countdown").dataset.deadline = round.deadline;
    $("deadline-countdown").textContent = M.deadlineText(round, now());
    renderEta(run, round);
    $("round-detail").textContent = [round.detail, run.detail].filter(Boolean).join(" · ");
  }

  function renderDice() {
    const measure = $("dice-measure").value === "local" ? "local" : "global";
    const dp = state.run && M.DP_MECHANISMS.has(state.run.privacy.mechanism);
    FedsegCharts.lineChart($("dice-chart"), {
      series: M.diceSeries(state.rounds, measure).map((s) => (s.name === M.MEAN
        ? { ...s, colour: "#222", width: 3 } : { ...s, colour: nodeColour(s.name), width: 1.5 })),
      xLabel: "round", yLabel: "mean Dice (TC, WT, ET)", yMax: 1,
      format: (v) => v.toFixed(2), xTick: M.roundTick(state.rounds),
      empty: dp ? "no Dice reported: nodes withhold it under differential privacy"
        : "no Dice reported yet",
    });
    $("dice-chart").dataset.measure = measure;
    $("dice-note").textContent = measure === "global"
      ? "Each point: the global model a round started from (round n: after n-1 rounds; "
        + "eval: the final model), measured by each node on its own validation split."
      : "Each point: a node's model after its local training in that round, on its own "
        + "validation split.";
  }

  function renderEpsilon() {
    const run = state.run;
    const noDp = run && !M.DP_MECHANISMS.has(run.privacy.mechanism);
    FedsegCharts.lineChart($("epsilon-chart"), {
      series: M.epsilonSeries(state.rounds).map((s) => ({ ...s, colour: nodeColour(s.name), width: 2 })),
      xLabel: "round", yLabel: "cumulative ε (node's ledger)",
      refLines: run ? M.budgetLines(run) : [], format: M.eps, xTick: M.roundTick(state.rounds),
      empty: noDp ? `no differential privacy in this run (${run.privacy.mechanism}): ε is unbounded`
        : "no privacy spend reported yet",
    });
    const items = M.declines(state.rounds).map((d) => h("li", { dataset: { node: d.node, round: d.round } },
      h("strong", {}, `round ${d.round}: ${d.node}`), ` declined: ${d.reason}`));
    if (items.length === 0) items.push(h("li", { class: "none" }, "no node declined a round of this run"));
    $("declines").replaceChildren(...items);
  }

  function renderDurations() {
    FedsegCharts.barChart($("durations-chart"), {
      bars: M.durationBars(state.rounds, now()).map((b) => ({
        label: b.label, value: b.value, colour: b.open ? OPEN_BAR : CLOSED_BAR,
      })),
      xLabel: "round", yLabel: "seconds, opened to closed",
      format: (v) => (v < 60 ? `${Number(v.toFixed(1))} s` : M.duration(v)),
      legend: [{ name: "closed", colour: CLOSED_BAR, width: 8 },
        { name: "open (so far)", colour: OPEN_BAR, width: 8 }],
      empty: "no round has opened yet",
    });
  }

  function renderRoundsTable() {
    const dice = (d) => (d ? d.mean.toFixed(3) : "-");
    const rows = [...state.rounds].reverse().map((round) => {
      const closed = M.parseTime(round.closed_at);
      const took = closed !== null ? M.duration(M.seconds(M.parseTime(round.opened_at), closed))
        : M.OPEN_ROUND.has(round.state) ? "running" : "-";
      const declined = round.declined_nodes.length ? `, ${round.declined_nodes.length} declined` : "";
      return h("tr", { dataset: { round: round.round, state: round.state, kind: round.kind } },
        h("td", {}, round.kind === "evaluate" ? `${round.round} (eval)` : String(round.round)),
        h("td", {}, chip(round.state, round.state), round.attempt > 1 ? ` attempt ${round.attempt}` : ""),
        h("td", {}, `${round.reported_nodes.length}/${round.expected_nodes.length}${declined}`),
        h("td", { class: "number" }, took),
        h("td", { class: "number" }, dice(round.mean_dice_global)),
        h("td", { class: "number" }, dice(round.mean_dice_local)),
        h("td", { class: "detail" }, round.detail || ""));
    });
    if (rows.length === 0) rows.push(placeholder(7, "no round yet"));
    $("rounds-body").replaceChildren(...rows);
  }

  function nodeRow(node) {
    const nodeState = node.state || "ok";
    const label = nodeState === "failed" ? `failed: ${node.state_detail || "no reason given"}` : nodeState;
    const seen = M.parseTime(node.last_seen);
    const errorAt = M.parseTime(node.last_error_at);
    return h("tr", { dataset: { node: node.name, state: nodeState } },
      h("td", {}, swatch(node.name), h("strong", {}, node.name), node.role !== "node" ? ` (${node.role})` : ""),
      h("td", { class: "state" }, chip(nodeState, label),
        nodeState !== "failed" && node.state_detail ? h("div", { class: "detail" }, node.state_detail) : null),
      h("td", { title: seen === null ? null : M.clock(seen) },
        seen === null ? "never" : `${M.duration(M.seconds(seen, now()))} ago`),
      h("td", {}, node.device || "-"),
      h("td", {}, node.software_version || "-"),
      h("td", { class: "number" }, String(node.rounds_joined)),
      h("td", { class: "number" }, node.num_train_cases === null ? "-" : String(node.num_train_cases)),
      h("td", { class: "epsilon" }, M.epsilonText(node),
        node.ledger_regression ? h("div", { class: "warning" }, node.ledger_regression) : null),
      h("td", { class: "detail last-error" }, node.last_error || "",
        node.last_error && errorAt !== null ? h("div", { class: "when" }, M.clock(errorAt)) : null));
  }

  function renderNodes() {
    const rows = [...state.nodes].sort((a, b) => a.name.localeCompare(b.name)).map(nodeRow);
    // Expected in the shown run but never in touch: the aggregator has no row for them.
    const known = new Set(state.nodes.map((n) => n.name));
    for (const name of (state.run ? state.run.expected_nodes : []).filter((n) => !known.has(n))) {
      rows.push(h("tr", { dataset: { node: name, state: "unseen" } },
        h("td", {}, swatch(name), h("strong", {}, name)),
        h("td", { class: "state" }, chip("unseen", "not seen yet"),
          h("div", { class: "detail" }, `expected in run ${state.run.id}`)),
        h("td", {}, "never"), ...Array.from({ length: 6 }, () => h("td", {}, ""))));
    }
    if (rows.length === 0) rows.push(placeholder(9, "no node has announced itself yet"));
    $("nodes-body").replaceChildren(...rows);
  }

  /** Swatches take their colour through the CSSOM: the CSP allows no inline style markup. */
  function paintSwatches() {
    for (const element of document.querySelectorAll(".swatch[data-colour]")) {
      element.style.backgroundColor = element.dataset.colour;
    }
  }

  function render() {
    renderStatus();
    if (state.refreshes === 0) return;
    renderRuns();
    renderRound();
    renderDice();
    renderEpsilon();
    renderDurations();
    renderRoundsTable();
    renderNodes();
    paintSwatches();
    document.body.dataset.loaded = "true";
    document.body.dataset.refreshes = String(state.refreshes);
    if (state.run) document.body.dataset.runId = String(state.run.id);
  }

  document.addEventListener("DOMContentLoaded", () => {
    if (query.get("dice") === "local") $("dice-measure").value = "local";  // a shareable view
    $("dice-measure").addEventListener("change", renderDice);
    $("poll-interval").textContent = `${POLL_MS / 1000} s`;
    window.setInterval(() => {  // the countdown, the ETA and "last seen" move every second
      if (state.refreshes === 0) return;
      renderRound();
      renderNodes();
      paintSwatches();
    }, 1000);
    poll();
  });
})();
