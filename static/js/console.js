// The label schema editor: add a label row, move rows up and down (their positions follow),
// mark a row removed. Without this script the form still works: positions are numbers to edit.
(function () {
  "use strict";

  var form = document.querySelector("[data-label-schema]");
  if (!form) return;
  var rows = form.querySelector("[data-label-rows]");
  var template = document.getElementById("label-empty-row");
  var total = form.querySelector("input[name$='-TOTAL_FORMS']");

  function renumber() {
    rows.querySelectorAll("[data-label-row]").forEach(function (row, index) {
      var order = row.querySelector("input[name$='-ORDER']");
      if (order) order.value = String(index + 1);
    });
  }

  function markRemoved(row) {
    var box = row.querySelector("input[name$='-DELETE']");
    row.classList.toggle("is-removed", Boolean(box && box.checked));
  }

  form.querySelector("[data-label-add]").addEventListener("click", function () {
    var index = parseInt(total.value, 10);
    var html = template.innerHTML.replace(/__prefix__/g, String(index));
    var holder = document.createElement("tbody");
    holder.innerHTML = html; // our own template: server-rendered and escaped
    var row = holder.firstElementChild;
    rows.appendChild(row);
    total.value = String(index + 1);
    renumber();
    var name = row.querySelector("input[name$='-name']");
    if (name) name.focus();
  });

  rows.addEventListener("click", function (event) {
    var button = event.target.closest("[data-label-move]");
    if (!button) return;
    var row = button.closest("[data-label-row]");
    if (button.dataset.labelMove === "up" && row.previousElementSibling) {
      rows.insertBefore(row, row.previousElementSibling);
    } else if (button.dataset.labelMove === "down" && row.nextElementSibling) {
      rows.insertBefore(row.nextElementSibling, row);
    }
    renumber();
    button.focus();
  });

  rows.addEventListener("change", function (event) {
    if (event.target.matches("input[name$='-DELETE']")) {
      markRemoved(event.target.closest("[data-label-row]"));
    }
  });

  rows.querySelectorAll("[data-label-row]").forEach(markRemoved);
  renumber();
})();
