/* App page metrics: history from the server (/api/v1/apps/<app>/metrics, kept 24 h at 10 s), then live.
 * On open the last hour is loaded (or 24 h when chosen); every 10 s the newer windows are fetched, and the CPU and
 * memory charts also take each live health snapshot the page's events socket brings (BerthMetrics.health).
 * Each chart has a y axis with units and "nice" ticks over at least a sensible minimum range (an idle app's CPU
 * reads 0–1 %, never "0–0.0"), and a time axis. */
(function () {
  "use strict";
  const charts = document.getElementById("charts");
  if (!charts) return;
  const app = charts.dataset.app;
  const NS = "http://www.w3.org/2000/svg";
  const COLORS = ["#2f7de1", "#e8622c", "#2aa876", "#a64ac9", "#d4a017", "#e23d6d"];
  // LEFT fits the longest y label the ticks make ("1500 req/s", "0.075 /s") at the tick font
  const W = 600, H = 170, LEFT = 100, RIGHT = 12, TOP = 12, BOTTOM = 26;
  // field -> how it is drawn: unit after a value, the least top of the y axis, digits shown
  const KINDS = {
    cpu: { svg: "chart-cpu", title: "CPU", unit: "%", min: 1, digits: 1 },
    mem: { svg: "chart-memory", title: "Memory", unit: "MB", min: 10, digits: 0 },
    rps: { svg: "chart-rps", title: "Requests", unit: "req/s", min: 1, digits: 2 },
    p95: { svg: "chart-p95", title: "p95 latency", unit: "ms", min: 10, digits: 0 },
    e5xx: { svg: "chart-5xx", title: "5xx errors", unit: "/s", min: 0.1, digits: 2 },
  };
  const RANGES = { "1h": 3600, "24h": 86400 };
  let range = "1h";
  let series = {}; // process -> [{t, cpu, mem, rps, e5xx, p95}] by time
  let lastWindow = null; // newest history window loaded (unix s)
  let loading = false;

  function niceStep(rough) {
    const power = Math.pow(10, Math.floor(Math.log10(rough)));
    const f = rough / power;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * power;
  }

  // y ticks from 0 to a nice top covering `max` (and at least the kind's minimum range)
  function yTicks(max, minimum) {
    const want = Math.max(max * 1.1, minimum); // a little headroom above the highest point
    const step = niceStep(want / 4);
    const top = Math.max(step * Math.ceil(want / step - 1e-9), step);
    const ticks = [];
    for (let v = 0; v <= top + step / 1000; v += step) ticks.push(Number(v.toPrecision(6)));
    return { top: top, ticks: ticks, step: step };
  }

  function label(value, unit) {
    return String(Number(value.toFixed(3))) + (unit === "%" ? "%" : " " + unit);
  }

  function clock(ts) {
    const d = new Date(ts * 1000);
    return String(d.getHours()).padStart(2, "0") + ":" + String(d.getMinutes()).padStart(2, "0");
  }

  function svgEl(name, attrs, text) {
    const node = document.createElementNS(NS, name);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function draw(field) {
    const kind = KINDS[field];
    const svg = document.getElementById(kind.svg);
    if (!svg) return;
    const now = Date.now() / 1000;
    const span = RANGES[range];
    const start = now - span;
    const names = Object.keys(series).sort();
    let max = 0, latest = [];
    names.forEach(function (n) {
      let last = null;
      series[n].forEach(function (pt) {
        if (pt.t >= start && pt[field] !== null && pt[field] !== undefined) {
          if (pt[field] > max) max = pt[field];
          last = pt[field];
        }
      });
      if (last !== null) latest.push(n + " " + Berth.fmt(last, kind.digits) + (kind.unit === "%" ? "%" : " " + kind.unit));
    });
    const y = yTicks(max, kind.min);
    svg.textContent = "";
    const plotW = W - LEFT - RIGHT, plotH = H - TOP - BOTTOM;
    const xOf = function (t) { return LEFT + ((t - start) / span) * plotW; };
    const yOf = function (v) { return TOP + plotH - (v / y.top) * plotH; };
    y.ticks.forEach(function (v) {
      svg.appendChild(svgEl("line", { x1: LEFT, x2: W - RIGHT, y1: yOf(v), y2: yOf(v), class: "grid-line" }));
      svg.appendChild(svgEl("text", { x: LEFT - 6, y: yOf(v) + 4, "text-anchor": "end", class: "tick y-tick" }, label(v, kind.unit)));
    });
    const xStep = span <= 3600 ? 900 : span <= 6 * 3600 ? 3600 : 4 * 3600;
    for (let t = Math.ceil(start / xStep) * xStep; t <= now; t += xStep) {
      svg.appendChild(svgEl("line", { x1: xOf(t), x2: xOf(t), y1: TOP, y2: TOP + plotH, class: "grid-line" }));
      svg.appendChild(svgEl("text", { x: xOf(t), y: H - 6, "text-anchor": "middle", class: "tick x-tick" }, clock(t)));
    }
    names.forEach(function (n, i) {
      const coords = [];
      series[n].forEach(function (pt) {
        if (pt.t < start || pt[field] === null || pt[field] === undefined) return;
        coords.push(xOf(pt.t).toFixed(1) + "," + yOf(pt[field]).toFixed(1));
      });
      if (!coords.length) return;
      svg.appendChild(svgEl("polyline", {
        points: coords.join(" "), fill: "none", stroke: COLORS[i % COLORS.length], "stroke-width": 2,
        "vector-effect": "non-scaling-stroke", "data-process": n,
      }));
    });
    const caption = svg.parentNode.querySelector("figcaption");
    caption.textContent = kind.title + " (" + kind.unit + ")" + (latest.length ? " — now: " + latest.join(", ") : " — no data yet");
  }

  function drawAll() {
    Object.keys(KINDS).forEach(draw);
    const legend = document.getElementById("chart-legend");
    legend.textContent = "";
    Object.keys(series).sort().forEach(function (n, i) {
      const item = Berth.el("li", { "data-process": n });
      item.appendChild(Berth.el("span", { class: "swatch" })).style.background = COLORS[i % COLORS.length];
      item.appendChild(document.createTextNode(n));
      legend.appendChild(item);
    });
    const any = Object.keys(series).some(function (n) { return series[n].length; });
    document.getElementById("metrics-empty").hidden = any;
  }

  function merge(data) {
    Object.keys(data.processes || {}).forEach(function (n) {
      const s = data.processes[n];
      const seen = {};
      let list = series[n] || [];
      list.forEach(function (p) { if (!p.live) seen[p.t] = true; });
      s.t.forEach(function (t, i) {
        if (seen[t]) return;
        const point = { t: t };
        Object.keys(KINDS).forEach(function (f) { point[f] = s[f] ? s[f][i] : null; });
        list.push(point);
        if (lastWindow === null || t > lastWindow) lastWindow = t;
      });
      // live health points inside a window the server has averaged give way to it
      const covered = lastWindow === null ? -Infinity : lastWindow + (data.step || 10);
      series[n] = list
        .filter(function (p) { return !p.live || p.t >= covered; })
        .sort(function (a, b) { return a.t - b.t; });
    });
    const cutoff = Date.now() / 1000 - RANGES[range] - 60;
    Object.keys(series).forEach(function (n) { series[n] = series[n].filter(function (p) { return p.t >= cutoff; }); });
  }

  function load(incremental) {
    if (loading) return;
    loading = true;
    let url = "/api/v1/apps/" + encodeURIComponent(app) + "/metrics?range=" + range;
    if (incremental && lastWindow !== null) url += "&since=" + lastWindow;
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (data) {
        if (!incremental) {
          // a new range: the history replaces what was drawn, the live points since the page opened stay
          Object.keys(series).forEach(function (n) { series[n] = series[n].filter(function (p) { return p.live; }); });
          lastWindow = null;
        }
        merge(data);
        charts.dataset.loaded = String(Number(charts.dataset.loaded || 0) + 1);
        charts.dataset.step = String(data.step);
        document.getElementById("metrics-error").hidden = true;
        drawAll();
      })
      .catch(function (e) {
        const box = document.getElementById("metrics-error");
        box.textContent = "Metrics history could not be loaded (" + e.message + "); retrying.";
        box.hidden = false;
      })
      .finally(function () { loading = false; });
  }

  // A live health snapshot (every few seconds, from the events socket): CPU and memory summed per process type.
  function health(processes) {
    if (range !== "1h") return;
    const t = Date.now() / 1000;
    const totals = {};
    processes.forEach(function (p) {
      if (p.cpu_percent === null || p.cpu_percent === undefined) return;
      const x = totals[p.process] || (totals[p.process] = { t: t, cpu: 0, mem: 0, live: true });
      x.cpu += Number(p.cpu_percent) || 0;
      x.mem += Number(p.memory_mb) || 0;
    });
    Object.keys(totals).forEach(function (n) { (series[n] || (series[n] = [])).push(totals[n]); });
    charts.dataset.points = String(Number(charts.dataset.points || 0) + 1);
    drawAll();
  }

  document.querySelectorAll("[data-metrics-range]").forEach(function (button) {
    button.addEventListener("click", function () {
      range = button.dataset.metricsRange;
      document.querySelectorAll("[data-metrics-range]").forEach(function (b) {
        b.setAttribute("aria-pressed", String(b === button));
      });
      load(false);
    });
  });

  load(false);
  // follow live: the newer 10 s windows (the whole range again for 24 h, whose points are 2-minute averages)
  let ticks = 0;
  setInterval(function () {
    ticks += 1;
    if (range === "1h") load(true);
    else if (ticks % 6 === 0) load(false);
  }, 10000);
  window.BerthMetrics = { health: health };
})();
