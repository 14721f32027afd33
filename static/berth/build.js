/* Build page: live output from /ws/builds/<id>; the stored log stays on screen if the socket cannot be used. */
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  const pre = document.getElementById("build-log");
  if (!pre || pre.dataset.finished === "1") return;
  const dot = document.getElementById("build-live");
  const label = document.getElementById("build-live-text");
  const badge = document.getElementById("build-status");
  let fresh = true; // the server replays every line from the start on each connection
  let ended = false;

  function follow() {
    const atBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  }

  Berth.connect(pre.dataset.ws, {
    onOpen: function () { fresh = true; },
    onMessage: function (msg) {
      if (msg.type === "line") {
        if (fresh) { pre.textContent = ""; fresh = false; }
        pre.appendChild(document.createTextNode(msg.line + "\n"));
        follow();
      } else if (msg.type === "end") {
        ended = true;
        badge.textContent = msg.status;
        badge.dataset.status = msg.status;
        badge.className = "badge state-" + msg.status;
        Berth.setLive(dot, label, "closed", "finished: " + msg.status);
      }
    },
    onState: function (s) {
      if (ended) return;
      const text = { connecting: "connecting…", live: "live", retrying: "reconnecting…", closed: "disconnected; showing the log stored so far", denied: "not allowed", error: "live output unavailable; showing the stored log" }[s] || s;
      Berth.setLive(dot, label, s, text);
    },
  }, { done: function () { return ended; } });
});
