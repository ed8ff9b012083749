// The demonstration page around the editor: the lease's end counting down, a question before a
// skip throws written turns away, and the editor kept on the first screen.
//
// Loaded after demonstration.js (both deferred), which keeps #demo-lease's time up to date
// as saves renew the lease; this file only reads the page.
(function () {
  "use strict";

  var lease = document.querySelector("#demo-lease time");
  var left = document.getElementById("demo-lease-left");
  var editor = document.getElementById("demo-editor");
  var thread = document.getElementById("demo-thread");
  var SOON_SECONDS = 120;
  var warned = false;

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  // "12:05 left", "1:02:05 left": what is left of the lease, every second.
  function tick() {
    if (!lease || !left) return;
    var end = Date.parse(lease.dateTime);
    if (isNaN(end)) {
      left.textContent = "";
      return;
    }
    var seconds = Math.round((end - Date.now()) / 1000);
    if (seconds <= 0) {
      left.textContent = "(expired: the task may go back to the pool; saving asks for it again)";
      left.dataset.state = "expired";
      return;
    }
    var minutes = Math.floor(seconds / 60);
    var hours = Math.floor(minutes / 60);
    var clock = (hours ? hours + ":" + pad(minutes % 60) : String(minutes)) + ":" + pad(seconds % 60);
    left.textContent = "(" + clock + " left)";
    var soon = seconds <= SOON_SECONDS;
    left.dataset.state = soon ? "soon" : "";
    if (soon && !warned) {
      warned = true; // said once to screen readers, not every second
      left.setAttribute("role", "status");
    } else if (!soon) {
      warned = false;
      left.removeAttribute("role");
    }
  }

  // Before a skip, which releases the task and its autosave: ask when there is written work.
  // Capture on the document runs before demonstration.js's own submit handler on the form, so
  // a "Cancel" leaves that page exactly as it was (still saving).
  document.addEventListener(
    "submit",
    function (event) {
      if (!event.target || event.target.id !== "demo-skip-form") return;
      var turns = document.querySelectorAll("#demo-turns > li").length;
      var typed = editor && editor.value.trim() ? 1 : 0;
      if (!turns && !typed) return;
      var parts = [];
      if (turns) parts.push(turns + " written turn" + (turns === 1 ? "" : "s"));
      if (typed) parts.push("the text in the editor");
      var question = "Skip this task and throw away " + parts.join(" and ") + "? " +
        "This cannot be undone.";
      if (!window.confirm(question)) {
        event.preventDefault();
        event.stopImmediatePropagation();
      }
    },
    true
  );

  // The latest turn of a long thread in view, and the editor on screen.
  if (thread) thread.scrollTop = thread.scrollHeight;
  if (editor && !document.getElementById("demo-errors")) {
    var box = editor.getBoundingClientRect();
    if (box.top < 0 || box.bottom > window.innerHeight) editor.scrollIntoView({ block: "center" });
  }

  tick();
  setInterval(tick, 1000);
})();
