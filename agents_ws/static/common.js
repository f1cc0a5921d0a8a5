// Shared by the agent desktop and the supervisor view: texts in Spanish and English, the login,
// and the websocket connection (token in a subprotocol, reconnect with backoff, heartbeat).
"use strict";

const TEXTS = {
  es: {
    app_title: "Escritorio del agente", sup_title: "Supervisión", language: "Idioma",
    login_title: "Iniciar sesión", login_user: "Usuario", login_password: "Contraseña",
    login_submit: "Entrar", login_failed: "Usuario o contraseña incorrectos",
    login_needed: "Inicie sesión de nuevo",
    session_revoked: "Su sesión terminó (un administrador cambió su cuenta). Inicie sesión de nuevo.",
    login_locked: "Demasiados intentos fallidos. Espere o pida ayuda a un administrador.",
    conn_up: "Conectado", conn_down: "Desconectado", conn_connecting: "Conectando…",
    phone_down: "sin teléfono (reconectando)",
    st_offline: "Desconectado", st_logged_in: "Conectado", st_ready: "Disponible",
    st_paused: "En pausa", st_reserved: "Reservado", st_talking: "En llamada", st_wrap_up: "Cierre",
    campaign: "Campaña", any_campaign: "Cualquier campaña", ready: "Disponible",
    pause: "Pausa", pause_reason: "Motivo de pausa", logout: "Salir",
    r_break: "Descanso", r_lunch: "Almuerzo", r_training: "Capacitación", r_meeting: "Reunión",
    r_technical: "Problema técnico", r_personal: "Personal",
    r_debtor_hung_up: "El deudor colgó antes de conectar",
    r_agent_channel_lost: "Su teléfono se desconectó: la llamada no llegó",
    r_connect_failed: "La llamada no se pudo conectar",
    preview_next: "Siguiente cuenta", preview_dial: "Marcar", preview_skip: "Saltar",
    hangup: "Colgar", talk_time: "Tiempo en llamada", wrap_left: "Cierre restante",
    no_call: "Sin llamada. Póngase disponible para recibir llamadas.",
    account: "Cuenta", debtor: "Deudor", balance: "Saldo", dpd: "Días de atraso",
    bucket: "Tramo de mora", local_time: "Hora del deudor", ref: "Referencia",
    script: "Guion sugerido", phones: "Teléfonos", number: "Número", type: "Tipo",
    status: "Estado", wrong_number: "Número equivocado", add_dnc: "y no llamar (DNC)",
    payments: "Pagos", promises: "Promesas anteriores", history: "Gestiones anteriores",
    due_callback: "Rellamada pendiente", custom_fields: "Datos adicionales",
    amount: "Monto", date: "Fecha", code: "Código", notes: "Notas",
    none: "Ninguno", disposition: "Resultado de la llamada", save: "Guardar",
    disp_submit: "Guardar resultado", pause_after: "Pausa después",
    ptp: "Promesa de pago", ptp_submit: "Registrar promesa", add_instalment: "Añadir cuota",
    remove: "Quitar", instalments_hint: "Una fecha y monto, o varias cuotas.",
    callback: "Rellamada", cb_when: "Fecha y hora (hora del deudor)", cb_owner: "Para",
    cb_self: "Mí", cb_anyone: "Cualquier agente", cb_submit: "Programar rellamada",
    saved: "Guardado", saved_dup: "Ya estaba guardado", error: "Error",
    err_amount_comma: "Use punto como separador decimal, por ejemplo 12.50",
    err_amount_format: "Monto no válido: use el formato 12.50",
    err_amount_positive: "El monto debe ser mayor que cero",
    err_required: "Obligatorio", err_past: "La fecha ya pasó",
    pop_received: "Llamada conectada", preview_received: "Cuenta en vista previa",
    keys: "Teclado", agents: "Agentes", supervisors: "Supervisores", role: "Rol",
    role_supervisor: "Supervisor", role_admin: "Administrador", campaigns: "Campañas", agent: "Agente",
    time_in_state: "Tiempo en estado", current_call: "Llamada actual", actions: "Acciones",
    listen: "Escuchar", whisper: "Susurrar", barge: "Intervenir", dialing: "Marcando",
    ringing: "Timbrando", talking: "Hablando", abandon_rate: "Abandono",
    decision: "Decisión de marcación", away: "ausente",
    no_campaign_data: "Sin datos de campañas del motor todavía.",
    st_no_phone: "Sin teléfono",
    phone_missing: "No tiene un teléfono configurado, así que no puede recibir llamadas. Pida a un administrador: dialer agent update {login} --phone PJSIP/… y luego recargue esta página.",
    phone_not_configured: "Su teléfono ({endpoint}) no existe en Asterisk. Pida a un administrador que lo configure (pjsip.conf) o que corrija el teléfono de su usuario.",
    phone_unreachable: "Su teléfono ({endpoint}) no está registrado. Abra o revise su softphone y recargue esta página.",
    phone_ok: "Llamando a su teléfono ({endpoint}): conteste para empezar el turno. Si no suena, revise el teléfono.",
    phone_unknown: "No se puede comprobar su teléfono: este servidor no tiene conexión con Asterisk. Avise a su supervisor.",
  },
  en: {
    app_title: "Agent desktop", sup_title: "Supervisor", language: "Language",
    login_title: "Log in", login_user: "User", login_password: "Password",
    login_submit: "Log in", login_failed: "Wrong user or password",
    login_needed: "Please log in again",
    session_revoked: "Your session has ended (an administrator changed your account). Please log in again.",
    login_locked: "Too many failed attempts. Wait, or ask an administrator.",
    conn_up: "Connected", conn_down: "Disconnected", conn_connecting: "Connecting…",
    phone_down: "phone down (reconnecting)",
    st_offline: "Offline", st_logged_in: "Logged in", st_ready: "Ready",
    st_paused: "Paused", st_reserved: "Reserved", st_talking: "Talking", st_wrap_up: "Wrap-up",
    campaign: "Campaign", any_campaign: "Any campaign", ready: "Ready",
    pause: "Pause", pause_reason: "Pause reason", logout: "Log out",
    r_break: "Break", r_lunch: "Lunch", r_training: "Training", r_meeting: "Meeting",
    r_technical: "Technical problem", r_personal: "Personal",
    r_debtor_hung_up: "The debtor hung up before the call reached you",
    r_agent_channel_lost: "Your phone was disconnected: the call did not reach you",
    r_connect_failed: "The call could not be connected",
    preview_next: "Next account", preview_dial: "Dial", preview_skip: "Skip",
    hangup: "Hang up", talk_time: "Talk time", wrap_left: "Wrap-up left",
    no_call: "No call. Go ready to receive calls.",
    account: "Account", debtor: "Debtor", balance: "Balance", dpd: "Days past due",
    bucket: "Aging bucket", local_time: "Debtor's time", ref: "Reference",
    script: "Suggested script", phones: "Phones", number: "Number", type: "Type",
    status: "Status", wrong_number: "Wrong number", add_dnc: "and do not call (DNC)",
    payments: "Payments", promises: "Earlier promises", history: "Earlier dispositions",
    due_callback: "Callback due", custom_fields: "More data",
    amount: "Amount", date: "Date", code: "Code", notes: "Notes",
    none: "None", disposition: "Disposition", save: "Save",
    disp_submit: "Save disposition", pause_after: "Pause afterwards",
    ptp: "Promise to pay", ptp_submit: "Record promise", add_instalment: "Add instalment",
    remove: "Remove", instalments_hint: "One date and amount, or several instalments.",
    callback: "Callback", cb_when: "Date and time (debtor's time)", cb_owner: "For",
    cb_self: "Me", cb_anyone: "Any agent", cb_submit: "Schedule callback",
    saved: "Saved", saved_dup: "Already saved", error: "Error",
    err_amount_comma: "Use a dot as the decimal separator, e.g. 12.50",
    err_amount_format: "Invalid amount: use the format 12.50",
    err_amount_positive: "The amount must be greater than zero",
    err_required: "Required", err_past: "The date is in the past",
    pop_received: "Call connected", preview_received: "Preview account",
    keys: "Keys", agents: "Agents", supervisors: "Supervisors", role: "Role",
    role_supervisor: "Supervisor", role_admin: "Administrator", campaigns: "Campaigns", agent: "Agent",
    time_in_state: "Time in state", current_call: "Current call", actions: "Actions",
    listen: "Listen", whisper: "Whisper", barge: "Barge", dialing: "Dialing",
    ringing: "Ringing", talking: "Talking", abandon_rate: "Abandon rate",
    decision: "Pacing decision", away: "away",
    no_campaign_data: "No campaign figures from the engine yet.",
    st_no_phone: "No phone",
    phone_missing: "No phone is configured for you, so you cannot take calls. Ask an administrator: dialer agent update {login} --phone PJSIP/… and then reload this page.",
    phone_not_configured: "Your phone ({endpoint}) does not exist in Asterisk. Ask an administrator to configure it (pjsip.conf) or to correct your user's phone.",
    phone_unreachable: "Your phone ({endpoint}) is not registered. Open or check your softphone and reload this page.",
    phone_ok: "Calling your phone ({endpoint}): answer it to start the shift. If it does not ring, check the phone.",
    phone_unknown: "Your phone cannot be checked: this server has no connection to Asterisk. Tell your supervisor.",
  },
};

const I18N = {
  lang: localStorage.getItem("dialer.lang") || ((navigator.language || "es").startsWith("en") ? "en" : "es"),
  t(key) { return (TEXTS[this.lang] && TEXTS[this.lang][key]) || TEXTS.es[key] || key; },
  apply(root = document) {
    document.documentElement.lang = this.lang;
    root.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = this.t(el.dataset.i18n); });
    root.querySelectorAll("[data-i18n-label]").forEach((el) => { el.setAttribute("aria-label", this.t(el.dataset.i18nLabel)); });
  },
  set(lang) { this.lang = lang === "en" ? "en" : "es"; localStorage.setItem("dialer.lang", this.lang); this.apply(); },
};

function uid() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  return Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 12);
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
}

function fmtDuration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const m = Math.floor(s / 60), h = Math.floor(m / 60);
  const two = (n) => String(n).padStart(2, "0");
  return (h ? h + ":" + two(m % 60) : two(m)) + ":" + two(s % 60);
}

async function apiLogin(login, password) {
  const res = await fetch("/api/login", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ login, password }),
  });
  if (res.status === 429) return { locked: true };
  if (!res.ok) return null;
  return res.json();
}

// One websocket with reconnects. `handlers.message(msg)`, `handlers.status("up"|"down"|"connecting")`,
// `handlers.unauthorized(reason)` when the token no longer works (reason "session_revoked" when the
// server closed the socket because an administrator changed the account: close code 4001).
class Link {
  constructor(token, handlers) {
    this.token = token; this.h = handlers; this.ws = null; this.retry = 0; this.welcomed = false;
    this.failuresBeforeWelcome = 0; this.closed = false; this.lastPong = Date.now();
  }
  open() {
    this.h.status("connecting");
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/agent";
    const ws = new WebSocket(url, ["dialer.v1", "bearer." + this.token]);
    this.ws = ws; this.welcomed = false;
    ws.onmessage = (ev) => {
      let msg; try { msg = JSON.parse(ev.data); } catch (e) { return; }
      if (msg.type === "welcome") { this.welcomed = true; this.retry = 0; this.failuresBeforeWelcome = 0; this.h.status("up"); }
      if (msg.type === "pong") { this.lastPong = Date.now(); return; }
      this.h.message(msg);
    };
    ws.onclose = (ev) => {
      this.h.status("down");
      if (this.closed) return;
      if (ev.code === 4001) { this.closed = true; clearInterval(this.beat); this.h.unauthorized("session_revoked"); return; }
      if (!this.welcomed && ++this.failuresBeforeWelcome >= 3) { this.closed = true; this.h.unauthorized(); return; }
      const delay = Math.min(10000, 500 * 2 ** this.retry++);
      setTimeout(() => this.open(), delay);
    };
    clearInterval(this.beat);
    this.lastPong = Date.now();
    this.beat = setInterval(() => {
      if (ws.readyState !== WebSocket.OPEN) return;
      if (Date.now() - this.lastPong > 25000) { this.h.status("down"); ws.close(); return; }
      ws.send(JSON.stringify({ v: 1, type: "ping" }));
    }, 10000);
  }
  send(msg) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(Object.assign({ v: 1 }, msg)));
    return true;
  }
  close() { this.closed = true; clearInterval(this.beat); if (this.ws) this.ws.close(); }
}
