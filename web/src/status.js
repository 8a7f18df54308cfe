// The status view: reads the node's /status JSON (node.Status) and shows it.
// Everything from the JSON goes into the page as text (textContent), never
// as HTML: AORs and contact URIs are chosen by whoever registers.

const MAX_ROWS = 200;

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function when(t) {
  if (!t) return '';
  const d = new Date(t);
  if (isNaN(d)) return String(t);
  const s = Math.round((d - Date.now()) / 1000);
  if (Math.abs(s) > 86400) return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
  return s >= 0 ? `in ${s} s` : `${-s} s ago`;
}

// table renders rows (objects) with columns [{key, title, fmt}] into box.
function table(box, rows, columns, emptyText) {
  box.replaceChildren();
  if (!Array.isArray(rows) || rows.length === 0) {
    box.append(el('p', emptyText, 'empty'));
    return;
  }
  if (!columns) {
    // Unknown shape (a field newer than this page): every key.
    const keys = [];
    for (const r of rows.slice(0, MAX_ROWS)) for (const k of Object.keys(r || {})) if (!keys.includes(k)) keys.push(k);
    columns = keys.map((k) => ({ key: k, title: k.replace(/_/g, ' ') }));
  }
  const t = el('table');
  const head = el('tr');
  for (const c of columns) head.append(el('th', c.title));
  const thead = el('thead');
  thead.append(head);
  t.append(thead);
  const body = el('tbody');
  for (const r of rows.slice(0, MAX_ROWS)) {
    const tr = el('tr');
    for (const c of columns) {
      const v = r ? r[c.key] : undefined;
      const td = el('td', c.fmt ? c.fmt(v, r) : typeof v === 'object' && v !== null ? JSON.stringify(v) : v);
      if (c.cls) td.className = c.cls(v, r);
      tr.append(td);
    }
    body.append(tr);
  }
  t.append(body);
  box.append(t);
  if (rows.length > MAX_ROWS) box.append(el('p', `and ${rows.length - MAX_ROWS} more`, 'muted'));
}

export function render(doc, s) {
  const $ = (id) => doc.getElementById(id);
  $('node-domain').textContent = s.domain ? `— ${s.domain}` : '';
  const facts = $('node-facts');
  facts.replaceChildren();
  const add = (k, v) => {
    if (v === undefined || v === null || v === '') return;
    facts.append(el('dt', k));
    facts.append(el('dd', v));
  };
  add('Role', s.role + (s.is_proxy ? ' (serving as proxy)' : ''));
  add('Domain', s.domain);
  add('Ready', s.ready ? (s.ready_global ? 'yes, for all domains' : 'yes, for its domain') : 'no');
  add('Peer ID', s.peer_id);
  add('Leader', s.leader);
  add('Epoch', s.epoch);
  add('Proxies', (s.proxies || []).map((p) => p.peer_id).join(', '));
  if (s.sip) add('SIP', Object.entries(s.sip).filter(([, v]) => v).map(([k, v]) => `${k} ${v}`).join(', '));
  add('Overlays', (s.overlays || []).map((o) => `${o.name}: ${o.routing_table} peers`).join(', '));
  add('Updated', s.time ? new Date(s.time).toLocaleTimeString() : '');

  table($('peers'), s.peers, [
    { key: 'peer_id', title: 'Peer' },
    { key: 'path', title: 'Path', cls: (v) => (v === 'direct' ? 'path-direct' : 'path-relayed') },
  ], 'no peers connected');
  table($('registrations'), s.registrations, [
    { key: 'aor', title: 'Address' },
    { key: 'contacts', title: 'Contacts', fmt: (v) => (v || []).map((c) => c.uri).join(' ') },
    { key: 'expires', title: 'Expires', fmt: when },
  ], 'no phone registered');
  // node.StatusCall: the calls the node is in.
  table($('calls'), s.calls, [
    { key: 'from', title: 'From' },
    { key: 'to', title: 'To' },
    { key: 'state', title: 'State' },
    { key: 'direction', title: 'Direction' },
    { key: 'started', title: 'Since', fmt: when },
    { key: 'upstream', title: 'From peer or phone' },
    { key: 'downstream', title: 'To peers or phones', fmt: (v) => (Array.isArray(v) ? v.join(' ') : v) },
    { key: 'media', title: 'Media', fmt: (v) => (v ? 'anchored here' : '') },
    { key: 'call_id', title: 'Call-ID' },
  ], 'no calls');
  table($('media'), s.media_sessions || s.media, null, 'no media sessions');
}

export function startStatus(doc, url, every) {
  const state = doc.getElementById('status-state');
  doc.getElementById('status-url').textContent = url;
  async function tick() {
    try {
      const res = await fetch(url, { headers: { Accept: 'application/json' }, cache: 'no-store' });
      if (!res.ok) throw new Error(`${res.status} ${res.statusText}`);
      render(doc, await res.json());
      state.textContent = 'status: live';
      state.className = 'muted';
      doc.body.dataset.status = 'ok';
    } catch (e) {
      state.textContent = `status unavailable: ${e.message}`;
      state.className = 'error';
      doc.body.dataset.status = 'error';
    }
  }
  tick();
  return setInterval(tick, every);
}
