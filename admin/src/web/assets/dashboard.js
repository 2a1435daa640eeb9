// celeriac dashboard: refreshes every [data-fragment] container from its
// fragment URL without reloading the page. Served from the binary; no
// external code. The fragments are rendered (and escaped) by the server.
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
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-fragment]").forEach(refresh);
  });
})();
