/* Apps list: keep each row's release and state current by polling the dashboard's status JSON. */
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  const table = document.getElementById("apps-table");
  if (!table) return;
  // the same search and page as the list shown, so the poll costs one page whatever the number of apps
  const url = table.dataset.statusUrl + window.location.search;
  let failures = 0;

  function update(apps) {
    apps.forEach(function (app) {
      const row = table.querySelector('tr[data-app="' + CSS.escape(app.name) + '"]');
      if (!row) return;
      row.querySelector('[data-field="current_release"]').textContent = app.current_release ? "v" + app.current_release : "—";
      const state = row.querySelector('[data-field="state"]');
      state.textContent = app.state;
      state.className = "badge state-" + app.state;
      const build = row.querySelector('[data-field="build"]');
      if (app.build_id) {
        build.textContent = "";
        const link = Berth.el("a", { href: "/apps/" + app.name + "/builds/" + app.build_id + "/" }, "#" + app.build_id + " " + app.build_status);
        build.appendChild(link);
      }
    });
  }

  function poll() {
    if (document.hidden) { setTimeout(poll, 5000); return; }
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (data) { failures = 0; update(data.apps || []); })
      .catch(function () { failures += 1; })
      .finally(function () { setTimeout(poll, Math.min(60000, 5000 * Math.pow(2, failures))); });
  }
  setTimeout(poll, 5000);
});
