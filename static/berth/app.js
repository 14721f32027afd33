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
  // the charts are static/berth/metrics.js (history from the server, then live)
  const charts = document.getElementById("charts");
  const processesBody = document.getElementById("processes-body");
  const eventsList = document.getElementById("events-list");
  const eventsDot = document.getElementById("events-status");

  // The rows come from the app's state (/ws/apps/<app>/state, what `berth ps` says); the health snapshots only
  // fill in each task's CPU and memory, so an older snapshot can never bring back a row that is gone.
  const usage = {}; // task id -> {cpu_percent, memory_mb}

  function usageCells(row, id) {
    const u = usage[id];
    row.querySelector("[data-field='cpu']").textContent = u ? Berth.fmt(u.cpu_percent, 1) + "%" : "—";
    row.querySelector("[data-field='memory']").textContent = u ? Berth.fmt(u.memory_mb, 0) + " MB" : "—";
  }

  function renderProcesses(processes) {
    processesBody.textContent = "";
    if (!processes.length) {
      const row = el("tr", { class: "empty" });
      row.appendChild(el("td", { colSpan: 7, id: "no-processes" }, "Nothing running."));
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
      const shown = p.desired_state && p.desired_state !== p.state ? p.state + " → " + p.desired_state : p.state;
      state.appendChild(el("span", { class: "badge state-" + p.state, "data-field": "state", title: p.error || "" }, shown));
      row.appendChild(state);
      row.appendChild(el("td", { class: "hide-narrow" }, String(p.node || "").slice(0, 12)));
      row.appendChild(el("td", { "data-field": "cpu" }));
      row.appendChild(el("td", { "data-field": "memory" }));
      row.appendChild(el("td", { class: "hide-narrow" }, p.restarts === undefined || p.restarts === null ? "—" : p.restarts));
      usageCells(row, p.id);
      processesBody.appendChild(row);
    });
  }

  function showUsage(processes) {
    processes.forEach(function (p) { if (p.id) usage[p.id] = { cpu_percent: p.cpu_percent, memory_mb: p.memory_mb }; });
    processesBody.querySelectorAll("tr[data-task-id]").forEach(function (row) { usageCells(row, row.dataset.taskId); });
  }

  function onHealth(processes) {
    showUsage(processes);
    if (window.BerthMetrics) window.BerthMetrics.health(processes);
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

  /* ---------------- app state: header, releases, processes, formation, builds (/ws/apps/<app>/state) ---------------- */
  // One snapshot of what the platform did (berth.live.app_state), sent on connect and on every change: each
  // section below is drawn from the same snapshot, so they never disagree on the version.
  const canEdit = root.dataset.canEdit === "1";
  const releasesBody = document.querySelector("#releases-table tbody");
  const currentRelease = document.getElementById("current-release");
  const buildsList = document.getElementById("builds-list");

  function shortTime(iso) {
    return iso ? String(iso).replace("T", " ").slice(0, 16) : "";
  }

  function rollbackForm(r) {
    const form = el("form", { method: "post", action: root.dataset.rollbackUrl, class: "inline" });
    form.appendChild(el("input", { type: "hidden", name: "csrfmiddlewaretoken", value: Berth.csrfToken() }));
    form.appendChild(el("input", { type: "hidden", name: "version", value: r.version }));
    form.appendChild(el("button", {
      type: "submit", class: "small", "data-action": "rollback", "data-version": String(r.version),
      "data-confirm": "Roll back to v" + r.version + "? This makes a new release with its image and config.",
    }, "Roll back"));
    return form;
  }

  function renderReleases(releases) {
    if (!releasesBody) return;
    releasesBody.textContent = "";
    if (!releases.length) {
      const row = el("tr", { class: "empty" });
      row.appendChild(el("td", { colSpan: 6, id: "no-releases" }, "No releases yet: deploy an image or git push."));
      releasesBody.appendChild(row);
      return;
    }
    releases.forEach(function (r) {
      const row = el("tr", { "data-release": String(r.version), "data-status": r.status });
      row.appendChild(el("td", {})).appendChild(el("a", { href: "/apps/" + root.dataset.app + "/releases/" + r.version + "/" }, "v" + r.version));
      const status = el("td");
      status.appendChild(el("span", { class: "badge state-" + r.status }, r.status));
      row.appendChild(status);
      // on a phone the description gives way (the release page has it), so "Roll back" stays on the screen
      row.appendChild(el("td", { class: "wrap hide-narrow", title: r.image || "" }, r.description || "—"));
      row.appendChild(el("td", { class: "hide-narrow" }, r.by));
      const when = el("td", { class: "hide-narrow" });
      when.appendChild(el("time", { dateTime: r.created_at }, shortTime(r.created_at)));
      row.appendChild(when);
      if (canEdit) {
        const cell = el("td");
        if (r.can_roll_back) cell.appendChild(rollbackForm(r));
        row.appendChild(cell);
      }
      releasesBody.appendChild(row);
    });
  }

  function formationInput(name, process, value, attrs) {
    const input = el("input", Object.assign({ type: "text", name: name + "-" + process, id: name + "-" + process, class: "num" }, attrs));
    input.value = value === null || value === undefined ? "" : String(value);
    input.defaultValue = input.value;
    return input;
  }

  function formationRow(f) {
    const row = el("tr", { "data-formation": f.process });
    const label = el("td");
    label.appendChild(el("label", { htmlFor: "replicas-" + f.process }, f.process));
    row.appendChild(label);
    [["replicas", f.replicas, { inputMode: "numeric", title: "0 to 100" }],
     ["memory_mb", f.memory_mb, { inputMode: "numeric", title: "32 to 65536 MB", placeholder: "none" }],
     ["cpu", f.cpu, { inputMode: "decimal", title: "0.01 to 64 CPUs", placeholder: "none" }]].forEach(function (field) {
      const cell = el("td");
      cell.appendChild(formationInput(field[0], f.process, field[1], field[2]));
      row.appendChild(cell);
    });
    return row;
  }

  // Update an input only if nobody is typing in it: what the platform says, never over what the user typed.
  function syncInput(input, value) {
    const text = value === null || value === undefined ? "" : String(value);
    if (document.activeElement === input || input.value !== input.defaultValue || input.getAttribute("aria-invalid")) return;
    input.value = text;
    input.defaultValue = text;
  }

  // The page was drawn before the first release: make the (empty) form or list the server would have drawn.
  function formationContainer(none) {
    if (!canEdit) {
      const list = el("ul", { class: "plain", id: "formation-readonly" });
      none.after(list);
      return;
    }
    const form = el("form", { method: "post", action: root.dataset.formationUrl, id: "formation-form", class: "formation", noValidate: true });
    form.appendChild(el("input", { type: "hidden", name: "csrfmiddlewaretoken", value: Berth.csrfToken() }));
    const wrap = el("div", { class: "table-wrap" });
    const table = el("table", { class: "list" });
    const head = el("tr");
    ["Type", "Replicas", "Memory MB", "CPU"].forEach(function (t) { head.appendChild(el("th", {}, t)); });
    table.appendChild(el("thead")).appendChild(head);
    table.appendChild(el("tbody"));
    wrap.appendChild(table);
    form.appendChild(wrap);
    form.appendChild(el("button", { type: "submit", id: "formation-save" }, "Scale"));
    none.after(form);
  }

  function renderFormation(formation) {
    const none = document.getElementById("no-formation");
    if (none) {
      none.hidden = formation.length > 0;
      if (formation.length && !document.getElementById("formation-form") && !document.getElementById("formation-readonly")) {
        formationContainer(none);
      }
    }
    const form = document.getElementById("formation-form");
    const readonly = document.getElementById("formation-readonly");
    if (form) {
      const body = form.querySelector("tbody");
      const wanted = {};
      formation.forEach(function (f) { wanted[f.process] = f; });
      body.querySelectorAll("tr[data-formation]").forEach(function (row) {
        if (!wanted[row.dataset.formation]) row.remove();
      });
      formation.forEach(function (f) {
        let row = body.querySelector("tr[data-formation='" + CSS.escape(f.process) + "']");
        if (!row) { body.appendChild(formationRow(f)); return; }
        syncInput(row.querySelector("[name='replicas-" + f.process + "']"), f.replicas);
        syncInput(row.querySelector("[name='memory_mb-" + f.process + "']"), f.memory_mb);
        syncInput(row.querySelector("[name='cpu-" + f.process + "']"), f.cpu);
      });
    } else if (readonly) {
      readonly.textContent = "";
      formation.forEach(function (f) {
        let text = f.process + ": " + f.replicas;
        if (f.memory_mb) text += " · " + f.memory_mb + " MB";
        if (f.cpu) text += " · " + f.cpu + " CPU";
        readonly.appendChild(el("li", { "data-formation": f.process }, text));
      });
    }
  }

  function renderBuilds(builds) {
    if (!buildsList) return;
    buildsList.textContent = "";
    if (!builds.length) { buildsList.appendChild(el("li", { class: "muted" }, "No builds yet.")); return; }
    builds.forEach(function (b) {
      const item = el("li", { "data-build": String(b.id), "data-status": b.status });
      item.appendChild(el("a", { href: b.url }, "#" + b.id));
      item.appendChild(document.createTextNode(" "));
      item.appendChild(el("span", { class: "badge state-" + b.status }, b.status));
      item.appendChild(document.createTextNode(" "));
      item.appendChild(el("span", { class: "muted small" }, b.ref + " · " + shortTime(b.created_at)));
      buildsList.appendChild(item);
    });
  }

  function renderProcessesError(message) {
    let note = document.getElementById("processes-error");
    if (!message) { if (note) note.remove(); return; }
    if (!note) {
      note = el("p", { class: "msg msg-warning", id: "processes-error" });
      processesBody.closest(".table-wrap").before(note);
    }
    note.textContent = message;
  }

  function onState(state) {
    if (currentRelease) {
      currentRelease.textContent = state.current_version ? "v" + state.current_version : "no release yet";
      currentRelease.dataset.version = state.current_version || "";
    }
    renderReleases(state.releases || []);
    renderProcesses(state.processes || []);
    renderProcessesError(state.processes_error);
    renderFormation(state.formation || []);
    renderBuilds(state.builds || []);
    root.dataset.stateAt = String(Date.now());
  }

  if (root.dataset.wsState) {
    Berth.connect(root.dataset.wsState, {
      onMessage: function (msg) { if (msg.type === "state") onState(msg); },
      onState: function (s) { root.dataset.stateSocket = s; },
    }, { maxRetries: 100 });
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
