/* Berth dashboard: shared helpers (no framework, no CDN). Every page works without JS; this only enhances it. */
"use strict";
document.documentElement.classList.add("js");

window.Berth = (function () {
  function wsUrl(path) {
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
  }

  /* A JSON WebSocket that reconnects with backoff unless the server refused us (4401/4404) or `done()` says stop.
     handlers: onMessage(msg), onState(state) with state in connecting|live|retrying|closed|denied|error. */
  function connect(path, handlers, options) {
    options = options || {};
    const maxRetries = options.maxRetries === undefined ? 5 : options.maxRetries;
    let socket = null;
    let tries = 0;
    let stopped = false;
    let timer = null;
    const state = function (s) { if (handlers.onState) handlers.onState(s); };

    function open() {
      if (stopped) return;
      state("connecting");
      try {
        socket = new WebSocket(wsUrl(path));
      } catch (err) {
        state("error");
        return;
      }
      socket.onopen = function () { tries = 0; state("live"); if (handlers.onOpen) handlers.onOpen(); };
      socket.onmessage = function (event) {
        let msg;
        try { msg = JSON.parse(event.data); } catch (err) { return; }
        if (msg && typeof msg === "object") handlers.onMessage(msg);
      };
      socket.onclose = function (event) {
        socket = null;
        if (stopped) return;
        if (event.code === 4401 || event.code === 4403 || event.code === 4404) { state("denied"); return; }
        if (options.done && options.done()) { state("closed"); return; }
        if (tries >= maxRetries) { state("closed"); return; }
        tries += 1;
        state("retrying");
        timer = setTimeout(open, Math.min(30000, 1000 * Math.pow(2, tries)));
      };
    }
    open();
    return {
      close: function () {
        stopped = true;
        clearTimeout(timer);
        if (socket) socket.close();
      },
    };
  }

  function setLive(dot, label, state, text) {
    if (dot) dot.dataset.state = state;
    if (label) label.textContent = text || state;
  }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "class") node.className = attrs[k];
      else if (k.indexOf("data-") === 0) node.setAttribute(k, attrs[k]);
      else node[k] = attrs[k];
    });
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function csrfToken() {
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function fmt(n, digits) {
    return typeof n === "number" && isFinite(n) ? n.toFixed(digits) : "—";
  }

  document.addEventListener("DOMContentLoaded", function () {
    // select[data-autosubmit]: the team switcher and role pickers submit on change
    document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      select.addEventListener("change", function () { select.form.requestSubmit(); });
    });
    // buttons with data-confirm ask first
    document.addEventListener("submit", function (event) {
      const button = event.submitter;
      if (button && button.dataset.confirm && !window.confirm(button.dataset.confirm)) event.preventDefault();
    });
    document.querySelectorAll("[data-copy]").forEach(function (button) {
      button.addEventListener("click", function () {
        const source = document.querySelector(button.dataset.copy);
        if (source && navigator.clipboard) {
          navigator.clipboard.writeText(source.textContent.trim()).then(function () { button.textContent = "Copied"; });
        }
      });
    });
  });

  return { connect: connect, setLive: setLive, el: el, csrfToken: csrfToken, fmt: fmt };
})();
