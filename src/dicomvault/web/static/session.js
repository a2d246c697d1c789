/* Keeps the browser session alive while a page (or the viewer) is open. The server sets a
 * readable marker cookie, dv_session_fresh, that expires a minute before the access cookie
 * does (its value: that margin in seconds); the browser counts both lifetimes on its own
 * clock, so no skew between its clock and the server's matters. When the marker is gone
 * (checked every few seconds), the page waits a random part of a third of the margin, at most
 * 15 s — another tab may renew first, and its new marker is seen here too — then posts to
 * /api/v1/auth/session/refresh with the CSRF header, which rotates the refresh cookie and
 * renews the access cookie and the marker. A tab coming back into view (its timers may have slept) renews at once if due. Two
 * tabs renewing at one instant both succeed: the server takes a second use of a refresh token
 * within its reuse grace (20 s by default) as the same renewal.
 *
 * A failed fetch, a 429 or a 5xx is retried after 2, 4 and 8 s (within that grace, in case the
 * renewal took place but its answer was lost), then every 30 s, or after Retry-After. Any other
 * answer means there is no session to renew (logged out, refresh cookie expired): nothing
 * more happens here until a new login sets a new CSRF cookie; the next request meets the
 * login page as before. Plain script, no dependencies. */
(function () {
  "use strict";
  var FRESH_COOKIE = "dv_session_fresh", CSRF_COOKIE = "dv_csrf";
  var POLL_MS = 5000, JITTER_MS = 15000, RETRY_MS = [2000, 4000, 8000, 30000];
  var margin = 60; // seconds between the marker's end and the access cookie's, as last seen
  var pending = false; // a renewal is waiting or under way
  var failures = 0; // consecutive failed attempts of the pending renewal
  var givenUpFor = null; // the CSRF cookie of a session that could not be renewed

  function cookie(name) {
    var parts = document.cookie ? document.cookie.split("; ") : [];
    for (var i = 0; i < parts.length; i++) {
      var eq = parts[i].indexOf("=");
      if (parts[i].slice(0, eq) === name) return decodeURIComponent(parts[i].slice(eq + 1));
    }
    return "";
  }

  function due() {
    var csrf = cookie(CSRF_COOKIE);
    return csrf !== "" && csrf !== givenUpFor && cookie(FRESH_COOKIE) === "";
  }

  function check(now) {
    var seen = parseInt(cookie(FRESH_COOKIE), 10);
    if (seen > 0) margin = seen;
    if (pending || !due()) return;
    pending = true;
    var wait = now ? 0 : Math.random() * Math.min(JITTER_MS, (margin * 1000) / 3);
    setTimeout(function () {
      if (due()) {
        renew();
      } else {
        pending = false; // another tab renewed meanwhile
      }
    }, wait);
  }

  function renew() {
    var csrf = cookie(CSRF_COOKIE);
    fetch("/api/v1/auth/session/refresh", {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf },
    }).then(function (response) {
      if (response.ok) {
        done();
      } else if (response.status === 429 || response.status >= 500) {
        retry(parseInt(response.headers.get("Retry-After") || "", 10));
      } else {
        givenUpFor = csrf; // that session; a new login's CSRF cookie starts afresh
        done();
      }
    }, function () {
      retry(NaN); // the network, not the session
    });
  }

  function retry(afterSeconds) {
    var wait = RETRY_MS[Math.min(failures, RETRY_MS.length - 1)];
    if (afterSeconds > 0) wait = Math.max(wait, afterSeconds * 1000);
    failures += 1;
    setTimeout(renew, wait);
  }

  function done() {
    failures = 0;
    pending = false;
  }

  setInterval(function () {
    check(false);
  }, POLL_MS);
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) check(true);
  });
  check(false);
})();
