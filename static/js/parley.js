// Site-wide behaviour: a dismissible error banner when an htmx request fails, and forms that
// submit once (`data-once`).
//
// htmx 2 does not swap 4xx/5xx responses, so without this a failed save or claim would look
// like nothing happened. Loaded with `defer`, so the DOM is parsed when this runs.
(function () {
  "use strict";

  var HINTS = {
    0: "The server could not be reached. Check your connection and try again.",
    401: "Your session may have ended. Reload the page to log in again.",
    403: "You are not allowed to do that, or your session has ended. Reload the page and try again.",
    404: "The item was not found. It may have been removed; reload the page.",
    409: "This clashes with a newer change. Reload the page to see the latest version.",
    413: "That was too large to send.",
    429: "Too many requests. Wait a moment and try again.",
  };

  function bannerRegion() {
    var region = document.getElementById("error-banners");
    if (!region) {
      region = document.createElement("div");
      region.id = "error-banners";
      region.className = "error-banners";
      document.body.insertBefore(region, document.body.firstChild);
    }
    return region;
  }

  function describe(status, statusText) {
    var head = status
      ? "Request failed: " + status + (statusText ? " " + statusText : "") + "."
      : "Request failed: no response.";
    var hint = HINTS[status] || (status >= 500 ? "Something went wrong on the server. Try again in a moment." : "");
    return hint ? head + " " + hint : head;
  }

  function showError(status, statusText) {
    var region = bannerRegion();
    // One banner at a time: a burst of failures (e.g. polling) should not stack up.
    region.replaceChildren();

    var banner = document.createElement("div");
    banner.className = "error-banner";
    banner.setAttribute("role", "alert");

    var text = document.createElement("p");
    text.textContent = describe(status, statusText); // textContent: never parse server text as HTML
    banner.appendChild(text);

    var close = document.createElement("button");
    close.type = "button";
    close.className = "dismiss";
    close.textContent = "Dismiss";
    close.setAttribute("aria-label", "Dismiss error message");
    close.addEventListener("click", function () {
      banner.remove();
    });
    banner.appendChild(close);

    region.appendChild(banner);
  }

  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail && event.detail.xhr;
    showError(xhr ? xhr.status : 0, xhr ? xhr.statusText : "");
  });

  // Network failure: no status at all.
  document.addEventListener("htmx:sendError", function () {
    showError(0, "");
  });

  // A read-only field to copy from (an API token) selects its whole value on focus. Here rather
  // than in an inline onfocus= handler, which the Content-Security-Policy would block.
  document.addEventListener("focusin", function (event) {
    var field = event.target;
    if (field instanceof HTMLInputElement && field.hasAttribute("data-select-on-focus")) {
      field.select();
    }
  });

  // A "Copy" button (`data-copy="<id of a field>"`) copies the field's value: the clipboard API
  // where the page may use it, else the selected text with the older copy command.
  document.addEventListener("click", function (event) {
    var button = event.target instanceof Element && event.target.closest("button[data-copy]");
    if (!button) return;
    var field = document.getElementById(button.getAttribute("data-copy"));
    if (!field) return;
    function done(ok) {
      button.textContent = ok ? "Copied" : "Select and copy it by hand";
    }
    field.focus();
    field.select();
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(field.value).then(function () { done(true); }, function () {
        done(document.execCommand("copy"));
      });
    } else {
      done(document.execCommand("copy"));
    }
  });

  // A form that creates something (a training run, an export, a token) carries `data-once`: its
  // first POST submit goes through and any further one is dropped, so a double click or a
  // second Enter sends one request. The submit buttons are disabled after the event, not in it,
  // so the clicked button's name and value still go with the first submit. A GET submit (a
  // "show these settings" button) is left alone. An htmx-driven form is unlocked when its
  // request ends, since the page stays; a page restored from the back/forward cache is too.
  function submitButtons(form) {
    return Array.prototype.filter.call(form.elements, function (element) {
      return (element instanceof HTMLButtonElement || element instanceof HTMLInputElement) &&
        element.type === "submit";
    });
  }

  function lock(form) {
    form.setAttribute("data-submitting", "");
    window.setTimeout(function () {
      submitButtons(form).forEach(function (button) {
        if (!button.disabled) {
          button.disabled = true;
          button.setAttribute("data-once-disabled", "");
        }
      });
    }, 0);
  }

  function unlock(form) {
    form.removeAttribute("data-submitting");
    submitButtons(form).forEach(function (button) {
      if (button.hasAttribute("data-once-disabled")) {
        button.disabled = false;
        button.removeAttribute("data-once-disabled");
      }
    });
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-once")) return;
    var submitter = event.submitter;
    var method = (submitter && submitter.getAttribute("formmethod")) || form.getAttribute("method") || "get";
    if (method.toLowerCase() !== "post") return;
    if (form.hasAttribute("data-submitting")) {
      event.preventDefault();
      event.stopImmediatePropagation();
      return;
    }
    lock(form);
  }, true); // capture: runs before htmx's own submit handler on the form

  document.addEventListener("htmx:afterRequest", function (event) {
    var form = event.detail && event.detail.elt;
    if (form instanceof HTMLFormElement && form.hasAttribute("data-once")) unlock(form);
  });

  window.addEventListener("pageshow", function (event) {
    if (!event.persisted) return;
    document.querySelectorAll("form[data-once]").forEach(unlock);
  });
})();
