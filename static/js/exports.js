// The export form: choices that do not apply to the chosen kind are hidden and disabled (so
// they are not sent and keep their defaults). Without JavaScript every choice shows, and the
// server names any that does not apply.
(function () {
  "use strict";

  var form = document.getElementById("export-form");
  if (!form) return;
  var kind = form.querySelector("[name=kind]");
  if (!kind) return;

  function update() {
    var chosen = kind.value;
    form.querySelectorAll("[data-kinds]").forEach(function (element) {
      var applies = element.getAttribute("data-kinds").split(" ").indexOf(chosen) >= 0;
      element.hidden = !applies;
      if (element.tagName === "FIELDSET") {
        element.disabled = !applies;
      } else {
        element.querySelectorAll("input, select, textarea").forEach(function (input) {
          input.disabled = !applies;
        });
      }
    });
  }

  kind.addEventListener("change", update);
  update();
})();
