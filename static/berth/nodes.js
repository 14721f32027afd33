/* Nodes page: the swarm's nodes from /ws/nodes; says "no data" when nothing arrives. */
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  const section = document.getElementById("nodes");
  if (!section) return;
  const el = Berth.el;
  const empty = document.getElementById("nodes-empty");
  const table = document.getElementById("nodes-table");
  const body = document.getElementById("nodes-body");
  const dot = document.getElementById("nodes-status");
  let received = false;

  function noData(reason) {
    if (received) return;
    empty.hidden = false;
    empty.textContent = "No data: " + reason;
    empty.dataset.state = "no-data";
  }
  const waiting = setTimeout(function () { noData("no node report arrived (is the web process streaming /ws/nodes?)"); }, 8000);

  function render(nodes) {
    received = true;
    clearTimeout(waiting);
    empty.hidden = true;
    table.hidden = false;
    body.textContent = "";
    nodes.forEach(function (n) {
      const row = el("tr", { "data-node": n.id || n.hostname || "" });
      row.appendChild(el("td", {}, n.hostname || String(n.id || "").slice(0, 12)));
      const state = el("td");
      state.appendChild(el("span", { class: "badge state-" + n.state }, n.state));
      row.appendChild(state);
      row.appendChild(el("td", { class: "hide-narrow" }, n.availability || "—"));
      row.appendChild(el("td", { class: "hide-narrow" }, n.address || "—"));
      row.appendChild(el("td", {}, Berth.fmt(n.cpu_percent, 1) + "%"));
      row.appendChild(el("td", {}, Berth.fmt(n.memory_used_mb, 0) + " / " + Berth.fmt(n.memory_total_mb, 0) + " MB"));
      row.appendChild(el("td", {}, Berth.fmt(n.disk_used_percent, 0) + "%"));
      row.appendChild(el("td", {}, n.tasks === undefined ? "—" : n.tasks));
      body.appendChild(row);
    });
  }

  Berth.connect(section.dataset.ws, {
    onMessage: function (msg) { if (msg.type === "nodes" && Array.isArray(msg.nodes)) render(msg.nodes); },
    onState: function (s) {
      Berth.setLive(dot, null, s);
      if (s === "denied") noData("not allowed");
      else if (s === "closed" || s === "error") noData("the node stream is not available");
    },
  });
});
