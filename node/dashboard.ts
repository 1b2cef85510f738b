// The dashboard: one self-contained page (no build step, no CDN: the node may
// have no internet) that polls /api/state every second.
export function dashboardHtml (): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Blixard</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#0f1419;color:#e6e6e6}
 header{padding:12px 20px;background:#1a2330;display:flex;gap:24px;align-items:baseline}
 h1{font-size:18px;margin:0} h2{font-size:15px;margin:18px 0 6px}
 main{padding:0 20px 20px} table{border-collapse:collapse;width:100%}
 th,td{text-align:left;padding:4px 10px;border-bottom:1px solid #2a3441;white-space:nowrap}
 th{color:#9fb1c5;font-weight:600} .pill{padding:1px 8px;border-radius:9px;font-size:12px}
 .running,.ready,.leader{background:#1f5f3a} .failed,.down{background:#7a2530} .pending,.scheduled,.starting,.stopping,.draining,.cordoned{background:#6b5a1c}
 .stopped,.learner,.voter{background:#2d3b4d} .muted{color:#7f8c9b} #err{color:#ff8080}
 .bar{display:inline-block;height:8px;background:#3d7bd9;vertical-align:middle}
</style></head>
<body><header><h1>Blixard</h1><span id="summary" class="muted">loading…</span><span id="err"></span></header>
<main>
<h2>Nodes</h2><table id="nodes"><thead><tr><th>Name</th><th>Role</th><th>State</th><th>CPU</th><th>Memory</th><th>VMs</th><th>Capacity</th><th>Id</th></tr></thead><tbody></tbody></table>
<h2>VMs</h2><table id="vms"><thead><tr><th>Name</th><th>Phase</th><th>Desired</th><th>Host</th><th>vCPU</th><th>Memory</th><th>Reason</th></tr></thead><tbody></tbody></table>
<h2>Recent events</h2><table id="events"><thead><tr><th>Index</th><th>Time</th><th>Event</th></tr></thead><tbody></tbody></table>
</main>
<script>
const esc = (s) => String(s ?? '-').replace(/[&<>"']/g, (c) => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c]));
const pill = (s) => '<span class="pill ' + esc(s) + '">' + esc(s) + '</span>';
const pct = (x) => x == null ? '-' : '<span class="bar" style="width:' + Math.round(x / 2) + 'px"></span> ' + Math.round(x) + '%';
function rows (id, html) { document.querySelector('#' + id + ' tbody').innerHTML = html.join('') }
async function refresh () {
  try {
    const s = await (await fetch('/api/state', { cache: 'no-store' })).json();
    const leader = s.nodes.find((n) => n.leader);
    document.getElementById('summary').textContent = s.nodes.length + ' nodes, ' + s.vms.length + ' VMs, term ' + s.raft.term + ', leader ' + (leader ? leader.name : (s.raft.leader ?? 'none')) + ', applied ' + s.raft.applied + ' (served by ' + s.node.name + ')';
    rows('nodes', s.nodes.map((n) => '<tr data-node="' + esc(n.id) + '"><td>' + esc(n.name) + '</td><td>' + pill(n.leader ? 'leader' : n.role) + '</td><td>' + pill(n.state) + '</td><td>' + pct(n.load && n.load.cpuPct) + '</td><td>' + pct(n.load && n.load.memPct) + '</td><td>' + (n.load ? n.load.vmCount : '-') + '</td><td class="muted">' + esc(n.capacity.cpu + ' cpu, ' + n.capacity.memoryMiB + ' MiB') + '</td><td class="muted">' + esc(n.id.slice(-10)) + '</td></tr>'));
    rows('vms', s.vms.map((v) => '<tr data-vm="' + esc(v.name) + '"><td>' + esc(v.name) + '</td><td class="phase">' + pill(v.phase) + '</td><td>' + esc(v.desired) + '</td><td class="host">' + esc(v.nodeName ?? v.node) + '</td><td>' + v.vcpus + '</td><td>' + v.memoryMiB + ' MiB</td><td class="muted">' + esc(v.reason) + '</td></tr>'));
    rows('events', s.events.slice().reverse().map((e) => '<tr><td>' + e.index + '</td><td class="muted">' + new Date(e.at).toLocaleTimeString() + '</td><td>' + esc(e.text) + '</td></tr>'));
    document.getElementById('err').textContent = '';
  } catch (e) { document.getElementById('err').textContent = 'cannot reach the node: ' + e.message }
}
refresh(); setInterval(refresh, 1000);
</script></body></html>`
}
