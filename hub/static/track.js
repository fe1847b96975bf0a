// Keeps the tracking page's live part current without a reload. Without JavaScript the page
// still works: it is plain HTML with forms, and a refresh link.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.fetch) { return; }
  var url = live.getAttribute("data-live-url");
  var every = Math.max(2, parseInt(live.getAttribute("data-poll"), 10) || 15) * 1000;
  function poll() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (data && data.version !== live.getAttribute("data-version")) {
          live.innerHTML = data.html;
          live.setAttribute("data-version", data.version);
        }
      })
      .catch(function () { /* offline for a moment: try again next time */ })
      .then(function () { window.setTimeout(poll, every); });
  }
  window.setTimeout(poll, every);
}());
