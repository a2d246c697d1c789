/* Shared by every page: CSRF header, logout, live events (SSE), region refreshes, thumbnails.
 * Plain script, no build, no dependencies; loaded with `defer`. Exposes window.dicomvault. */
(function () {
  "use strict";

  var CSRF_COOKIE = "dv_csrf";

  function cookie(name) {
    var parts = document.cookie ? document.cookie.split("; ") : [];
    for (var i = 0; i < parts.length; i++) {
      var eq = parts[i].indexOf("=");
      if (parts[i].slice(0, eq) === name) return decodeURIComponent(parts[i].slice(eq + 1));
    }
    return "";
  }

  /* Double-submit CSRF token: cookie-authenticated writes echo it in X-CSRF-Token. */
  function csrfToken() {
    return cookie(CSRF_COOKIE);
  }

  function loginUrl() {
    return "/login?next=" + encodeURIComponent(location.pathname + location.search);
  }

  function logout() {
    fetch("/api/v1/auth/logout", {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRF-Token": csrfToken() },
    }).finally(function () {
      location.assign("/login");
    });
  }

  /* Thumbnails that cannot be rendered (none yet, or not an image) get a placeholder look. */
  function markMissingThumbnail(event) {
    var img = event.target;
    if (img && img.tagName === "IMG" && img.classList.contains("thumb")) {
      img.classList.add("missing");
      img.removeAttribute("src");
    }
  }

  /* Re-fetch a region's HTML (same scoped, audited query as the page) at most once a second. */
  function Refresher(container, onDone) {
    this.container = container;
    this.onDone = onDone;
    this.pending = false;
    this.running = false;
    this.last = 0;
  }

  Refresher.prototype.schedule = function () {
    var self = this;
    if (self.pending) return;
    self.pending = true;
    var wait = Math.max(0, 1000 - (Date.now() - self.last));
    setTimeout(function () {
      self.run();
    }, wait);
  };

  Refresher.prototype.run = function () {
    var self = this;
    if (self.running) {
      setTimeout(function () {
        self.run();
      }, 250);
      return;
    }
    self.pending = false;
    self.running = true;
    self.last = Date.now();
    var url = self.container.getAttribute("data-refresh-url");
    fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (response.redirected && new URL(response.url).pathname === "/login") {
          location.assign(loginUrl());
          return null;
        }
        return response.text();
      })
      .then(function (html) {
        if (html === null) return;
        var focusedHref = null;
        var active = document.activeElement;
        if (active && self.container.contains(active)) focusedHref = active.getAttribute("href");
        var before = studyUids(self.container);
        var hadContent = self.container.children.length > 0;
        self.container.innerHTML = html;
        if (hadContent) markFresh(self.container, before);
        if (focusedHref) {
          var again = self.container.querySelector('[href="' + CSS.escape(focusedHref) + '"]');
          if (again) again.focus();
        }
        if (self.onDone) self.onDone();
      })
      .catch(function () {
        /* offline for a moment: the next event or reconnect refreshes again */
      })
      .finally(function () {
        self.running = false;
      });
  };

  function studyUids(container) {
    var uids = {};
    container.querySelectorAll("tr[data-study-uid]").forEach(function (row) {
      uids[row.getAttribute("data-study-uid")] = true;
    });
    return uids;
  }

  function markFresh(container, before) {
    container.querySelectorAll("tr[data-study-uid]").forEach(function (row) {
      if (!before[row.getAttribute("data-study-uid")]) row.classList.add("fresh");
    });
  }

  /* Live events (Server-Sent Events): `instance` per stored instance; `ready` tells whether
   * events were missed since the position the page was rendered at / last saw. */
  function connectLive(options) {
    var status = options.status;
    var since = document.body.getAttribute("data-live-position") || "";
    var url = "/api/v1/events" + (since ? "?since=" + encodeURIComponent(since) : "");
    if (!window.EventSource) {
      setStatus(status, "offline", "Live updates are not supported by this browser.");
      return null;
    }
    var source = new EventSource(url, { withCredentials: true });
    source.addEventListener("ready", function (event) {
      setStatus(status, "live", "Live updates: on");
      var data = JSON.parse(event.data || "{}");
      if (data.missed && options.onMissed) options.onMissed();
    });
    source.addEventListener("instance", function (event) {
      if (options.onInstance) options.onInstance(JSON.parse(event.data));
    });
    source.addEventListener("resync", function () {
      if (options.onMissed) options.onMissed();
    });
    source.addEventListener("error", function () {
      if (source.readyState === EventSource.CLOSED) {
        setStatus(status, "offline", "Live updates: off (reload the page to retry).");
      } else {
        setStatus(status, "connecting", "Live updates: reconnecting…");
      }
    });
    return source;
  }

  function setStatus(element, state, text) {
    if (!element) return;
    if (element.getAttribute("data-state") === state && element.textContent === text) return;
    element.setAttribute("data-state", state);
    element.textContent = text;
  }

  document.addEventListener("error", markMissingThumbnail, true);
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll('[data-action="logout"]').forEach(function (button) {
      button.addEventListener("click", logout);
    });
    /* Thumbnails that failed before this script ran. */
    document.querySelectorAll("img.thumb").forEach(function (img) {
      if (img.complete && img.naturalWidth === 0 && img.getAttribute("src")) {
        markMissingThumbnail({ target: img });
      }
    });
  });

  window.dicomvault = {
    csrfToken: csrfToken,
    loginUrl: loginUrl,
    connectLive: connectLive,
    Refresher: Refresher,
  };
})();
