// The ranking page: order the replies by drag-and-drop (SortableJS) or the keyboard, with ties;
// keep the order JSON of the form in step; measure time on task; autosave, which renews the lease.
//
// Autosave: each page load has a number from the server (data-page) and numbers its saves; the
// server keeps a save unless it is an older one of this page arriving late or this page is older
// than one that has written since. Leaving or reloading flushes the last changes with
// navigator.sendBeacon; since that can land after the next page loaded, a page asks where the
// work stands once ready and takes newer work of an older page if nothing was changed here yet.
// Newer work of another window is offered in a notice instead. Submit sends what the page shows.
//
// The list itself is the state: rows top to bottom, each with data-tied="1" when it shares the
// rank of the row above. Moving a reply takes it out of any tie; the others keep theirs.
(function () {
  "use strict";

  var form = document.getElementById("rank-form");
  var list = document.getElementById("candidates");
  if (!form || !list) return;

  var orderInput = document.getElementById("rank-order");
  var timeInput = document.getElementById("rank-time");
  var statusEl = document.getElementById("autosave-status");
  var announcer = document.getElementById("rank-announcer");
  var allBad = document.getElementById("all-bad");
  var rewrite = document.getElementById("rewrite");
  var csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  var autosaveUrl = form.dataset.autosaveUrl;

  // ------------------------------------------------------------------ rows and ties
  function rows() {
    return Array.prototype.slice.call(list.querySelectorAll(":scope > li.candidate"));
  }

  function readModel() {
    return rows().map(function (li, i) {
      return { li: li, tied: i > 0 && li.dataset.tied === "1" };
    });
  }

  // Take the row at `index` out of the list. Its neighbours stay tied only if both were tied to it.
  function removeAt(model, index) {
    var item = model.splice(index, 1)[0];
    var next = model[index];
    if (next) next.tied = index > 0 && item.tied && next.tied;
    item.tied = false;
    return item;
  }

  // Put `item` at `index` as a rank of its own; a tie it lands inside is split there.
  function insertAt(model, index, item) {
    item.tied = false;
    model.splice(index, 0, item);
    if (model[index + 1]) model[index + 1].tied = false;
  }

  function apply(model, keepFocus) {
    var focused = document.activeElement;
    model.forEach(function (entry, i) {
      entry.li.dataset.tied = i > 0 && entry.tied ? "1" : "0";
      if (list.children[i] !== entry.li) list.insertBefore(entry.li, list.children[i] || null);
    });
    if (keepFocus && focused && focused !== document.activeElement) focused.focus();
    refresh(true);
  }

  function groups() {
    var result = [];
    rows().forEach(function (li, i) {
      var id = parseInt(li.dataset.id, 10);
      if (i > 0 && li.dataset.tied === "1") result[result.length - 1].push(id);
      else result.push([id]);
    });
    return result;
  }

  function rankOf(li) {
    var rank = 0;
    var all = rows();
    for (var i = 0; i < all.length; i++) {
      if (i === 0 || all[i].dataset.tied !== "1") rank++;
      if (all[i] === li) return rank;
    }
    return rank;
  }

  // Rank numbers, tie marks, button states and the hidden order field, from the list.
  function refresh(changed) {
    var all = rows();
    var rank = 0;
    all.forEach(function (li, i) {
      var tied = i > 0 && li.dataset.tied === "1";
      if (!tied) rank++;
      li.classList.toggle("is-tied", tied);
      li.querySelector(".candidate-rank").textContent = rank;
      li.querySelector(".rank-num").textContent = rank;
      li.querySelector(".tie-chip").hidden = !tied;
      var tie = li.querySelector("[data-action=tie]");
      tie.setAttribute("aria-pressed", tied ? "true" : "false");
      tie.disabled = i === 0;
      li.querySelector("[data-action=up]").disabled = i === 0;
      li.querySelector("[data-action=down]").disabled = i === all.length - 1;
    });
    orderInput.value = JSON.stringify(groups());
    if (changed) scheduleSave(800);
  }

  function announce(text) {
    announcer.textContent = "";
    window.setTimeout(function () {
      announcer.textContent = text;
    }, 30);
  }

  function describe(li) {
    var all = rows();
    var index = all.indexOf(li);
    var text = "Reply " + li.dataset.letter + ", rank " + rankOf(li) + " of " + all.length;
    if (index > 0 && li.dataset.tied === "1") {
      text += ", tied with reply " + all[index - 1].dataset.letter;
    }
    return text + ".";
  }

  // ------------------------------------------------------------------ selection and moves
  var selected = null;

  function select(li, focus) {
    rows().forEach(function (other) {
      other.classList.toggle("is-selected", other === li);
    });
    selected = li;
    if (focus !== false && li && document.activeElement !== li) {
      li.focus({ preventScroll: true });
      li.scrollIntoView({ block: "nearest" });
    }
  }

  function move(li, delta) {
    var model = readModel();
    var from = model.findIndex(function (entry) {
      return entry.li === li;
    });
    var to = from + delta;
    if (from < 0 || to < 0 || to >= model.length) return;
    insertAt(model, to, removeAt(model, from));
    apply(model, true);
    select(li);
    announce(describe(li));
  }

  function toggleTie(li) {
    var all = rows();
    var index = all.indexOf(li);
    if (index <= 0) return;
    li.dataset.tied = li.dataset.tied === "1" ? "0" : "1";
    refresh(true);
    announce(
      li.dataset.tied === "1"
        ? "Reply " + li.dataset.letter + " tied with reply " + all[index - 1].dataset.letter + "."
        : "Reply " + li.dataset.letter + " no longer tied: " + describe(li)
    );
  }

  function isTextField(el) {
    if (!el) return false;
    if (el.isContentEditable || el.tagName === "TEXTAREA" || el.tagName === "SELECT") return true;
    if (el.tagName !== "INPUT") return false;
    return ["checkbox", "radio", "button", "submit", "reset", "hidden"].indexOf(el.type) < 0;
  }

  document.addEventListener("keydown", function (event) {
    if ((event.ctrlKey || event.metaKey) && event.key === "Enter") {
      event.preventDefault();
      form.requestSubmit(document.getElementById("submit-next"));
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey || isTextField(event.target)) return;
    var all = rows();
    if (/^[1-9]$/.test(event.key)) {
      var n = parseInt(event.key, 10);
      if (n <= all.length) {
        event.preventDefault();
        select(all[n - 1]);
        announce(describe(all[n - 1]) + " Use the up and down arrows to move it.");
      }
      return;
    }
    var onRow = event.target.classList && event.target.classList.contains("candidate");
    if (!selected || !onRow) return;
    if (event.key === "ArrowUp" || event.key === "ArrowDown") {
      event.preventDefault();
      move(selected, event.key === "ArrowUp" ? -1 : 1);
    } else if (event.key === "t" || event.key === "T") {
      event.preventDefault();
      toggleTie(selected);
    }
  });

  list.addEventListener("click", function (event) {
    var li = event.target.closest("li.candidate");
    if (!li) return;
    var button = event.target.closest("button[data-action]");
    if (!button) {
      if (!event.target.closest("input, label, a")) select(li, false);
      return;
    }
    var action = button.dataset.action;
    if (action === "up" || action === "down") {
      move(li, action === "up" ? -1 : 1);
      button.focus();
    } else if (action === "tie") {
      toggleTie(li);
    } else if (action === "expand") {
      var body = li.querySelector(".candidate-body");
      var expanded = body.classList.toggle("is-clamped") === false;
      button.setAttribute("aria-expanded", expanded ? "true" : "false");
      button.textContent = expanded ? "Show less" : "Show the whole reply";
    }
  });

  list.addEventListener("focusin", function (event) {
    if (event.target.classList.contains("candidate")) select(event.target, false);
  });

  // ------------------------------------------------------------------ drag and drop
  if (window.Sortable) {
    var before = null;
    window.Sortable.create(list, {
      handle: ".candidate-grip",
      draggable: "li.candidate",
      animation: 150,
      forceFallback: true, // mouse events rather than HTML5 drag: the same on every browser
      fallbackOnBody: true,
      ghostClass: "sortable-ghost",
      chosenClass: "sortable-chosen",
      dragClass: "sortable-drag",
      onStart: function () {
        before = readModel();
      },
      onEnd: function (event) {
        var model = before;
        before = null;
        if (!model) return;
        var from = event.oldDraggableIndex;
        var to = event.newDraggableIndex;
        if (from !== to && from != null && to != null) {
          insertAt(model, to, removeAt(model, from));
          apply(model, false);
          select(event.item, false);
          announce(describe(event.item));
        } else {
          apply(model, false);
        }
      },
    });
  }

  // ------------------------------------------------------------------ long replies
  var clampPx = 18 * parseFloat(getComputedStyle(document.documentElement).fontSize || "16");
  rows().forEach(function (li) {
    var body = li.querySelector(".candidate-body");
    if (body.scrollHeight > clampPx * 1.15) {
      body.classList.add("is-clamped");
      li.querySelector(".expand-toggle").hidden = false;
    }
  });

  // ------------------------------------------------------------------ time on task
  // From page load to submit, without the time the tab was hidden; carried across reloads by
  // the autosave.
  var baseMs = parseInt(form.dataset.elapsedMs, 10) || 0;
  var visibleMs = 0;
  var shownSince = document.hidden ? null : performance.now();

  function elapsedMs() {
    var current = shownSince === null ? 0 : performance.now() - shownSince;
    return Math.round(baseMs + visibleMs + current);
  }

  document.addEventListener("visibilitychange", function () {
    if (document.hidden) {
      if (shownSince !== null) visibleMs += performance.now() - shownSince;
      shownSince = null;
      if (dirty) save();
    } else {
      shownSince = performance.now();
    }
  });

  // ------------------------------------------------------------------ autosave and lease
  var RENEW_AFTER_MS = 60 * 1000;
  var saveTimer = null;
  var dirty = false;
  var page = parseInt(form.dataset.page, 10) || 0;
  var seq = 0;
  var knownRevision = parseInt(form.dataset.revision, 10) || 0;
  var version = 0; // local count of changes; savedVersion is the last one the server holds
  var savedVersion = 0;
  var beaconVersion = -1;
  var typedHere = false;
  var takeOverNext = false;
  var offered = null;
  var offeredFrom = 0;
  var notice = null;
  var lastSaved = Date.now(); // loading the page renewed the lease
  var submitting = false;

  function setStatus(text, isError) {
    statusEl.textContent = text;
    statusEl.classList.toggle("is-error", !!isError);
    statusEl.setAttribute("role", isError ? "alert" : "status");
  }

  function snapshot(numbered) {
    var flags = {};
    form.querySelectorAll("input[type=checkbox][name^='flag-']:checked").forEach(function (box) {
      var id = box.name.slice(5);
      (flags[id] = flags[id] || []).push(box.value);
    });
    var body = {
      order: groups(),
      flags: flags,
      all_bad: allBad.checked,
      rewrite: rewrite.value,
      elapsed_ms: elapsedMs(),
      page: page,
      seq: numbered ? ++seq : seq,
    };
    if (numbered && takeOverNext) body.take_over = true;
    return body;
  }

  function scheduleSave(delay) {
    dirty = true;
    version += 1;
    typedHere = true;
    window.clearTimeout(saveTimer);
    saveTimer = window.setTimeout(save, delay);
  }

  function save() {
    window.clearTimeout(saveTimer);
    if (submitting) return;
    dirty = false;
    lastSaved = Date.now();
    var sent = version;
    fetch(autosaveUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
      body: JSON.stringify(snapshot(true)),
      keepalive: true,
    })
      .then(function (response) {
        if (response.ok) {
          return response.json().then(function (data) {
            saved(sent, data);
          });
        } else if (response.status === 409) {
          return response.json().then(function (body) {
            setStatus(body.detail || "You no longer hold this task.", true);
          });
        } else {
          setStatus("Could not save your work (" + response.status + ").", true);
        }
      })
      .catch(function () {
        setStatus("Could not save your work: the server could not be reached.", true);
      });
  }

  // "Saved at 2026-03-01 09:30:05 UTC": a moment as every page writes it, with the seconds.
  function savedAt() {
    setStatus("Saved at " + new Date().toISOString().slice(0, 19).replace("T", " ") + " UTC");
  }

  // What the server answered: stored, an older save of this page arriving late (a newer one of
  // ours is stored), or newer work of another page.
  function saved(sent, data) {
    if (typeof data.revision === "number") knownRevision = Math.max(knownRevision, data.revision);
    if (data.stored || data.writer_page === page) {
      if (data.stored && data.page !== page) page = data.page; // took over: newest now
      if (data.stored) takeOverNext = false;
      savedVersion = Math.max(savedVersion, sent);
      if (notice && data.stored) notice.hidden = true;
      savedAt();
    } else if (data.state) {
      otherWork(data.state, data.writer_page);
    }
  }

  function otherWork(stored, writerPage) {
    if (!typedHere) {
      adopt(stored, writerPage);
      return;
    }
    offered = stored;
    offeredFrom = writerPage;
    setStatus("Not saved: changed in another window.", true);
    showNotice();
  }

  // Show another page's work: its order, flags, "all bad" and better reply.
  function adopt(stored, writerPage) {
    var byId = {};
    rows().forEach(function (li) {
      byId[li.dataset.id] = li;
    });
    var model = [];
    (Array.isArray(stored.order) ? stored.order : []).forEach(function (group) {
      (Array.isArray(group) ? group : []).forEach(function (id, index) {
        var li = byId[id];
        if (!li) return;
        delete byId[id];
        model.push({ li: li, tied: index > 0 && model.length > 0 });
      });
    });
    rows().forEach(function (li) {
      if (byId[li.dataset.id]) model.push({ li: li, tied: false });
    });
    var flags = stored.flags && typeof stored.flags === "object" ? stored.flags : {};
    form.querySelectorAll("input[type=checkbox][name^='flag-']").forEach(function (box) {
      var checked = flags[box.name.slice(5)];
      box.checked = Array.isArray(checked) && checked.indexOf(box.value) >= 0;
    });
    allBad.checked = stored.all_bad === true;
    rewrite.value = typeof stored.rewrite === "string" ? stored.rewrite : "";
    if (rewrite.value) {
      var details = rewrite.closest("details");
      if (details) details.open = true;
    }
    if (typeof stored.elapsed_ms === "number" && stored.elapsed_ms > elapsedMs()) {
      baseMs += stored.elapsed_ms - elapsedMs();
    }
    model.forEach(function (entry, i) {
      entry.li.dataset.tied = i > 0 && entry.tied ? "1" : "0";
      list.appendChild(entry.li);
    });
    refresh(false);
    savedVersion = version; // the server holds exactly this
    typedHere = false;
    // Work of a newer page (another window): what is changed here next must replace it.
    takeOverNext = writerPage > page;
    offered = null;
    if (notice) notice.hidden = true;
    savedAt();
  }

  function showNotice() {
    if (!notice) {
      notice = document.createElement("div");
      notice.id = "rank-conflict";
      notice.className = "form-errors";
      notice.setAttribute("role", "alert");
      var text = document.createElement("p");
      text.textContent = "This ranking was changed in another window since this one last " +
        "saved. Load that version, or keep this window's (it then replaces the other). " +
        "Submitting sends what this window shows.";
      notice.appendChild(text);
      var load = document.createElement("button");
      load.type = "button";
      load.className = "btn btn-secondary";
      load.textContent = "Load the other window's version";
      load.addEventListener("click", function () {
        if (offered) adopt(offered, offeredFrom);
      });
      var keep = document.createElement("button");
      keep.type = "button";
      keep.className = "btn btn-primary";
      keep.textContent = "Keep this window's ranking";
      keep.addEventListener("click", function () {
        takeOverNext = true;
        scheduleSave(0);
      });
      notice.appendChild(load);
      notice.appendChild(keep);
      form.insertBefore(notice, form.firstChild);
    }
    notice.hidden = false;
  }

  // Where the stored work stands: asked once the page is ready (the previous page's last save
  // may land just after this one loaded) and when the tab comes back.
  function sync() {
    if (submitting) return;
    fetch(autosaveUrl + "?page=" + page, { credentials: "same-origin" })
      .then(function (response) {
        return response.ok ? response.json() : null;
      })
      .then(
        function (data) {
          if (!data || submitting || data.revision <= knownRevision) return;
          knownRevision = data.revision;
          if (data.writer_page !== page && data.state) otherWork(data.state, data.writer_page);
        },
        function () {}
      );
  }

  // Leaving or reloading: send what is not saved yet in a way that outlives the page.
  function flush() {
    if (submitting || version === savedVersion || beaconVersion === version) return;
    beaconVersion = version;
    window.clearTimeout(saveTimer);
    var body = JSON.stringify(snapshot(true));
    var data = new FormData();
    data.append("csrfmiddlewaretoken", csrf);
    data.append("data", body);
    if (navigator.sendBeacon && body.length < 60000 && navigator.sendBeacon(autosaveUrl, data)) {
      return;
    }
    fetch(autosaveUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
      body: body,
      keepalive: body.length < 60000,
    }).catch(function () {});
  }

  window.addEventListener("pagehide", flush);
  window.addEventListener("beforeunload", flush);
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) sync();
  });

  form.addEventListener("change", function (event) {
    if (event.target.type === "checkbox") scheduleSave(800);
  });
  rewrite.addEventListener("input", function () {
    scheduleSave(2000);
  });

  // Activity renews the lease, at most once a minute, so a trainer reading long replies keeps
  // the task while one who walked away lets it go back to the pool.
  ["keydown", "pointerdown", "wheel"].forEach(function (type) {
    document.addEventListener(
      type,
      function () {
        if (!submitting && Date.now() - lastSaved > RENEW_AFTER_MS) scheduleSave(0);
      },
      { passive: true }
    );
  });

  // ------------------------------------------------------------------ submit
  form.addEventListener("submit", function (event) {
    if (submitting) {
      event.preventDefault(); // a second click: the first submission is on its way
      return;
    }
    submitting = true;
    window.clearTimeout(saveTimer);
    orderInput.value = JSON.stringify(groups());
    timeInput.value = elapsedMs();
  });
  window.addEventListener("pageshow", function () {
    submitting = false; // back/forward cache
  });

  refresh(false);
  var errors = document.getElementById("rank-errors");
  if (errors) errors.focus();
  sync();
  window.setTimeout(sync, 1000); // once more, for a save the previous page sent as it went
  // Tells browser tests (and anything scripted) that the page's handlers are in place.
  document.documentElement.dataset.rankReady = "true";
})();
