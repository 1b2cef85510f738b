// The dashboard: one self-contained page (no build step, no CDN: the node may have no internet)
// that polls /api/state every second. A VM's name opens its view (spec, status, its recent events,
// why it is placed where it is, the tail of its console: /api/vm); a node's name opens the node's.
// Actions (start, stop, migrate; drain, undrain) appear only where the node's config turns them on
// (dashboardActions) and only once this browser's key is an admin: the page makes a non-extractable
// Ed25519 key, shows its peer id for `blixard admin add`, and signs each command itself
// (node/dashboard-signing.ts, node/dashboard-actions.ts). The script runs by the response's CSP nonce.
import { PAGE_SIGNING_JS } from './dashboard-signing.ts'

export function dashboardHtml (nonce: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Blixard</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#0f1419;color:#e6e6e6}
 header{padding:12px 20px;background:#1a2330;display:flex;gap:24px;align-items:baseline;flex-wrap:wrap}
 h1{font-size:18px;margin:0} h2{font-size:15px;margin:18px 0 6px} h3{font-size:14px;margin:12px 0 4px;color:#9fb1c5}
 main{padding:0 20px 20px} table{border-collapse:collapse;width:100%}
 th,td{text-align:left;padding:4px 10px;border-bottom:1px solid #2a3441;white-space:nowrap}
 th{color:#9fb1c5;font-weight:600} .pill{padding:1px 8px;border-radius:9px;font-size:12px}
 a{color:#8cb8ff} code{background:#26303c;padding:1px 4px;border-radius:3px}
 .running,.ready,.leader{background:#1f5f3a} .failed,.down{background:#7a2530} .unreachable{background:#a8591a} .pending,.scheduled,.starting,.stopping,.draining,.cordoned,.migrating{background:#6b5a1c}
 .stopped,.learner,.voter,.none{background:#2d3b4d} .muted{color:#7f8c9b} #err{color:#ff8080}
 .meter{display:inline-block;width:60px;height:8px;background:#26303c;vertical-align:middle;margin-right:6px}
 .meter i{display:block;height:100%;background:#3d7bd9} .meter.hot i{background:#d9773d}
 #live{font-size:12px} #live.ok::before{content:'●';color:#3fbf6f;margin-right:4px} #live.stale::before{content:'●';color:#ff8080;margin-right:4px}
 .counts span{margin-right:10px}
 .panel{background:#16202b;border:1px solid #2a3441;border-radius:6px;padding:8px 14px;margin-top:14px}
 .panel dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:4px 0} .panel dt{color:#9fb1c5}
 pre{background:#0a0e12;padding:8px;max-height:220px;overflow:auto;white-space:pre-wrap;margin:4px 0}
 button{background:#2d4d7a;color:#fff;border:0;border-radius:4px;padding:4px 12px;margin-right:6px;cursor:pointer} button:disabled{opacity:.5}
 #action-status.failed{color:#ff8080} #action-status.ok{color:#6fdf9a}
</style></head>
<body><header><h1>Blixard</h1><span id="summary" class="muted">loading…</span><span id="counts" class="counts"></span><span id="live" class="muted"></span><span id="err"></span></header>
<main>
<div id="access" class="muted"></div>
<section id="vm-detail" class="panel" hidden>
 <h2 id="vm-title"></h2><div id="vm-status"></div>
 <div id="vm-actions"></div><div id="action-status"></div>
 <h3>Spec</h3><dl id="vm-spec"></dl>
 <h3>Status history</h3><table id="vm-history"><thead><tr><th>Index</th><th>Time</th><th>Event</th></tr></thead><tbody></tbody></table>
 <h3>Placement</h3><div id="vm-placement"></div>
 <h3>Console (tail)</h3><pre id="vm-console"></pre>
 <a href="#">close</a>
</section>
<section id="node-detail" class="panel" hidden>
 <h2 id="node-title"></h2><div id="node-status"></div><div id="node-actions"></div><div id="node-action-status"></div>
 <a href="#">close</a>
</section>
<h2>Nodes</h2><table id="nodes"><thead><tr><th>Name</th><th>Role</th><th>State</th><th>CPU</th><th>Memory</th><th>Disk</th><th>VMs</th><th>Capacity</th><th>Report age</th><th>Id</th></tr></thead><tbody></tbody></table>
<h2>VMs</h2><table id="vms"><thead><tr><th>Name</th><th>Phase</th><th>Desired</th><th>Host</th><th>vCPU</th><th>Memory</th><th>Reason</th></tr></thead><tbody></tbody></table>
<h2>Recent events</h2><table id="events"><thead><tr><th>Index</th><th>Time</th><th>Event</th></tr></thead><tbody></tbody></table>
</main>
<script nonce="${nonce}">
${PAGE_SIGNING_JS}
const esc = (s) => String(s ?? '-').replace(/[&<>"']/g, (c) => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c]));
const pill = (s) => '<span class="pill ' + esc(s) + '">' + esc(s) + '</span>';
const meter = (x) => x == null ? '-' : '<span class="meter' + (x >= 85 ? ' hot' : '') + '"><i style="width:' + Math.max(0, Math.min(100, Math.round(x))) + '%"></i></span>' + Math.round(x) + '%';
const since = (t) => t == null ? '' : ' <span class="muted since">since ' + esc(new Date(t).toISOString().slice(11, 19)) + 'Z (' + Math.max(0, Math.round((Date.now() - t) / 1000)) + ' s)</span>';
const $ = (id) => document.getElementById(id);
function rows (id, html) { document.querySelector('#' + id + ' tbody').innerHTML = html.join('') }
function eventRows (list) { return list.map((e) => '<tr><td>' + e.index + '</td><td class="muted">' + new Date(e.at).toLocaleTimeString() + '</td><td class="text">' + esc(e.text) + '</td></tr>') }
let lastOk = 0;
let state = null;
// this browser's key: made here, non-extractable (no script can read it out, not even this page's),
// kept in this origin's IndexedDB; the nodes know it only by the peer id an admin adds
let me = null;
async function browserKey () {
  const db = await new Promise((resolve, reject) => { const r = indexedDB.open('blixard-dashboard', 1); r.onupgradeneeded = () => r.result.createObjectStore('keys'); r.onsuccess = () => resolve(r.result); r.onerror = () => reject(r.error) });
  const stored = await new Promise((resolve, reject) => { const r = db.transaction('keys').objectStore('keys').get('admin'); r.onsuccess = () => resolve(r.result); r.onerror = () => reject(r.error) });
  let pair = stored;
  if (pair == null) {
    pair = await crypto.subtle.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify']);
    await new Promise((resolve, reject) => { const t = db.transaction('keys', 'readwrite'); t.objectStore('keys').put(pair, 'admin'); t.oncomplete = resolve; t.onerror = () => reject(t.error) });
  }
  const raw = new Uint8Array(await crypto.subtle.exportKey('raw', pair.publicKey));
  return { key: pair.privateKey, id: peerIdOfEd25519(raw) };
}
const canAct = () => state != null && state.actions.enabled && me != null && state.actions.admins.includes(me.id);
function renderAccess () {
  const el = $('access');
  if (state == null) return;
  let html;
  if (!state.actions.enabled) html = 'Read-only: actions are off on this node (dashboardActions).';
  else if (me == null) html = 'Actions need WebCrypto Ed25519, which this browser lacks: read-only.';
  else if (!canAct()) html = 'This browser\\'s key is <code id="browser-id">' + esc(me.id) + '</code>, not an admin. To act from here, run <code>blixard admin add ' + esc(me.id) + ' --name dashboard</code>.';
  else html = 'Actions on: this browser signs as admin <code id="browser-id">' + esc(me.id) + '</code> (<code>blixard admin remove</code> it to stop).';
  if (el.innerHTML !== html) el.innerHTML = html;
}
async function post (path, body) {
  const r = await fetch(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), cache: 'no-store' });
  const j = await r.json().catch(() => ({ error: { kind: 'HTTP ' + r.status, message: r.statusText } }));
  if (!r.ok || j.error) throw new Error(j.error.kind + ': ' + j.error.message);
  return j;
}
// the command each action must be, about the VM or node it was asked for: anything else is not signed
const EXPECT = { 'vm.start': 'SetVmDesiredState', 'vm.stop': 'SetVmDesiredState', 'vm.migrate': 'StartMigration', 'node.drain': 'UpdateNode', 'node.undrain': 'UpdateNode' };
async function act (statusId, method, params, subject, label) {
  const status = $(statusId);
  status.className = 'busy'; status.textContent = label + '…';
  try {
    const nonce = crypto.randomUUID();
    const p = { ...params, idempotencyKey: nonce };
    const prep = await post('/api/prepare', { method, params: p });
    if (prep.done === undefined) {
      const cmd = prep.cmd;
      if (cmd.type !== EXPECT[method] || (cmd.vm ?? cmd.id) !== subject) throw new Error('the node prepared ' + cmd.type + ' of ' + (cmd.vm ?? cmd.id) + ' for ' + label + ': not signed');
      const sig = new Uint8Array(await crypto.subtle.sign('Ed25519', me.key, signingBytes(cmd, me.id, nonce, prep.until)));
      await post('/api/submit', { method, params: p, cmd, auth: { signer: me.id, nonce, until: prep.until, sig: btoa(String.fromCharCode(...sig)) } });
    }
    status.className = 'ok'; status.textContent = label + ': done';
  } catch (e) { status.className = 'failed'; status.textContent = label + ': ' + e.message }
  await refresh();
}
// what is open: #vm=NAME or #node=NAME
const opened = () => { const m = /^#(vm|node)=(.+)$/.exec(location.hash); return m == null ? null : { kind: m[1], name: decodeURIComponent(m[2]) } };
let vmShown = null;
function renderVmActions (v) {
  const box = $('vm-actions');
  const others = state.nodes.filter((n) => n.name !== v.nodeName).map((n) => n.name);
  // a running guest moves live (memory and all); any other moves cold (booted there when it starts)
  const mode = v.phase === 'running' ? 'live' : 'cold';
  const key = canAct() + '|' + v.id + '|' + others.join(',') + '|' + mode;
  if (box.dataset.key === key) return;
  box.dataset.key = key;
  box.innerHTML = canAct() ? '<button id="vm-start">Start</button><button id="vm-stop">Stop</button> <select id="vm-migrate-to"><option value="">any node</option>' + others.map((n) => '<option>' + esc(n) + '</option>').join('') + '</select><button id="vm-migrate">Migrate (' + mode + ')</button>' : '';
  if (!canAct()) return;
  $('vm-start').addEventListener('click', () => act('action-status', 'vm.start', { vm: v.id }, v.id, 'start ' + v.name));
  $('vm-stop').addEventListener('click', () => act('action-status', 'vm.stop', { vm: v.id }, v.id, 'stop ' + v.name));
  $('vm-migrate').addEventListener('click', () => {
    const to = $('vm-migrate-to').value;
    if (!confirm('Migrate VM ' + v.name + ' (' + mode + ') to ' + (to || 'any node') + '?')) return;
    act('action-status', 'vm.migrate', to ? { vm: v.id, to, mode } : { vm: v.id, mode }, v.id, 'migrate ' + v.name);
  });
}
async function showVm (name) {
  const r = await fetch('/api/vm?vm=' + encodeURIComponent(name), { cache: 'no-store' });
  $('vm-detail').hidden = false;
  if (r.status === 404) { $('vm-title').textContent = 'VM ' + name + ' (gone)'; $('vm-actions').innerHTML = ''; $('vm-actions').dataset.key = ''; return }
  if (!r.ok) { const e = await r.json().catch(() => null); $('err').textContent = 'VM view: ' + (e && e.error ? e.error.message : 'HTTP ' + r.status); return }
  const v = await r.json();
  vmShown = v;
  $('vm-title').textContent = 'VM ' + v.name;
  $('vm-status').innerHTML = '<span class="phase">' + pill(v.phase) + '</span> desired <span class="desired">' + esc(v.desired) + '</span> on <span class="host">' + esc(v.nodeName) + '</span>' + (v.ip ? ', address ' + esc(v.ip) : '') + (v.reason ? ' <span class="muted">(' + esc(v.reason) + ')</span>' : '') + (v.migration ? ' — last migration to ' + esc(v.migration.target) + ': ' + esc(v.migration.phase) : '');
  const s = v.spec;
  const spec = [['vCPUs', s.vcpus], ['Memory', s.memoryMiB + ' MiB'], ['Disk', s.diskGiB + ' GiB'], ['Image', s.image.kind + (s.image.ref ? ' ' + s.image.ref : '')], ['Hypervisor', s.hypervisor], ['Volumes', s.volumes.join(', ') || '-'], ['Networks', s.networks.join(', ') || '-'],
    ['Constraints', s.constraints.map((c) => JSON.stringify(c)).join(' ') || '-'], ['Anti-affinity', s.antiAffinityGroup], ['Priority', s.priority], ['Restart', s.restartPolicy], ['Generation', v.generation], ['Id', v.id]];
  $('vm-spec').innerHTML = spec.map(([k, x]) => '<dt>' + esc(k) + '</dt><dd>' + esc(x) + '</dd>').join('');
  rows('vm-history', eventRows(v.history.slice().reverse()));
  const pl = v.placement;
  $('vm-placement').innerHTML = pl.error != null ? '<span class="muted">' + esc(pl.error) + '</span>'
    : '<div>' + (pl.chosen ? 'placed afresh now, it would go to <b class="chosen">' + esc(pl.chosen) + '</b>' : 'no node would take it now') + ' (vm explain)</div><table><thead><tr><th>Node</th><th>Fits</th><th>Score</th><th>Why not</th></tr></thead><tbody>' +
      pl.nodes.map((n) => '<tr data-node="' + esc(n.node) + '"><td>' + esc(n.node) + '</td><td>' + (n.feasible ? 'yes' : 'no') + '</td><td>' + (n.score == null ? '-' : n.score.toFixed(2)) + '</td><td class="muted">' + esc(n.why || '') + '</td></tr>').join('') + '</tbody></table>';
  $('vm-console').textContent = v.console.text != null ? (v.console.text || '(no output yet)') : 'no console: ' + v.console.error;
  renderVmActions(v);
}
function showNode (name) {
  const n = state.nodes.find((x) => x.name === name);
  $('node-detail').hidden = false;
  $('node-title').textContent = 'Node ' + name + (n == null ? ' (gone)' : '');
  if (n == null) return;
  $('node-status').innerHTML = pill(n.state) + ' ' + pill(n.leader ? 'leader' : n.role) + ' <span class="muted">' + esc(n.id) + '</span>';
  const box = $('node-actions');
  const key = canAct() + '|' + n.id;
  if (box.dataset.key === key) return;
  box.dataset.key = key;
  box.innerHTML = canAct() ? '<button id="node-drain">Drain</button><button id="node-undrain">Undrain</button>' : '';
  if (!canAct()) return;
  $('node-drain').addEventListener('click', () => { if (confirm('Drain node ' + n.name + '? Its VMs move elsewhere.')) act('node-action-status', 'node.drain', { node: n.id }, n.id, 'drain ' + n.name) });
  $('node-undrain').addEventListener('click', () => act('node-action-status', 'node.undrain', { node: n.id }, n.id, 'undrain ' + n.name));
}
let tick = 0;
async function refresh () {
  try {
    const r = await fetch('/api/state', { cache: 'no-store' });
    const s = await r.json();
    // a 429 (too many requests: node/http-limits.ts) says why in its body
    if (!r.ok) throw new Error(s.error ? s.error.message : 'HTTP ' + r.status);
    state = s;
    const leader = s.nodes.find((n) => n.leader);
    $('summary').textContent = s.nodes.length + ' nodes, ' + s.vms.length + ' VMs, term ' + s.raft.term + ', leader ' + (leader ? leader.name : (s.raft.leader ?? 'none')) + ', applied ' + s.raft.applied + ' (served by ' + s.node.name + ')';
    const phases = {};
    for (const v of s.vms) phases[v.phase] = (phases[v.phase] ?? 0) + 1;
    $('counts').innerHTML = Object.keys(phases).sort().map((p) => '<span>' + pill(p) + ' ' + phases[p] + '</span>').join('');
    rows('nodes', s.nodes.map((n) => '<tr data-node="' + esc(n.name) + '" data-id="' + esc(n.id) + '"><td class="name"><a href="#node=' + encodeURIComponent(n.name) + '">' + esc(n.name) + '</a></td><td class="role">' + pill(n.leader ? 'leader' : n.role) + '</td><td class="state">' + pill(n.state) + since(n.downSince ?? n.unreachableSince) + '</td><td>' + meter(n.load && n.load.cpuPct) + '</td><td>' + meter(n.load && n.load.memPct) + '</td><td>' + meter(n.load && n.load.diskPct) + '</td><td class="vmcount">' + (n.load ? n.load.vmCount : '-') + '</td><td class="muted">' + esc(n.capacity.cpu + ' cpu, ' + n.capacity.memoryMiB + ' MiB') + '</td><td class="muted">' + (n.load ? (n.load.ageMs / 1000).toFixed(1) + ' s' : '-') + '</td><td class="muted">' + esc(n.id.slice(-10)) + '</td></tr>'));
    rows('vms', s.vms.map((v) => '<tr data-vm="' + esc(v.name) + '"><td class="name"><a href="#vm=' + encodeURIComponent(v.name) + '">' + esc(v.name) + '</a></td><td class="phase">' + pill(v.phase) + '</td><td class="desired">' + esc(v.desired) + '</td><td class="host">' + esc(v.nodeName ?? v.node) + '</td><td>' + v.vcpus + '</td><td>' + v.memoryMiB + ' MiB</td><td class="muted">' + esc(v.reason) + '</td></tr>'));
    rows('events', eventRows(s.events.slice(-30).reverse()));
    $('err').textContent = '';
    lastOk = Date.now();
    renderAccess();
    const o = opened();
    $('vm-detail').hidden = o == null || o.kind !== 'vm';
    $('node-detail').hidden = o == null || o.kind !== 'node';
    // the VM view every other second: its console tail may come from another node
    if (o != null && o.kind === 'vm' && (tick++ % 2 === 0 || vmShown == null || vmShown.name !== o.name)) await showVm(o.name);
    if (o != null && o.kind === 'node') showNode(o.name);
  } catch (e) { $('err').textContent = 'cannot reach the node: ' + e.message }
  const live = $('live');
  live.className = Date.now() - lastOk < 3000 ? 'ok' : 'stale';
  live.textContent = lastOk === 0 ? 'no data' : 'live, updated ' + new Date(lastOk).toLocaleTimeString();
}
window.addEventListener('hashchange', () => { vmShown = null; $('action-status').textContent = ''; $('node-action-status').textContent = ''; refresh() });
browserKey().then((k) => { me = k; renderAccess() }, () => { me = null });
refresh(); setInterval(refresh, 1000);
</script></body></html>`
}
