/* driftline ui: draws each chart of a page from the JSON its data-api names, with Plotly.
 * Once every chart is drawn (or says why not), <body> gets data-ready="true". */
(function () {
  "use strict";

  const COLOURS = {
    critical: "#c62828", warning: "#ef8c00", window: "#1565c0", reference: "#9e9e9e",
    accuracy: "#2e7d32", coverage: "#6a1b9a", delay: "#8d6e63", latency: "#1565c0",
    errors: "#c62828",
  };
  const GPU_COLOURS = ["#00838f", "#5d4037", "#7b1fa2", "#558b2f", "#ad1457", "#283593"];
  const CONFIG = { displayModeBar: false, responsive: true };
  const PSI_CAP = 0.5;

  function layout(extra) {
    return Object.assign({
      margin: { l: 60, r: 60, t: 10, b: 40 },
      font: { family: "system-ui, sans-serif", size: 12 },
      paper_bgcolor: "white", plot_bgcolor: "white", hovermode: "closest",
      legend: { orientation: "h", y: -0.2 },
    }, extra);
  }

  function say(el, text, state) {
    el.textContent = text;
    el.classList.add("message");
    el.dataset.state = state;
  }

  async function plot(el, traces, extra) {
    await Plotly.newPlot(el, traces, layout(extra), CONFIG);
    el.dataset.state = "drawn";
  }

  // Plotly reads its texts (ticks, legends, hovers) as a little HTML: names are escaped.
  function escapeText(text) {
    return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }

  function clock(text) {
    return text.slice(11, 16) + " UTC";
  }

  function drawDrift(el, data) {
    const caption = document.getElementById("drift-caption");
    caption.textContent = data.caption;
    if (!data.features.length) return say(el, "no data yet", "empty");
    const worst = data.worst;
    el.dataset.rows = data.features.length;
    el.dataset.columns = data.windows.length;
    if (worst) {
      el.dataset.worstFeature = worst.feature;
      el.dataset.worstPsi = worst.psi;
      el.dataset.worstWindow = worst.window;
      caption.classList.toggle("worst", worst.verdict === "warning" || worst.verdict === "critical");
    }
    const rows = data.features.map(escapeText);
    const ticks = data.features.map((f, i) =>
      worst && f === worst.feature ? `<b>${rows[i]} ▶</b>` : rows[i]);
    const traces = [{
      type: "heatmap", x: data.windows, y: rows, z: data.psi, zmin: 0,
      zmax: PSI_CAP, xgap: 1, ygap: 1, customdata: data.verdicts,
      colorscale: [[0, "#f7fbff"], [0.1, "#c6dbef"], [0.5, "#fd8d3c"], [1, "#a50f15"]],
      colorbar: { title: { text: `PSI<br>(≥ ${PSI_CAP}:<br>darkest)` } },
      hovertemplate: "%{y}<br>%{x}<br>PSI %{z:.3f} (%{customdata})<extra></extra>",
    }];
    if (worst) {
      traces.push({
        type: "scatter", mode: "markers", x: [worst.window], y: [escapeText(worst.feature)],
        marker: { symbol: "square-open", size: 22, color: "black", line: { width: 3 } },
        hovertemplate: `most drifted: PSI ${worst.psi.toFixed(3)}<extra></extra>`,
        showlegend: false,
      });
    }
    return plot(el, traces, {
      height: 90 + 30 * data.features.length,
      xaxis: { type: "date", title: { text: "window start (UTC)" } },
      yaxis: {
        type: "category", tickvals: rows, ticktext: ticks, autorange: "reversed",
        automargin: true,
      },
    }).then(() => el.on("plotly_click", (event) => {
      const point = event.points[0];
      if (!Array.isArray(point.pointIndex)) return;  // the worst cell's frame
      const [row, column] = point.pointIndex;
      const query = new URLSearchParams(location.search);
      query.set("feature", data.features[row]);
      query.set("window", data.window_ms[column]);
      location.search = query.toString();
    }));
  }

  function drawHistogram(el, data) {
    const caption = document.getElementById("histogram-caption");
    caption.textContent = [data.caption, data.note].filter(Boolean).join(" — ");
    document.querySelectorAll(".features a[data-feature]").forEach((a) => {
      a.classList.toggle("current", a.dataset.feature === data.feature);
    });
    if (!data.labels.length) return say(el, data.note || "no data yet", "empty");
    const traces = [{
      type: "bar", name: `window of ${clock(data.window)} (${data.window_values} values)`,
      x: data.labels.map(escapeText), y: data.window_shares, marker: { color: COLOURS.window },
      hovertemplate: "%{x}: %{y:.1%}<extra>window</extra>",
    }];
    if (data.reference_shares) {
      traces.push({
        type: "bar", name: `${data.reference_source} reference (${data.reference_values} values)`,
        x: data.labels.map(escapeText), y: data.reference_shares,
        marker: { color: COLOURS.reference },
        hovertemplate: "%{x}: %{y:.1%}<extra>reference</extra>",
      });
    }
    el.dataset.feature = data.feature;
    el.dataset.series = traces.length;
    el.dataset.window = data.window;
    return plot(el, traces, {
      height: 360, barmode: "group",
      xaxis: {
        type: "category", automargin: true,
        title: { text: data.kind === "categorical" ? "category" : "bin (the reference's frozen edges)" },
      },
      yaxis: { title: { text: "share of the values" }, tickformat: ".0%", rangemode: "tozero" },
    });
  }

  function drawQuality(el, data) {
    if (!data.windows.length) return say(el, "no data yet: no window has labels", "empty");
    const line = (name, y, colour, axis, dash) => ({
      type: "scatter", mode: "lines+markers", name, x: data.windows, y, yaxis: axis,
      line: { color: colour, dash: dash || "solid" }, connectgaps: false,
    });
    el.dataset.windows = data.windows.length;
    return plot(el, [
      line("accuracy", data.accuracy, COLOURS.accuracy, "y"),
      line("label coverage", data.coverage, COLOURS.coverage, "y"),
      line("label delay p90 (s)", data.delay_p90_seconds, COLOURS.delay, "y2", "dot"),
    ], {
      height: 320,
      xaxis: { type: "date" },
      yaxis: { title: { text: "share" }, tickformat: ".0%", range: [0, 1.02] },
      yaxis2: { title: { text: "seconds" }, overlaying: "y", side: "right", rangemode: "tozero",
                tickformat: ".0f" },
    });
  }

  function drawService(el, data) {
    const gpusEl = document.getElementById("gpus");
    const service = data.service;
    const times = service.windows.concat(...data.gpus.map((g) => g.windows)).sort();
    const range = times.length ? [times[0], times[times.length - 1]] : undefined;
    const drawn = [];
    if (!service.windows.length) {
      say(el, "no data yet: no service windows", "empty");
    } else {
      el.dataset.windows = service.windows.length;
      drawn.push(plot(el, [
        { type: "scatter", mode: "lines+markers", name: "latency p95 (ms)", x: service.windows,
          y: service.latency_p95_ms, line: { color: COLOURS.latency } },
        { type: "scatter", mode: "lines+markers", name: "error rate", x: service.windows,
          y: service.error_rate, yaxis: "y2", line: { color: COLOURS.errors, dash: "dot" } },
      ], {
        height: 320, xaxis: { type: "date", range },
        yaxis: { title: { text: "latency p95 (ms)" }, rangemode: "tozero" },
        yaxis2: { title: { text: "error rate" }, overlaying: "y", side: "right",
                  tickformat: ".1%", rangemode: "tozero" },
      }));
    }
    if (!data.gpus.length) {
      say(gpusEl, "no GPU telemetry names this model", "empty");
    } else {
      gpusEl.dataset.gpus = data.gpus.length;
      const traces = [];
      data.gpus.forEach((gpu, i) => {
        const colour = GPU_COLOURS[i % GPU_COLOURS.length];
        const name = escapeText(gpu.name);
        traces.push({ type: "scatter", mode: "lines", name: `${name} utilisation (%)`,
                      x: gpu.windows, y: gpu.utilization, line: { color: colour } });
        traces.push({ type: "scatter", mode: "lines", name: `${name} temperature max (°C)`,
                      x: gpu.windows, y: gpu.temperature_max, yaxis: "y2",
                      line: { color: colour, dash: "dot" } });
      });
      drawn.push(plot(gpusEl, traces, {
        height: 320, xaxis: { type: "date", range },
        yaxis: { title: { text: "utilisation (%)" }, range: [0, 105] },
        yaxis2: { title: { text: "temperature (°C)" }, overlaying: "y", side: "right",
                  tickformat: ".0f" },
      }));
    }
    return Promise.all(drawn);
  }

  function drawTimeline(el, data) {
    const incidents = data.incidents;
    if (!incidents.length) return say(el, "no alerts yet", "empty");
    const keys = [...new Set(incidents.map((i) => escapeText(i.dedup_key)))];
    const traces = ["critical", "warning"].map((severity) => {
      const shown = incidents.filter((i) => i.severity === severity);
      return {
        type: "bar", orientation: "h", name: severity,
        y: shown.map((i) => escapeText(i.dedup_key)),
        base: shown.map((i) => i.first_seen), x: shown.map((i) => i.duration_ms),
        marker: {
          color: COLOURS[severity],
          pattern: { shape: shown.map((i) => (i.open ? "/" : "")), fillmode: "overlay",
                     fgcolor: "rgba(255, 255, 255, 0.8)" },
        },
        customdata: shown.map((i) => [i.state, i.end, escapeText(i.summary)]),
        hovertemplate: "%{y}<br>%{base|%H:%M} → %{customdata[1]|%H:%M} (%{customdata[0]})"
          + "<br>%{customdata[2]}<extra></extra>",
      };
    }).filter((trace) => trace.y.length);
    el.dataset.incidents = incidents.length;
    el.dataset.open = incidents.filter((i) => i.open).length;
    return plot(el, traces, {
      height: 110 + 26 * keys.length, barmode: "overlay",
      margin: { l: 20, r: 20, t: 30, b: 40 },
      xaxis: { type: "date", title: { text: "bad since → resolved, or still open (hatched)" } },
      yaxis: { type: "category", categoryorder: "array", categoryarray: keys,
               autorange: "reversed", automargin: true },
      shapes: data.now ? [{ type: "line", xref: "x", yref: "paper", x0: data.now, x1: data.now,
                            y0: 0, y1: 1, line: { dash: "dot", color: "#555" } }] : [],
      annotations: data.now ? [{ x: data.now, y: 1, xref: "x", yref: "paper",
                                 text: "newest data", showarrow: false, yanchor: "bottom" }] : [],
    });
  }

  const DRAWERS = {
    "drift-heatmap": drawDrift, histogram: drawHistogram, quality: drawQuality,
    service: drawService, timeline: drawTimeline,
  };

  async function draw(el) {
    try {
      const response = await fetch(el.dataset.api, { headers: { Accept: "application/json" } });
      const data = await response.json();
      if (!response.ok) throw new Error(data.error || response.statusText);
      await DRAWERS[el.id](el, data);
    } catch (error) {
      say(el, `could not draw this: ${error.message}`, "error");
    }
  }

  document.addEventListener("DOMContentLoaded", async () => {
    const charts = Array.from(document.querySelectorAll(".chart[data-api]"));
    await Promise.all(charts.map(draw));
    document.body.dataset.ready = "true";
  });
})();
