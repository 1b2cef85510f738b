// The dashboard: one self-contained page (no build step, no CDN: the node may
// have no internet) that polls /api/state every second. Read-only: it has no
// control that changes the cluster.
export function dashboardHtml (): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Blixard</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#0f1419;color:#e6e6e6}
 header{padding:12px 20px;background:#1a2330;display:flex;gap:24px;align-items:baseline;flex-wrap:wrap}
 h1{font-size:18px;margin:0} h2{font-size:15px;margin:18px 0 6px}
 main{padding:0 20px 20px} table{border-collapse:collapse;width:100%}
 th,td{text-align:left;padding:4px 10px;border-bottom:1px solid #2a3441;white-space:nowrap}
 th{color:#9fb1c5;font-weight:600} .pill{padding:1px 8px;border-radius:9px;font-size:12px}
 .running,.ready,.leader{background:#1f5f3a} .failed,.down{background:#7a2530} .unreachable{background:#a8591a} .pending,.scheduled,.starting,.stopping,.draining,.cordoned{background:#6b5a1c}
 .stopped,.learner,.voter,.none{background:#2d3b4d} .muted{color:#7f8c9b} #err{color:#ff8080}
 .meter{display:inline-block;width:60px;height:8px;background:#26303c;vertical-align:middle;margin-right:6px}
 .meter i{display:block;height:100%;background:#3d7bd9} .meter.hot i{background:#d9773d}
 #live{font-size:12px} #live.ok::before{content:'●';color:#3fbf6f;margin-right:4px} #live.stale::before{content:'●';color:#ff8080;margin-right:4px}
 .counts span{margin-right:10px}
</style></head>
<body><header><h1>Blixard</h1><span id="summary" class="muted">loading…</span><span id="counts" class="counts"></span><span id="live" class="muted"></span><span id="err"></span></header>
<main>
<h2>Nodes</h2><table id="nodes"><thead><tr><th>Name</th><th>Role</th><th>State</th><th>CPU</th><th>Memory</th><th>Disk</th><th>VMs</th><th>Capacity</th><th>Report age</th><th>Id</th></tr></thead><tbody></tbody></table>
<h2>VMs</h2><table id="vms"><thead><tr><th>Name</th><th>Phase</th><th>Desired</th><th>Host</th><th>vCPU</th><th>Memory</th><th>Reason</th></tr></thead><tbody></tbody></table>
<h2>Recent events</h2><table id="events"><thead><tr><th>Index</th><th>Time</th><th>Event</th></tr></thead><tbody></tbody></table>
</main>
<script>
const esc = (s) => String(s ?? '-').replace(/[&<>"']/g, (c) => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c]));
const pill = (s) => '<span class="pill ' + esc(s) + '">' + esc(s) + '</span>';
const meter = (x) => x == null ? '-' : '<span class="meter' + (x >= 85 ? ' hot' : '') + '"><i style="width:' + Math.max(0, Math.min(100, Math.round(x))) + '%"></i></span>' + Math.round(x) + '%';
const since = (t) => t == null ? '' : ' <span class="muted since">since ' + esc(new Date(t).toISOString().slice(11, 19)) + 'Z (' + Math.max(0, Math.round((Date.now() - t) / 1000)) + ' s)</span>';
function rows (id, html) { document.querySelector('#' + id + ' tbody').innerHTML = html.join('') }
let lastOk = 0;
async function refresh () {
  try {
    const s = await (await fetch('/api/state', { cache: 'no-store' })).json();
    const leader = s.nodes.find((n) => n.leader);
    document.getElementById('summary').textContent = s.nodes.length + ' nodes, ' + s.vms.length + ' VMs, term ' + s.raft.term + ', leader ' + (leader ? leader.name : (s.raft.leader ?? 'none')) + ', applied ' + s.raft.applied + ' (served by ' + s.node.name + ')';
    const phases = {};
    for (const v of s.vms) phases[v.phase] = (phases[v.phase] ?? 0) + 1;
    document.getElementById('counts').innerHTML = Object.keys(phases).sort().map((p) => '<span>' + pill(p) + ' ' + phases[p] + '</span>').join('');
    rows('nodes', s.nodes.map((n) => '<tr data-node="' + esc(n.name) + '" data-id="' + esc(n.id) + '"><td class="name">' + esc(n.name) + '</td><td class="role">' + pill(n.leader ? 'leader' : n.role) + '</td><td class="state">' + pill(n.state) + since(n.downSince ?? n.unreachableSince) + '</td><td>' + meter(n.load && n.load.cpuPct) + '</td><td>' + meter(n.load && n.load.memPct) + '</td><td>' + meter(n.load && n.load.diskPct) + '</td><td class="vmcount">' + (n.load ? n.load.vmCount : '-') + '</td><td class="muted">' + esc(n.capacity.cpu + ' cpu, ' + n.capacity.memoryMiB + ' MiB') + '</td><td class="muted">' + (n.load ? (n.load.ageMs / 1000).toFixed(1) + ' s' : '-') + '</td><td class="muted">' + esc(n.id.slice(-10)) + '</td></tr>'));
    rows('vms', s.vms.map((v) => '<tr data-vm="' + esc(v.name) + '"><td class="name">' + esc(v.name) + '</td><td class="phase">' + pill(v.phase) + '</td><td class="desired">' + esc(v.desired) + '</td><td class="host">' + esc(v.nodeName ?? v.node) + '</td><td>' + v.vcpus + '</td><td>' + v.memoryMiB + ' MiB</td><td class="muted">' + esc(v.reason) + '</td></tr>'));
    rows('events', s.events.slice(-30).reverse().map((e) => '<tr><td>' + e.index + '</td><td class="muted">' + new Date(e.at).toLocaleTimeString() + '</td><td class="text">' + esc(e.text) + '</td></tr>'));
    document.getElementById('err').textContent = '';
    lastOk = Date.now();
  } catch (e) { document.getElementById('err').textContent = 'cannot reach the node: ' + e.message }
  const live = document.getElementById('live');
  live.className = Date.now() - lastOk < 3000 ? 'ok' : 'stale';
  live.textContent = lastOk === 0 ? 'no data' : 'live, updated ' + new Date(lastOk).toLocaleTimeString();
}
refresh(); setInterval(refresh, 1000);
</script></body></html>`
}
