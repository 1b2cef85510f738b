// Every node of a live 3-node cluster serves Prometheus text on /metrics that
// `promtool check metrics` (Debian's prometheus package) accepts, with the
// metrics node/metrics.ts defines and values that agree with what the cluster did:
// one VM created and placed, one lookup that failed, one refused write.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { OpsCluster, until } from './cluster.ts'
import { find, parseSamples, value } from './prom-text.ts'
import type { Sample } from './prom-text.ts'

let c: OpsCluster
let leader = 0
const texts: string[] = []
const samples: Sample[][] = []

test.before(async () => {
  c = await OpsCluster.start('metrics', 17401)
  const made = await c.cli(['vm', 'create', 'metrics-vm', '--json'])
  assert.is(made.code, 0, made.stderr)
  await until('the VM placed on a node', 30_000, async () => (await c.state(0)).vms.find((v) => v.name === 'metrics-vm')?.node != null)
  const missing = await c.cli(['vm', 'show', 'no-such-vm'])
  assert.is(missing.code, 3, missing.stderr)
  // a CLI identity that is not an admin: its write is refused before any handler runs
  const refused = await c.cli(['vm', 'create', 'intruder'], { BLIXARD_CONFIG_DIR: join(c.dir, 'not-admin') })
  assert.is(refused.code, 6, refused.stderr)
  leader = await c.leaderIndex()
  // a few gossip rounds (one report per node per second), so report ages and counts are settled
  await new Promise((resolve) => setTimeout(resolve, 2_500))
  for (let i = 0; i < c.nodes.length; i++) {
    texts[i] = await c.metricsText(i)
    samples[i] = parseSamples(texts[i])
  }
})

test.after(async () => { await c?.stop() })

test('promtool check metrics accepts /metrics of every live node', () => {
  for (let i = 0; i < texts.length; i++) {
    const r = spawnSync('promtool', ['check', 'metrics'], { input: texts[i], encoding: 'utf8' })
    assert.is(r.error, undefined, 'promtool is not installed (scripts/setup.sh installs Debian prometheus)')
    assert.is(r.status, 0, `promtool on ${c.nodes[i].name}: ${r.stdout}${r.stderr}`)
    assert.is((r.stdout + r.stderr).trim(), '', `promtool warnings on ${c.nodes[i].name}`)
  }
})

test('every listed metric is declared with HELP and TYPE on every node', () => {
  const want: Array<[string, string]> = [
    ['blixard_raft_term', 'gauge'], ['blixard_raft_commit_index', 'gauge'], ['blixard_raft_applied_index', 'gauge'],
    ['blixard_raft_leader_changes_total', 'counter'], ['blixard_raft_proposal_duration_seconds', 'histogram'],
    ['blixard_rpc_requests_total', 'counter'], ['blixard_rpc_duration_seconds', 'histogram'],
    ['blixard_gossip_reports_total', 'counter'], ['blixard_gossip_report_age_seconds', 'gauge'],
    ['blixard_placement_decisions_total', 'counter'], ['blixard_placement_duration_seconds', 'histogram'],
    ['blixard_vms', 'gauge'], ['blixard_agent_reconcile_duration_seconds', 'histogram'], ['blixard_libp2p_connections', 'gauge']
  ]
  for (const text of texts) {
    for (const [name, type] of want) {
      assert.ok(text.includes(`\n# HELP ${name} `), `HELP ${name}`)
      assert.ok(text.includes(`\n# TYPE ${name} ${type}\n`), `TYPE ${name} ${type}`)
    }
  }
})

test('raft: term, commit and applied index, leader changes, one leader', () => {
  let leaders = 0
  for (const s of samples) {
    const commit = value(s, 'blixard_raft_commit_index')
    const applied = value(s, 'blixard_raft_applied_index')
    assert.ok(value(s, 'blixard_raft_term') >= 1)
    assert.ok(applied >= 5, `applied ${applied}: admin, 3 registrations and the VM were committed`)
    assert.ok(applied <= commit, `applied ${applied} <= commit ${commit}`)
    assert.ok(value(s, 'blixard_raft_leader_changes_total') >= 1)
    leaders += value(s, 'blixard_raft_is_leader')
  }
  assert.is(leaders, 1)
  assert.is(value(samples[leader], 'blixard_raft_is_leader'), 1)
})

test('raft: the leader’s proposal latency histogram is filled and well formed', () => {
  const s = samples[leader]
  const count = value(s, 'blixard_raft_proposal_duration_seconds_count')
  assert.ok(count >= 5, `proposals observed: ${count}`)
  assert.ok(value(s, 'blixard_raft_proposal_duration_seconds_sum') > 0)
  const buckets = find(s, 'blixard_raft_proposal_duration_seconds_bucket')
  assert.ok(buckets.length >= 10)
  for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i].value >= buckets[i - 1].value, 'cumulative buckets never decrease')
  assert.is(value(s, 'blixard_raft_proposal_duration_seconds_bucket', { le: '+Inf' }), count)
})

test('rpc: requests by method and error kind, latency by method', () => {
  const s = samples[0] // the CLI talks to node1
  assert.ok(value(s, 'blixard_rpc_requests_total', { method: 'vm.create', error: 'none' }) >= 1)
  assert.ok(value(s, 'blixard_rpc_requests_total', { method: 'vm.show', error: 'NotFound' }) >= 1)
  // a non-admin's write is refused at its first step, cluster.prepare (node/cli/signing.ts)
  assert.ok(value(s, 'blixard_rpc_requests_total', { method: 'cluster.prepare', error: 'Unauthorized' }) >= 1)
  assert.ok(value(s, 'blixard_rpc_duration_seconds_count', { method: 'vm.create' }) >= 1)
  assert.ok(value(s, 'blixard_rpc_duration_seconds_count', { method: 'vm.show' }) >= 1)
  // the leader answered something too: joins, forwarded proposals, or the CLI itself
  assert.ok(find(samples[leader], 'blixard_rpc_requests_total').reduce((a, x) => a + x.value, 0) >= 1)
})

test('gossip: reports received from every node, and their age', () => {
  const ids = c.nodes.map((n) => n.peerId)
  for (const s of samples) {
    assert.ok(value(s, 'blixard_gossip_reports_total', { result: 'accepted' }) >= 6)
    for (const id of ids) {
      const age = value(s, 'blixard_gossip_report_age_seconds', { node: id })
      assert.ok(age >= 0 && age < 5, `report age of ${id}: ${age}s`)
    }
  }
})

test('placement: decisions and their duration on the leader', () => {
  const s = samples[leader]
  assert.ok(value(s, 'blixard_placement_decisions_total', { result: 'placed' }) >= 1)
  assert.ok(value(s, 'blixard_placement_duration_seconds_count') >= 1)
})

test('VMs by state agree with the replicated state; agent passes; libp2p connections', async () => {
  for (let i = 0; i < samples.length; i++) {
    const s = samples[i]
    const byPhase = find(s, 'blixard_vms')
    assert.is(byPhase.reduce((a, x) => a + x.value, 0), 1, `VM count on ${c.nodes[i].name}`)
    assert.ok(byPhase.every((x) => ['pending', 'scheduled', 'starting', 'running', 'failed'].includes(x.labels.phase)), JSON.stringify(byPhase))
    assert.ok(value(s, 'blixard_agent_reconcile_duration_seconds_count') >= 1)
    assert.ok(value(s, 'blixard_libp2p_connections') >= 2, `connections on ${c.nodes[i].name}`)
  }
  // a scrape reads the phase live: it matches /api/state of the same node (retried: the guest may be booting)
  await until('/metrics and /api/state to agree on the VM phase', 10_000, async () => {
    const st = await c.state(0)
    const now = parseSamples(await c.metricsText(0))
    return st.vms.every((v) => find(now, 'blixard_vms', { phase: v.phase }).some((x) => x.value >= 1))
  })
})

test.run()
