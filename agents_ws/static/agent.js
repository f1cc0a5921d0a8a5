// The agent desktop: login, ready/pause, the screen pop, disposition / promise-to-pay / callback
// forms with validation, timers, connection indicator. Talks protocol v1 (see PROTOCOL.md).
"use strict";

const $ = (id) => document.getElementById(id);
const AMOUNT_RE = /^\d{1,12}(\.\d{1,2})?$/;

const ACK_LABELS = { ptp: "ptp", disposition: "disposition", callback: "callback", wrong_number: "wrong_number" };
function money(amount, currency) {
  // Display only: the protocol always carries the canonical "1234.50".
  const fmt = new Intl.NumberFormat(I18N.lang === "en" ? "en-US" : "es-CO", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  return fmt.format(Number(amount)) + " " + currency;
}

const desk = {
  link: null, agent: null, state: null, stateAt: 0, call: null, pop: null,
  campaigns: [], pauseReasons: [], pending: new Map(),
};

// ---- login -------------------------------------------------------------------------------
$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("login-error").textContent = "";
  let found = null;
  try { found = await apiLogin($("login-user").value.trim(), $("login-password").value); } catch (e) { found = null; }
  if (!found || found.locked) { $("login-error").textContent = I18N.t(found ? "login_locked" : "login_failed"); $("login-password").focus(); return; }
  sessionStorage.setItem("dialer.token", found.token);
  start(found.token);
});

function start(token) {
  $("login-view").classList.add("hidden");
  $("desk-view").classList.remove("hidden");
  desk.link = new Link(token, {
    status: setConn,
    message: onMessage,
    unauthorized: (reason) => {
      sessionStorage.removeItem("dialer.token");
      $("desk-view").classList.add("hidden");
      $("login-view").classList.remove("hidden");
      $("login-error").textContent = I18N.t(reason || "login_needed");
    },
  });
  desk.link.open();
  $("btn-ready").focus();
}

function setConn(status) {
  desk.conn = status;
  $("conn").dataset.status = status;
  $("conn-text").textContent = I18N.t("conn_" + status);
  if (status === "up") resendPending();
}

// ---- messages from the server -----------------------------------------------------------
function onMessage(msg) {
  // Other parts of the desktop (softphone.js) follow the same messages.
  window.dispatchEvent(new CustomEvent("dialer:message", { detail: msg }));
  switch (msg.type) {
    case "welcome":
      desk.agent = msg.agent; desk.campaigns = msg.campaigns; desk.pauseReasons = msg.pause_reasons;
      if (!localStorage.getItem("dialer.lang") && msg.agent.language) {
        I18N.set(msg.agent.language); $("lang").value = I18N.lang; setConn(desk.conn);
      }
      $("agent-name").textContent = msg.agent.name;
      fillSelectors();
      applyState(msg.state);
      if (msg.call) showPop(msg.call, msg.pop); else if (!inCall()) clearPop();
      break;
    case "state":
      applyState(msg);
      if (msg.re) settle(msg.re, true);
      break;
    case "screen_pop":
      showPop(msg.call, msg.pop);
      notify(I18N.t(msg.call.preview ? "preview_received" : "pop_received"));
      break;
    case "ack":
      settle(msg.re, true);
      notify((ACK_LABELS[msg.for] ? I18N.t(ACK_LABELS[msg.for]) + ": " : "") + I18N.t(msg.duplicate ? "saved_dup" : "saved") +
        (msg.record_id ? " (#" + msg.record_id + ")" : ""), false, "ack-" + msg.for);
      break;
    case "error":
      showError(msg);
      if (msg.re) settle(msg.re, false);
      break;
  }
}

const CALL_FAILED = new Set(["debtor_hung_up", "agent_channel_lost", "connect_failed"]);

function applyState(st) {
  desk.state = st; desk.stateAt = performance.now() - (st.elapsed_s || 0) * 1000;
  const badge = $("state-badge");
  // Pause reasons, and why a call the agent was reserved for never reached them (PROTOCOL.md).
  const told = st.reason && (st.state === "paused" || CALL_FAILED.has(st.reason));
  badge.textContent = I18N.t("st_" + st.state) + (told ? " · " + I18N.t("r_" + st.reason) : "")
    // No call reaches the agent while their phone (nailed-up channel) is down; the dialer rings it again.
    + (st.phone === "down" && st.state !== "offline" ? " · " + I18N.t("phone_down") : "");
  badge.dataset.state = st.state;
  badge.dataset.phone = st.phone || "up";
  badge.classList.remove("hidden");
  $("state-timer").classList.remove("hidden");
  // Ready means the last call is done with: its pop goes, so nothing can be recorded against
  // it by mistake (paused or offline keep it visible for a late submission).
  if (st.state === "ready" && desk.call && desk.call.call_id !== st.call_id) clearPop();
  updateButtons();
  tick();
  // Offline, or "logged in" on the strength of a call to the phone that may never connect:
  // ask the server whether the phone can be reached at all.
  if (st.state === "offline" || st.state === "logged_in") checkPhone(); else showPhone(null);
}

// ---- the agent's phone: why an agent stays offline (no phone, not registered, not answering)
let phoneTimer = null;
async function checkPhone() {
  if (phoneTimer) return;  // one check in flight or scheduled at a time
  phoneTimer = setTimeout(() => {
    phoneTimer = null;
    if (desk.state && ["offline", "logged_in"].includes(desk.state.state)) checkPhone();
  }, 10000);
  const token = sessionStorage.getItem("dialer.token");
  if (!token) return;
  try {
    const res = await fetch("/api/agent/phone", { headers: { Authorization: "Bearer " + token } });
    if (!res.ok) return;
    const phone = await res.json();
    const now = desk.state ? desk.state.state : "offline";
    const broken = ["missing", "not_configured", "unreachable"].includes(phone.status);
    if (now === "offline" || (now === "logged_in" && broken)) showPhone(phone);
    else showPhone(null);
  } catch (e) { /* the connection indicator already says the server is unreachable */ }
}

function showPhone(phone) {
  const box = $("phone-status");
  desk.phone = phone;
  if (!phone) { box.classList.add("hidden"); box.textContent = ""; updateButtons(); return; }
  const text = I18N.t("phone_" + phone.status)
    .replace("{endpoint}", phone.endpoint || "")
    .replace("{login}", (desk.agent && desk.agent.login) || "");
  box.textContent = text;
  box.dataset.status = phone.status;
  box.classList.toggle("error", phone.status !== "ok");
  box.classList.remove("hidden");
  if (phone.status !== "ok") $("state-badge").textContent = I18N.t("st_no_phone");
  updateButtons();
}

function inCall() { return desk.state && ["reserved", "talking", "wrap_up"].includes(desk.state.state); }

function updateButtons() {
  const s = desk.state ? desk.state.state : "offline";
  // Ready means nothing without a phone to bridge calls into: none configured, or one Asterisk
  // cannot reach (a phone that is merely down is rung again by the dialer, so Ready stays).
  const noPhone = (desk.state && desk.state.phone_reason === "no_endpoint")
    || (desk.phone && ["missing", "not_configured", "unreachable"].includes(desk.phone.status));
  $("btn-ready").disabled = !["logged_in", "paused", "wrap_up", "ready"].includes(s) || !!noPhone;
  $("btn-pause").disabled = !["logged_in", "ready", "paused", "wrap_up"].includes(s);
  $("btn-preview").disabled = s !== "ready";
  $("btn-hangup").disabled = !["reserved", "talking"].includes(s);
  const preview = desk.call && desk.call.preview && s === "reserved";
  $("btn-dial").classList.toggle("hidden", !preview);
  $("btn-skip").classList.toggle("hidden", !preview);
  const hasCall = !!desk.call;
  for (const id of ["disp-submit", "ptp-submit", "cb-submit"]) $(id).disabled = !hasCall || s === "offline";
}

function tick() {
  if (!desk.state) return;
  const elapsed = (performance.now() - desk.stateAt) / 1000;
  let text = fmtDuration(elapsed);
  if (desk.state.state === "talking") text = I18N.t("talk_time") + " " + text;
  if (desk.state.state === "wrap_up" && desk.state.wrap_up_remaining_s !== null) {
    text = I18N.t("wrap_left") + " " + fmtDuration(desk.state.wrap_up_remaining_s - elapsed);
  }
  $("state-timer").textContent = text;
}
setInterval(tick, 500);

function fillSelectors() {
  const camp = $("campaign"); const chosen = camp.value;
  camp.replaceChildren(el("option", { value: "" }, I18N.t("any_campaign")),
    ...desk.campaigns.map((c) => el("option", { value: c.id }, c.name)));
  camp.value = chosen;
  const reasons = desk.pauseReasons.map((r) => el("option", { value: r }, I18N.t("r_" + r)));
  $("pause-reason").replaceChildren(...reasons);
  $("disp-pause").replaceChildren(el("option", { value: "" }, "—"),
    ...desk.pauseReasons.map((r) => el("option", { value: r }, I18N.t("r_" + r))));
}

// ---- the screen pop ---------------------------------------------------------------------
function clearPop() {
  desk.call = null; desk.pop = null;
  $("pop").replaceChildren(); $("pop").classList.add("hidden"); $("no-call").classList.remove("hidden");
  updateButtons();
}

function table(headers, rows) {
  if (!rows.length) return el("p", { class: "empty" }, I18N.t("none"));
  return el("table", {}, el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", { scope: "col" }, I18N.t(h))))),
    el("tbody", {}, ...rows.map((r) => el("tr", {}, ...r.map((c) => el("td", {}, c))))));
}

function showPop(call, pop) {
  const newCall = !desk.call || desk.call.call_id !== call.call_id;
  desk.call = call; desk.pop = pop;
  if (newCall) resetForms();
  const a = pop.account;
  const box = $("pop");
  const phones = pop.phones.map((p) => [p.number + (p.current ? " ◀" : ""), p.type, p.dnc ? "DNC" : (p.valid ? "✓" : "✗"),
    el("button", { type: "button", class: "secondary", "data-phone": p.id, onclick: () => wrongNumber(p.id) }, I18N.t("wrong_number"))]);
  const custom = Object.entries(pop.custom_fields || {});
  box.replaceChildren(
    el("section", { id: "pop-account" },
      el("h2", {}, I18N.t("account") + " " + (a.external_ref || "")),
      el("dl", { class: "facts" },
        el("dt", {}, I18N.t("debtor")), el("dd", { id: "pop-name", class: "big" }, a.name),
        el("dt", {}, I18N.t("balance")), el("dd", { id: "pop-balance", class: "big", "data-amount": a.balance }, money(a.balance, a.currency)),
        el("dt", {}, I18N.t("dpd")), el("dd", { id: "pop-dpd" }, String(a.days_past_due)),
        el("dt", {}, I18N.t("bucket")), el("dd", {}, a.aging_bucket),
        el("dt", {}, I18N.t("local_time")), el("dd", {}, a.local_time + (a.time_zone ? " (" + a.time_zone + ")" : "")),
        el("dt", {}, I18N.t("campaign")), el("dd", {}, (pop.campaign && pop.campaign.name) || "")),
      el("div", { class: "script", id: "pop-script" }, el("strong", {}, I18N.t("script") + ": "), pop.script ? pop.script.text : "")),
    pop.callback ? el("section", { id: "pop-callback" }, el("h2", {}, I18N.t("due_callback")),
      el("p", {}, pop.callback.due_local + " — " + (pop.callback.notes || ""))) : el("span"),
    el("section", {}, el("h2", {}, I18N.t("phones")), table(["number", "type", "status", "actions"], phones),
      el("label", {}, el("input", { type: "checkbox", id: "wn-dnc", style: "width:auto" }), " " + I18N.t("add_dnc"))),
    el("section", {}, el("h2", {}, I18N.t("promises")),
      table(["date", "amount", "status", "notes"], pop.promises.map((p) => [p.due_date, money(p.amount, p.currency), p.status, p.notes || ""]))),
    el("section", {}, el("h2", {}, I18N.t("payments")),
      table(["date", "amount", "ref"], pop.payments.map((p) => [(p.paid_at || "").slice(0, 10), money(p.amount, p.currency), p.reference || ""]))),
    el("section", {}, el("h2", {}, I18N.t("history")),
      table(["date", "code", "notes"], pop.history.map((h) => [(h.created_at || "").slice(0, 16).replace("T", " "), h.code, h.notes || ""]))),
    custom.length ? el("section", {}, el("h2", {}, I18N.t("custom_fields")),
      el("dl", { class: "facts" }, ...custom.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))]))) : el("span"),
  );
  box.classList.remove("hidden"); $("no-call").classList.add("hidden");
  $("disp-code").replaceChildren(el("option", { value: "" }, "—"),
    ...(pop.disposition_codes || []).map((c) => el("option", { value: c.code }, c.label + " (" + c.code + ")")));
  $("cb-zone").textContent = a.time_zone ? "(" + a.time_zone + ")" : "(UTC)";
  updateButtons();
}

// ---- forms ------------------------------------------------------------------------------
function ptpRow(i) {
  return el("div", { class: "row", "data-row": i },
    el("div", {}, el("label", { for: "ptp-amount-" + i }, I18N.t("amount")),
      el("input", { id: "ptp-amount-" + i, inputmode: "decimal", placeholder: "12.50", autocomplete: "off" }),
      el("p", { class: "field-error", id: "ptp-amount-" + i + "-error" })),
    el("div", {}, el("label", { for: "ptp-date-" + i }, I18N.t("date")),
      el("input", { id: "ptp-date-" + i, type: "date" }),
      el("p", { class: "field-error", id: "ptp-date-" + i + "-error" })),
    i > 0 ? el("button", { type: "button", class: "secondary", onclick: (e) => { e.target.closest(".row").remove(); } }, I18N.t("remove")) : el("span"));
}

function resetForms() {
  $("ptp-rows").replaceChildren(ptpRow(0));
  $("disp-notes").value = ""; $("cb-notes").value = ""; $("ptp-notes").value = ""; $("cb-when").value = "";
  document.querySelectorAll(".field-error").forEach((p) => { p.textContent = ""; });
  document.querySelectorAll("[aria-invalid]").forEach((n) => n.removeAttribute("aria-invalid"));
}
resetForms();
$("ptp-add").addEventListener("click", () => {
  const n = $("ptp-rows").children.length; $("ptp-rows").append(ptpRow(n)); $("ptp-amount-" + n).focus();
});

function fieldError(inputId, text) {
  const input = $(inputId); const out = $(inputId + "-error");
  if (input) { input.setAttribute("aria-invalid", text ? "true" : "false"); input.setAttribute("aria-describedby", inputId + "-error"); }
  if (out) out.textContent = text || "";
}

function todayIso() { const d = new Date(); d.setMinutes(d.getMinutes() - d.getTimezoneOffset()); return d.toISOString().slice(0, 10); }

function checkAmount(id) {
  const v = $(id).value.trim();
  if (!v) return "err_required";
  if (v.includes(",")) return "err_amount_comma";
  if (v.startsWith("-")) return "err_amount_positive";
  if (!AMOUNT_RE.test(v)) return "err_amount_format";
  if (Number(v) <= 0) return "err_amount_positive";
  return null;
}

$("ptp-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  if (!desk.call) return;
  const rows = [...$("ptp-rows").children].map((r) => Number(r.dataset.row));
  let ok = true; const plan = [];
  for (const i of rows) {
    const aErr = checkAmount("ptp-amount-" + i);
    const d = $("ptp-date-" + i).value;
    const dErr = !d ? "err_required" : (d < todayIso() ? "err_past" : null);
    fieldError("ptp-amount-" + i, aErr && I18N.t(aErr)); fieldError("ptp-date-" + i, dErr && I18N.t(dErr));
    if (aErr || dErr) ok = false;
    plan.push({ amount: $("ptp-amount-" + i).value.trim(), date: d });
  }
  if (!ok) { const bad = document.querySelector("#ptp-rows [aria-invalid=true]"); if (bad) bad.focus(); return; }
  const notes = $("ptp-notes").value || null;
  const msg = plan.length === 1
    ? { type: "ptp", call_id: desk.call.call_id, amount: plan[0].amount, date: plan[0].date, notes }
    : { type: "ptp", call_id: desk.call.call_id, instalments: plan, notes };
  submit(msg, "ptp");
});

$("disp-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  if (!desk.call) return;
  const code = $("disp-code").value;
  fieldError("disp-code", code ? "" : I18N.t("err_required"));
  if (!code) { $("disp-code").focus(); return; }
  submit({ type: "disposition", call_id: desk.call.call_id, code, notes: $("disp-notes").value || null,
    pause_after: $("disp-pause").value || null }, "disp");
});

$("cb-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  if (!desk.call) return;
  const when = $("cb-when").value;
  fieldError("cb-when", when ? "" : I18N.t("err_required"));
  if (!when) { $("cb-when").focus(); return; }
  submit({ type: "callback", call_id: desk.call.call_id, local_time: when.slice(0, 16), owner: $("cb-owner").value,
    notes: $("cb-notes").value || null }, "cb");
});

function wrongNumber(phoneId) {
  if (!desk.call) return;
  submit({ type: "wrong_number", call_id: desk.call.call_id, phone_id: phoneId, dnc: $("wn-dnc").checked }, "wn");
}

// Submissions keep their client id until acknowledged, and are re-sent after a reconnect:
// the server answers a re-send with the same record (duplicate: true), never a second one.
function submit(msg, form) {
  msg.id = uid();
  desk.pending.set(msg.id, { msg, form });
  const btn = $(form + "-submit"); if (btn) btn.disabled = true;
  desk.link.send(msg);
}
function resendPending() { for (const { msg } of desk.pending.values()) desk.link.send(msg); }
function settle(id, ok) {
  const p = desk.pending.get(id); if (!p) return;
  desk.pending.delete(id);
  const btn = $(p.form + "-submit"); if (btn) btn.disabled = false;
  if (ok && p.form === "ptp") { resetPtp(); }
  updateButtons();
}
function resetPtp() { $("ptp-rows").replaceChildren(ptpRow(0)); }

const FIELD_INPUTS = { amount: "ptp-amount-0", date: "ptp-date-0", code: "disp-code", local_time: "cb-when" };
function showError(msg) {
  let target = null;
  if (msg.field) {
    const m = /^instalments\[(\d+)\]\.(amount|date)$/.exec(msg.field);
    target = m ? "ptp-" + m[2] + "-" + m[1] : FIELD_INPUTS[msg.field];
  }
  if (target && $(target)) { fieldError(target, msg.message); $(target).focus(); }
  notify(I18N.t("error") + (msg.field ? " (" + msg.field + ")" : "") + ": " + msg.message, true);
}

function notify(text, isError = false, kind = "") {
  const n = $("notice");
  n.textContent = text; n.classList.toggle("error", isError); n.classList.remove("hidden");
  n.dataset.kind = isError ? "error" : kind;
}

// ---- state buttons and keyboard ---------------------------------------------------------
function send(msg) { msg.id = uid(); desk.link.send(msg); }
$("btn-ready").addEventListener("click", () => {
  const c = $("campaign").value;
  send({ type: "state.ready", campaign_id: c ? Number(c) : null });
});
$("btn-pause").addEventListener("click", () => send({ type: "state.pause", reason: $("pause-reason").value }));
$("btn-preview").addEventListener("click", () => send({ type: "preview.next", campaign_id: $("campaign").value ? Number($("campaign").value) : null }));
$("btn-dial").addEventListener("click", () => desk.call && send({ type: "preview.dial", call_id: desk.call.call_id }));
$("btn-skip").addEventListener("click", () => desk.call && send({ type: "preview.skip", call_id: desk.call.call_id }));
$("btn-hangup").addEventListener("click", () => desk.call && send({ type: "hangup", call_id: desk.call.call_id }));
$("btn-logout").addEventListener("click", async () => {
  send({ type: "state.logout" });
  const token = sessionStorage.getItem("dialer.token");
  setTimeout(async () => {
    desk.link.close(); sessionStorage.removeItem("dialer.token");
    await fetch("/api/logout", { method: "POST", headers: { Authorization: "Bearer " + token } });
    location.reload();
  }, 300);
});
document.addEventListener("keydown", (ev) => {
  if (!ev.altKey) return;
  const map = { r: "btn-ready", p: "btn-pause", n: "btn-preview", d: "btn-dial", s: "btn-skip", h: "btn-hangup" };
  const id = map[ev.key.toLowerCase()];
  if (id && !$(id).disabled && !$(id).classList.contains("hidden")) { ev.preventDefault(); $(id).click(); }
});

$("lang").value = I18N.lang;
$("lang").addEventListener("change", (ev) => {
  I18N.set(ev.target.value); fillSelectors(); if (desk.conn) setConn(desk.conn); if (desk.state) applyState(Object.assign({}, desk.state, { elapsed_s: (performance.now() - desk.stateAt) / 1000 })); if (desk.phone) showPhone(desk.phone);
  if (desk.call && desk.pop) showPop(desk.call, desk.pop);
});
I18N.apply();
if (sessionStorage.getItem("dialer.token")) start(sessionStorage.getItem("dialer.token"));
