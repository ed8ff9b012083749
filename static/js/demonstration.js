// The demonstration page: the trainer's turns live in the page and are autosaved to the server.
//
// The server is the source of truth. The page starts from the autosave rendered into
// #demo-state and posts the whole state back every few seconds while it has unsaved changes, when
// the editor loses focus and when the tab is hidden; reopening the task anywhere restores it.
// Each page load is one "writer": the server refuses a save from another window that has not
// seen the latest version, so a stale tab cannot overwrite newer work. Drafts come through htmx
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
    version: loaded.version,
    writer: Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 10),
  };
  var base = loaded.version; // the stored version this page last loaded or saved
  var savedVersion = loaded.version;
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
    lease: document.getElementById("demo-lease"),
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
      item.appendChild(el("div", "turn-body", turn.text));
    }
    return item;
  }

  function editBox(turn, index, name) {
    var box = el("div", "demo-turn-edit");
    var area = el("textarea");
    area.value = turn.text;
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
      text: text,
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
    if (state.turns[index].text !== text) {
      state.turns[index].text = text;
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

  document.body.addEventListener("htmx:configRequest", function (event) {
    if (event.detail.elt !== els.draftButton) return;
    event.detail.parameters.state = JSON.stringify(payload());
    event.detail.parameters.mode = draftMode;
    draftMode = "";
  });

  // The draft view stores the state it was sent; it tells us which version that was.
  document.body.addEventListener("demo:saved", function (event) {
    var detail = event.detail || {};
    var version = detail.version !== undefined ? detail.version : (detail.value || {}).version;
    if (typeof version === "number") acknowledge(version, version);
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

  function payload() {
    return {
      turns: state.turns,
      editor: state.editor,
      editor_draft_id: state.editor_draft_id,
      version: state.version,
      writer: state.writer,
      base: base,
    };
  }

  function clock(iso, seconds) {
    var date = iso ? new Date(iso) : new Date();
    var parts = [date.getHours(), date.getMinutes()].concat(seconds ? [date.getSeconds()] : []);
    return parts.map(function (n) { return String(n).padStart(2, "0"); }).join(":");
  }

  function setStatus(text, kind) {
    els.status.textContent = text;
    els.status.dataset.state = kind || "";
  }

  function acknowledge(sent, stored) {
    savedVersion = Math.max(savedVersion, sent);
    base = stored;
    saveFailed = false;
    lastSaveAt = Date.now();
    if (state.version === savedVersion) setStatus("Saved at " + clock(null, true), "saved");
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
    var body = JSON.stringify(payload());
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
            acknowledge(sent, data.version);
            if (data.lease_expires_at && els.lease) {
              els.lease.dateTime = data.lease_expires_at;
              els.lease.textContent = clock(data.lease_expires_at);
            }
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
    if (document.visibilityState === "hidden") save({ keepalive: true });
  });
  window.addEventListener("pagehide", function () { save({ keepalive: true }); });
  window.addEventListener("beforeunload", function (event) {
    if (!stopped && saveFailed && state.version !== savedVersion) event.preventDefault();
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
    els.submitState.value = JSON.stringify(payload());
    stopped = true; // the submit stores this state itself
    setTimeout(function () { els.submit.disabled = true; }, 0);
  });
  if (els.skipForm) {
    els.skipForm.addEventListener("submit", function () { stopped = true; });
  }

  render();
  if (els.lease) els.lease.textContent = clock(els.lease.dateTime); // in the trainer's time zone
  if (nextRole() === "assistant" && !isFull() && els.draftBody &&
      !els.draftBody.querySelector("[data-generation]")) {
    requestDraft(true);
  } else if (nextRole() !== "assistant") {
    contextChanged();
  }
  if (!document.getElementById("demo-errors")) els.editor.focus({ preventScroll: true });
  // Tells browser tests (and anything scripted) that the editor's handlers are in place.
  document.documentElement.dataset.demoReady = "true";
})();
