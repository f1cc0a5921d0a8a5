// The supervisor view: live agents and campaigns from `supervisor.snapshot` pushes (once a
// second), and listen / whisper / barge buttons that the engine forwards to telephony (ChanSpy).
"use strict";

const $ = (id) => document.getElementById(id);
let link = null;
let last = null;
let connStatus = "down";

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const found = await apiLogin($("login-user").value.trim(), $("login-password").value).catch(() => null);
  if (!found || found.locked || found.role === "agent") { $("login-error").textContent = I18N.t(found && found.locked ? "login_locked" : "login_failed"); return; }
  sessionStorage.setItem("dialer.sup.token", found.token);
  start(found.token);
});

function start(token) {
  $("login-view").classList.add("hidden"); $("sup-view").classList.remove("hidden");
  link = new Link(token, {
    status: (s) => {
      connStatus = s;
      $("conn").dataset.status = s; $("conn-text").textContent = I18N.t("conn_" + s);
      if (s === "up") link.send({ type: "supervisor.subscribe" });
    },
    message: onMessage,
    unauthorized: (reason) => {
      sessionStorage.removeItem("dialer.sup.token");
      if (reason) sessionStorage.setItem("dialer.sup.reason", reason);
      location.reload();
    },
  });
  link.open();
}

function onMessage(msg) {
  if (msg.type === "welcome") {
    $("who").textContent = msg.agent.name;
    if (!localStorage.getItem("dialer.lang") && msg.agent.language) {
      I18N.set(msg.agent.language); $("lang").value = I18N.lang;
      $("conn-text").textContent = I18N.t("conn_" + connStatus);
    }
  }
  if (msg.type === "supervisor.snapshot") { last = msg; render(); }
  if (msg.type === "ack") notify(I18N.t("saved") + ": " + msg.for);
  if (msg.type === "error") notify(I18N.t("error") + ": " + msg.message, true);
}

function notify(text, isError = false) {
  const n = $("notice"); n.textContent = text; n.classList.toggle("error", isError); n.classList.remove("hidden");
}

function table(headers, rows) {
  return el("table", {}, el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", { scope: "col" }, I18N.t(h))))),
    el("tbody", {}, ...rows.map((r) => el("tr", {}, ...r.map((c) => el("td", {}, c))))));
}

function action(kind, agentId) {
  link.send({ type: "supervisor." + kind, id: uid(), agent_id: agentId });
}

function render() {
  if (!last) return;
  // Keep keyboard focus across re-renders (the table is rebuilt every second).
  const focused = document.activeElement && document.activeElement.dataset.key;
  // Supervisors and admins watching are not agents: listed apart, without call actions.
  const present = last.agents.filter((a) => a.state !== "offline" || a.connected);
  const watchers = present.filter((a) => a.role && a.role !== "agent").map((a) => [
    a.name + " (" + a.login + ")", I18N.t("role_" + a.role), fmtDuration(a.elapsed_s),
  ]);
  $("supervisors").replaceChildren(table(["agent", "role", "time_in_state"], watchers));
  const agents = present.filter((a) => !a.role || a.role === "agent").map((a) => [
    a.name + " (" + a.login + ")",
    el("span", { class: "badge", "data-state": a.state }, I18N.t("st_" + a.state) + (a.away ? " · " + I18N.t("away") : "")),
    fmtDuration(a.elapsed_s),
    a.call_id || "—",
    el("span", { class: "row" }, ...["listen", "whisper", "barge"].map((k) =>
      el("button", { type: "button", class: k === "barge" ? "danger" : "secondary", "data-key": k + "-" + a.agent_id,
        disabled: a.state !== "talking", onclick: () => action(k, a.agent_id) }, I18N.t(k)))),
  ]);
  $("agents").replaceChildren(table(["agent", "status", "time_in_state", "current_call", "actions"], agents));
  const camps = last.campaigns.map((c) => [c.name, String(c.dialing), String(c.ringing), String(c.talking),
    (c.abandon_rate * 100).toFixed(1) + " %", c.decision]);
  $("campaigns").replaceChildren(camps.length
    ? table(["campaign", "dialing", "ringing", "talking", "abandon_rate", "decision"], camps)
    : el("p", { class: "empty" }, I18N.t("no_campaign_data")));
  if (focused) { const again = document.querySelector('[data-key="' + focused + '"]'); if (again) again.focus(); }
}

$("lang").value = I18N.lang;
$("lang").addEventListener("change", (ev) => {
  I18N.set(ev.target.value); $("conn-text").textContent = I18N.t("conn_" + connStatus); render();
});
I18N.apply();
if (sessionStorage.getItem("dialer.sup.token")) start(sessionStorage.getItem("dialer.sup.token"));
if (sessionStorage.getItem("dialer.sup.reason")) {
  // The socket was closed because an administrator changed this account (close code 4001).
  $("login-error").textContent = I18N.t(sessionStorage.getItem("dialer.sup.reason"));
  sessionStorage.removeItem("dialer.sup.reason");
}
