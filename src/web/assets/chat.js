// hchat's web chat: talks only to the node that served it, through its local API and its event stream
// (GET /api/events, Server-Sent Events). No polling: everything that changes arrives on the stream. The page holds
// no secret: the link the node prints logged this browser in with an HttpOnly cookie the page never sees.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const HISTORY_LOAD = 200;        // messages fetched when a conversation is opened
  const KEPT_PER_CONVERSATION = 1000; // the node keeps as many; the page keeps no more
  const RECONNECT_MIN_MS = 250, RECONNECT_MAX_MS = 5000;

  // ---- text from others, shown as it is: nothing invisible may reorder or hide part of it ----
  // Controls (but newline and tab), bidi embeddings, overrides and isolates, zero-width and other invisible
  // characters: as the CLI's src/cli/visible.rs.
  const INVISIBLE = /[\0-\x08\x0b-\x1f\x7f-\x9f\xad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060-\u206f\u3164\ufeff\uffa0\ufff9-\ufffb\u{1d173}-\u{1d17a}\u{e0000}-\u{e007f}]/u;
  const EMOJI = /[\p{Extended_Pictographic}\u{1f3fb}-\u{1f3ff}\ufe0f]/u;
  const LETTER = /[^\0-\x7f]/u;
  const isLetter = (c) => c !== undefined && LETTER.test(c) && /\p{L}/u.test(c);

  // A zero-width joiner inside an emoji sequence, or a non-joiner between two letters, only shapes its neighbours.
  function shapesOnly(before, c, after) {
    if (c === "\u200d") return before !== undefined && after !== undefined && EMOJI.test(before) && EMOJI.test(after);
    if (c === "\u200c") return isLetter(before) && isLetter(after);
    return false;
  }

  // Fills `el` with `text`, each invisible character shown as a marked "U+XXXX" instead of applied.
  function showText(el, text) {
    if (!INVISIBLE.test(text)) { el.textContent = text; return; }
    const cps = Array.from(text);
    const parts = [];
    let run = "";
    cps.forEach((c, i) => {
      if (!INVISIBLE.test(c) || shapesOnly(cps[i - 1], c, cps[i + 1])) { run += c; return; }
      if (run) parts.push(run);
      run = "";
      const code = "U+" + c.codePointAt(0).toString(16).toUpperCase().padStart(4, "0");
      const mark = document.createElement("span");
      mark.className = "invisible-char";
      mark.textContent = code;
      mark.title = "An invisible character (" + code + "), shown instead of applied";
      parts.push(mark);
    });
    if (run) parts.push(run);
    el.replaceChildren(...parts);
  }

  // ---- state ----
  const state = {
    me: null,
    boot: null,
    lastSeq: 0,
    convs: new Map(),      // key ("#general" | "@bob") -> conversation
    viaRelay: new Set(),   // peers whose session goes through the tracker's relay now
    current: null,
    members: new Map(),    // channel -> { seq, list: [{name, online, role, status, away}] }
    info: new Map(),       // channel -> { owner, mode, members, invited, banned } (GET /api/channel)
    modeEditing: null,     // the channel whose mode menu the owner has changed and not applied yet
    stream: null,
    streamHeld: false,     // the test hook dropStream() keeps it closed until resumeStream()
    reconnectDelay: RECONNECT_MIN_MS,
    reconnectTimer: null,
    loaded: false,
  };
  // What the stream delivered, for anyone checking it keeps its promise (the browser test does).
  const stats = { events: 0, duplicateEvents: 0, gaps: 0, resyncs: 0, connects: 0 };

  class ApiFailure extends Error {
    constructor(status, code, message) { super(message); this.status = status; this.code = code; }
  }

  async function api(method, path, body) {
    let r;
    try {
      r = await fetch(path, {
        method,
        headers: body ? { "Content-Type": "application/json" } : {},
        body: body ? JSON.stringify(body) : undefined,
        cache: "no-store",
      });
    } catch (e) {
      throw new ApiFailure(0, "unreachable", "the node cannot be reached (" + e.message + ")");
    }
    const json = await r.json().catch(() => null);
    if (!r.ok) {
      const err = (json && json.error) || {};
      if (r.status === 403 && err.code === "forbidden") showFatal();
      throw new ApiFailure(r.status, err.code || "http_" + r.status, err.message || r.statusText);
    }
    return json;
  }

  function showFatal() {
    const f = $("fatal");
    f.textContent = "This browser is not logged in to your node. Type /web in the peer's CLI and open the link it " +
      "prints (the line \u201cweb chat: http://\u2026/chat?login=\u2026\u201d) within a few minutes.";
    f.hidden = false;
  }

  // ---- mentions and notifications ----
  // The user's name as a word (or @name), any case: a mention, highlighted, and notified while the tab is hidden.
  function mentionsMe(text) {
    if (!state.me) return false;
    const name = state.me.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    return new RegExp("(^|[^\\p{L}\\p{N}_-])@?" + name + "($|[^\\p{L}\\p{N}_-])", "iu").test(text);
  }

  const canNotify = () => "Notification" in window;

  function renderNotify() {
    const b = $("notify");
    b.hidden = !canNotify() || Notification.permission !== "default";
  }

  // Asked for on a click only (browsers refuse, and users resent, a request on load).
  async function askNotify() {
    if (!canNotify()) return;
    try { await Notification.requestPermission(); } catch { /* an old browser's callback form: ignore */ }
    renderNotify();
  }

  // A direct message or a mention while the tab is hidden: a system notification (when allowed).
  function notifyOf(key, msg) {
    if (!document.hidden || !canNotify() || Notification.permission !== "granted" || msg.from === state.me) return;
    if (key[0] !== "@" && !mentionsMe(msg.text)) return;
    const n = new Notification(key[0] === "@" ? msg.from : msg.from + " in " + key, {
      body: msg.text.length > 140 ? msg.text.slice(0, 140) + "\u2026" : msg.text,
      tag: "hchat-" + key,
    });
    n.onclick = () => { window.focus(); select(key); n.close(); };
  }

  // ---- search ----
  async function search(q) {
    const err = $("search-error");
    const list = $("search-results");
    err.hidden = true;
    if (!q.trim()) { list.hidden = true; return; }
    try {
      const r = await api("GET", "/api/search?q=" + encodeURIComponent(q));
      list.replaceChildren(...(r.results.length ? r.results.map(resultItem) : [emptyResult()]));
      list.hidden = false;
    } catch (e) {
      err.textContent = "Cannot search: " + e.message;
      err.hidden = false;
    }
  }

  function emptyResult() {
    const li = document.createElement("li");
    li.className = "none";
    li.textContent = "No message has these words.";
    return li;
  }

  function resultItem(hit) {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    const where = document.createElement("span");
    where.className = "where";
    const d = new Date(hit.ts);
    where.textContent = hit.with + " \u00b7 " + d.toLocaleDateString() + " " + timeFmt.format(d);
    const who = document.createElement("span");
    who.className = "from";
    who.textContent = hit.from === state.me ? "you" : hit.from;
    const text = document.createElement("span");
    text.className = "text";
    showText(text, hit.text);
    b.append(where, who, text);
    b.addEventListener("click", () => jumpTo(hit));
    li.append(b);
    return li;
  }

  // Opens the result's conversation and shows the message there, highlighted.
  async function jumpTo(hit) {
    const key = hit.with;
    conv(key);
    renderConvs();
    await select(key);
    const c = state.convs.get(key);
    if (!c.ids.has(msgKey(hit))) await loadHistory(c, KEPT_PER_CONVERSATION);
    const li = $("messages").querySelector(`li[data-id="${CSS.escape(hit.id)}"][data-from="${CSS.escape(hit.from)}"]`);
    if (!li) { notice("That message is older than the page keeps; /history in the CLI shows it."); return; }
    $("messages").querySelectorAll("li.found").forEach((x) => x.classList.remove("found"));
    li.classList.add("found");
    li.scrollIntoView({ block: "center" });
    closePanels();
  }

  // ---- conversations ----
  const keyOf = (msg) => msg.channel !== undefined ? "#" + msg.channel
    : "@" + (msg.from === state.me ? msg.to : msg.from);

  // A message is its sender and its id: another member may reuse an id, and must not replace (or hide) the
  // message first shown under it. Names never contain a space.
  const msgKey = (m) => m.from + " " + m.id;

  function conv(key) {
    let c = state.convs.get(key);
    if (!c) {
      c = { key, kind: key[0] === "#" ? "channel" : "direct", name: key.slice(1), messages: [], ids: new Map(),
            unread: 0, loaded: false };
      state.convs.set(key, c);
    }
    return c;
  }

  // Adds (or updates, by sender and id) a message; returns true when it is new to the conversation.
  function addMessage(c, msg, own, status) {
    const known = c.ids.get(msgKey(msg));
    if (known) {
      if (status !== undefined || own) { Object.assign(known, { ts: msg.ts, status: status ?? known.status }); renderMessage(c, known); }
      return false;
    }
    const m = entry(msg, own, status ?? "sent");
    keep(c, m);
    if (c.key === state.current) appendMessage(c, m);
    return true;
  }

  // The node's state of a message (`/api/history`, events) as the page shows it.
  const PAGE_STATUS = { sending: "pending", held: "held", delivered: "sent", failed: "failed" };
  const pageStatus = (st) => PAGE_STATUS[st] || "sent";

  function entry(msg, own, status) {
    return { id: msg.id, from: msg.from, text: msg.text, ts: msg.ts, own, status, error: null };
  }

  function keep(c, m) {
    c.messages.push(m);
    c.ids.set(msgKey(m), m);
    if (c.messages.length > KEPT_PER_CONVERSATION) c.ids.delete(msgKey(c.messages.shift()));
  }

  // Messages that reached the node while the user was away (a `missed` event): put where they belong among what
  // is shown (by id, each sender's order, as history is), under a "new since you were away" divider. Returns how
  // many were new here.
  function insertMissed(c, msgs) {
    const fresh = msgs.filter((msg) => !c.ids.has(msgKey(msg))).map((msg) => entry(msg, msg.from === state.me, "sent"));
    if (!fresh.length) return 0;
    for (const m of fresh) { c.messages.push(m); c.ids.set(msgKey(m), m); }
    c.messages.sort(byId);
    while (c.messages.length > KEPT_PER_CONVERSATION) c.ids.delete(msgKey(c.messages.shift()));
    if (!c.divider || !c.ids.has(c.divider)) { c.divider = msgKey(fresh[0]); c.showDivider = true; }
    if (c.key === state.current) renderCurrent();
    return fresh.length;
  }

  function byId(a, b) {
    return a.id < b.id ? -1 : a.id > b.id ? 1 : a.from < b.from ? -1 : a.from > b.from ? 1 : 0;
  }

  // Unread counts are the node's (a reload, another page and the CLI agree): fetched again shortly after
  // messages arrive, rather than counted here, where a message could be counted twice around a reload.
  let unreadTimer = null;
  function refreshUnread() {
    clearTimeout(unreadTimer);
    unreadTimer = setTimeout(async () => {
      try {
        const u = await api("GET", "/api/unread");
        for (const c of state.convs.values()) {
          c.unread = (c.key === state.current && !document.hidden) ? 0 : (u.unread[c.key] || 0);
        }
        renderConvs();
      } catch { /* the next message tries again */ }
    }, 200);
  }

  function dividerItem() {
    const li = document.createElement("li");
    li.className = "divider";
    li.setAttribute("role", "separator");
    li.textContent = "new since you were away";
    return li;
  }

  function sortedKeys(kind) {
    return [...state.convs.values()].filter((c) => c.kind === kind).map((c) => c.key).sort();
  }

  function renderConvs() {
    // Redrawn on every message: keep the keyboard focus where it was.
    const focused = document.activeElement;
    const refocus = focused && focused.closest?.(".convs") && focused.closest("li")?.dataset.key;
    const refocusClass = refocus && focused.className;
    for (const [kind, list] of [["channel", $("channels")], ["direct", $("directs")]]) {
      list.replaceChildren(...sortedKeys(kind).map((key) => {
        const c = state.convs.get(key);
        const li = document.createElement("li");
        li.dataset.key = key;
        const open = document.createElement("button");
        open.type = "button";
        open.className = "open-conv";
        open.dataset.key = key;
        open.setAttribute("aria-current", String(key === state.current));
        const label = document.createElement("span");
        label.textContent = key;
        open.append(label);
        if (kind === "direct" && state.viaRelay.has(c.name)) open.append(relayTag());
        if (c.unread > 0) {
          const b = document.createElement("span");
          b.className = "badge";
          b.textContent = String(c.unread);
          b.setAttribute("aria-label", c.unread + " unread");
          open.append(b);
        }
        open.addEventListener("click", () => { select(key); closePanels(); });
        li.append(open);
        if (kind === "channel") {
          const leave = document.createElement("button");
          leave.type = "button";
          leave.className = "leave";
          leave.textContent = "×";
          leave.title = "Leave " + key;
          leave.setAttribute("aria-label", "Leave " + key);
          leave.addEventListener("click", () => leaveChannel(c.name));
          li.append(leave);
        }
        return li;
      }));
    }
    if (refocus) {
      document.querySelector(`.convs li[data-key="${CSS.escape(refocus)}"] .${CSS.escape(refocusClass)}`)?.focus();
    }
    const unread = [...state.convs.values()].reduce((n, c) => n + c.unread, 0);
    document.title = (unread ? "(" + unread + ") " : "") + "hchat" + (state.me ? " \u2014 " + state.me : "");
  }

  const timeFmt = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });

  function messageItem(m) {
    const li = document.createElement("li");
    li.className = "msg" + (m.own ? " own" : "");
    li.dataset.id = m.id;
    li.dataset.from = m.from;
    const meta = document.createElement("div");
    meta.className = "meta";
    const from = document.createElement("span");
    from.className = "from";
    from.textContent = m.own ? "you" : m.from;
    const time = document.createElement("time");
    const d = new Date(m.ts);
    time.dateTime = d.toISOString();
    time.title = d.toLocaleString();
    time.textContent = timeFmt.format(d);
    meta.append(from, time);
    const text = document.createElement("div");
    text.className = "text";
    showText(text, m.text);
    if (!m.own && mentionsMe(m.text)) li.classList.add("mention");
    li.append(meta, text);
    fillState(li, m);
    return li;
  }

  function fillState(li, m) {
    li.dataset.state = m.status;
    li.querySelector(".state")?.remove();
    const says = {
      pending: () => "sending\u2026",
      failed: () => "not delivered: " + m.error,
      // Not errors: the message is safe and on its way; the user only needs to know it is not there yet.
      held: () => m.later ? "held for " + m.later + " by the tracker until they are back online"
        : "held by the tracker until the recipient is back online",
      // Held first, then the recipient's node said it has it.
      delivered: () => "delivered",
      queued: () => "not reached yet (" + m.later + "); retrying on its own",
    }[m.status];
    if (says) {
      const s = document.createElement("div");
      s.className = "state";
      s.textContent = says();
      li.append(s);
    }
  }

  function renderMessage(c, m) {
    if (c.key !== state.current) return;
    const li = $("messages").querySelector(`li[data-id="${CSS.escape(m.id)}"][data-from="${CSS.escape(m.from)}"]`);
    if (li) fillState(li, m);
  }

  function nearBottom(el) { return el.scrollHeight - el.scrollTop - el.clientHeight < 60; }

  function appendMessage(c, m) {
    const list = $("messages");
    const stick = nearBottom(list) || m.own;
    list.append(messageItem(m));
    while (list.children.length > KEPT_PER_CONVERSATION) list.firstChild.remove();
    if (stick) list.scrollTop = list.scrollHeight;
  }

  function renderCurrent() {
    const c = state.current && state.convs.get(state.current);
    const list = $("messages");
    $("conv-title").textContent = c ? (c.kind === "channel" ? c.key : "Direct messages with " + c.name) : "No conversation";
    $("conv-empty").hidden = !!c;
    list.replaceChildren(...(c ? c.messages.flatMap((m) =>
      msgKey(m) === c.divider ? [dividerItem(), messageItem(m)] : [messageItem(m)]) : []));
    // Once, when a divider is new: show where what was missed begins; otherwise the newest, as always.
    const divider = c && c.showDivider && list.querySelector("li.divider");
    if (c) c.showDivider = false;
    if (divider) divider.scrollIntoView({ block: "start" }); else list.scrollTop = list.scrollHeight;
    renderComposer();
    renderMembers();
    renderSettings();
  }

  // My role in a channel: what the live member list says, else the last channel info.
  function myRole(channel) {
    const live = (state.members.get(channel) || { list: [] }).list.find((m) => m.name === state.me);
    if (live && live.role) return live.role;
    const info = state.info.get(channel);
    const me = info && info.members.find((m) => m.name === state.me);
    return me ? me.role : null;
  }

  // A visitor reads but cannot post: the composer says so instead of failing on Enter.
  function renderComposer() {
    const c = state.current && state.convs.get(state.current);
    const text = $("text");
    const visitor = c && c.kind === "channel" && myRole(c.name) === "visitor";
    text.disabled = !c || visitor;
    $("send").disabled = !c || visitor;
    text.placeholder = !c ? "Choose a conversation first"
      : visitor ? "You are a visitor in " + c.key + ": you can read, not post"
      : "Message " + c.key + " (Enter sends, Shift+Enter: new line)";
    const reason = $("composer-reason");
    reason.hidden = !visitor;
    reason.textContent = visitor ? "You are a visitor in " + c.key + ": its owner lets you read but not post." : "";
  }

  async function select(key) {
    if (!state.convs.has(key)) return;
    state.current = key;
    const c = state.convs.get(key);
    c.unread = 0;
    sessionStorage.setItem("hchat-current", key);
    renderConvs();
    renderCurrent();
    $("text").focus();
    if (!c.loaded) await loadHistory(c);
    markRead(c);
    if (c.kind === "channel") { loadMembers(c.name); loadInfo(c.name); }
  }

  // The node keeps what is read (so other pages, the CLI and a reload agree): tell it this conversation is seen,
  // once the page shows it to someone.
  const readTimers = new Map();
  function markRead(c) {
    if (document.hidden || c.key !== state.current) return;
    clearTimeout(readTimers.get(c.key));
    readTimers.set(c.key, setTimeout(() => {
      readTimers.delete(c.key);
      api("POST", "/api/read", { with: c.key }).catch(() => {});
    }, 150));
  }

  async function loadHistory(c, limit = HISTORY_LOAD) {
    try {
      const h = await api("GET", "/api/history?with=" + encodeURIComponent(c.key) + "&limit=" + limit);
      // History first, then what arrived live and is not in it: no gap and no duplicate either way.
      // What the page had and the history lacks: newer messages it showed live, kept; older ones are dropped when
      // the history came back full, or there would be a hole between them and the history (messages stored
      // meanwhile, e.g. while the node was down).
      const full = h.messages.length >= limit;
      const live = c.messages.filter((m) => !h.messages.some((x) => msgKey(x) === msgKey(m)) &&
        (!full || !h.messages.length || byId(m, h.messages[0]) > 0));
      c.messages = [];
      c.ids = new Map();
      // In id order, as the node keeps history: what the page had may be older than the page of history (a
      // message shown before the node restarted, then a block of missed ones after it).
      const all = h.messages.map((msg) => entry(msg, msg.from === state.me, pageStatus(msg.state))).concat(live);
      all.sort(byId);
      for (const m of all) keep(c, m);
      // The node's read marker: where what the user has not seen begins.
      const firstUnread = h.messages.find((m) => m.unread);
      const current = c.divider && c.ids.get(c.divider);
      if (firstUnread && (!current || byId(firstUnread, current) < 0)) { c.divider = msgKey(firstUnread); c.showDivider = true; }
      c.loaded = true;
      if (c.key === state.current) renderCurrent();
    } catch (e) {
      notice("Could not load the history of " + c.key + ": " + e.message);
    }
  }

  // ---- members and presence ----
  async function loadMembers(channel) {
    try {
      const m = await api("GET", "/api/members?channel=" + encodeURIComponent(channel));
      setMembers(channel, m.seq, m.members);
    } catch (e) {
      if (e.code !== "not_joined") notice("Could not list the members of #" + channel + ": " + e.message);
    }
  }

  function setMembers(channel, seq, list) {
    const known = state.members.get(channel);
    if (known && known.seq > seq) return; // an older answer than what the stream already said
    const before = known && JSON.stringify(known.list.map((m) => [m.name, m.role]));
    state.members.set(channel, { seq, list });
    renderMembers();
    renderComposer();
    // A role or member changed: the settings panel's lists may have too.
    if (before !== undefined && before !== JSON.stringify(list.map((m) => [m.name, m.role]))) loadInfo(channel);
  }

  // What changed in a channel's members (a members_changed event): applied to the list held, if it is older.
  const membersLoading = new Set();
  function changeMembers(channel, seq, changed, gone) {
    const known = state.members.get(channel);
    if (!known) {
      // Nothing to apply it to: ask for the whole list (its answer is as of this change or later).
      if (state.convs.has("#" + channel) && !membersLoading.has(channel)) {
        membersLoading.add(channel);
        loadMembers(channel).finally(() => membersLoading.delete(channel));
      }
      return;
    }
    if (known.seq >= seq) return; // the list held already has it
    const byName = new Map(known.list.map((m) => [m.name, m]));
    for (const name of gone) byName.delete(name);
    for (const m of changed) byName.set(m.name, m);
    const list = [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    setMembers(channel, seq, list);
  }

  // ---- channel settings (owner, mode, invited, banned) ----
  async function loadInfo(channel) {
    try {
      const info = await api("GET", "/api/channel?channel=" + encodeURIComponent(channel));
      state.info.set(channel, info);
      renderSettings();
      renderMembers();
      renderComposer();
    } catch (e) {
      if (e.code !== "not_joined" && e.code !== "members_only") notice("Could not load #" + channel + ": " + e.message);
    }
  }

  const isOwner = (channel) => (state.info.get(channel) || {}).owner === state.me;

  function renderSettings() {
    const c = state.current && state.convs.get(state.current);
    const section = $("settings");
    const info = c && c.kind === "channel" && state.info.get(c.name);
    section.hidden = !info;
    if (!info) return;
    const owner = info.owner === state.me;
    const modeText = { open: "open to anyone", invite: "invite-only", key: "protected by a key" }[info.mode];
    $("settings-summary").textContent = c.key + " is " + modeText + "; owner: " +
      (info.owner ? (owner ? "you" : info.owner) : "nobody") + "." +
      (info.invited.length ? " Invited: " + info.invited.join(", ") + "." : "");
    $("mode-form").hidden = !owner;
    $("invite-form").hidden = !owner;
    // The mode menu follows the channel, unless the owner is choosing a new mode in it right now.
    if (state.modeEditing !== c.name) $("mode-select").value = info.mode;
    $("mode-key").hidden = $("mode-select").value !== "key";
    $("banned").replaceChildren(...info.banned.map((name) => {
      const li = document.createElement("li");
      li.dataset.name = name;
      li.append("banned: " + name + " ");
      if (owner) {
        const b = document.createElement("button");
        b.type = "button";
        b.textContent = "Unban";
        b.setAttribute("aria-label", "Unban " + name);
        b.addEventListener("click", () => act(c.name, "unban", name));
        li.append(b);
      }
      return li;
    }));
  }

  async function channelCall(channel, path, body) {
    const err = $("settings-error");
    err.hidden = true;
    try {
      const info = await api("POST", path, { channel, ...body });
      state.info.set(channel, info);
      renderSettings();
      renderMembers();
      return true;
    } catch (e) {
      err.textContent = e.message;
      err.hidden = false;
      return false;
    }
  }

  const act = (channel, action, peer) => channelCall(channel, "/api/channel/act", { action, peer });
  const setRole = (channel, peer, role) => channelCall(channel, "/api/channel/role", { peer, role });

  // ---- my status ----
  function showStatus(status, away) {
    $("status-select").value = status;
    $("away-text").hidden = status !== "away";
    $("status-set").hidden = status !== "away";
    if (away !== undefined && document.activeElement !== $("away-text")) $("away-text").value = away || "";
  }

  async function setStatus(status) {
    const message = status === "away" ? $("away-text").value.trim() : "";
    try {
      await api("POST", "/api/presence", { status, ...(message ? { message } : {}) });
    } catch (e) {
      notice("Could not set your status: " + e.message);
    }
  }

  // A session relayed by the tracker (no direct path to that peer): still end to end encrypted.
  function relayTag() {
    const t = document.createElement("span");
    t.className = "via-relay";
    t.textContent = "via relay";
    t.title = "No direct path to this peer: the tracker relays the session, encrypted end to end";
    return t;
  }

  function setViaRelay(names) {
    state.viaRelay = new Set(names);
    renderMembers();
    renderConvs();
  }

  // Each member's entry as last drawn (its elements, and the key of what they show), by name.
  let memberEntries = new Map();
  function renderMembers() {
    const c = state.current && state.convs.get(state.current);
    const ul = $("members");
    let list = [];
    if (c && c.kind === "channel") list = (state.members.get(c.name) || { list: [] }).list;
    else if (c) {
      // A direct conversation: the two of us, with what the channels say about the other one.
      const seen = [...state.members.values()].flatMap((m) => m.list).find((m) => m.name === c.name);
      list = [{ name: state.me, online: true, fingerprint: state.fingerprint },
              { name: c.name, online: seen ? seen.online : null, fingerprint: seen && seen.fingerprint }];
    }
    const focusedMember = document.activeElement?.closest?.("#members li")?.dataset.name;
    $("members-heading").textContent = c && c.kind === "channel"
      ? "Members (" + list.filter((m) => m.online).length + " online)" : "Members";
    // Each member's entry is built again only when what it shows changed; the others keep their elements (a
    // presence change in a big channel touches one entry, and a hover or focus elsewhere in the panel survives).
    const owner = c && c.kind === "channel" && isOwner(c.name);
    const wanted = [];
    const drawn = new Map();
    for (const m of list) {
      const role = m.role || roleInInfo(m.name);
      const key = JSON.stringify([c && c.kind, c && c.name, owner, m.name, m.online, m.status, m.away, m.fingerprint,
        role, state.viaRelay.has(m.name), m.name === state.me]);
      const kept = memberEntries.get(m.name);
      const nodes = kept && kept.key === key ? kept.nodes : memberEntry(c, m, role, owner);
      drawn.set(m.name, { key, nodes });
      wanted.push(...nodes);
    }
    memberEntries = drawn;
    // Put the wanted elements in order, moving or inserting only those out of place.
    let at = ul.firstChild;
    for (const node of wanted) {
      if (node === at) at = at.nextSibling;
      else ul.insertBefore(node, at);
    }
    while (at) {
      const next = at.nextSibling;
      at.remove();
      at = next;
    }
    if (focusedMember) ul.querySelector(`li[data-name="${CSS.escape(focusedMember)}"] button`)?.focus();
  }

  // The elements of one member's entry in the panel: the member's button, and the owner's buttons for them (`owner`:
  // this user owns the channel `c`).
  function memberEntry(c, m, role, owner) {
    const li = document.createElement("li");
    li.dataset.name = m.name;
    li.dataset.online = String(m.online);
    const b = document.createElement("button");
    b.type = "button";
    const dot = document.createElement("span");
    dot.className = "dot";
    dot.dataset.online = String(m.online);
    const name = document.createElement("span");
    name.textContent = m.name;
    const status = m.online === null ? "" : m.status === "away" ? "away" : m.online ? "online" : "offline";
    // An away member's dot is amber, not the online green (its colour is not the only sign: the text says "away").
    li.dataset.status = status;
    dot.dataset.status = status;
    b.append(dot, name);
    if (c && c.kind === "channel" && role && role !== "member") {
      const r = document.createElement("span");
      r.className = "role";
      r.textContent = role;
      b.append(r);
    }
    if (m.name !== state.me && state.viaRelay.has(m.name)) b.append(relayTag());
    if (m.status === "away") {
      const a = document.createElement("span");
      a.className = "away";
      showText(a, m.away ? "away: " + m.away : "away");
      b.append(a);
    }
    if (m.name === state.me) {
      const you = document.createElement("span");
      you.className = "you";
      you.textContent = "(you)";
      b.append(you);
      b.disabled = true;
      b.setAttribute("aria-label", m.name + " (you)");
      b.title = "You" + keyLine(m);
    } else {
      b.setAttribute("aria-label", m.name + (status ? ", " + status : "") + ": send a direct message");
      b.title = "Send " + m.name + " a direct message" + keyLine(m);
      b.addEventListener("click", () => { const key = "@" + m.name; conv(key); renderConvs(); select(key); closePanels(); });
    }
    li.append(b);
    // The owner's buttons for this member sit in a row of their own, apart from the member's own button.
    if (owner && m.name !== state.me) return [li, ownerButtons(c.name, m.name, role)];
    return [li];
  }

  // The key the tracker binds the name to, as people compare it (on hover).
  const keyLine = (m) => m.fingerprint ? "\nKey fingerprint: " + m.fingerprint : "";

  function roleInInfo(name) {
    const c = state.current && state.convs.get(state.current);
    const info = c && c.kind === "channel" && state.info.get(c.name);
    const m = info && info.members.find((x) => x.name === name);
    return m ? m.role : null;
  }

  function ownerButtons(channel, name, role) {
    const acts = document.createElement("li");
    acts.className = "acts";
    acts.dataset.for = name;
    const button = (label, aria, fn) => {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = label;
      b.setAttribute("aria-label", aria);
      b.addEventListener("click", fn);
      acts.append(b);
    };
    if (role === "visitor") button("Member", "Let " + name + " post", () => setRole(channel, name, "member"));
    else button("Visitor", "Make " + name + " a visitor", () => setRole(channel, name, "visitor"));
    button("Remove", "Remove " + name, () => act(channel, "remove", name));
    button("Ban", "Ban " + name, () => act(channel, "ban", name));
    return acts;
  }

  // ---- sending ----
  // A UUIDv7, like the node makes: the time in ms, then random bits. Works on plain http (no randomUUID).
  function uuid7() {
    const b = new Uint8Array(16);
    crypto.getRandomValues(b);
    let ms = Date.now();
    for (let i = 5; i >= 0; i--) { b[i] = ms % 256; ms = Math.floor(ms / 256); }
    b[6] = (b[6] & 0x0f) | 0x70;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  let lastFailed = null; // { c, m } the message the Retry button sends again

  async function send(c, m) {
    m.status = "pending";
    renderMessage(c, m);
    const body = c.kind === "channel" ? { channel: c.name, text: m.text, id: m.id } : { to: c.name, text: m.text, id: m.id };
    try {
      const report = await api("POST", "/api/send", body);
      const held = report.held || [];
      const queued = report.queued || [];
      if (report.failed.length) {
        fail(c, m, report.failed.map((f) => f.peer + " (" + f.error + ")").join(", "));
      } else {
        m.error = null;
        if (held.length) {
          m.status = "held";
          m.later = held.join(", ");
        } else if (queued.length) {
          m.status = "queued";
          m.later = queued.map((f) => f.peer + ": " + f.error).join(", ");
        } else {
          m.status = "sent";
        }
        renderMessage(c, m);
        if (!report.delivered.length && !held.length && !queued.length) {
          notice("Nobody else is in " + c.key + " yet; the message is in your history.");
        }
        if (lastFailed && lastFailed.m === m) hideSendError();
      }
    } catch (e) {
      fail(c, m, e.message);
    }
  }

  function fail(c, m, why) {
    m.status = "failed";
    m.error = why;
    renderMessage(c, m);
    lastFailed = { c, m };
    $("send-error-text").textContent = "Not delivered in " + c.key + ": " + why;
    $("send-error").hidden = false;
  }

  function hideSendError() {
    $("send-error").hidden = true;
    lastFailed = null;
  }

  function submit() {
    const c = state.current && state.convs.get(state.current);
    const textEl = $("text");
    const text = textEl.value;
    if (!c || !text.trim()) return;
    textEl.value = "";
    autosize();
    const msg = { id: uuid7(), from: state.me, text, ts: Date.now(),
                  ...(c.kind === "channel" ? { channel: c.name } : { to: c.name }) };
    const m = entry(msg, true, "pending");
    keep(c, m);
    send(c, m); // the request leaves before the page spends time drawing
    if (c.key === state.current) appendMessage(c, m);
  }

  function autosize() {
    const t = $("text");
    t.style.height = "auto";
    t.style.height = Math.min(t.scrollHeight + 2, 160) + "px";
  }

  // ---- channels ----
  async function joinChannel(raw) {
    const name = raw.trim().replace(/^#/, "");
    const err = $("join-error");
    err.hidden = true;
    if (!name) return;
    const keyRow = $("join-key-row");
    const key = keyRow.hidden ? "" : $("join-key").value;
    try {
      const r = await api("POST", "/api/join", { channel: name, ...(key ? { key } : {}) });
      conv("#" + r.channel);
      renderConvs();
      await select("#" + r.channel);
      $("join-input").value = "";
      $("join-key").value = "";
      keyRow.hidden = true;
    } catch (e) {
      if (e.code === "bad_key") {
        // The channel has a key: ask for it, here, and join again with it.
        keyRow.hidden = false;
        $("join-key").focus();
        err.textContent = key ? "That is not the key of #" + name + "; try again."
          : "#" + name + " needs its key: type it below and press Join.";
      } else {
        err.textContent = "Cannot join #" + name + ": " + e.message;
      }
      err.hidden = false;
    }
  }

  async function leaveChannel(name) {
    try {
      await api("POST", "/api/leave", { channel: name });
      dropConv("#" + name);
    } catch (e) {
      notice("Cannot leave #" + name + ": " + e.message);
    }
  }

  function dropConv(key) {
    if (!state.convs.has(key)) return;
    state.convs.delete(key);
    state.members.delete(key.slice(1));
    state.info.delete(key.slice(1));
    if (state.current === key) {
      state.current = sortedKeys("channel")[0] || sortedKeys("direct")[0] || null;
      if (state.current) { select(state.current); return; }
      renderCurrent();
    }
    renderConvs();
  }

  // ---- loading everything (at start, and after a resync) ----
  async function loadAll() {
    const [r, u] = await Promise.all([api("GET", "/api/conversations"), api("GET", "/api/unread")]);
    for (const ch of r.channels) conv("#" + ch);
    for (const p of r.direct) conv("@" + p);
    // Counts and "new since you were away" dividers start again from what the node says now.
    for (const c of state.convs.values()) { c.unread = u.unread[c.key] || 0; c.divider = null; }
    for (const c of state.convs.values()) {
      if (c.kind === "channel" && !r.channels.includes(c.name)) state.convs.delete(c.key);
      c.loaded = false;
    }
    const wanted = sessionStorage.getItem("hchat-current");
    const first = [wanted, state.current, ...sortedKeys("channel"), ...sortedKeys("direct")]
      .find((k) => k && state.convs.has(k));
    renderConvs();
    if (first) await select(first); else renderCurrent();
    state.loaded = true;
  }

  // ---- the event stream ----
  function connect() {
    clearTimeout(state.reconnectTimer);
    if (state.stream || state.streamHeld) return;
    // changes: a channel's member list comes whole once, then as what changed in it (members_changed).
    const q = new URLSearchParams({ changes: "true" });
    if (state.boot) { q.set("since", String(state.lastSeq)); q.set("boot", state.boot); }
    const es = new EventSource("/api/events?" + q);
    state.stream = es;
    setConn("connecting", "connecting\u2026");
    es.onmessage = (e) => {
      let ev;
      try { ev = JSON.parse(e.data); } catch { return; }
      onEvent(ev, e.lastEventId);
    };
    es.onerror = () => {
      // The browser would retry on its own with the first URL; retry here instead, with the numbers it needs.
      es.close();
      if (state.stream !== es) return;
      state.stream = null;
      setConn("down", "reconnecting\u2026");
      if (!state.streamHeld) state.reconnectTimer = setTimeout(connect, state.reconnectDelay);
      state.reconnectDelay = Math.min(state.reconnectDelay * 2, RECONNECT_MAX_MS);
      // A refused stream (403: not logged in, or a node restarted with a new token) says nothing: ask the API,
      // whose refusal shows what to do.
      api("GET", "/api/me").catch(() => {});
    };
  }

  function dropStream() {
    state.streamHeld = true;
    if (state.stream) { state.stream.close(); state.stream = null; }
    setConn("down", "disconnected");
  }

  function resumeStream() {
    state.streamHeld = false;
    connect();
  }

  function setConn(st, text) {
    const el = $("conn");
    el.dataset.state = st;
    el.textContent = text;
  }

  function onEvent(ev, id) {
    if (ev.type === "hello") {
      stats.connects++;
      const firstTime = !state.boot;
      state.me = ev.name;
      $("me").textContent = ev.name;
      state.boot = ev.boot;
      state.lastSeq = ev.seq;
      state.reconnectDelay = RECONNECT_MIN_MS;
      setConn("live", "live");
      $("fatal").hidden = true;
      if (firstTime) loadAll().catch((e) => notice("Could not load the conversations: " + e.message));
      api("GET", "/api/me").then((me) => {
        state.fingerprint = me.fingerprint;
        setViaRelay(me.via_relay || []);
        showStatus(me.status, me.away);
      }).catch(() => {});
      return;
    }
    if (ev.type === "resync") {
      stats.resyncs++;
      notice("Catching up (" + ev.reason + ")");
      // Member lists held may have missed changes: a members_changed must not be applied to them. The current
      // channel's list is asked for again by the reload; the others at their next change.
      state.members.clear();
      if (state.loaded) loadAll().catch((e) => notice("Could not reload: " + e.message));
      return;
    }
    const seq = Number(id);
    stats.events++;
    if (seq <= state.lastSeq) { stats.duplicateEvents++; return; }
    if (seq !== state.lastSeq + 1) stats.gaps++;
    state.lastSeq = seq;
    switch (ev.type) {
      case "message": {
        const key = keyOf(ev.message);
        const isNew = !state.convs.has(key);
        const c = conv(key);
        if (isNew) c.loaded = true; // nothing older than this to load
        const added = addMessage(c, ev.message, ev.own, c.ids.has(msgKey(ev.message)) ? undefined : pageStatus(ev.state));
        if (added) notifyOf(key, ev.message);
        if (added && !ev.own && (key !== state.current || document.hidden)) { c.unread++; refreshUnread(); }
        else if (added && !ev.own) markRead(c);
        renderConvs();
        break;
      }
      case "states":
        for (const u of ev.updates) {
          const c = state.convs.get(u.with);
          const m = c && c.ids.get(msgKey({ from: state.me, id: u.id }));
          if (!m) continue;
          m.status = u.state === "delivered" ? (m.status === "held" ? "delivered" : "sent") : pageStatus(u.state);
          if (m.status !== "failed") m.error = null; else m.error = m.error || "every recipient refused it";
          renderMessage(c, m);
        }
        break;
      case "receipt":
        notice(ev.peer + (ev.count === 1 ? " got your message" : " got your " + ev.count + " held messages"));
        break;
      case "missed": {
        const isNew = !state.convs.has(ev.with);
        const c = conv(ev.with);
        if (isNew) c.loaded = true; // nothing older than this to load
        const added = insertMissed(c, ev.messages);
        if (added) { const last = ev.messages[ev.messages.length - 1]; notifyOf(ev.with, last); }
        if (added && (ev.with !== state.current || document.hidden)) refreshUnread(); else if (added) markRead(c);
        renderConvs();
        break;
      }
      case "read": {
        const c = state.convs.get(ev.with);
        if (c && c.unread) { c.unread = 0; renderConvs(); }
        break;
      }
      case "joined":
        conv("#" + ev.channel);
        renderConvs();
        if (!state.current) select("#" + ev.channel);
        break;
      case "left":
        dropConv("#" + ev.channel);
        break;
      case "presence":
        setMembers(ev.channel, seq, ev.members);
        break;
      case "members_changed":
        changeMembers(ev.channel, seq, ev.members, ev.gone);
        break;
      case "notice":
        notice(ev.text);
        break;
      case "status":
        showStatus(ev.status, ev.away);
        break;
      case "path":
        if (ev.relayed) state.viaRelay.add(ev.peer); else state.viaRelay.delete(ev.peer);
        renderMembers();
        renderConvs();
        break;
    }
  }

  let noticeTimer = null;
  function notice(text) {
    const n = $("notice");
    showText(n, text);
    n.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { n.hidden = true; }, 5000);
  }

  // ---- narrow windows: the side panels open over the conversation ----
  function togglePanel(button, panel) {
    const open = !panel.classList.contains("open");
    closePanels();
    panel.classList.toggle("open", open);
    button.setAttribute("aria-expanded", String(open));
    if (open) panel.querySelector("button, input")?.focus();
  }
  function closePanels() {
    for (const [b, p] of [["toggle-nav", "sidebar"], ["toggle-members", "members-panel"]]) {
      $(p).classList.remove("open");
      $(b).setAttribute("aria-expanded", "false");
    }
  }

  // ---- wiring ----
  function start() {
    $("composer").addEventListener("submit", (e) => { e.preventDefault(); submit(); });
    $("text").addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); submit(); }
    });
    $("text").addEventListener("input", autosize);
    $("join-form").addEventListener("submit", (e) => { e.preventDefault(); joinChannel($("join-input").value); });
    $("retry").addEventListener("click", () => {
      if (!lastFailed) return;
      const { c, m } = lastFailed;
      hideSendError();
      send(c, m);
    });
    $("dismiss").addEventListener("click", hideSendError);
    $("search-form").addEventListener("submit", (e) => { e.preventDefault(); search($("search-input").value); });
    $("notify").addEventListener("click", askNotify);
    renderNotify();
    $("status-select").addEventListener("change", () => {
      const st = $("status-select").value;
      showStatus(st);
      if (st === "away") $("away-text").focus(); else setStatus(st);
    });
    $("status-form").addEventListener("submit", (e) => { e.preventDefault(); setStatus($("status-select").value); });
    $("mode-select").addEventListener("change", () => {
      state.modeEditing = state.current && state.current.slice(1);
      $("mode-key").hidden = $("mode-select").value !== "key";
    });
    $("mode-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const c = state.current && state.convs.get(state.current);
      if (!c || c.kind !== "channel") return;
      const mode = $("mode-select").value;
      const key = $("mode-key").value;
      if (await channelCall(c.name, "/api/channel/mode", { mode, ...(mode === "key" ? { key } : {}) })) {
        $("mode-key").value = "";
        state.modeEditing = null;
        renderSettings();
      }
    });
    $("invite-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const c = state.current && state.convs.get(state.current);
      const peer = $("invite-input").value.trim().replace(/^@/, "");
      if (!c || c.kind !== "channel" || !peer) return;
      if (await act(c.name, "invite", peer)) $("invite-input").value = "";
    });
    $("toggle-nav").addEventListener("click", () => togglePanel($("toggle-nav"), $("sidebar")));
    $("toggle-members").addEventListener("click", () => togglePanel($("toggle-members"), $("members-panel")));
    document.addEventListener("keydown", (e) => { if (e.key === "Escape") closePanels(); });
    document.addEventListener("visibilitychange", () => {
      const c = state.current && state.convs.get(state.current);
      if (!document.hidden && c) { if (c.unread) { c.unread = 0; renderConvs(); } markRead(c); }
    });
    connect();
  }

  // For tests and the curious: the stream's counters, and a way to cut and restore the stream.
  window.hchat = { stats, dropStream, resumeStream, state };
  start();
})();
