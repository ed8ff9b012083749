// The data explorer: a refused filter or exclusion (400) answers with the form's errors in the
// fragment it replaces, so htmx swaps it in like a success instead of showing a generic banner.
(function () {
  "use strict";

  document.addEventListener("htmx:beforeSwap", function (event) {
    var detail = event.detail;
    var source = detail && detail.requestConfig && detail.requestConfig.elt;
    if (!source || !source.closest || !source.closest("[data-swap-form-errors]")) {
      return;
    }
    if (detail.xhr && detail.xhr.status === 400) {
      detail.shouldSwap = true;
      detail.isError = false;
    }
  });
})();
