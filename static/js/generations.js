// The generations page: "Add an earlier turn" adds one more turn to the context formset (a copy
// of its empty form, numbered after the others). Without JavaScript the form still offers one
// earlier turn; the button shows only where this file runs. Delegated, so it keeps working after
// htmx swaps the panel in again.
(function () {
  "use strict";

  function showButton() {
    var add = document.getElementById("context-turn-add");
    if (add) add.hidden = false;
  }

  document.addEventListener("click", function (event) {
    var add = event.target.closest("#context-turn-add");
    if (!add) return;
    var total = document.getElementById("id_context-TOTAL_FORMS");
    var template = document.getElementById("context-turn-template");
    var list = document.getElementById("context-turn-list");
    var max = document.getElementById("id_context-MAX_NUM_FORMS");
    if (!total || !template || !list) return;
    var index = parseInt(total.value, 10) || 0;
    if (max && index >= parseInt(max.value, 10)) return;
    var html = template.innerHTML.replace(/__prefix__/g, String(index));
    var holder = document.createElement("ol");
    holder.innerHTML = html; // the server's own template, with no user text in it
    var item = holder.firstElementChild;
    list.appendChild(item);
    total.value = String(index + 1);
    var text = item.querySelector("textarea");
    if (text) text.focus();
  });

  document.addEventListener("DOMContentLoaded", showButton);
  document.addEventListener("htmx:afterSwap", showButton);
})();
