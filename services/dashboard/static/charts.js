// Small SVG charts for the fedseg dashboard: lines over rounds, and bars.
// No library and no innerHTML: every element is made with createElementNS and every
// label goes in through textContent, so a node name can never become markup.
// Each chart also records what it plotted in data-series (JSON), for tests and tooling.
"use strict";

const FedsegCharts = (() => {
  const SVG = "http://www.w3.org/2000/svg";
  const WIDTH = 640;
  const HEIGHT = 260;
  const MARGIN = { left: 66, right: 150, top: 14, bottom: 38 };
  const PALETTE = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b",
    "#e377c2", "#17becf", "#bcbd22", "#ff7f0e", "#7f7f7f",
  ];

  function el(name, attrs, text) {
    const node = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attrs || {})) {
      node.setAttribute(key, String(value));
    }
    if (text !== undefined) node.textContent = text;
    return node;
  }

  /** A stable colour per name: the same node has the same colour on every chart. */
  function colour(index) {
    return PALETTE[index % PALETTE.length];
  }

  /** 1, 2 or 5 times a power of ten, at least `value`. */
  function niceCeil(value) {
    if (!(value > 0)) return 1;
    const power = Math.pow(10, Math.floor(Math.log10(value)));
    for (const step of [1, 2, 5, 10]) {
      if (step * power >= value) return step * power;
    }
    return 10 * power;
  }

  function reset(svg, label) {
    svg.replaceChildren();
    svg.setAttribute("viewBox", `0 0 ${WIDTH} ${HEIGHT}`);
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", label);
  }

  function empty(svg, message) {
    svg.appendChild(el("text", {
      x: WIDTH / 2, y: HEIGHT / 2, "text-anchor": "middle", class: "chart-empty",
    }, message));
  }

  function yAxis(svg, yMax, yLabel, format) {
    const plotBottom = HEIGHT - MARGIN.bottom;
    const scale = (v) => plotBottom - (v / yMax) * (plotBottom - MARGIN.top);
    for (let i = 0; i <= 4; i += 1) {
      const value = (yMax * i) / 4;
      const y = scale(value);
      svg.appendChild(el("line", {
        x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: y, y2: y, class: "grid",
      }));
      svg.appendChild(el("text", {
        x: MARGIN.left - 6, y: y + 4, "text-anchor": "end", class: "tick",
      }, format(value)));
    }
    svg.appendChild(el("text", {
      x: 12, y: MARGIN.top + (plotBottom - MARGIN.top) / 2, class: "axis-label",
      transform: `rotate(-90 12 ${MARGIN.top + (plotBottom - MARGIN.top) / 2})`,
      "text-anchor": "middle",
    }, yLabel));
    return scale;
  }

  function legend(svg, entries) {
    entries.forEach((entry, i) => {
      const y = MARGIN.top + 8 + i * 18;
      const x = WIDTH - MARGIN.right + 14;
      svg.appendChild(el("line", {
        x1: x, x2: x + 18, y1: y, y2: y, stroke: entry.colour,
        "stroke-width": entry.width || 2, "stroke-dasharray": entry.dash || "none",
      }));
      svg.appendChild(el("text", { x: x + 24, y: y + 4, class: "legend" }, entry.name));
    });
  }

  /**
   * Lines over integer x (rounds).
   * options: series [{name, points: [[x, y], ...], colour, width, dash}], xLabel, yLabel,
   * yMax (default: from the data), refLines [{y, label}], format(y), empty (message).
   */
  function lineChart(svg, options) {
    const series = options.series.filter((s) => s.points.length > 0);
    reset(svg, options.yLabel);
    svg.dataset.series = JSON.stringify(
      series.map((s) => ({ name: s.name, points: s.points })));
    svg.dataset.refLines = JSON.stringify(options.refLines || []);
    if (series.length === 0) {
      empty(svg, options.empty || "nothing to plot yet");
      return;
    }
    const format = options.format || ((v) => String(v));
    const xs = series.flatMap((s) => s.points.map((p) => p[0]));
    const xMin = Math.min(...xs);
    const xMax = Math.max(...xs);
    const ys = series.flatMap((s) => s.points.map((p) => p[1]))
      .concat((options.refLines || []).map((r) => r.y));
    const yMax = options.yMax || niceCeil(Math.max(...ys) * 1.05);
    const scaleY = yAxis(svg, yMax, options.yLabel, format);
    const left = MARGIN.left + 16;
    const right = WIDTH - MARGIN.right - 16;
    const scaleX = (x) => (xMax === xMin ? (left + right) / 2
      : left + ((x - xMin) / (xMax - xMin)) * (right - left));
    const every = Math.max(1, Math.ceil((xMax - xMin + 1) / 12));
    for (let x = xMin; x <= xMax; x += every) {
      svg.appendChild(el("text", {
        x: scaleX(x), y: HEIGHT - MARGIN.bottom + 16, "text-anchor": "middle", class: "tick",
      }, (options.xTick || String)(x)));
    }
    svg.appendChild(el("text", {
      x: (MARGIN.left + WIDTH - MARGIN.right) / 2, y: HEIGHT - 4,
      "text-anchor": "middle", class: "axis-label",
    }, options.xLabel));
    for (const ref of options.refLines || []) {
      const y = scaleY(ref.y);
      svg.appendChild(el("line", {
        x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: y, y2: y, class: "ref-line",
      }));
      svg.appendChild(el("text", {
        x: MARGIN.left + 6, y: y - 5, "text-anchor": "start", class: "ref-label",
      }, ref.label));
    }
    for (const s of series) {
      const group = el("g", { "data-series": s.name });
      const d = s.points.map((p, i) => `${i ? "L" : "M"}${scaleX(p[0])},${scaleY(p[1])}`);
      group.appendChild(el("path", {
        d: d.join(" "), fill: "none", stroke: s.colour, "stroke-width": s.width || 2,
        "stroke-dasharray": s.dash || "none",
      }));
      for (const [x, y] of s.points) {
        const dot = el("circle", {
          cx: scaleX(x), cy: scaleY(y), r: 3.5, fill: s.colour,
          "data-x": x, "data-y": y,
        });
        dot.appendChild(el("title", {}, `${s.name}, ${options.xLabel} ${x}: ${format(y)}`));
        group.appendChild(dot);
      }
      svg.appendChild(group);
    }
    legend(svg, series);
  }

  /** Bars: options.bars [{label, value, colour}], yLabel, format(v), empty. */
  function barChart(svg, options) {
    reset(svg, options.yLabel);
    svg.dataset.series = JSON.stringify(
      options.bars.map((b) => ({ label: b.label, value: b.value })));
    if (options.bars.length === 0) {
      empty(svg, options.empty || "nothing to plot yet");
      return;
    }
    const format = options.format || ((v) => String(v));
    const yMax = niceCeil(Math.max(...options.bars.map((b) => b.value)) * 1.05);
    const scaleY = yAxis(svg, yMax, options.yLabel, format);
    const plotWidth = WIDTH - MARGIN.right - MARGIN.left;
    const slot = plotWidth / options.bars.length;
    const barWidth = Math.min(48, slot * 0.7);
    options.bars.forEach((bar, i) => {
      const x = MARGIN.left + slot * i + (slot - barWidth) / 2;
      const y = scaleY(bar.value);
      const rect = el("rect", {
        x, y, width: barWidth, height: Math.max(0, HEIGHT - MARGIN.bottom - y),
        fill: bar.colour, "data-label": bar.label, "data-value": bar.value,
      });
      rect.appendChild(el("title", {}, `${bar.label}: ${format(bar.value)}`));
      svg.appendChild(rect);
      svg.appendChild(el("text", {
        x: x + barWidth / 2, y: HEIGHT - MARGIN.bottom + 16, "text-anchor": "middle",
        class: "tick",
      }, bar.label));
    });
    svg.appendChild(el("text", {
      x: (MARGIN.left + WIDTH - MARGIN.right) / 2, y: HEIGHT - 4,
      "text-anchor": "middle", class: "axis-label",
    }, options.xLabel || ""));
    legend(svg, options.legend || []);
  }

  return { lineChart, barChart, colour };
})();
