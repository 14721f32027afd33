/* App page: live logs (/ws/apps/<app>/logs), health + metrics + events (/ws/apps/<app>/events), config reveal/edit. */
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  const root = document.getElementById("app-root");
  if (!root) return;
  const el = Berth.el;

  /* ---------------- logs ---------------- */
  const MAX_LINES = 2000;
  const MAX_PENDING = 5000;
  const logBox = document.getElementById("log-lines");
  const pauseButton = document.getElementById("log-pause");
  const processSelect = document.getElementById("log-process");
  const searchInput = document.getElementById("log-search");
  const countLabel = document.getElementById("log-count");
  const logDot = document.getElementById("log-status");
  const logText = document.getElementById("log-status-text");
  let paused = false;
  let pending = [];
  let lastId = null;
  let logSocket = null;

  // Redis stream ids are "<ms>-<seq>"; a reconnect replays the tail, so skip what we already have.
  function idAfter(a, b) {
    if (!b) return true;
    const pa = String(a).split("-").map(Number);
    const pb = String(b).split("-").map(Number);
    return pa[0] > pb[0] || (pa[0] === pb[0] && (pa[1] || 0) > (pb[1] || 0));
  }

  function matches(node, needle) {
    return !needle || node.textContent.toLowerCase().indexOf(needle) !== -1;
  }

  function updateCount() {
    const total = logBox.querySelectorAll(".log-line").length;
    const needle = searchInput.value.trim();
    let text = total + " lines";
    if (needle) text += ", " + logBox.querySelectorAll(".log-line:not(.filtered)").length + " match";
    if (paused && pending.length) text += ", " + pending.length + " waiting";
    countLabel.textContent = text;
  }

  function lineNode(msg) {
    if (msg.type === "line") {
      const node = el("div", { class: "log-line stream-" + (msg.stream || "stdout"), "data-process": msg.process || "", "data-id": msg.id || "" });
      const ts = msg.ts ? String(msg.ts).replace("T", " ").slice(11, 19) : "";
      node.appendChild(el("span", { class: "ts" }, ts));
      node.appendChild(el("span", { class: "inst" }, msg.instance || msg.process || ""));
      node.appendChild(el("span", { class: "text" }, msg.line));
      return node;
    }
    const text = msg.type === "dropped" ? "… " + msg.count + " lines dropped (the browser fell behind)" : "… " + (msg.message || "gap in the log");
    return el("div", { class: "log-line log-notice" }, text);
  }

  function append(messages) {
    const atBottom = logBox.scrollHeight - logBox.scrollTop - logBox.clientHeight < 40;
    const needle = searchInput.value.trim().toLowerCase();
    const fragment = document.createDocumentFragment();
    messages.forEach(function (msg) {
      const node = lineNode(msg);
      if (!matches(node, needle)) node.classList.add("filtered");
      fragment.appendChild(node);
    });
    logBox.appendChild(fragment);
    let extra = logBox.querySelectorAll(".log-line").length - MAX_LINES;
    while (extra-- > 0) logBox.removeChild(logBox.querySelector(".log-line"));
    if (atBottom) logBox.scrollTop = logBox.scrollHeight;
    updateCount();
  }

  function onLogMessage(msg) {
    if (msg.type === "line") {
      if (msg.id && !idAfter(msg.id, lastId)) return;
      if (msg.id) lastId = msg.id;
    } else if (msg.type !== "gap" && msg.type !== "dropped") {
      return;
    }
    if (paused) {
      pending.push(msg);
      if (pending.length > MAX_PENDING) pending.splice(0, pending.length - MAX_PENDING);
      updateCount();
      return;
    }
    append([msg]);
  }

  const LOG_STATES = { connecting: "connecting…", live: "live", retrying: "reconnecting…", closed: "disconnected", denied: "not allowed", error: "unavailable" };
  function openLogs() {
    if (logSocket) logSocket.close();
    const process = processSelect.value;
    const path = root.dataset.wsLogs + "?tail=200" + (process ? "&process=" + encodeURIComponent(process) : "");
    logSocket = Berth.connect(path, {
      onMessage: onLogMessage,
      onState: function (s) { Berth.setLive(logDot, logText, s, LOG_STATES[s] || s); },
    });
  }

  if (logBox) {
    pauseButton.addEventListener("click", function () {
      paused = !paused;
      pauseButton.setAttribute("aria-pressed", paused ? "true" : "false");
      pauseButton.textContent = paused ? "Resume" : "Pause";
      if (!paused && pending.length) { const flush = pending; pending = []; append(flush); }
      updateCount();
    });
    processSelect.addEventListener("change", function () {
      logBox.querySelectorAll(".log-line").forEach(function (n) { n.remove(); });
      pending = [];
      lastId = null;
      updateCount();
      openLogs();
    });
    searchInput.addEventListener("input", function () {
      const needle = searchInput.value.trim().toLowerCase();
      logBox.querySelectorAll(".log-line").forEach(function (node) { node.classList.toggle("filtered", !matches(node, needle)); });
      updateCount();
    });
    openLogs();
  }

  /* ---------------- health, metrics, events ---------------- */
  const POINTS = 60;
  const COLORS = ["#2f7de1", "#e8622c", "#2aa876", "#a64ac9", "#d4a017", "#e23d6d"];
  const series = {}; // process type -> [{cpu, memory}]
  const charts = document.getElementById("charts");
  const processesBody = document.getElementById("processes-body");
  const eventsList = document.getElementById("events-list");
  const eventsDot = document.getElementById("events-status");

  function renderProcesses(processes) {
    processesBody.textContent = "";
    if (!processes.length) {
      const row = el("tr", { class: "empty" });
      row.appendChild(el("td", { colSpan: 7 }, "Nothing running."));
      processesBody.appendChild(row);
      return;
    }
    processes.forEach(function (p) {
      const row = el("tr", { "data-task-id": p.id || "", "data-process": p.process || "" });
      const name = el("td", {}, (p.process || "") + " ");
      name.appendChild(el("span", { class: "muted small" }, String(p.id || "").slice(0, 8)));
      row.appendChild(name);
      row.appendChild(el("td", { class: "hide-narrow" }, p.release ? "v" + p.release : "—"));
      const state = el("td");
      state.appendChild(el("span", { class: "badge state-" + p.state, "data-field": "state" }, p.state));
      row.appendChild(state);
      row.appendChild(el("td", { class: "hide-narrow" }, String(p.node || "").slice(0, 12)));
      row.appendChild(el("td", { "data-field": "cpu" }, Berth.fmt(p.cpu_percent, 1) + "%"));
      row.appendChild(el("td", { "data-field": "memory" }, Berth.fmt(p.memory_mb, 0) + " MB"));
      row.appendChild(el("td", { class: "hide-narrow" }, p.restarts === undefined ? "—" : p.restarts));
      processesBody.appendChild(row);
    });
  }

  function drawChart(svg, field) {
    const names = Object.keys(series).sort();
    let max = 0;
    names.forEach(function (n) { series[n].forEach(function (pt) { if (pt && pt[field] > max) max = pt[field]; }); });
    max = max > 0 ? max * 1.15 : 1;
    svg.textContent = "";
    const ns = "http://www.w3.org/2000/svg";
    [25, 50, 75].forEach(function (y) {
      const line = document.createElementNS(ns, "line");
      line.setAttribute("x1", "0"); line.setAttribute("x2", "300");
      line.setAttribute("y1", String(y)); line.setAttribute("y2", String(y));
      line.setAttribute("class", "grid-line");
      svg.appendChild(line);
    });
    names.forEach(function (n, i) {
      const points = series[n];
      const step = 300 / (POINTS - 1);
      const offset = POINTS - points.length;
      const coords = [];
      points.forEach(function (pt, j) {
        if (!pt) return;
        coords.push(((offset + j) * step).toFixed(1) + "," + (100 - (pt[field] / max) * 100).toFixed(1));
      });
      const poly = document.createElementNS(ns, "polyline");
      poly.setAttribute("points", coords.join(" "));
      poly.setAttribute("fill", "none");
      poly.setAttribute("stroke", COLORS[i % COLORS.length]);
      poly.setAttribute("stroke-width", "2");
      poly.setAttribute("vector-effect", "non-scaling-stroke");
      poly.setAttribute("data-process", n);
      svg.appendChild(poly);
    });
    svg.parentNode.querySelector("figcaption").textContent =
      (field === "cpu" ? "CPU %" : "Memory MB") + " (scale 0–" + (field === "cpu" ? max.toFixed(1) : Math.round(max)) + ")";
  }

  function renderLegend() {
    const legend = document.getElementById("chart-legend");
    legend.textContent = "";
    Object.keys(series).sort().forEach(function (n, i) {
      const last = series[n][series[n].length - 1];
      const item = el("li", { "data-process": n });
      item.appendChild(el("span", { class: "swatch" })).style.background = COLORS[i % COLORS.length];
      item.appendChild(document.createTextNode(n + ": " + (last ? Berth.fmt(last.cpu, 1) + "% · " + Berth.fmt(last.memory, 0) + " MB" : "—")));
      legend.appendChild(item);
    });
  }

  function onHealth(processes) {
    renderProcesses(processes);
    const totals = {};
    processes.forEach(function (p) {
      const t = totals[p.process] || (totals[p.process] = { cpu: 0, memory: 0 });
      t.cpu += Number(p.cpu_percent) || 0;
      t.memory += Number(p.memory_mb) || 0;
    });
    Object.keys(totals).forEach(function (n) { if (!series[n]) series[n] = []; });
    Object.keys(series).forEach(function (n) {
      series[n].push(totals[n] || null);
      if (series[n].length > POINTS) series[n].shift();
    });
    charts.dataset.points = String(Number(charts.dataset.points || 0) + 1);
    document.getElementById("metrics-empty").hidden = true;
    drawChart(document.getElementById("chart-cpu"), "cpu");
    drawChart(document.getElementById("chart-memory"), "memory");
    renderLegend();
  }

  function onEvent(msg) {
    const empty = eventsList.querySelector(".empty");
    if (empty) empty.remove();
    const item = el("li", { class: "event kind-" + String(msg.kind || "").replace(/\W/g, "-"), "data-kind": msg.kind || "" });
    item.appendChild(el("time", { dateTime: msg.ts || "" }, msg.ts ? String(msg.ts).replace("T", " ").slice(0, 19) : ""));
    item.appendChild(el("span", { class: "badge" }, msg.kind || "event"));
    item.appendChild(el("span", {}, msg.message || ""));
    eventsList.insertBefore(item, eventsList.firstChild);
    while (eventsList.children.length > 50) eventsList.removeChild(eventsList.lastChild);
  }

  if (charts) {
    Berth.connect(root.dataset.wsEvents, {
      onMessage: function (msg) {
        if (msg.type === "health" && Array.isArray(msg.processes)) onHealth(msg.processes);
        else if (msg.type === "event") onEvent(msg);
      },
      onState: function (s) { Berth.setLive(eventsDot, null, s); if (eventsDot) eventsDot.title = "live health: " + s; },
    });
  }

  /* ---------------- config: reveal and edit in place ---------------- */
  const configTable = document.getElementById("config-table");
  function fetchValue(key) {
    return fetch(root.dataset.configValueUrl + "?key=" + encodeURIComponent(key), { credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (data) { return data.value; });
  }
  if (configTable) {
    configTable.addEventListener("click", function (event) {
      const button = event.target.closest("a[data-action]");
      if (!button) return;
      const row = button.closest("tr[data-config-key]");
      const key = row.dataset.configKey;
      const cell = row.querySelector("td.value");
      if (button.dataset.action === "reveal") {
        event.preventDefault();
        const code = cell.querySelector(".config-value");
        if (!code) return;
        if (code.dataset.masked === "0") {
          code.textContent = "••••••••";
          code.dataset.masked = "1";
          button.textContent = "Reveal";
          return;
        }
        fetchValue(key).then(function (value) {
          code.textContent = value;
          code.dataset.masked = "0";
          button.textContent = "Hide";
        }).catch(function () { window.location.href = button.href; });
      } else if (button.dataset.action === "edit") {
        event.preventDefault();
        if (cell.querySelector("form")) return;
        fetchValue(key).then(function (value) {
          const previous = Array.prototype.slice.call(cell.childNodes);
          const form = el("form", { method: "post", action: root.dataset.configSetUrl, class: "config-edit" });
          form.appendChild(el("input", { type: "hidden", name: "csrfmiddlewaretoken", value: Berth.csrfToken() }));
          form.appendChild(el("input", { type: "hidden", name: "key", value: key }));
          const area = el("textarea", { name: "value", rows: 2 });
          area.value = value;
          area.setAttribute("aria-label", "value of " + key);
          form.appendChild(area);
          form.appendChild(el("button", { type: "submit", class: "small primary" }, "Save"));
          const cancel = el("button", { type: "button", class: "small" }, "Cancel");
          cancel.addEventListener("click", function () { cell.textContent = ""; previous.forEach(function (n) { cell.appendChild(n); }); });
          form.appendChild(cancel);
          cell.textContent = "";
          cell.appendChild(form);
          area.focus();
        }).catch(function () { window.location.href = button.href; });
      }
    });
  }
});
