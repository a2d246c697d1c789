/* Login: posts the form to POST /api/v1/auth/session (HttpOnly cookies + CSRF cookie), shows
 * errors in an alert region, then goes to the server-validated same-origin `next`. */
(function () {
  "use strict";

  var MESSAGES = {
    400: "Wrong user name or password.",
    401: "Wrong user name or password.",
    429: "Too many failed attempts. Wait a minute and try again.",
  };

  function showError(form, text) {
    var box = document.getElementById("login-error");
    box.textContent = text;
    box.hidden = false;
    var password = form.querySelector("#password");
    password.value = "";
    password.focus();
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("login-form");
    if (!form) return;
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var username = form.querySelector("#username").value.trim();
      var password = form.querySelector("#password").value;
      if (!username || !password) {
        showError(form, "Enter your user name and password.");
        if (!username) form.querySelector("#username").focus();
        return;
      }
      var button = form.querySelector('button[type="submit"]');
      button.disabled = true;
      var body = new URLSearchParams();
      body.set("username", username);
      body.set("password", password);
      fetch(form.getAttribute("action"), {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/x-www-form-urlencoded" },
        body: body,
      })
        .then(function (response) {
          if (response.ok) {
            /* `next` was checked by the server (same-origin path only); check again here. */
            var next = form.getAttribute("data-next") || "/";
            if (next.charAt(0) !== "/" || next.charAt(1) === "/" || next.charAt(1) === "\\") {
              next = "/";
            }
            location.assign(next);
            return;
          }
          showError(form, MESSAGES[response.status] || "Login failed (" + response.status + ").");
        })
        .catch(function () {
          showError(form, "The server cannot be reached. Try again.");
        })
        .finally(function () {
          button.disabled = false;
        });
    });
  });
})();
