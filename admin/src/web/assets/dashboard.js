// celeriac dashboard: refreshes every [data-fragment] container from its
// fragment URL without reloading the page, and every [data-events]
// container from its [data-source] URL whenever its server-sent event
// stream says something changed. Served from the binary; no external
// code. The fragments are rendered (and escaped) by the server; the
// events' data is never put in the page.
"use strict";
(function () {
  function refresh(container) {
    var source = container.getAttribute("data-fragment");
    var every = parseInt(container.getAttribute("data-refresh-ms"), 10) || 2000;
    function tick() {
      fetch(source, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.text();
        })
        .then(function (html) {
          container.innerHTML = html;
          container.removeAttribute("data-stale");
        })
        .catch(function () {
          container.setAttribute("data-stale", "true");
        })
        .then(function () {
          window.setTimeout(tick, every);
        });
    }
    window.setTimeout(tick, every);
  }
  function follow(container) {
    var source = container.getAttribute("data-source");
    var busy = false;
    var again = false;
    function load() {
      if (busy) {
        again = true;
        return;
      }
      busy = true;
      fetch(source, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.text();
        })
        .then(function (html) {
          container.innerHTML = html;
          container.removeAttribute("data-stale");
        })
        .catch(function () {
          container.setAttribute("data-stale", "true");
        })
        .then(function () {
          busy = false;
          if (again) {
            again = false;
            load();
          }
        });
    }
    if (!window.EventSource) return;
    // The stream sends a "tasks" event when it opens (and reopens after
    // a lost connection, which EventSource does by itself) and when tasks
    // change: each one fetches the list again.
    var stream = new EventSource(container.getAttribute("data-events"));
    stream.addEventListener("tasks", load);
    stream.addEventListener("open", function () {
      container.setAttribute("data-live", "true");
    });
    stream.addEventListener("error", function () {
      container.setAttribute("data-live", "false");
      container.setAttribute("data-stale", "true");
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-fragment]").forEach(refresh);
    document.querySelectorAll("[data-events]").forEach(follow);
  });
})();
