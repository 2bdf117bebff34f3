// Chat with an agent over the websocket (protocol v1). Without JavaScript the page still shows the
// conversation as the server rendered it; this adds sending, streaming, stopping and retrying,
// reconnecting, earlier messages, and the Markdown of every message.
(function () {
  "use strict";

  // ---------------------------------------------------------------- safe Markdown
  // Everything is HTML-escaped first; only then is a small subset of Markdown turned into tags,
  // so no character of the message can ever become markup of its own. Links are made only for
  // http, https and mailto.

  var ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  var SAFE_URL = /^(?:https?:\/\/|mailto:)/i;
  var LINK_REL = ' rel="nofollow noopener noreferrer" target="_blank"';

  function escapeHtml(text) {
    return String(text).replace(/[&<>"']/g, function (c) { return ESCAPES[c]; });
  }

  function renderInline(escaped) {
    var slots = [];
    function keep(html) {
      slots.push(html);
      return "\u0000" + (slots.length - 1) + "\u0000";
    }
    function emphasis(text) {
      return text
        .replace(/\*\*(?=\S)([\s\S]*?\S)\*\*/g, "<strong>$1</strong>")
        .replace(/(^|[^\w])__(?=\S)([\s\S]*?\S)__(?!\w)/g, "$1<strong>$2</strong>")
        .replace(/(^|[^*])\*(?=[^\s*])([^*\n]*?[^\s*])\*(?!\*)/g, "$1<em>$2</em>")
        .replace(/(^|[^\w])_(?=[^\s_])([^_\n]*?[^\s_])_(?!\w)/g, "$1<em>$2</em>");
    }
    function trimUrl(url) {
      // Sentence punctuation after a bare address is not part of it.
      var match = /^(.*?)((?:[.,:;!?)]|&#39;|&quot;)*)$/.exec(url);
      return [match[1], match[2]];
    }
    var text = escaped
      .replace(/(`+)([^`\n]|[^`\n][^\n]*?[^`\n])\1(?!`)/g, function (_, ticks, code) {
        return keep("<code>" + code.replace(/^ (.+) $/, "$1") + "</code>");
      })
      .replace(/\[([^\]\n]+)\]\(([^\s)]+)\)/g, function (whole, label, url) {
        if (!SAFE_URL.test(url)) { return whole; }
        return keep('<a href="' + url + '"' + LINK_REL + ">" + emphasis(label) + "</a>");
      })
      .replace(/&lt;((?:https?:\/\/|mailto:)(?:[^\s&]|&amp;)+)&gt;/gi, function (_, url) {
        return keep('<a href="' + url + '"' + LINK_REL + ">" + url + "</a>");
      })
      .replace(/(^|[\s(]|&quot;|&#39;)(https?:\/\/(?:[^\s&]|&amp;|&#39;)+)/gi, function (_, before, found) {
        var parts = trimUrl(found);
        if (!/^https?:\/\/[^/.]+\.[^/]/i.test(parts[0]) && !/^https?:\/\/localhost/i.test(parts[0])) {
          return before + found;
        }
        return before + keep('<a href="' + parts[0] + '"' + LINK_REL + ">" + parts[0] + "</a>") + parts[1];
      });
    text = emphasis(text);
    for (var pass = 0; pass < 3 && text.indexOf("\u0000") !== -1; pass += 1) {
      text = text.replace(/\u0000(\d+)\u0000/g, function (_, index) { return slots[Number(index)]; });
    }
    return text;
  }

  var FENCE = /^ {0,3}(`{3,}|~{3,})\s*([\w+#.-]*)\s*$/;
  var HEADING = /^ {0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$/;
  var BULLET = /^\s{0,3}[-*+]\s+(.*)$/;
  var NUMBERED = /^\s{0,3}(\d{1,9})[.)]\s+(.*)$/;

  function listItem(line) {
    var match = BULLET.exec(line);
    if (match) { return { tag: "ul", text: match[1] }; }
    match = NUMBERED.exec(line);
    if (match) { return { tag: "ol", text: match[2], number: Number(match[1]) }; }
    return null;
  }

  function renderMarkdown(source) {
    var lines = escapeHtml(String(source || "").replace(/\u0000/g, "").replace(/\r\n?/g, "\n")).split("\n");
    var html = [];
    var paragraph = [];
    var list = null;

    function closeParagraph() {
      if (paragraph.length) {
        html.push("<p>" + renderInline(paragraph.join("\n")).replace(/\n/g, "<br>") + "</p>");
        paragraph = [];
      }
    }
    function closeList() {
      if (!list) { return; }
      var start = list.tag === "ol" && list.start !== 1 ? ' start="' + list.start + '"' : "";
      html.push("<" + list.tag + start + ">" + list.items.map(function (item) {
        return "<li>" + renderInline(item).replace(/\n/g, "<br>") + "</li>";
      }).join("") + "</" + list.tag + ">");
      list = null;
    }

    for (var i = 0; i < lines.length; i += 1) {
      var line = lines[i];
      var fence = FENCE.exec(line);
      if (fence) {
        closeParagraph();
        closeList();
        var code = [];
        var closing = new RegExp("^ {0,3}" + (fence[1][0] === "`" ? "`" : "~") + "{" + fence[1].length + ",}\\s*$");
        for (i += 1; i < lines.length && !closing.test(lines[i]); i += 1) { code.push(lines[i]); }
        var language = fence[2] ? ' class="language-' + fence[2].replace(/[^\w-]/g, "") + '"' : "";
        html.push("<pre><code" + language + ">" + code.join("\n") + "</code></pre>");
        continue;
      }
      if (!line.trim()) {
        closeParagraph();
        var next = i + 1 < lines.length ? listItem(lines[i + 1]) : null;
        if (list && !(next && next.tag === list.tag)) { closeList(); }
        continue;
      }
      var heading = HEADING.exec(line);
      if (heading) {
        closeParagraph();
        closeList();
        // The page's own headings are h1 and h2; a message's start below them.
        var level = Math.min(6, heading[1].length + 2);
        html.push("<h" + level + ">" + renderInline(heading[2]) + "</h" + level + ">");
        continue;
      }
      var item = listItem(line);
      if (item) {
        closeParagraph();
        if (list && list.tag !== item.tag) { closeList(); }
        if (!list) { list = { tag: item.tag, start: item.number || 1, items: [] }; }
        list.items.push(item.text);
        continue;
      }
      if (list && /^\s+\S/.test(line)) {
        list.items[list.items.length - 1] += "\n" + line.trim();
        continue;
      }
      closeList();
      paragraph.push(line);
    }
    closeParagraph();
    closeList();
    return html.join("");
  }

  window.AgentChat = { renderMarkdown: renderMarkdown };

  // ---------------------------------------------------------------- the page

  var root = document.getElementById("chat");
  var log = document.getElementById("chat-log");
  if (!root || !log) { return; }

  function renderBody(body, text) {
    body.innerHTML = renderMarkdown(text);
    body.classList.add("is-rendered");
  }

  Array.prototype.forEach.call(log.querySelectorAll("[data-markdown]"), function (body) {
    body.chatSource = body.textContent;  // the stored text, before it becomes Markdown
    renderBody(body, body.chatSource);
  });

  var sidebar = document.getElementById("chat-sidebar");
  if (sidebar && window.matchMedia && window.matchMedia("(max-width: 700px)").matches && !sidebar.hasAttribute("data-searching")) {
    sidebar.open = false;  // on a phone the conversation comes first; the list is one tap away
  }

  var live = root.getAttribute("data-live") === "true" && "WebSocket" in window;
  if (!live) { return; }

  var strings = {};
  try { strings = JSON.parse(document.getElementById("chat-strings").textContent); } catch (error) { strings = {}; }
  function t(key, values) {
    var text = strings[key] || key;
    Object.keys(values || {}).forEach(function (name) {
      text = text.split("%(" + name + ")s").join(String(values[name]));
    });
    return text;
  }

  var form = document.getElementById("chat-composer");
  var input = document.getElementById("chat-input");
  var sendButton = document.getElementById("chat-send");
  var stopButton = document.getElementById("chat-stop");
  var statusLine = document.getElementById("chat-status");
  var reconnectButton = document.getElementById("chat-reconnect");
  var typing = document.getElementById("chat-typing");
  var announcer = document.getElementById("chat-announcer");
  var offlineNote = document.getElementById("chat-offline");
  var conversationTitle = document.getElementById("chat-conversation-title");
  var conversationList = document.getElementById("chat-conversations");
  var earlier = document.getElementById("chat-earlier");

  var conversationId = root.getAttribute("data-conversation") || null;
  var base = root.getAttribute("data-base");
  var socketPath = root.getAttribute("data-socket");

  var FATAL = { 4401: "signedOut", 4403: "forbidden", 4404: "missing", 4409: "notServing", 4423: "suspended" };
  var BACKOFF_FIRST_MS = 1000;
  var BACKOFF_CAP_MS = 30000;
  var PING_EVERY_MS = 25000;
  var SILENCE_LIMIT_MS = 60000;
  var STABLE_AFTER_MS = 10000;
  var GAP_WAIT_MS = 1500;
  var HISTORY_LIMIT = 30;

  var socket = null;
  var connected = false;
  var stopped = false;  // a close that reconnecting cannot fix
  var attempt = 0;
  var reconnectTimer = null;
  var stableTimer = null;
  var lastHeard = 0;
  var lastError = null;
  var loadingEarlier = false;
  var outbox = [];  // messages sent but not acknowledged, re-sent with the same id after a reconnect
  var replies = {};  // reply id → {el, text, nextSeq, pending, active}
  var retrying = {};  // reply ids asked to be tried again, until the server restarts them
  var cancelling = {};
  var maxFrameBytes = 0;

  // ------------------------------------------------ status and controls

  function setStatus(text, showReconnect) {
    statusLine.textContent = text;
    reconnectButton.hidden = !showReconnect;
  }

  function announce(text) {
    announcer.textContent = "";
    window.setTimeout(function () { announcer.textContent = text; }, 50);
  }

  function activeReplies() {
    return Object.keys(replies).filter(function (id) { return replies[id].active; });
  }

  function refreshControls() {
    var active = activeReplies();
    var waiting = active.some(function (id) { return !replies[id].text; });
    typing.hidden = !waiting;
    var stopHadFocus = document.activeElement === stopButton;
    stopButton.hidden = !active.length;
    if (stopHadFocus && stopButton.hidden) { input.focus(); }
    // Screen readers hold a busy log's changes and read the finished reply once, not every delta.
    log.setAttribute("aria-busy", active.length ? "true" : "false");
    sendButton.disabled = !connected;
    Array.prototype.forEach.call(log.querySelectorAll("[data-retry]"), function (button) {
      button.hidden = false;
      // aria-disabled, not disabled: a disabled button loses the keyboard focus.
      button.setAttribute("aria-disabled", !connected || retrying[button.getAttribute("data-retry")] ? "true" : "false");
    });
  }

  function nearBottom() {
    return log.scrollHeight - log.scrollTop - log.clientHeight < 48;
  }

  function toBottom() {
    log.scrollTop = log.scrollHeight;
  }

  function newClientId() {
    if (window.crypto && window.crypto.randomUUID) { return window.crypto.randomUUID(); }
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  // ------------------------------------------------ messages in the log

  function cssEscape(value) {
    return window.CSS && window.CSS.escape ? window.CSS.escape(String(value)) : String(value).replace(/[^\w-]/g, "");
  }

  function messageId(el) {
    return el.hasAttribute("data-id") ? Number(el.getAttribute("data-id")) : null;
  }

  function findMessage(id) {
    return log.querySelector('.chat-message[data-id="' + Number(id) + '"]');
  }

  function insertInOrder(el, id) {
    // Stored messages in id order; messages not yet acknowledged stay last.
    var children = log.querySelectorAll(".chat-message");
    for (var i = 0; i < children.length; i += 1) {
      var other = messageId(children[i]);
      if (other === null || other > id) {
        log.insertBefore(el, children[i]);
        return;
      }
    }
    log.appendChild(el);
  }

  function formatTime(iso) {
    var date = iso ? new Date(iso) : new Date();
    try {
      return new Intl.DateTimeFormat(document.documentElement.lang || undefined, { dateStyle: "short", timeStyle: "short" }).format(date);
    } catch (error) {
      return date.toLocaleString();
    }
  }

  function createMessage(role, createdAt) {
    var el = document.createElement("article");
    el.className = "chat-message chat-role-" + role;
    el.setAttribute("data-role", role);
    var head = document.createElement("header");
    head.className = "chat-message-head";
    var author = document.createElement("span");
    author.className = "chat-author";
    author.textContent = role === "user" ? t("you") : t("agent");
    var time = document.createElement("time");
    time.className = "muted";
    time.setAttribute("datetime", createdAt || new Date().toISOString());
    time.textContent = formatTime(createdAt);
    head.appendChild(author);
    head.appendChild(document.createTextNode(" "));
    head.appendChild(time);
    var body = document.createElement("div");
    body.className = "chat-body markdown is-rendered";
    el.appendChild(head);
    el.appendChild(body);
    var empty = document.getElementById("chat-empty");
    if (empty) { empty.remove(); }
    return el;
  }

  function setStatusOf(el, status) {
    el.className = el.className.replace(/\bchat-status-\S+/g, "").trim() + " chat-status-" + status;
    el.setAttribute("data-status", status);
  }

  function setOutcome(el, status, errorText, retryable) {
    var old = el.querySelector(".chat-outcome");
    if (old) {
      if (old.contains(document.activeElement)) { input.focus(); }
      old.remove();
    }
    if (status !== "failed" && status !== "cancelled" && status !== "not-sent") { return; }
    var box = document.createElement("div");
    box.className = "chat-outcome";
    var text = document.createElement("p");
    text.className = status === "cancelled" ? "muted" : "error";
    text.textContent = errorText;
    box.appendChild(text);
    if (retryable && status !== "not-sent") {
      var button = document.createElement("button");
      button.type = "button";
      button.className = "button button-secondary";
      button.setAttribute("data-retry", messageId(el));
      button.textContent = t("tryAgain");
      button.setAttribute("aria-disabled", connected ? "false" : "true");
      box.appendChild(button);
    }
    el.appendChild(box);
  }

  function toolList(el) {
    var list = el.querySelector(".chat-tools");
    if (!list) {
      list = document.createElement("ul");
      list.className = "chat-tools";
      el.insertBefore(list, el.querySelector(".chat-body"));
    }
    return list;
  }

  function replyState(id, el) {
    var key = String(id);
    if (!replies[key]) {
      replies[key] = { el: el, text: "", nextSeq: 1, pending: {}, active: false, frame: 0, gapTimer: 0 };
    } else if (el) {
      replies[key].el = el;
    }
    return replies[key];
  }

  function paint(state) {
    if (state.frame) { return; }
    state.frame = window.requestAnimationFrame(function () {
      state.frame = 0;
      var follow = nearBottom();
      renderBody(state.el.querySelector(".chat-body"), state.text);
      if (follow) { toBottom(); }
    });
  }

  function watchGap(state, replyId) {
    // A delta that never comes (the channel layer drops events for a socket that lags): after a
    // moment, ask for the reply as stored and carry on from the next delta.
    if (state.gapTimer || !Object.keys(state.pending).length) { return; }
    state.gapTimer = window.setTimeout(function () {
      state.gapTimer = 0;
      if (!state.active || !Object.keys(state.pending).length || !conversationId) { return; }
      state.pending = {};
      state.nextSeq = null;
      transmit({ type: "resume", conversation_id: Number(conversationId), after_id: Number(replyId) - 1 });
    }, GAP_WAIT_MS);
  }

  function startReply(state) {
    state.active = true;
    setStatusOf(state.el, state.text ? "streaming" : "pending");
    setOutcome(state.el, "pending");
    refreshControls();
  }

  function finishReply(state, status, content, error) {
    state.active = false;
    state.pending = {};
    if (typeof content === "string") { state.text = content; }
    setStatusOf(state.el, status);
    if (state.frame) { window.cancelAnimationFrame(state.frame); state.frame = 0; }
    var follow = nearBottom();
    renderBody(state.el.querySelector(".chat-body"), state.text);
    if (status === "failed") {
      setOutcome(state.el, "failed", error ? error.text : t("replyFailed"), error ? error.retryable : true);
    } else if (status === "cancelled") {
      setOutcome(state.el, "cancelled", t("stopped"), true);
    } else {
      setOutcome(state.el, status);
    }
    if (follow) { toBottom(); }
    refreshControls();
  }

  function ensureReply(replyId, after) {
    var el = findMessage(replyId);
    if (!el) {
      el = createMessage("assistant");
      el.setAttribute("data-id", replyId);
      setStatusOf(el, "pending");
      if (after && after.nextSibling) {
        log.insertBefore(el, after.nextSibling);
      } else if (after) {
        log.appendChild(el);
      } else {
        insertInOrder(el, Number(replyId));
      }
    }
    return replyState(replyId, el);
  }

  function applyStored(event) {
    // A stored message (resume, history, a duplicate, or the user's message from another tab).
    // Other conversations of this user with this agent (other tabs) are not shown here.
    if (!conversationId || String(event.conversation_id) !== String(conversationId)) { return null; }
    var el = findMessage(event.id);
    if (!el) {
      el = createMessage(event.role, event.created_at);
      el.setAttribute("data-id", event.id);
      insertInOrder(el, Number(event.id));
    }
    if (event.reply_to) { el.setAttribute("data-reply-to", event.reply_to); }
    if (event.role !== "assistant") {
      setStatusOf(el, event.status);
      renderBody(el.querySelector(".chat-body"), event.content);
      return el;
    }
    var state = replyState(event.id, el);
    if (event.status === "pending" || event.status === "streaming") {
      var previous = el.getAttribute("data-status");
      if (previous === "failed" || previous === "cancelled") {
        // Tried again: the reply starts over.
        var tools = el.querySelector(".chat-tools");
        if (tools) { tools.remove(); }
        state.text = "";
        state.active = false;
      }
      delete retrying[String(event.id)];
      var stored = event.content || "";
      if (!state.active || stored.length > state.text.length) {
        // Joining a reply midway: its next delta sets where the sequence stands, and the
        // final ``done`` replaces whatever was missed.
        state.text = stored;
        state.nextSeq = null;
        state.pending = {};
        renderBody(el.querySelector(".chat-body"), state.text);
      }
      if (!state.active) { startReply(state); }
    } else {
      var error = event.error ? { text: t("replyFailed") + (event.error.message ? " " + event.error.message : ""), retryable: true } : null;
      finishReply(state, event.status, event.content, event.status === "failed" ? error : null);
    }
    return el;
  }

  // ------------------------------------------------ the conversation

  function adoptConversation(id, title) {
    conversationId = String(id);
    root.setAttribute("data-conversation", conversationId);
    var url = base + conversationId + "/";
    if (window.history && window.history.replaceState) { window.history.replaceState(null, "", url); }
    if (title) {
      conversationTitle.textContent = title;
      document.title = title + " · " + document.title;
    }
    if (conversationList) {
      var empty = conversationList.querySelector(".chat-conversations-empty");
      if (empty) { empty.remove(); }
      Array.prototype.forEach.call(conversationList.querySelectorAll("[aria-current]"), function (a) { a.removeAttribute("aria-current"); });
      var item = document.createElement("li");
      var link = document.createElement("a");
      link.href = url;
      link.textContent = title || t("newConversation");
      link.setAttribute("aria-current", "page");
      item.appendChild(link);
      conversationList.insertBefore(item, conversationList.firstChild);
    }
  }

  function lastStoredId() {
    // After a reconnect the server sends what was stored after this id. A reply that was still
    // being written is asked for again, so its final state arrives too.
    var highest = 0;
    var unfinished = null;
    Array.prototype.forEach.call(log.querySelectorAll(".chat-message[data-id]"), function (el) {
      var id = messageId(el);
      highest = Math.max(highest, id);
      var status = el.getAttribute("data-status");
      if ((status === "pending" || status === "streaming") && (unfinished === null || id < unfinished)) {
        unfinished = id;
      }
    });
    return unfinished !== null ? unfinished - 1 : highest;
  }

  function transmit(payload) {
    if (!connected || !socket || socket.readyState !== WebSocket.OPEN) { return false; }
    socket.send(JSON.stringify(payload));
    return true;
  }

  function flushOutbox() {
    for (var i = 0; i < outbox.length; i += 1) {
      var item = outbox[i];
      if (item.sent) { continue; }
      if (item.holdUntil > Date.now()) { break; }  // later messages wait: the order is kept
      // A second message to a conversation that does not exist yet waits for the first's ack,
      // or it would start a conversation of its own.
      if (!conversationId && i > 0) { break; }
      var payload = { type: "message", content: item.content, client_msg_id: item.clientMsgId };
      if (conversationId) { payload.conversation_id = Number(conversationId); }
      item.sent = transmit(payload);
      if (!item.sent) { break; }
    }
  }

  function outboxItem(clientMsgId) {
    for (var i = 0; i < outbox.length; i += 1) {
      if (outbox[i].clientMsgId === clientMsgId) { return outbox[i]; }
    }
    return null;
  }

  function dropFromOutbox(item) {
    outbox = outbox.filter(function (other) { return other !== item; });
  }

  function notSent(item, reason) {
    dropFromOutbox(item);
    setStatusOf(item.el, "not-sent");
    setOutcome(item.el, "not-sent", t("notSent", { reason: reason }), false);
    if (!input.value.trim()) { input.value = item.content; }
    announce(t("notSent", { reason: reason }));
    flushOutbox();
  }

  function sendMessage() {
    var content = input.value;
    if (!content.trim() || !connected) { return; }
    var size = new TextEncoder().encode(JSON.stringify({ type: "message", content: content, client_msg_id: "x".repeat(36), conversation_id: 1e15 })).length;
    if (maxFrameBytes && size > maxFrameBytes) {
      announce(t("tooLarge"));
      setStatus(t("tooLarge"), false);
      return;
    }
    setStatus(t("connected"), false);
    var el = createMessage("user");
    setStatusOf(el, "sending");
    renderBody(el.querySelector(".chat-body"), content);
    var clientMsgId = newClientId();
    el.setAttribute("data-client-id", clientMsgId);
    log.appendChild(el);
    outbox.push({ clientMsgId: clientMsgId, content: content, el: el, sent: false, holdUntil: 0 });
    flushOutbox();
    input.value = "";
    fitInput();
    input.focus();
    toBottom();
    announce(t("sent"));
  }

  // ------------------------------------------------ protocol events

  var handlers = {
    hello: function (event) {
      connected = true;
      // The backoff starts over only once a connection has held: a server that accepts and
      // drops at once must not be hammered.
      window.clearTimeout(stableTimer);
      stableTimer = window.setTimeout(function () { attempt = 0; }, STABLE_AFTER_MS);
      lastError = null;
      setStatus(t("connected"), false);
      input.disabled = false;
      if (event.deployment && offlineNote) { offlineNote.hidden = !event.deployment.offline; }
      maxFrameBytes = (event.limits && event.limits.max_frame_bytes) || 0;
      if (conversationId) {
        transmit({ type: "resume", conversation_id: Number(conversationId), after_id: lastStoredId() });
      }
      outbox.forEach(function (item) { item.sent = false; });
      flushOutbox();
      refreshControls();
    },
    ack: function (event) {
      var item = outboxItem(event.client_msg_id);
      var el = item ? item.el : log.querySelector('[data-client-id="' + cssEscape(event.client_msg_id) + '"]');
      if (item) { dropFromOutbox(item); }
      if (!conversationId) { adoptConversation(event.conversation_id, event.conversation_title); }
      if (el) {
        if (findMessage(event.message_id) && findMessage(event.message_id) !== el) {
          el.remove();  // the stored copy arrived first
          el = findMessage(event.message_id);
        } else {
          el.setAttribute("data-id", event.message_id);
          setStatusOf(el, "complete");
        }
      }
      var state = ensureReply(event.reply_id, el);
      // A duplicate's reply arrives as stored messages; a new one streams from here.
      if (!event.duplicate && !state.active) {
        state.text = "";
        state.nextSeq = 1;
        startReply(state);
      }
      toBottom();
      flushOutbox();
    },
    message: function (event) {
      var follow = nearBottom();
      applyStored(event);
      if (follow) { toBottom(); }
    },
    delta: function (event) {
      var state = replies[String(event.reply_id)];
      if (!state || !state.el) { return; }
      if (!state.active) { startReply(state); }
      if (state.nextSeq === null) { state.nextSeq = event.seq; }
      if (event.seq < state.nextSeq) { return; }  // already applied
      state.pending[event.seq] = event.text;
      var wasEmpty = !state.text;
      while (Object.prototype.hasOwnProperty.call(state.pending, state.nextSeq)) {
        state.text += state.pending[state.nextSeq];
        delete state.pending[state.nextSeq];
        state.nextSeq += 1;
      }
      if (wasEmpty && state.text) {
        setStatusOf(state.el, "streaming");
        refreshControls();
      }
      paint(state);
      watchGap(state, event.reply_id);
    },
    tool: function (event) {
      var state = replies[String(event.reply_id)];
      if (!state || !state.el) { return; }
      var label = String(event.name || "").replace(/_/g, " ");
      var list = toolList(state.el);
      if (event.stage === "call") {
        var item = document.createElement("li");
        item.setAttribute("data-tool", event.name);
        item.textContent = t("usingTool", { tool: label });
        list.appendChild(item);
        return;
      }
      var open = list.querySelectorAll('li[data-tool="' + String(event.name).replace(/"/g, "") + '"]:not([data-done])');
      var line = open.length ? open[0] : list.appendChild(document.createElement("li"));
      line.setAttribute("data-done", "");
      line.textContent = event.error ? t("toolFailed", { tool: label }) : t("usedTool", { tool: label });
    },
    revised: function (event) {
      var state = replies[String(event.reply_id)];
      if (!state) { return; }
      state.text = event.content;
      paint(state);
    },
    done: function (event) {
      var state = replies[String(event.reply_id)];
      if (!state || !state.el) { return; }
      delete cancelling[String(event.reply_id)];
      var wasActive = state.active;
      finishReply(state, event.status, event.content);
      // A done may repeat what a resume already showed; it is said once.
      if (wasActive) { announce(event.status === "cancelled" ? t("stopped") : t("replyDone")); }
    },
    error: function (event) {
      lastError = event;
      var replyKey = event.reply_id ? String(event.reply_id) : null;
      if (replyKey && retrying[replyKey]) {
        // "Try again" was refused (rate limit, agent paused…): the reply stays as it was.
        delete retrying[replyKey];
        refreshControls();
        announce(event.message);
        setStatus(event.message, false);
        return;
      }
      if (replyKey && cancelling[replyKey]) {
        delete cancelling[replyKey];
        if (event.code === "not_streaming" || event.code === "not_found") { return; }  // it had ended
      }
      if (replyKey) {
        var state = replies[replyKey];
        if (state && state.el) {
          finishReply(state, "failed", null, { text: event.message, retryable: event.retryable !== false });
          announce(event.message);
        }
        return;
      }
      var item = event.client_msg_id ? outboxItem(event.client_msg_id) : null;
      if (!item && !event.client_msg_id && event.code === "too_large") {
        item = outbox.filter(function (o) { return o.sent; })[0] || null;
      }
      if (!item) {
        if (loadingEarlier && earlier) {
          loadingEarlier = false;
          earlier.textContent = t("loadEarlier");
          earlier.removeAttribute("aria-disabled");
        }
        if (event.message) { announce(event.message); }
        return;
      }
      if (event.retry_after) {
        // Rate limited: the same message (same id) goes again when the server says it may.
        var seconds = Math.max(1, Math.ceil(Number(event.retry_after)));
        item.sent = false;
        item.holdUntil = Date.now() + seconds * 1000;
        setStatus(t("rateLimited", { seconds: seconds }), false);
        window.setTimeout(function () {
          if (connected) { setStatus(t("connected"), false); }
          flushOutbox();
        }, seconds * 1000 + 50);
        return;
      }
      notSent(item, event.message || event.code);
    },
    resumed: function (event) {
      // More was stored than one answer holds: ask for the rest.
      if (event.more && conversationId && String(event.conversation_id) === String(conversationId)) {
        transmit({ type: "resume", conversation_id: Number(conversationId), after_id: event.last_id });
      }
    },
    history: function (event) {
      loadingEarlier = false;
      var before = log.scrollHeight - log.scrollTop;
      (event.messages || []).forEach(applyStored);
      log.scrollTop = log.scrollHeight - before;  // the messages read before stay in view
      if (earlier) {
        if (event.has_more) {
          earlier.textContent = t("loadEarlier");
          earlier.removeAttribute("aria-disabled");
          var oldest = log.querySelector(".chat-message[data-id]");
          if (oldest) { earlier.href = "?before=" + oldest.getAttribute("data-id"); }
          announce(t("earlierLoaded"));
        } else {
          var hadFocus = document.activeElement === earlier;
          earlier.parentNode.remove();
          earlier = null;
          if (hadFocus) { log.focus(); }
          announce(t("noEarlier"));
        }
      }
    },
    pong: function () {}
  };

  // ------------------------------------------------ the connection

  function connect() {
    window.clearTimeout(reconnectTimer);
    reconnectTimer = null;
    if (stopped || (socket && socket.readyState <= WebSocket.OPEN)) { return; }
    setStatus(t("connecting"), false);
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var current = new WebSocket(scheme + window.location.host + socketPath);
    socket = current;
    current.onmessage = function (message) {
      if (current !== socket) { return; }
      lastHeard = Date.now();
      var event;
      try { event = JSON.parse(message.data); } catch (error) { return; }
      if (event && handlers[event.type]) { handlers[event.type](event); }
    };
    current.onopen = function () { lastHeard = Date.now(); };
    current.onclose = function (close) {
      if (current !== socket) { return; }
      socket = null;
      onClosed(close.code);
    };
  }

  function onClosed(code) {
    connected = false;
    loadingEarlier = false;
    window.clearTimeout(stableTimer);
    // Requests without an answer are lost with the connection; their buttons work again.
    retrying = {};
    cancelling = {};
    outbox.forEach(function (item) { item.sent = false; });
    Object.keys(replies).forEach(function (id) {
      // What streamed is kept; the resume after the reconnect and the final ``done`` bring the rest.
      if (replies[id].active) {
        replies[id].active = false;
        replies[id].nextSeq = null;
        replies[id].pending = {};
      }
    });
    refreshControls();
    if (FATAL[code]) {
      stopped = true;
      input.disabled = true;
      var text = t(FATAL[code]);
      if (code === 4409 && lastError && lastError.message) { text = lastError.message; }
      if (code === 4401) {
        statusLine.textContent = text + " ";
        var link = document.createElement("a");
        link.href = root.getAttribute("data-login") + "?next=" + encodeURIComponent(window.location.pathname);
        link.textContent = t("signIn");
        statusLine.appendChild(link);
        reconnectButton.hidden = true;
      } else {
        setStatus(text, code === 4409);
      }
      return;
    }
    if (code === 1009) {
      var tooLarge = outbox[0];
      if (tooLarge) { notSent(tooLarge, t("tooLarge")); }
    }
    scheduleReconnect();
  }

  function scheduleReconnect() {
    window.clearTimeout(reconnectTimer);
    if (navigator.onLine === false) {
      setStatus(t("offlineBrowser"), true);
      return;  // the "online" event reconnects
    }
    // Full jitter in the upper half: clients that lost the server together do not return together.
    var ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_FIRST_MS * Math.pow(2, attempt));
    var delay = Math.round(ceiling / 2 + Math.random() * ceiling / 2);
    attempt += 1;
    setStatus(t("reconnecting", { seconds: Math.max(1, Math.round(delay / 1000)) }), true);
    reconnectTimer = window.setTimeout(connect, delay);
  }

  function reconnectNow() {
    if (stopped) {
      stopped = false;
      attempt = 0;
    }
    if (!socket) { connect(); }
  }

  window.setInterval(function () {
    if (!connected || !socket) { return; }
    if (Date.now() - lastHeard > SILENCE_LIMIT_MS) {
      socket.close(4000);  // a dead connection the browser has not noticed; onclose reconnects
      return;
    }
    transmit({ type: "ping" });
  }, PING_EVERY_MS);

  window.addEventListener("online", function () { if (!stopped) { reconnectNow(); } });
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible" && !stopped && !socket) { reconnectNow(); }
  });
  reconnectButton.addEventListener("click", function () {
    input.focus();
    reconnectNow();
  });

  // ------------------------------------------------ the composer and buttons

  function fitInput() {
    input.style.height = "auto";
    input.style.height = Math.min(input.scrollHeight + 2, 240) + "px";
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    sendMessage();
  });
  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.ctrlKey && !event.altKey && !event.metaKey && !event.isComposing) {
      event.preventDefault();
      sendMessage();
    }
  });
  input.addEventListener("input", fitInput);

  stopButton.addEventListener("click", function () {
    activeReplies().forEach(function (id) {
      if (transmit({ type: "cancel", reply_id: Number(id) })) { cancelling[id] = true; }
    });
    input.focus();
  });

  log.addEventListener("click", function (event) {
    var button = event.target.closest("[data-retry]");
    if (!button || !connected) { return; }
    var replyId = Number(button.getAttribute("data-retry"));
    if (retrying[String(replyId)] || !transmit({ type: "retry", reply_id: replyId })) { return; }
    // The server answers with the reply, pending again, and streams it like a new one.
    retrying[String(replyId)] = true;
    button.setAttribute("aria-disabled", "true");
  });

  if (earlier) {
    earlier.addEventListener("click", function (event) {
      // Offline, the link loads the earlier messages as a page instead.
      if (!connected || !conversationId) { return; }
      event.preventDefault();
      if (loadingEarlier) { return; }
      var oldest = log.querySelector(".chat-message[data-id]");
      loadingEarlier = transmit({
        type: "history",
        conversation_id: Number(conversationId),
        before_id: oldest ? Number(oldest.getAttribute("data-id")) : undefined,
        limit: HISTORY_LIMIT
      });
      if (loadingEarlier) {
        earlier.textContent = t("loadingEarlier");
        earlier.setAttribute("aria-disabled", "true");
      }
    });
  }

  // Replies the server was still writing when the page was rendered are followed after the
  // resume that every connection starts with.
  Array.prototype.forEach.call(log.querySelectorAll(".chat-message[data-role=assistant]"), function (el) {
    var state = replyState(messageId(el), el);
    state.text = el.querySelector(".chat-body").chatSource || "";
    var status = el.getAttribute("data-status");
    if (status === "pending" || status === "streaming") { state.nextSeq = null; }
  });

  refreshControls();
  toBottom();
  connect();
})();
