/* Worklist: empty search fields stay out of the URL; the results refresh live when instances
 * arrive (the page re-queries through the scoped, audited query path; events carry UIDs only). */
(function () {
  "use strict";

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("search-form");
    if (form) {
      form.addEventListener("submit", function () {
        form.querySelectorAll("input, select").forEach(function (field) {
          if (!field.value) field.disabled = true;
        });
      });
    }
    var results = document.getElementById("results");
    var status = document.getElementById("live-status");
    if (!results) return;
    var refresher = new window.dicomvault.Refresher(results, function () {
      results.setAttribute("data-refreshed", String(Date.now()));
      /* role=status: screen readers hear that the list changed, once per refresh. */
      var now = new Date();
      var time = ("0" + now.getHours()).slice(-2) + ":" + ("0" + now.getMinutes()).slice(-2);
      if (status) status.textContent = "Live updates: on · list updated at " + time;
    });
    window.dicomvault.connectLive({
      status: status,
      onInstance: function () {
        refresher.schedule();
      },
      onMissed: function () {
        refresher.schedule();
      },
    });
  });
})();
