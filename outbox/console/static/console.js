// keel console: refreshes the overview in place. No dependencies, no
// network beyond the console's own pages.
"use strict";
(function () {
  var box = document.getElementById("overview");
  if (!box) return;
  var every = parseInt(document.body.getAttribute("data-refresh"), 10) || 2000;
  var status = document.getElementById("refresh-status");
  var url = box.getAttribute("data-fragment");
  var busy = false;
  function say(text, failed) {
    if (!status) return;
    status.textContent = text;
    status.className = failed ? "problem" : "muted";
  }
  function refresh() {
    if (busy || document.hidden) return;
    busy = true;
    fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (!r.ok) throw new Error("the console answered " + r.status);
        return r.text();
      })
      .then(function (html) {
        box.innerHTML = html; // rendered and escaped by the server's templates
        say("Updated " + new Date().toLocaleTimeString() + "; refreshes every " + every / 1000 + "s.", false);
      })
      .catch(function (e) {
        say("Could not refresh: " + e.message + ". Retrying.", true);
      })
      .finally(function () { busy = false; });
  }
  say("Refreshes every " + every / 1000 + "s.", false);
  setInterval(refresh, every);
})();
