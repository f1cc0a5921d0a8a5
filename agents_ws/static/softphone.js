// The desktop's WebRTC softphone (SIP.js from node_modules, served at /agent/vendor/sip.js/).
// After login it asks the dialer for fresh SIP credentials over the desk's websocket, registers
// to Asterisk, calls the agent-session extension itself and stays in the holding bridge: calls
// are bridged in without ringing. It tells the agent and the dialer each step (softphone.status):
// a lost websocket or lost media counts the agent's audio down at once (no call is routed to
// them), then it re-registers and re-joins by itself.
import { Inviter, Registerer, SessionState, UserAgent } from "/agent/vendor/sip.js/index.js";

const $ = (id) => document.getElementById(id);
const STATS_EVERY_MS = 2000;
const REPORT_EVERY_MS = 5000;
const REJOIN_MAX_MS = 5000;
const SELF_TEST_MS = 10000;

const TEXT = {
  es: {
    sp_title: "Teléfono", sp_off: "apagado", sp_mic: "pidiendo micrófono", sp_mic_denied: "micrófono denegado",
    sp_connecting: "conectando", sp_registering: "registrando", sp_joining: "uniéndose", sp_ready: "audio listo",
    sp_audio_lost: "audio perdido", sp_rejoining: "reconectando", sp_none: "sin teléfono web",
    sp_mute: "Silenciar", sp_unmute: "Activar micrófono", sp_test: "Prueba de audio", sp_input: "Micrófono",
    sp_output: "Altavoz", sp_dtmf: "Tonos", sp_test_ok: "prueba correcta", sp_test_bad: "no se oye el eco",
    sp_testing: "probando audio…", sp_muted: "silenciado",
    sp_simulated: "simulado (demo: el PBX simulado pone el audio)",
  },
  en: {
    sp_title: "Phone", sp_off: "off", sp_mic: "asking for the microphone", sp_mic_denied: "microphone denied",
    sp_connecting: "connecting", sp_registering: "registering", sp_joining: "joining", sp_ready: "audio ready",
    sp_audio_lost: "audio lost", sp_rejoining: "reconnecting", sp_none: "no web phone",
    sp_mute: "Mute", sp_unmute: "Unmute", sp_test: "Audio test", sp_input: "Microphone",
    sp_output: "Speaker", sp_dtmf: "Keypad", sp_test_ok: "test passed", sp_test_bad: "no echo heard",
    sp_testing: "testing audio…", sp_muted: "muted",
    sp_simulated: "simulated (demo: the simulated PBX plays the audio)",
  },
};
const t = (key) => (TEXT[(window.I18N && I18N.lang) || "es"] || TEXT.es)[key] || key;

// ITU-T G.107 E-model, simplified (as most softphones estimate it): one-way delay from the round
// trip and jitter, loss as an impairment; MOS from the R factor.
export function estimateMos(lossPct, jitterMs, rttMs) {
  const delay = rttMs / 2 + jitterMs * 2 + 10;
  let r = 93.2 - (delay < 160 ? delay / 40 : (delay - 120) / 10) - 2.5 * lossPct;
  r = Math.max(0, Math.min(100, r));
  return 1 + 0.035 * r + 7e-6 * r * (r - 60) * (100 - r);
}

const sp = {
  sip: null, ua: null, registerer: null, session: null, state: "off", muted: false, rejoined: false,
  everJoined: false, inputId: "", outputId: "", reqId: null, lastReport: 0, quality: null,
  prev: null, statsTimer: null, rejoinDelay: 1000, rejoinTimer: null, stopped: true, registered: false,
  steps: [],
};
window.softphone = sp; // for the tests and for debugging in the console (holds no secret once started)

function setState(state, detail) {
  sp.state = state;
  sp.steps.push([Math.round(performance.now()), state, detail || ""]); // what the agent was shown
  if (sp.steps.length > 200) sp.steps.shift();
  const panel = $("softphone");
  panel.dataset.state = state;
  $("sp-state").textContent = t("sp_" + state) + (detail ? " · " + detail : "");
  $("sp-quality").classList.toggle("hidden", state !== "ready" || !sp.quality);
  report(true);
}

function report(now) {
  if (sp.state === "off" && !now) return;
  if (!now && Date.now() - sp.lastReport < REPORT_EVERY_MS) return;
  sp.lastReport = Date.now();
  const q = sp.state === "ready" ? sp.quality : null;
  const msg = {
    type: "softphone.status", state: sp.state === "mic_denied" || sp.state === "none" ? "off"
      : (["connecting", "registering", "mic"].includes(sp.state) ? "joining" : sp.state),
    registered: sp.registered, rejoined: sp.rejoined,
  };
  if (q) Object.assign(msg, { loss_pct: q.loss, jitter_ms: q.jitter, rtt_ms: q.rtt, mos: q.mos });
  if (typeof desk !== "undefined" && desk.link) desk.link.send(msg);
}

function domainOf(uri) { return uri.split("@")[1]; }

function mediaConstraints() {
  return { audio: sp.inputId ? { deviceId: { exact: sp.inputId } } : true, video: false };
}

function audioOut() {
  const el = $("sp-audio");
  if (sp.outputId && el.setSinkId) el.setSinkId(sp.outputId).catch(() => {});
  return el;
}

function attachRemote(session) {
  const pc = session.sessionDescriptionHandler && session.sessionDescriptionHandler.peerConnection;
  if (!pc) return;
  const stream = new MediaStream();
  pc.getReceivers().forEach((r) => { if (r.track) stream.addTrack(r.track); });
  const el = audioOut();
  el.srcObject = stream;
  el.play().catch(() => {});
  applyMute();
  pc.addEventListener("connectionstatechange", () => {
    if (["failed", "disconnected"].includes(pc.connectionState) && sp.session === session) lost("media " + pc.connectionState);
  });
}

function applyMute() {
  const pc = sp.session && sp.session.sessionDescriptionHandler && sp.session.sessionDescriptionHandler.peerConnection;
  if (pc) pc.getSenders().forEach((s) => { if (s.track) s.track.enabled = !sp.muted; });
  $("sp-mute").textContent = t(sp.muted ? "sp_unmute" : "sp_mute");
  $("sp-mute").setAttribute("aria-pressed", String(sp.muted));
  $("softphone").dataset.muted = String(sp.muted);
  $("sp-muted").classList.toggle("hidden", !sp.muted);
}

// --- statistics: the quality badge ----------------------------------------------------------
async function sampleStats() {
  const pc = sp.session && sp.session.sessionDescriptionHandler && sp.session.sessionDescriptionHandler.peerConnection;
  if (!pc || sp.state !== "ready") return;
  const stats = await pc.getStats();
  let inbound = null; let rtt = null;
  stats.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "audio") inbound = s;
    if (s.type === "remote-inbound-rtp" && s.kind === "audio" && s.roundTripTime !== undefined) rtt = s.roundTripTime;
    if (s.type === "candidate-pair" && s.nominated && s.currentRoundTripTime !== undefined && rtt === null) rtt = s.currentRoundTripTime;
  });
  if (!inbound) return;
  const prev = sp.prev || { packetsLost: 0, packetsReceived: 0 };
  const lost = Math.max(0, (inbound.packetsLost || 0) - prev.packetsLost);
  const got = Math.max(0, (inbound.packetsReceived || 0) - prev.packetsReceived);
  sp.prev = { packetsLost: inbound.packetsLost || 0, packetsReceived: inbound.packetsReceived || 0 };
  const loss = got + lost > 0 ? (100 * lost) / (got + lost) : 0;
  const jitter = (inbound.jitter || 0) * 1000;
  const rttMs = (rtt || 0) * 1000;
  const mos = estimateMos(loss, jitter, rttMs);
  sp.quality = {
    loss: Math.round(loss * 10) / 10, jitter: Math.round(jitter * 10) / 10, rtt: Math.round(rttMs * 10) / 10,
    mos: Math.round(mos * 100) / 100, packetsReceived: inbound.packetsReceived || 0,
    audioLevel: inbound.audioLevel || 0, totalAudioEnergy: inbound.totalAudioEnergy || 0,
  };
  const badge = $("sp-quality");
  badge.textContent = "MOS " + sp.quality.mos.toFixed(1) + " · " + sp.quality.loss + "% · " + sp.quality.jitter + " ms · RTT " + sp.quality.rtt + " ms";
  badge.dataset.grade = mos >= 4 ? "good" : mos >= 3.5 ? "fair" : "poor";
  badge.classList.remove("hidden");
  report(false);
}

// --- the session in the holding bridge ------------------------------------------------------
function adopt(session) {
  sp.session = session; sp.prev = null; sp.quality = null;
  session.stateChange.addListener((state) => {
    if (sp.session !== session) return;
    if (state === SessionState.Established) {
      attachRemote(session);
      sp.everJoined = true; sp.rejoinDelay = 1000;
      setState("ready");
    } else if (state === SessionState.Terminated) {
      sp.session = null;
      if (!sp.stopped) lost("session ended");
    }
  });
}

async function join() {
  if (sp.stopped || sp.session) return;
  setState(sp.everJoined ? "rejoining" : "joining");
  const target = UserAgent.makeURI("sip:" + sp.sip.login_exten + "@" + domainOf(sp.sip.uri));
  const inviter = new Inviter(sp.ua, target, { sessionDescriptionHandlerOptions: { constraints: mediaConstraints() } });
  adopt(inviter);
  try { await inviter.invite(); } catch (e) { lost("invite failed"); }
}

function lost(why) {
  if (sp.stopped) return;
  const wasReady = sp.state === "ready";
  const old = sp.session; sp.session = null;
  if (old) { try { old.dispose(); } catch (e) { /* gone already */ } }
  $("sp-audio").srcObject = null;
  if (wasReady || sp.state !== "audio_lost") setState("audio_lost", why);
  if (sp.everJoined) sp.rejoined = true;
  scheduleRejoin();
}

function scheduleRejoin() {
  clearTimeout(sp.rejoinTimer);
  const delay = sp.rejoinDelay;
  sp.rejoinDelay = Math.min(REJOIN_MAX_MS, sp.rejoinDelay * 2);
  sp.rejoinTimer = setTimeout(rejoin, delay);
}

async function rejoin() {
  if (sp.stopped) return;
  setState("rejoining");
  try {
    if (!sp.ua.isConnected()) { setState("connecting"); await sp.ua.reconnect(); }
    setState("registering");
    await register();
    await join();
  } catch (e) {
    setState("audio_lost", "retry");
    scheduleRejoin();
  }
}

// Resolves on the registrar's 200 itself: after a reconnect the Registerer may still say
// "Registered" from before, so waiting for a state change would wait for nothing.
function register() {
  return new Promise((resolve, reject) => {
    sp.registerer.register({
      requestDelegate: {
        onAccept: () => { sp.registered = true; resolve(); },
        onReject: (res) => {
          sp.registered = false; // e.g. the agent was disabled: their password no longer works
          reject(new Error("register rejected " + res.message.statusCode));
        },
      },
    }).catch(reject);
  });
}

async function startPhone(sip) {
  $("softphone").classList.remove("hidden");
  if (sip.simulated) {
    // `dialer demo` on its simulated PBX: no SIP, no audio; the PBX simulates the conversation.
    $("softphone").dataset.state = "simulated";
    $("sp-state").textContent = t("sp_simulated");
    return;
  }
  sp.sip = sip; sp.stopped = false; sp.everJoined = false; sp.rejoined = false;
  setState("mic");
  try {
    const probe = await navigator.mediaDevices.getUserMedia({ audio: true });
    probe.getTracks().forEach((tr) => tr.stop());
  } catch (e) { setState("mic_denied", e.name); return; }
  await listDevices();
  setState("connecting");
  sp.ua = new UserAgent({
    uri: UserAgent.makeURI(sip.uri),
    authorizationUsername: sip.username,
    authorizationPassword: sip.password,
    transportOptions: { server: sip.ws_url },
    logLevel: "error",
    sessionDescriptionHandlerFactoryOptions: { peerConnectionConfiguration: { iceServers: sip.ice_servers || [] } },
    delegate: {
      // The dialer's watcher rings the softphone when its session is gone and it did not re-join:
      // answered only when no session is up or on its way (else the two would replace each other).
      onInvite: (invitation) => {
        if (sp.session || sp.stopped) { invitation.reject({ statusCode: 486 }); return; }
        adopt(invitation);
        setState(sp.everJoined ? "rejoining" : "joining");
        invitation.accept({ sessionDescriptionHandlerOptions: { constraints: mediaConstraints() } }).catch(() => lost("answer failed"));
      },
    },
  });
  sp.ua.transport.onDisconnect = (error) => {
    sp.registered = false;
    if (!sp.stopped && error) lost("network");
  };
  sp.registerer = new Registerer(sp.ua, { expires: 120 });
  try {
    await sp.ua.start();
    setState("registering");
    await register();
    await join();
  } catch (e) {
    lost(String((e && e.message) || e));
  }
  clearInterval(sp.statsTimer);
  sp.statsTimer = setInterval(() => { sampleStats().catch(() => {}); }, STATS_EVERY_MS);
}

async function stopPhone() {
  sp.stopped = true;
  clearTimeout(sp.rejoinTimer); clearInterval(sp.statsTimer);
  const session = sp.session; sp.session = null;
  try { if (session && session.state === SessionState.Established) await session.bye(); } catch (e) { /* gone */ }
  try { if (sp.registerer) await sp.registerer.unregister(); } catch (e) { /* gone */ }
  try { if (sp.ua) await sp.ua.stop(); } catch (e) { /* gone */ }
  sp.registered = false;
  setState("off");
}

// --- devices, mute, DTMF, self-test ---------------------------------------------------------
async function listDevices() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  for (const [kind, select] of [["audioinput", $("sp-input")], ["audiooutput", $("sp-output")]]) {
    const current = select.value;
    select.replaceChildren(...devices.filter((d) => d.kind === kind).map((d, i) => {
      const o = document.createElement("option"); o.value = d.deviceId; o.textContent = d.label || kind + " " + (i + 1); return o;
    }));
    if (current) select.value = current;
  }
}

$("sp-input").addEventListener("change", async () => {
  sp.inputId = $("sp-input").value;
  const sdh = sp.session && sp.session.sessionDescriptionHandler;
  if (!sdh || !sdh.peerConnection) return;
  const stream = await navigator.mediaDevices.getUserMedia(mediaConstraints());
  const track = stream.getAudioTracks()[0];
  track.enabled = !sp.muted;
  sdh.peerConnection.getSenders().forEach((s) => { if (s.track && s.track.kind === "audio") s.replaceTrack(track); });
});
$("sp-output").addEventListener("change", () => { sp.outputId = $("sp-output").value; audioOut(); });
$("sp-mute").addEventListener("click", () => { sp.muted = !sp.muted; applyMute(); });
$("sp-dtmf").addEventListener("click", (ev) => {
  const key = ev.target.dataset.key;
  const sdh = sp.session && sp.session.sessionDescriptionHandler;
  if (key && sdh) sdh.sendDtmf(key);
});

// Calls the echo extension for a few seconds and checks that the agent's own audio comes back.
async function selfTest() {
  const out = $("sp-test-result");
  const result = (ok, detail) => {
    out.textContent = t(ok ? "sp_test_ok" : "sp_test_bad") + (detail ? " · " + detail : "");
    out.dataset.ok = String(ok);
  };
  delete out.dataset.ok;
  if (!sp.ua || !sp.registered) { result(false, t("sp_" + sp.state)); return; }
  out.textContent = t("sp_testing");
  const target = UserAgent.makeURI("sip:" + sp.sip.echo_exten + "@" + domainOf(sp.sip.uri));
  const inviter = new Inviter(sp.ua, target, { sessionDescriptionHandlerOptions: { constraints: mediaConstraints() } });
  const player = new Audio();
  inviter.stateChange.addListener(async (state) => {
    if (state !== SessionState.Established) {
      if (state === SessionState.Terminated && out.dataset.ok === undefined) result(false, "ended");
      return;
    }
    try {
      // The agent hears themselves back (and Chromium decodes, so measures, only played audio).
      const pc = inviter.sessionDescriptionHandler.peerConnection;
      player.srcObject = new MediaStream(pc.getReceivers().map((r) => r.track).filter(Boolean));
      if (sp.outputId && player.setSinkId) player.setSinkId(sp.outputId).catch(() => {});
      player.play().catch(() => {});
      // Passed as soon as the echo is heard (ICE and DTLS may take a moment after the answer).
      let energy = 0;
      for (let waited = 0; waited < SELF_TEST_MS && energy <= 0.001; waited += 250) {
        await new Promise((r) => setTimeout(r, 250));
        (await pc.getStats()).forEach((st) => { if (st.type === "inbound-rtp" && st.kind === "audio") energy = st.totalAudioEnergy || 0; });
      }
      out.dataset.energy = String(energy);
      result(energy > 0.001);
    } catch (e) {
      result(false, String((e && e.message) || e));
    } finally {
      player.srcObject = null;
      inviter.bye().catch(() => {});
    }
  });
  inviter.invite().catch((e) => result(false, String((e && e.message) || e)));
}
$("sp-test").addEventListener("click", () => { selfTest(); });

// --- the desk's websocket -------------------------------------------------------------------
function askCredentials() {
  sp.reqId = "sp-" + Math.random().toString(36).slice(2);
  desk.link.send({ type: "softphone.credentials", id: sp.reqId });
}
if (typeof desk !== "undefined" && desk.agent && desk.link) askCredentials(); // welcomed before this loaded
window.addEventListener("dialer:message", (ev) => {
  const msg = ev.detail;
  if (msg.type === "welcome" && sp.stopped) {
    askCredentials();
  } else if (msg.type === "softphone.credentials" && msg.re === sp.reqId) {
    startPhone(msg.sip);
  } else if (msg.type === "error" && msg.re && msg.re === sp.reqId) {
    $("softphone").classList.remove("hidden");
    $("softphone").dataset.state = "none";
    $("sp-state").textContent = t("sp_none");
  } else if (msg.type === "state" && msg.state === "offline" && !sp.stopped) {
    stopPhone();
  } else if (msg.type === "welcome" && !sp.stopped) {
    report(true); // the desk's socket came back: tell the dialer where the phone stands
  }
});
$("sp-title").textContent = t("sp_title");
$("sp-test").textContent = t("sp_test");
$("sp-input-label").textContent = t("sp_input");
$("sp-output-label").textContent = t("sp_output");
$("sp-muted").textContent = t("sp_muted");
applyMute();
