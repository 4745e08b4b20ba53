// What the dashboard shows, computed from the status API's answers: no DOM here.
// Times are milliseconds on the aggregator's clock (`now` is passed in); the API's
// timestamps are ISO 8601 in UTC. Field names are those of shared/schemas/views.py.
"use strict";

const FedsegModel = (() => {
  const ACTIVE_RUN = new Set(["running", "paused"]);
  const OPEN_ROUND = new Set(["open", "aggregating"]);
  const DP_MECHANISMS = new Set(["svt", "gaussian", "dpsgd"]);
  const RECENT_ROUNDS = 3;
  const MEAN = "mean over nodes";

  function parseTime(text) {
    if (!text) return null;
    const zoned = /([zZ]|[+-]\d\d:?\d\d)$/.test(text) ? text : `${text}Z`;
    const ms = Date.parse(zoned);
    return Number.isNaN(ms) ? null : ms;
  }

  function duration(seconds) {
    if (seconds < 1) return "<1 s";
    const s = Math.round(seconds);
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
    return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
  }

  const clock = (ms) => `${new Date(ms).toISOString().slice(0, 19).replace("T", " ")} UTC`;
  const mean = (values) => values.reduce((a, b) => a + b, 0) / values.length;
  /** ε as people write it: 0.512, 3.75, 2250 (never 2.25e+3). */
  const eps = (v) => (v >= 100 ? String(Math.round(v)) : String(Number(v.toPrecision(3))));
  const seconds = (from, to) => (to - from) / 1000;

  /** The run shown: the one asked for, else the newest active one, else the newest. */
  function pickRun(runs, chosen) {
    const newest = [...runs].sort((a, b) => b.id - a.id);
    return newest.find((r) => r.id === chosen)
      || newest.find((r) => ACTIVE_RUN.has(r.state)) || newest[0] || null;
  }

  /** The open round, else the newest. */
  function currentRound(rounds) {
    return rounds.find((r) => OPEN_ROUND.has(r.state)) || rounds[rounds.length - 1] || null;
  }

  function progressText(run) {
    const at = run.current_round || 0;
    if (at > run.rounds) return `${run.rounds}/${run.rounds} rounds + evaluation`;
    return `${at}/${run.rounds} rounds`;
  }

  function privacyText(p) {
    switch (p.mechanism) {
      case "svt": return `SVT, ε ${p.epsilon} per round`;
      case "gaussian": return `Gaussian, σ ${p.noise_multiplier}, L2 clip ${p.l2_clip}`;
      case "dpsgd":
        return p.target_epsilon ? `DP-SGD, run ε ${p.target_epsilon}`
          : `DP-SGD, σ ${p.noise_multiplier}`;
      case "partial": return `partial sharing ${p.fraction} (no DP)`;
      default: return "none (no DP)";
    }
  }

  /** Reference lines for the ε chart: what the run's policy allows, where it says. */
  function budgetLines(run) {
    const p = run.privacy;
    if (p.mechanism === "dpsgd" && p.target_epsilon) {
      return [{ y: p.target_epsilon, label: `run target ε ${p.target_epsilon}` }];
    }
    if (p.mechanism === "svt" && p.epsilon) {
      const total = p.epsilon * run.rounds;
      return [{ y: total, label: `policy: ${run.rounds} × ε ${p.epsilon} = ${total}` }];
    }
    return [];
  }

  function declineReason(round, node) {
    const update = round.updates.find((u) => u.node === node && u.status === "declined");
    return update && update.detail ? update.detail : "no reason given";
  }

  /** reported, declined, waiting, late (open round past its deadline) or missing (closed). */
  function nodeStatus(round, name, now) {
    if (round.reported_nodes.includes(name)) return "reported";
    if (round.declined_nodes.includes(name)) return "declined";
    if (!OPEN_ROUND.has(round.state)) return "missing";
    return now > parseTime(round.deadline) ? "late" : "waiting";
  }

  function nodeStatusText(round, name, now) {
    const status = nodeStatus(round, name, now);
    if (status === "reported") {
      const update = round.updates.find((u) => u.node === name);
      return update ? `reported after ${duration(seconds(parseTime(round.opened_at),
        parseTime(update.accepted_at)))}` : status;
    }
    return {
      declined: `declined: ${declineReason(round, name)}`,
      late: "late: not reported by the deadline",
      waiting: "waiting for its update",
      missing: "missing: the round went on without it",
    }[status];
  }

  function deadlineText(round, now) {
    if (OPEN_ROUND.has(round.state)) {
      const deadline = parseTime(round.deadline);
      const left = seconds(now, deadline);
      return left >= 0 ? `deadline in ${duration(left)} (${clock(deadline)})`
        : `deadline passed ${duration(-left)} ago`;
    }
    const closed = parseTime(round.closed_at);
    if (closed === null) return round.state;
    return `${round.state} ${clock(closed)}, after ${duration(seconds(parseTime(round.opened_at), closed))}`;
  }

  /** Seconds each closed round of `kind` took, oldest first. */
  function closedDurations(rounds, kind) {
    return rounds.filter((r) => r.state === "closed" && r.closed_at && r.kind === kind)
      .map((r) => seconds(parseTime(r.opened_at), parseTime(r.closed_at)));
  }

  /**
   * Time left, from the mean of the last RECENT_ROUNDS closed training rounds: for the
   * round (0 once past that mean) and for the run (the remaining training rounds and the
   * evaluation). null while no training round has closed.
   */
  function estimate(run, round, rounds, now) {
    const recent = closedDurations(rounds, "train").slice(-RECENT_ROUNDS);
    if (recent.length === 0) return null;
    const perRound = mean(recent);
    const evaluations = closedDurations(rounds, "evaluate");
    const perEvaluation = evaluations.length ? mean(evaluations) : perRound;
    const evaluating = round.kind === "evaluate";
    const elapsed = seconds(parseTime(round.opened_at), now);
    const thisLeft = OPEN_ROUND.has(round.state)
      ? Math.max(0, (evaluating ? perEvaluation : perRound) - elapsed) : 0;
    const after = evaluating ? 0 : (run.rounds - round.round) * perRound + perEvaluation;
    return { thisLeft, runLeft: thisLeft + after, perRound, count: recent.length };
  }

  /** Mean Dice per round, overall then per node; measure "global" or "local". */
  function diceSeries(rounds, measure) {
    const series = new Map([[MEAN, []]]);
    for (const round of rounds) {
      const overall = measure === "local" ? round.mean_dice_local : round.mean_dice_global;
      if (overall) series.get(MEAN).push([round.round, overall.mean]);
      for (const update of round.updates) {
        const dice = update.metrics[measure === "local" ? "dice_local" : "dice_global"];
        if (!dice) continue;
        if (!series.has(update.node)) series.set(update.node, []);
        series.get(update.node).push([round.round, dice.mean]);
      }
    }
    return [...series].map(([name, points]) => ({ name, points }));
  }

  /** Each node's cumulative ε after each round, as its ledger reported it; by name. */
  function epsilonSeries(rounds) {
    const series = new Map();
    for (const round of rounds) {
      for (const update of round.updates) {
        const total = update.privacy_total;
        if (!total || total.epsilon === null || total.epsilon === undefined) continue;
        if (!series.has(update.node)) series.set(update.node, []);
        series.get(update.node).push([round.round, total.epsilon]);
      }
    }
    return [...series].sort((a, b) => a[0].localeCompare(b[0]))
      .map(([name, points]) => ({ name, points }));
  }

  function declines(rounds) {
    return rounds.flatMap((round) => round.declined_nodes.map((node) => ({
      round: round.round, node, reason: declineReason(round, node),
    })));
  }

  /** Seconds from opening to closing per round; an open round so far. */
  function durationBars(rounds, now) {
    const bars = [];
    for (const round of rounds) {
      const label = round.kind === "evaluate" ? "eval" : String(round.round);
      const opened = parseTime(round.opened_at);
      const closed = parseTime(round.closed_at);
      if (closed !== null) {
        bars.push({ label, value: Number(seconds(opened, closed).toFixed(1)), open: false });
      } else if (OPEN_ROUND.has(round.state)) {
        bars.push({ label: `${label} (open)`, value: Number(seconds(opened, now).toFixed(1)), open: true });
      }
    }
    return bars;
  }

  /** x-axis labels: the evaluation round is "eval". */
  function roundTick(rounds) {
    const evaluations = new Set(rounds.filter((r) => r.kind === "evaluate").map((r) => r.round));
    return (x) => (evaluations.has(x) ? "eval" : String(x));
  }

  function epsilonText(node) {
    const total = node.privacy_total;
    if (!total) return "-";
    if (total.epsilon === null) return "∞ (a release without DP)";
    const max = node.privacy_epsilon_max;
    const most = max !== null && max !== undefined && max !== total.epsilon ? `, max ${eps(max)}` : "";
    return `${eps(total.epsilon)}${most} (${total.releases} releases)`;
  }

  return {
    ACTIVE_RUN, OPEN_ROUND, DP_MECHANISMS, MEAN,
    parseTime, duration, clock, eps, seconds, pickRun, currentRound, progressText,
    privacyText, budgetLines, nodeStatus, nodeStatusText, deadlineText, estimate,
    diceSeries, epsilonSeries, declines, durationBars, roundTick, epsilonText,
  };
})();
