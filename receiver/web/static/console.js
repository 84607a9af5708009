// Live updates: the server pushes a note on each change (server-sent events); the page
// fetches itself again and swaps its live sections. Without JavaScript the pages are
// the same, and a reload shows what changed.
(function () {
  "use strict";
  if (!window.EventSource || !window.fetch) return;
  if (!document.querySelector("[data-live]")) return;
  var busy = false, again = false;
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(window.location.href, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (text) {
        if (text === null) return;
        var fresh = new DOMParser().parseFromString(text, "text/html");
        document.querySelectorAll("[data-live]").forEach(function (old) {
          var next = fresh.getElementById(old.id);
          if (next) old.replaceWith(document.importNode(next, true));
        });
        document.body.setAttribute("data-updated", String(Date.now()));
      })
      .finally(function () {
        busy = false;
        if (again) { again = false; setTimeout(refresh, 200); }
      });
  }
  var source = new EventSource("/events");
  ["incident", "answered", "accepted", "stored", "refused", "call", "audit"].forEach(
    function (kind) { source.addEventListener(kind, refresh); });
  source.addEventListener("open", function () {
    document.body.setAttribute("data-live-connected", "1");
  });
})();
