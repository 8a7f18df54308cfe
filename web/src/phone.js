// The browser phone: JsSIP over a secure WebSocket (RFC 7118), audio only.
// The password stays in this page's memory; nothing is stored.
import JsSIP from 'jssip';

export function startPhone(doc, params) {
  const $ = (id) => doc.getElementById(id);
  const state = { registered: false, call: 'none', cause: '' };
  let ua = null;
  let session = null;

  for (const [id, key] of [['phone-aor', 'aor'], ['phone-wss', 'wss'], ['phone-target', 'target']]) {
    if (params.get(key)) $(id).value = params.get(key);
  }
  if (!$('phone-wss').value) $('phone-wss').value = `wss://${location.host}/sip`;
  $('phone-autoanswer').checked = params.get('autoanswer') === '1';

  function show() {
    $('phone-state').textContent = state.registered ? 'registered' : state.cause ? `not registered (${state.cause})` : 'not registered';
    $('call-state').textContent = state.call;
    $('phone-register-button').disabled = !!ua;
    $('phone-unregister-button').disabled = !ua;
    $('phone-call-button').disabled = !ua || !!session;
    $('phone-hangup-button').disabled = !session;
    $('phone-answer-button').disabled = !(session && session.direction === 'incoming' && state.call === 'ringing');
    doc.body.dataset.phone = state.registered ? 'registered' : 'idle';
    doc.body.dataset.call = state.call;
  }

  function attach(s) {
    session = s;
    state.call = s.direction === 'incoming' ? 'ringing' : 'calling';
    const remote = $('remote-audio');
    const onTrack = (ev) => { if (ev.streams && ev.streams[0]) remote.srcObject = ev.streams[0]; };
    if (s.connection) s.connection.addEventListener('track', onTrack);
    s.on('peerconnection', (e) => e.peerconnection.addEventListener('track', onTrack));
    s.on('progress', () => {
      if (state.call === 'calling') { state.call = 'ringing at the far end'; show(); }
    });
    s.on('accepted', () => { state.call = 'answered'; show(); });
    s.on('confirmed', () => { state.call = 'established'; show(); });
    const end = (e) => { state.call = `ended (${e.cause})`; session = null; show(); };
    s.on('ended', end);
    s.on('failed', end);
    show();
    if (s.direction === 'incoming' && $('phone-autoanswer').checked) answer();
  }

  function answer() {
    if (session) session.answer({ mediaConstraints: { audio: true, video: false } });
  }

  $('phone-register').addEventListener('submit', (ev) => {
    ev.preventDefault();
    state.cause = '';
    try {
      const socket = new JsSIP.WebSocketInterface($('phone-wss').value);
      ua = new JsSIP.UA({
        sockets: [socket],
        uri: $('phone-aor').value,
        password: $('phone-password').value || undefined,
        register: true,
        session_timers: false,
      });
    } catch (e) {
      state.cause = e.message || String(e);
      ua = null;
      show();
      return;
    }
    ua.on('registered', () => { state.registered = true; show(); });
    ua.on('unregistered', () => { state.registered = false; show(); });
    ua.on('registrationFailed', (e) => { state.registered = false; state.cause = e.cause; show(); });
    ua.on('disconnected', () => { state.registered = false; state.cause = 'disconnected'; show(); });
    ua.on('newRTCSession', (e) => { if (!session) attach(e.session); else if (e.originator === 'remote') e.session.terminate({ status_code: 486 }); });
    ua.start();
    show();
  });
  $('phone-unregister-button').addEventListener('click', () => {
    if (ua) ua.stop();
    ua = null;
    state.registered = false;
    show();
  });
  $('phone-call').addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (!ua || session) return;
    const s = ua.call($('phone-target').value, {
      mediaConstraints: { audio: true, video: false },
      pcConfig: { iceServers: [] },
    });
    attach(s);
  });
  $('phone-answer-button').addEventListener('click', answer);
  $('phone-hangup-button').addEventListener('click', () => { if (session) session.terminate(); });
  show();

  // For tests and people with a console: the phone's state and the call's
  // WebRTC statistics (inbound/outbound RTP packet counts).
  return {
    state: () => ({ ...state }),
    async rtpStats() {
      if (!session || !session.connection) return null;
      const out = { inbound: 0, outbound: 0 };
      (await session.connection.getStats()).forEach((r) => {
        if (r.type === 'inbound-rtp' && r.kind === 'audio') out.inbound += r.packetsReceived || 0;
        if (r.type === 'outbound-rtp' && r.kind === 'audio') out.outbound += r.packetsSent || 0;
      });
      return out;
    },
  };
}
