/* Keeps the browser session alive while a page (or the viewer) is open. Shortly before the
 * access cookie runs out — dv_session_expires says when, in seconds since the epoch — it posts
 * to /api/v1/auth/session/refresh with the CSRF header, which rotates the refresh cookie and
 * renews the access cookie. Tabs share the cookies: a tab whose timer fires after another tab
 * renewed finds the later time and waits again, and a random delay keeps tabs from renewing at
 * the same instant (the server takes a second use of a refresh token within its reuse grace,
 * 20 s by default, as the same renewal; later, as a stolen copy that ends the session). A failed
 * fetch is retried after 2, 4 and 8 s — within that grace, in case the renewal took place but
 * its answer was lost — and then every 30 s (the network may simply be down; a renewal that
 * reached the server but whose answer never came back cannot be saved after the grace, for
 * every tab still holds the spent cookie). When the session cannot be renewed (logged out,
 * refresh cookie expired), nothing happens here: the next request meets the login page as
 * before. Plain script, no dependencies. */
(function () {
  "use strict";
  var EXPIRES_COOKIE = "dv_session_expires", CSRF_COOKIE = "dv_csrf";
  var LEAD_MS = 60000, JITTER_MS = 20000, RETRY_MS = [2000, 4000, 8000, 30000];
  var failures = 0; // consecutive failed fetches of the pending renewal
  var planned = 0; // the expiry the pending timer was set for

  function cookie(name) {
    var parts = document.cookie ? document.cookie.split("; ") : [];
    for (var i = 0; i < parts.length; i++) {
      var eq = parts[i].indexOf("=");
      if (parts[i].slice(0, eq) === name) return decodeURIComponent(parts[i].slice(eq + 1));
    }
    return "";
  }

  function expiresAt() {
    var seconds = parseInt(cookie(EXPIRES_COOKIE), 10);
    return isFinite(seconds) ? seconds * 1000 : 0;
  }

  /* Renew a minute before the end (half the time left, for short-lived tokens), earlier by a
   * random part of a third of what remains then. */
  function schedule() {
    planned = expiresAt();
    if (!planned) return;
    var left = planned - Date.now();
    var lead = Math.min(LEAD_MS, left / 2);
    var jitter = Math.random() * Math.min(JITTER_MS, (left - lead) / 3);
    setTimeout(renew, Math.max(left - lead - jitter, 1000));
  }

  function renew() {
    var expires = expiresAt();
    if (!expires) return;
    if (expires > planned) {
      schedule(); // another tab renewed meanwhile
      return;
    }
    fetch("/api/v1/auth/session/refresh", {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRF-Token": cookie(CSRF_COOKIE) },
    }).then(function (response) {
      failures = 0;
      if (response.ok) schedule();
    }, function () {
      // The network, not the session: try again, soon at first.
      setTimeout(renew, RETRY_MS[Math.min(failures, RETRY_MS.length - 1)]);
      failures += 1;
    });
  }

  schedule();
})();
