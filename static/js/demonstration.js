// The demonstration page: the trainer's turns live in the page and are autosaved to the server.
//
// The server is the source of truth. The page starts from the autosave rendered into
// #demo-state and posts the whole state back every few seconds while it has unsaved changes, when
// the editor loses focus and when the tab is hidden; reopening the task anywhere restores it.
//
// Each page load has a number from the server (config.page) and numbers its saves 1, 2, ...;
// the server stores a save unless it is an older one of this page arriving late, or this page
// is older than one that has written since. Leaving or reloading flushes the last changes with
// navigator.sendBeacon, and those can land after the next page has loaded: so a new page asks
// the server where the work stands once it is ready, and takes newer work from an older page
// as long as the trainer has not typed here yet. Work from a newer page (a second window) is
// offered in a notice: load it, or keep this window's (which then becomes the newest). Submit
// always sends, and stores, what this page shows. Drafts come through htmx
// (the "Get a draft" button); this file sends the current state with them and handles "Insert
// draft". Text from trainers and models only ever reaches the DOM through textContent.
(function () {
  "use strict";

  var config = JSON.parse(document.getElementById("demo-config").textContent);
  var loaded = JSON.parse(document.getElementById("demo-state").textContent);

  var state = {
    turns: loaded.turns,
    editor: loaded.editor,
    editor_draft_id: loaded.editor_draft_id,
    version: 0, // local count of changes; savedVersion is the last one the server holds
  };
  var page = config.page; // this page load's number; a take-over gives a newer one
  var seq = 0; // the last sequence number sent
  var knownRevision = config.revision; // the server's save counter this page has seen
  var typedHere = false; // any change made on this page since it loaded or took newer work
  var takeOverNext = false; // the next save makes this page the newest (newer work was taken)
  var beaconVersion = -1;
  var savedVersion = 0;
  var saving = false;
  var saveAgain = false;
  var saveFailed = false;
  var stopped = false;
  var lastSaveAt = Date.now();
  var lastActivityAt = 0;
  var editing = null; // index of the turn being edited in place
  var draftMode = "";

  var els = {
    turns: document.getElementById("demo-turns"),
    card: document.getElementById("demo-editor-card"),
    editor: document.getElementById("demo-editor"),
    role: document.getElementById("demo-next-role"),
    label: document.getElementById("demo-editor-label"),
    add: document.getElementById("demo-add"),
    count: document.getElementById("demo-editor-count"),
    error: document.getElementById("demo-editor-error"),
    status: document.getElementById("demo-save-status"),
    lease: document.querySelector("#demo-lease time"),
    submitForm: document.getElementById("demo-submit-form"),
    submitState: document.getElementById("demo-submit-state"),
    submit: document.getElementById("demo-submit"),
    skipForm: document.getElementById("demo-skip-form"),
    draftBody: document.getElementById("demo-draft-body"),
    draftButton: document.getElementById("demo-draft-button"),
  };
  var csrf = els.submitForm.querySelector("[name=csrfmiddlewaretoken]").value;

  var ROLE_NAMES = { user: "User", assistant: "Assistant" };

  function other(role) {
    return role === "user" ? "assistant" : "user";
  }

  function nextRole() {
    var turns = state.turns;
    return turns.length ? other(turns[turns.length - 1].role) : config.firstRole;
  }

  function isFull() {
    return state.turns.length >= config.maxTurns;
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function button(text, label, onClick) {
    var node = el("button", "btn btn-link btn-small", text);
    node.type = "button";
    node.setAttribute("aria-label", label);
    node.addEventListener("click", onClick);
    return node;
  }

  // ------------------------------------------------------------ rendering

  function turnItem(turn, index) {
    var item = el("li", "turn " + turn.role);
    item.dataset.index = String(index);
    var head = el("div", "turn-role", ROLE_NAMES[turn.role]);
    var meta = "turn " + (index + 1) + (turn.draft_id ? " · started from a model draft" : "");
    head.appendChild(el("span", "turn-meta", meta));
    var name = "turn " + (index + 1) + " (" + turn.role + ")";
    var actions = el("span", "demo-turn-actions");
    if (editing !== index) {
      actions.appendChild(button("Edit", "Edit " + name, function () { startEdit(index); }));
      actions.appendChild(button("Delete", "Delete " + name, function () { removeFrom(index); }));
    }
    head.appendChild(actions);
    item.appendChild(head);
    if (editing === index) {
      item.appendChild(editBox(turn, index, name));
    } else {
      item.appendChild(el("div", "turn-body", turn.content));
    }
    return item;
  }

  function editBox(turn, index, name) {
    var box = el("div", "demo-turn-edit");
    var area = el("textarea");
    area.value = turn.content;
    area.rows = 5;
    area.setAttribute("aria-label", "Text of " + name);
    var problem = el("p", "field-error");
    problem.hidden = true;
    problem.setAttribute("role", "alert");
    var row = el("div", "row");
    var save = el("button", "btn btn-primary btn-small", "Save turn");
    save.type = "button";
    var cancel = el("button", "btn btn-secondary btn-small", "Cancel");
    cancel.type = "button";
    function commit() {
      var message = checkText(area.value);
      if (message) {
        problem.textContent = message;
        problem.hidden = false;
        area.focus();
        return;
      }
      finishEdit(index, area.value);
    }
    save.addEventListener("click", commit);
    cancel.addEventListener("click", function () {
      editing = null;
      render();
    });
    area.addEventListener("keydown", function (event) {
      if ((event.ctrlKey || event.metaKey) && event.key === "Enter") {
        event.preventDefault();
        commit();
      } else if (event.key === "Escape") {
        editing = null;
        render();
      }
    });
    row.appendChild(save);
    row.appendChild(cancel);
    box.appendChild(area);
    box.appendChild(problem);
    box.appendChild(row);
    setTimeout(function () { area.focus(); }, 0);
    return box;
  }

  function render() {
    els.turns.replaceChildren.apply(els.turns, state.turns.map(turnItem));
    var role = nextRole();
    var full = isFull();
    els.card.dataset.role = role;
    els.card.dataset.full = full ? "true" : "false";
    els.role.textContent = ROLE_NAMES[role];
    els.add.textContent = "Add " + role + " turn";
    els.add.disabled = full;
    els.label.textContent = full
      ? "The dialogue has reached this project's limit of " + config.maxTurns +
        " new turns: submit it, or edit or delete a turn."
      : "Write the " + role + "’s turn";
    if (els.draftButton) els.draftButton.disabled = role !== "assistant" || full;
    updateCount();
  }

  function updateCount() {
    var length = els.editor.value.length;
    els.count.textContent = length + " / " + config.maxChars + " characters";
    var over = length > config.maxChars;
    els.editor.setAttribute("aria-invalid", over ? "true" : "false");
    els.count.classList.toggle("field-error", over);
  }

  function showError(message) {
    els.error.textContent = message || "";
    els.error.hidden = !message;
  }

  function checkText(text) {
    if (!text.trim()) return "A turn cannot be empty.";
    if (text.length > config.maxChars) {
      return "This turn has " + text.length + " characters; the limit is " + config.maxChars + ".";
    }
    return "";
  }

  // ------------------------------------------------------------ editing the dialogue

  function changed() {
    state.version += 1;
    typedHere = true;
    lastActivityAt = Date.now();
    if (!saving) setStatus("Unsaved changes…");
  }

  // Drafts of later turns were replies to the old text, so they no longer apply.
  function forgetDraftsAfter(index) {
    state.turns.forEach(function (turn, i) {
      if (i > index) turn.draft_id = null;
    });
    state.editor_draft_id = null;
  }

  function addTurn() {
    if (isFull()) {
      showError("The dialogue has reached this project's limit of turns.");
      return false;
    }
    var role = nextRole();
    var text = els.editor.value;
    var message = checkText(text);
    if (message) {
      showError(message);
      els.editor.focus();
      return false;
    }
    showError("");
    state.turns.push({
      role: role,
      content: text,
      draft_id: role === "assistant" ? state.editor_draft_id : null,
    });
    state.editor = "";
    state.editor_draft_id = null;
    els.editor.value = "";
    changed();
    render();
    return true;
  }

  function startEdit(index) {
    editing = index;
    render();
  }

  function finishEdit(index, text) {
    editing = null;
    if (state.turns[index].content !== text) {
      state.turns[index].content = text;
      forgetDraftsAfter(index);
      changed();
      render();
      save();
      contextChanged();
    } else {
      render();
    }
  }

  function removeFrom(index) {
    var count = state.turns.length - index;
    if (count > 1) {
      var question = "Delete turn " + (index + 1) + " and the " + (count - 1) +
        " turn" + (count > 2 ? "s" : "") + " after it? User and assistant must take turns.";
      if (!window.confirm(question)) return;
    }
    state.turns.splice(index);
    state.editor_draft_id = null;
    editing = null;
    changed();
    render();
    save();
    contextChanged();
    els.editor.focus();
  }

  // ------------------------------------------------------------ drafts

  function contextChanged() {
    if (!els.draftButton) return;
    if (nextRole() === "assistant" && !isFull()) {
      requestDraft(true);
    } else {
      var note = el("p", "muted", "A draft is offered when the assistant speaks next.");
      els.draftBody.replaceChildren(note);
      els.draftButton.textContent = "Get a draft";
    }
  }

  // htmx.ajax rather than a click: this runs before htmx has processed the page on load.
  function requestDraft(auto) {
    if (!els.draftButton || stopped) return;
    draftMode = auto ? "auto" : "";
    els.draftButton.disabled = false;
    window.htmx.ajax("POST", config.urls.draft, {
      source: els.draftButton,
      target: els.draftBody,
      swap: "innerHTML",
    });
  }

  var draftSentVersion = 0;
  document.body.addEventListener("htmx:configRequest", function (event) {
    if (event.detail.elt !== els.draftButton) return;
    draftSentVersion = state.version;
    event.detail.parameters.state = JSON.stringify(payload(true));
    event.detail.parameters.mode = draftMode;
    draftMode = "";
  });

  // The draft view stores the state it was sent, and says so as a save would.
  document.body.addEventListener("demo:saved", function (event) {
    var detail = event.detail || {};
    var answer = detail.revision !== undefined ? detail : detail.value || {};
    if (typeof answer.revision === "number") saved(draftSentVersion, answer);
  });

  document.body.addEventListener("htmx:afterSwap", function (event) {
    if (els.draftBody && els.draftBody.contains(event.detail.elt) &&
        els.draftBody.querySelector("[data-generation]")) {
      els.draftButton.textContent = "Get another draft";
    }
  });

  document.addEventListener("click", function (event) {
    var insert = event.target.closest("[data-insert-draft]");
    if (!insert || stopped) return;
    if (nextRole() !== "assistant") return;
    var text = insert.getAttribute("data-draft-text");
    var current = els.editor.value;
    if (current.trim() && current !== text &&
        !window.confirm("Replace the text in the editor with the draft?")) {
      return;
    }
    els.editor.value = text;
    state.editor = text;
    state.editor_draft_id = parseInt(insert.getAttribute("data-insert-draft"), 10);
    changed();
    updateCount();
    save();
    els.editor.focus();
    els.editor.setSelectionRange(text.length, text.length);
  });

  // ------------------------------------------------------------ saving

  // The state to send; `numbered` gives it this page's next sequence number.
  function payload(numbered) {
    var body = {
      turns: state.turns,
      editor: state.editor,
      editor_draft_id: state.editor_draft_id,
      page: page,
      seq: numbered ? ++seq : seq,
    };
    if (numbered && takeOverNext) body.take_over = true;
    return body;
  }

  // A moment as every page writes it: "2026-03-01 09:30 UTC" (now, when `iso` is null), with
  // the seconds when asked.
  function utcStamp(iso, seconds) {
    var date = iso ? new Date(iso) : new Date();
    if (isNaN(date.getTime())) return "";
    return date.toISOString().slice(0, seconds ? 19 : 16).replace("T", " ") + " UTC";
  }

  function setStatus(text, kind) {
    els.status.textContent = text;
    els.status.dataset.state = kind || "";
  }

  function acknowledge(sent) {
    savedVersion = Math.max(savedVersion, sent);
    saveFailed = false;
    lastSaveAt = Date.now();
    if (state.version === savedVersion) setStatus("Saved at " + utcStamp(null, true), "saved");
  }

  function stop(message) {
    stopped = true;
    setStatus("Not saved: " + message, "error");
    showError(message + " Copy any text you want to keep before leaving this page.");
  }

  function save(options) {
    options = options || {};
    if (stopped) return;
    if (saving) {
      saveAgain = true;
      return;
    }
    if (state.version === savedVersion && !options.renew) return;
    var body = JSON.stringify(payload(true));
    var sent = state.version;
    saving = true;
    if (!options.renew) setStatus("Saving…");
    fetch(config.urls.autosave, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
      body: body,
      keepalive: Boolean(options.keepalive) && body.length < 60000,
    })
      .then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (data) {
          saving = false;
          if (response.ok) {
            saved(sent, data);
          } else if (response.status === 409 || response.status === 404 || response.status === 403) {
            stop(data.detail || "this task is no longer yours.");
          } else {
            saveFailed = true;
            var first = Object.keys(data).map(function (key) { return data[key]; })[0];
            setStatus("Not saved: " + (first || "the server answered " + response.status) +
              ". Retrying…", "error");
          }
        });
      }, function () {
        saving = false;
        saveFailed = true;
        setStatus("Not saved: the server could not be reached. Retrying…", "error");
      })
      .then(function () {
        if (saveAgain) {
          saveAgain = false;
          save();
        }
      });
  }

  // What the server answered a save (or a question) with: stored, an older save of this page
  // that arrived late (a newer one of ours is stored), or newer work of another page.
  function saved(sent, data) {
    if (typeof data.revision === "number") knownRevision = Math.max(knownRevision, data.revision);
    if (data.lease_expires_at && els.lease) {
      els.lease.dateTime = data.lease_expires_at;
      els.lease.textContent = utcStamp(data.lease_expires_at);
    }
    if (data.stored) {
      if (data.page !== page) page = data.page; // took over: this page is the newest now
      takeOverNext = false;
      hideNotice();
      acknowledge(sent);
    } else if (data.writer_page === page) {
      acknowledge(sent);
    } else if (data.state) {
      otherWork(data.state, data.writer_page);
    }
  }

  // Another page's work is stored: take it if nothing was typed here, else offer it.
  function otherWork(stored, writerPage) {
    if (!typedHere) {
      adopt(stored, writerPage);
      return;
    }
    offered = stored;
    offeredFrom = writerPage;
    setStatus("Not saved: changed in another window", "error");
    showNotice();
  }

  function adopt(stored, writerPage) {
    state.turns = stored.turns;
    state.editor = stored.editor;
    state.editor_draft_id = stored.editor_draft_id;
    state.version += 1;
    savedVersion = state.version; // the server holds exactly this
    typedHere = false;
    // Work of a newer page (another window): what is typed here next must replace it.
    takeOverNext = writerPage > page;
    editing = null;
    offered = null;
    hideNotice();
    els.editor.value = state.editor;
    render();
    setStatus("Saved at " + utcStamp(null, true) + " (newer work from another window)", "saved");
    contextChanged();
  }

  var offered = null;
  var offeredFrom = 0;
  var notice = null;

  function showNotice() {
    if (!notice) {
      notice = el("div", "form-errors demo-conflict");
      notice.id = "demo-conflict";
      notice.setAttribute("role", "alert");
      notice.appendChild(el("p", "", "This task was changed in another window since this one " +
        "last saved. Load that version, or keep this window's text (it then replaces the " +
        "other). Submitting sends what this window shows."));
      var row = el("div", "row");
      var load = el("button", "btn btn-secondary btn-small", "Load the other window's version");
      load.type = "button";
      load.id = "demo-conflict-load";
      load.addEventListener("click", function () { if (offered) adopt(offered, offeredFrom); });
      var keep = el("button", "btn btn-primary btn-small", "Keep this window's text");
      keep.type = "button";
      keep.id = "demo-conflict-keep";
      keep.addEventListener("click", function () {
        takeOverNext = true;
        state.version += 1;
        save();
      });
      row.appendChild(load);
      row.appendChild(keep);
      notice.appendChild(row);
      els.card.parentNode.insertBefore(notice, els.card);
    }
    notice.hidden = false;
  }

  function hideNotice() {
    if (notice) notice.hidden = true;
  }

  // Where the stored work stands: asked when the page is ready (a save the previous page sent
  // as it unloaded may land just after this page loaded) and when the tab comes back.
  function sync() {
    if (stopped) return;
    fetch(config.urls.autosave + "?page=" + page, { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) {
        if (!data || stopped || data.revision <= knownRevision) return;
        knownRevision = data.revision;
        if (data.writer_page !== page && data.state) otherWork(data.state, data.writer_page);
      }, function () {});
  }

  // Leaving or reloading: send what is not saved yet in a way that outlives the page.
  function flush() {
    if (stopped || state.version === savedVersion || beaconVersion === state.version) return;
    beaconVersion = state.version;
    var body = JSON.stringify(payload(true));
    var form = new FormData();
    form.append("csrfmiddlewaretoken", csrf);
    form.append("data", body);
    if (navigator.sendBeacon && body.length < 60000 &&
        navigator.sendBeacon(config.urls.autosave, form)) {
      return;
    }
    fetch(config.urls.autosave, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
      body: body,
      keepalive: body.length < 60000,
    }).catch(function () {});
  }

  // Every few seconds while there are unsaved changes; the lease is renewed while the trainer
  // is active even if nothing changed (reading guidelines, thinking about a reply).
  setInterval(function () {
    if (state.version !== savedVersion) {
      save();
    } else if (lastActivityAt > lastSaveAt && Date.now() - lastSaveAt > 60000) {
      save({ renew: true });
    }
  }, config.saveEveryMs);

  ["keydown", "pointerdown", "scroll"].forEach(function (name) {
    document.addEventListener(name, function () { lastActivityAt = Date.now(); }, { passive: true });
  });

  // ------------------------------------------------------------ wiring

  els.editor.addEventListener("input", function () {
    state.editor = els.editor.value;
    if (!state.editor.trim()) state.editor_draft_id = null; // cleared: not from the draft
    showError("");
    changed();
    updateCount();
  });
  els.editor.addEventListener("blur", function () { save(); });
  els.editor.addEventListener("keydown", function (event) {
    if ((event.ctrlKey || event.metaKey) && event.key === "Enter") {
      event.preventDefault();
      if (addTurn()) {
        save();
        contextChanged();
      }
    }
  });
  els.add.addEventListener("click", function () {
    if (addTurn()) {
      save();
      contextChanged();
    }
    els.editor.focus();
  });

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") {
      save({ keepalive: true });
    } else {
      sync();
    }
  });
  window.addEventListener("pagehide", flush);
  window.addEventListener("beforeunload", function (event) {
    if (!stopped && saveFailed && state.version !== savedVersion) event.preventDefault();
    flush();
  });

  els.submitForm.addEventListener("submit", function (event) {
    if (editing !== null) {
      event.preventDefault();
      showError("Save or cancel the turn you are editing first.");
      return;
    }
    if (els.editor.value.trim() && !addTurn()) {
      event.preventDefault();
      return;
    }
    els.submitState.value = JSON.stringify(payload(true));
    stopped = true; // the submit stores this state itself
    setTimeout(function () { els.submit.disabled = true; }, 0);
  });
  if (els.skipForm) {
    els.skipForm.addEventListener("submit", function () { stopped = true; });
  }

  render();
  if (nextRole() === "assistant" && !isFull() && els.draftBody &&
      !els.draftBody.querySelector("[data-generation]")) {
    requestDraft(true);
  } else if (nextRole() !== "assistant") {
    contextChanged();
  }
  if (!document.getElementById("demo-errors")) els.editor.focus({ preventScroll: true });
  sync();
  setTimeout(sync, 1000); // once more, for a save the previous page sent just before it went
  // Tells browser tests (and anything scripted) that the editor's handlers are in place.
  document.documentElement.dataset.demoReady = "true";
})();
