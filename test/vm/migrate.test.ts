// Live migration through 3 real blixard-node processes and a real tiny guest (QEMU, TCG
// here) printing a heartbeat counter on its console: `blixard vm migrate --wait --json` moves it
// to the node placement picks, with progress lines; the counter goes on where it was on the new
// host (no restart), exactly one QEMU runs it afterwards, and `vm show` names the new node; `vm logs`
// of the moved VM (and with follow) holds its whole console, boot and counter through the
// switchover, as if it had never moved (the target took the source's history over), and a
// `vm console` attached before the move types into the guest on its new host. Then
// kill -9 of the target's daemon mid-migration: the move aborts and the guest goes on running on
// its source, in the same QEMU, and once the dead host's fence watchdog killed its waiting QEMU,
// exactly one QEMU is left. The target issues announce-self once the guest runs (QEMU answers {}),
// and both parties log the move's timeline. Two concurrent `vm migrate --live` into one node both
// finish live; a stopped VM is refused --live with the reason and moves cold without a flag.
// Then `node drain --wait` of a node running 2 VMs moves both live (two at once), and
// a migration survives kill -9 of the Raft leader (a bystander): the new leader commits the rest.
// QEMU's bandwidth is capped (BLIXARD_MIGRATION_MAX_BANDWIDTH) so a move
// lasts long enough to be watched and interrupted. Ports 26300-26302 (metrics 26400-26402).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { spawn } from 'node:child_process'
import { ROOT, TestCluster, runCli, sleep, vmSpec, waitFor, leaseArgs } from '../cluster/harness.ts'
import type { CliResult } from '../cluster/harness.ts'
import type { VmRecord } from '../../protocols/model.ts'
import { cmdline, consoleText, markerCount, nodeIndex, qemuPidsFor, runtimeDir, show, vmSuite, waitPhase } from './helpers.ts'
import { parseHeartbeats } from '../../node/qemu/tiny-guest.ts'
import { BlixardError } from '../../protocols/errors.ts'

const HEARTBEAT_MS = 100
/** bytes/s: a 96 MiB tiny guest then moves in several seconds (about 9 here), not in half of one */
const MAX_BANDWIDTH = 8 * 1024 * 1024
// leases long enough that a host starved on a loaded test machine is not fenced mid-test (a 6 s
// lease fenced both parties of a move at load ~19), short enough that a killed host is fenced in time
const LEASE = { leaseMs: 15_000, renewEveryMs: 2_000, fenceMarginMs: 1_000, downMarginMs: 1_000 }
const c = new TestCluster({
  nodes: 3,
  basePort: 26300,
  extraArgs: leaseArgs(LEASE)
}, 'vm-migrate')
const ids: string[] = []
const figures: Record<string, number> = {}
const guard = vmSuite(test, c, { vmIds: () => ids, figures, logLines: 40, startEnv: { BLIXARD_MIGRATION_MAX_BANDWIDTH: String(MAX_BANDWIDTH) } })

/** the node's log lines with this msg about this VM, parsed */
const logged = (node: number, msg: string, vmId: string): Array<Record<string, unknown>> => c.log(node).split('\n')
  .filter((l) => l.includes(`"msg":"${msg}"`) && l.includes(vmId))
  .flatMap((l) => { try { return [JSON.parse(l) as Record<string, unknown>] } catch { return [] } })

const beats = (node: number, vmId: string): number[] => {
  try { return parseHeartbeats(readFileSync(join(runtimeDir(c, node, vmId), 'serial.log'), 'utf8')) } catch { return [] }
}
/** the node whose data dir the QEMU runs from */
const nodeOfPid = (pid: number): number => c.nodes.findIndex((n) => cmdline(pid)?.some((a) => a.includes(n.dir + '/')) === true)

let vmId = ''

/** How long `vm migrate` (a CLI process: seconds to start on a loaded host) may take to have the
 * move seen in transferring, bytes moved. */
const MOVING_WAIT_MS = 60_000

/**
 * Runs `blixard vm migrate NAME ...args` (asked of node `cli`) and, at the same time, watches the
 * VM's record on node `read` until the new move is in `transferring` with bytes moved, as the
 * source reported them. The watch does not wait for the CLI process: its start and its exit each
 * take seconds on a loaded host, as long as the capped move itself, and a look only after it
 * returned found the move already past transferring (the kill -9 case failed CI so, 1 run in 3).
 * A move that ends before it was seen moving fails at once, naming how it ended.
 */
async function migrateSeenMoving (name: string, args: string[], cli: number, read: number): Promise<{ moving: VmRecord, cli: Promise<CliResult> }> {
  const before = (await show(c, read, name)).migration?.started ?? null
  const run = runCli(['vm', 'migrate', name, ...args], c.cliEnv(cli), 60_000)
  run.catch(() => {})
  const t0 = Date.now()
  for (;;) {
    const v = await show(c, read, name)
    const m = v.migration
    if (m != null && m.started !== before) {
      if (m.phase === 'transferring' && (m.figures?.transferredBytes ?? 0) > 0) return { moving: v, cli: run }
      if (m.phase === 'done' || m.phase === 'aborted') throw new Error(`the move of ${name} ended ${m.phase} (${m.reason ?? 'no reason'}) before it was seen moving: ${JSON.stringify(m)}`)
    }
    if (Date.now() - t0 > MOVING_WAIT_MS) {
      const r = await Promise.race([run, sleep(0).then(() => null)])
      throw new Error(`no move of ${name} seen in transferring with bytes moved within ${MOVING_WAIT_MS} ms; last record ${JSON.stringify(m)}; CLI ${r == null ? 'still running' : `exited ${r.code}: ${r.stderr}`}`)
    }
    await sleep(50)
  }
}

guard('vm migrate --wait moves a running guest live: the heartbeat goes on, one QEMU on the new node, vm show names it', async () => {
  const vm = await (await c.client(0)).call('vm.create', { spec: { ...vmSpec('mig1'), memoryMiB: 96, kernelParams: [`blix.heartbeat=${HEARTBEAT_MS}`] } })
  vmId = vm.id
  ids.push(vm.id)
  const running = await waitPhase(c, 0, 'mig1', 'running', 120_000)
  const source = nodeIndex(c, running.assignedNode)
  await waitFor('heartbeats on the source', 30_000, () => beats(source, vmId).length >= 3, 100)
  const [sourcePid] = qemuPidsFor(vmId)

  // the source's console, read as it grows: its agent removes it soon after the move
  let onSource: number[] = []
  const reader = setInterval(() => { const b = beats(source, vmId); if (b.length >= onSource.length) onSource = b }, 50)
  // vm logs --follow started before the move, asked of a node that is not the source: it goes on across the switchover
  let across = ''
  const acrossSub = (await c.client((source + 2) % 3)).watch('vm.logs', { vm: 'mig1', follow: true })
  void (async () => { for await (const chunk of acrossSub) across += chunk.text })().catch((err: unknown) => { across += `\n[ended: ${String(err)}]` })
  await waitFor('the follow under way', 30_000, () => parseHeartbeats(across).length >= 3, 100)
  // `vm console` attached before the move, through a node that is not the source: what is typed
  // after the move must reach the guest on its new host (the old one refuses console input)
  const con = spawn(process.execPath, [join(ROOT, 'bin', 'blixard.js'), 'vm', 'console', 'mig1', '--tail', '0'], {
    cwd: ROOT, env: { ...process.env, ...c.cliEnv((source + 2) % 3) }, stdio: ['pipe', 'pipe', 'pipe']
  })
  let conOut = ''
  let conErr = ''
  con.stdout.on('data', (d: Buffer) => { conOut += d.toString() })
  con.stderr.on('data', (d: Buffer) => { conErr += d.toString() })
  const conExited = new Promise<number>((resolve) => con.on('exit', (code) => { resolve(code ?? 128) }))
  await waitFor('vm console attached', 60_000, () => conErr.includes('Detach with Ctrl-]'), 100)
  const t0 = Date.now()
  const r = await runCli(['vm', 'migrate', 'mig1', '--wait', '--json'], c.cliEnv((source + 1) % 3), 90_000).finally(() => { clearInterval(reader) })
  figures.cliMigrateMs = Date.now() - t0
  assert.is(r.code, 0, `vm migrate: ${r.stderr}\n${r.stdout}`)
  const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { phase: string, node?: string, nodeId?: string, target?: string, figures: { transferredBytes: number, remainingBytes: number, downtimeMs: number | null, totalTimeMs: number | null } | null })
  const last = lines[lines.length - 1]
  assert.is(last.phase, 'done', r.stdout)
  const target = nodeIndex(c, last.nodeId ?? null)
  assert.ok(target !== source, 'placement chose another node')
  assert.is(last.node, c.nodes[target].name, 'names, not peer ids')
  assert.ok(lines.some((l) => l.phase === 'transferring' && l.figures != null && l.figures.transferredBytes > 0 && l.figures.remainingBytes > 0), `a progress line with figures: ${r.stdout}`)
  assert.ok(last.figures?.downtimeMs != null && last.figures.downtimeMs < 5_000, `QEMU's downtime: ${last.figures?.downtimeMs}`)
  figures.downtimeMs = last.figures.downtimeMs
  figures.totalTimeMs = last.figures.totalTimeMs ?? -1

  // the guest's counter went on on the target from where it was on the source: no reboot
  const onTarget = await waitFor('heartbeats on the target', 20_000, () => { const b = beats(target, vmId); return b.length >= 5 ? b : null }, 100)
  const lastOnSource = Math.max(...onSource)
  assert.ok(onTarget[0] > 1 && onTarget[0] >= lastOnSource && onTarget[0] <= lastOnSource + 2, `the counter continued: last ${lastOnSource} on the source, first ${onTarget[0]} on the target`)
  assert.ok(onTarget.every((x, i) => i === 0 || x === onTarget[i - 1] + 1), `it counts on: ${onTarget.slice(0, 20).join(',')}`)

  // the console attached before the move types into the guest where it runs now
  try {
    con.stdin.write('echo moved-sum=$((40+2))\n')
    await waitFor('the moved guest\'s answer on the console', 60_000, () => /^moved-sum=42\r?$/m.test(conOut), 100)
    assert.match(conErr, new RegExp(`moved to ${c.nodes[target].name}: input now goes there`), conErr)
    con.stdin.write(Buffer.from([0x1d]))
    assert.is(await conExited, 0, conErr)
  } finally { if (con.exitCode == null) con.kill('SIGKILL') }

  // exactly one QEMU afterwards, the target's; the paused source QEMU and its runtime dir gone
  const pid = await waitFor('one QEMU left, on the target', 20_000, () => { const p = qemuPidsFor(vmId); return p.length === 1 && nodeOfPid(p[0]) === target ? p[0] : null }, 100)
  assert.ok(pid !== sourcePid)
  await waitFor('the source runtime dir removed', 20_000, async () => { try { readFileSync(join(runtimeDir(c, source, vmId), 'spec.json')); return false } catch { return true } }, 200)

  // vm logs (the RPC the CLI calls, asked of the old host) reads as if the VM had never moved: its
  // boot, the counter from 1 through the switchover and on, no gap or repeat beyond the one line
  // the switchover may cut; with --follow the same, then what the guest prints next
  const logs = await consoleText(c, source, 'mig1')
  assert.is(markerCount(logs), 1, `the boot on the console once: ${logs.slice(0, 300)}`)
  const seq = parseHeartbeats(logs)
  const jumps = seq.flatMap((x, i) => i > 0 && x !== seq[i - 1] + 1 ? [`${seq[i - 1]}->${x}`] : [])
  assert.ok(seq[0] <= 2 && seq.includes(lastOnSource) && seq.includes(onTarget[4]), `from the first beat through the source's last (${lastOnSource}) to the target's (${onTarget[4]}): ${seq[0]}..${seq.at(-1)}`)
  assert.ok(jumps.length <= 1 && jumps.every((j) => { const [a, b] = j.split('->').map(Number); return b === a || b === a + 2 }), `in order, no gap or repeat beyond one line: ${jumps.join(', ')}`)
  let followed = ''
  const sub = (await c.client(source)).watch('vm.logs', { vm: 'mig1', follow: true })
  const stop = setTimeout(() => { sub.cancel() }, 30_000)
  try {
    for await (const chunk of sub) { followed += chunk.text; if (Math.max(...parseHeartbeats(followed)) > seq.at(-1)! + 2) break }
  } finally { clearTimeout(stop); sub.cancel() }
  assert.ok(followed.startsWith(logs.slice(0, 200)) && markerCount(followed) === 1, `the follow starts with the whole console: ${followed.slice(0, 200)}`)
  assert.ok(Math.max(...parseHeartbeats(followed)) > seq.at(-1)! + 2, `the follow goes on past what was there (${seq.at(-1)}): ${parseHeartbeats(followed).slice(-3).join(',')}`)
  // the follow started before the move went on on the new host, without a repeat or a gap
  await waitFor('the follow from before the move past the target\'s beats', 30_000, () => Math.max(...parseHeartbeats(across)) > onTarget[4] + 2, 100).finally(() => { acrossSub.cancel() })
  const fseq = parseHeartbeats(across)
  const fjumps = fseq.flatMap((x, i) => i > 0 && x !== fseq[i - 1] + 1 ? [`${fseq[i - 1]}->${x}`] : [])
  assert.ok(markerCount(across) === 1 && fseq[0] <= 2 && fseq.includes(lastOnSource) && !across.includes('[ended'), `one follow across the move: ${fseq[0]}..${fseq.at(-1)} ${across.slice(-200)}`)
  assert.ok(fjumps.length <= 1 && fjumps.every((j) => { const [a, b] = j.split('->').map(Number); return b === a || b === a + 2 }), `the follow: no gap or repeat beyond one line: ${fjumps.join(', ')}`)
  // the history is the move's target's to take: a caller that is no member is refused
  const started = (await show(c, target, 'mig1')).migration?.started ?? 0
  const asked = (async () => { for await (const _ of (await c.client(target)).watch('internal.consoleHistory', { vm: vmId, started })) return 'answered'; return 'ended' })()
  const why = await asked.catch((err: unknown) => err as BlixardError)
  assert.ok(why instanceof BlixardError && why.kind === 'Unauthorized' && /'internal\.consoleHistory'/.test(why.message), `a non-member is refused: ${String(why)}`)
  console.log(`  vm logs after the move: beats ${seq[0]}..${seq.at(-1)} (${seq.length}), jumps [${jumps.join(', ')}]; a follow across it: ${fseq[0]}..${fseq.at(-1)}, jumps [${fjumps.join(', ')}]`)
  const after = await show(c, source, 'mig1')
  assert.equal([after.assignedNode, after.status.phase, after.generation, after.migration?.phase], [c.nodes[target].peerId, 'running', vm.generation, 'done'])
  const human = await runCli(['vm', 'show', 'mig1'], c.cliEnv(source), 60_000)
  assert.is(human.code, 0, human.stderr)
  assert.match(human.stdout, new RegExp(`Node:\\s+${c.nodes[target].name}\\s`), human.stdout) // the name alone (its id only with -o wide)
  assert.match(human.stdout, new RegExp(`Migration:\\s+done ${c.nodes[source].name} .*→ ${c.nodes[target].name}`))
  console.log(`  migrated ${c.nodes[source].name} → ${c.nodes[target].name}: CLI ${figures.cliMigrateMs} ms, QEMU downtime ${figures.downtimeMs} ms, total ${figures.totalTimeMs} ms; heartbeat ${lastOnSource} → ${onTarget[0]}`)

  // the target told the network where the guest now is: announce-self issued after the resume,
  // and QEMU answered it with success ({}), before target-running was reported
  const announced = logged(target, 'network announced on the target (announce-self)', vmId)
  assert.is(announced.length, 1, c.log(target).split('\n').filter((l) => l.includes('announce')).join('\n'))
  assert.equal(announced[0].answer, {}, 'QEMU answered announce-self with success')
  // each party logged its timeline of the move (ms since the record's start)
  const timeline = async (node: number, msg: string): Promise<Record<string, number>> => await waitFor(msg, 10_000, () => logged(node, msg, vmId)[0]?.marks as Record<string, number> | undefined, 100)
  const tSrc = await timeline(source, 'migration timeline (source)')
  const tDst = await timeline(target, 'migration timeline (target, switched)')
  const tPrep = await timeline(target, 'migration timeline (target, preparing)')
  const all = { ...tPrep, ...tSrc, ...tDst }
  assert.ok(all['target.announced'] >= all['target.resumed'] && all['target.runningCommitted'] >= all['target.announced'], `announce after resume, before target-running: ${JSON.stringify(all)}`)
  console.log(`  timeline (ms after StartMigration): ${Object.entries(all).sort((a, b) => a[1] - b[1]).map(([k, v]) => `${k} ${v}`).join(', ')}`)
})

guard('vm migrate --cancel while memory moves: the source stops sending, the guest runs on in the same QEMU', async () => {
  const before = await show(c, 0, 'mig1')
  const source = nodeIndex(c, before.assignedNode)
  const target = [0, 1, 2].find((i) => i !== source)!
  const [sourcePid] = qemuPidsFor(vmId)
  const { cli } = await migrateSeenMoving('mig1', ['--to', c.nodes[target].name], target, source)
  // the cancel goes through the API the CLI calls (vm.migrate cancel, admin-signed): a CLI process
  // starting on a loaded machine took longer than the ~10 s the move lasts, and came too late
  const cancelled = await (await c.client(source)).call('vm.migrate', { vm: 'mig1', cancel: true })
  assert.equal([cancelled.migration?.phase, typeof cancelled.migration?.cancelRequested], ['transferring', 'string'], 'asked while memory moved')
  const v = await waitFor('aborted', 30_000, async () => { const x = await show(c, source, 'mig1'); return x.migration?.phase === 'aborted' ? x : null }, 100)
  assert.match(v.migration?.reason ?? '', /source failed: cancelled: cancelled by an admin/)
  const r = await cli
  assert.is(r.code, 0, r.stderr)
  assert.match(r.stdout, new RegExp(`VM mig1 is migrating live from ${c.nodes[source].name} to ${c.nodes[target].name}`))
  // the CLI's --cancel, once nothing is moving: refused with the reason
  const late = await runCli(['vm', 'migrate', 'mig1', '--cancel'], c.cliEnv(source), 60_000)
  assert.is.not(late.code, 0, late.stdout)
  assert.match(late.stderr, /VM mig1 has no migration in flight/)
  assert.equal([v.assignedNode, v.status.phase], [c.nodes[source].peerId, 'running'])
  const n = beats(source, vmId).length
  await waitFor('the heartbeat goes on on the source', 10_000, () => beats(source, vmId).length >= n + 3, 100)
  await waitFor('one QEMU, the same', 20_000, () => { const p = qemuPidsFor(vmId); return p.length === 1 && p[0] === sourcePid }, 100)
})

guard('kill -9 of the target daemon mid-migration: aborted, the guest runs on in its source QEMU, one QEMU left', async () => {
  const before = await show(c, 0, 'mig1')
  const source = nodeIndex(c, before.assignedNode)
  const target = [0, 1, 2].find((i) => i !== source)!
  const ask = [0, 1, 2].find((i) => i !== source && i !== target)!
  const [sourcePid] = qemuPidsFor(vmId)
  const { cli } = await migrateSeenMoving('mig1', ['--to', c.nodes[target].name, '--json'], ask, ask)
  const t0 = Date.now()
  c.kill(target, 'SIGKILL')
  const r = await cli
  assert.is(r.code, 0, r.stderr)
  const ended = await waitFor('the migration aborted', 30_000, async () => {
    const v = await show(c, ask, 'mig1')
    return v.migration?.phase === 'aborted' ? v : null
  }, 100)
  figures.killToAbortedMs = Date.now() - t0
  assert.is(ended.assignedNode, c.nodes[source].peerId, 'the source still owns it')
  assert.match(ended.migration?.reason ?? '', /failed|down/)
  // the same QEMU on the source, still counting
  assert.ok(cmdline(sourcePid) != null, 'the source QEMU lives')
  const n = beats(source, vmId).length
  await waitFor('the heartbeat goes on on the source', 10_000, () => beats(source, vmId).length >= n + 5, 100)
  // the dead host's waiting QEMU: killed by its fence watchdog once its lease lapsed
  await waitFor('one QEMU left', 30_000, () => { const p = qemuPidsFor(vmId); return p.length === 1 && p[0] === sourcePid }, 100)
  figures.killToOneQemuMs = Date.now() - t0
  await sleep(500)
  const v = await show(c, ask, 'mig1')
  assert.equal([v.assignedNode, v.status.phase], [c.nodes[source].peerId, 'running'])
  console.log(`  kill -9 of the target mid-migration: aborted after ${figures.killToAbortedMs} ms (${ended.migration?.reason}), one QEMU after ${figures.killToOneQemuMs} ms`)
})

guard('node drain --wait of a node with 2 running VMs: both move live (no restart), the node ends empty', async () => {
  // the host killed above comes back; both VMs then meet on one node by live migrations (a VM whose
  // live move off a node just failed would leave that node cold: see node/scheduler.ts evacuation)
  const dead = [0, 1, 2].find((i) => c.nodes[i].proc?.exitCode != null || c.nodes[i].proc?.signalCode != null)
  const restartAt = Date.now()
  if (dead != null) c.start(dead, [], undefined, { BLIXARD_MIGRATION_MAX_BANDWIDTH: String(MAX_BANDWIDTH) })
  const ask = [0, 1, 2].find((i) => i !== dead)!
  // the restarted host counts once it renewed its lease since the restart: before that the leader
  // may still mark it down for the silence of its death (and refuse moves into it)
  await waitFor('all 3 nodes ready', 90_000, async () => (await (await c.client(ask)).call('node.list', {})).every((n) =>
    n.liveness !== 'down' && (dead == null || n.id !== c.nodes[dead].peerId || (n.leaseRenewedAt ?? 0) > restartAt)), 250)
  const vm2 = await (await c.client(ask)).call('vm.create', { spec: { ...vmSpec('mig2'), memoryMiB: 96, kernelParams: [`blix.heartbeat=${HEARTBEAT_MS}`] } })
  ids.push(vm2.id)
  await waitPhase(c, ask, 'mig2', 'running', 120_000)
  const mig1 = await show(c, ask, 'mig1')
  const mig2 = await show(c, ask, 'mig2')
  // the node running neither (3 nodes, 2 VMs): both move into it at once, two concurrent live
  // moves into one target (and mig1's last move off its node failed: neither stays there)
  const x = [0, 1, 2].find((i) => c.nodes[i].peerId !== mig1.assignedNode && c.nodes[i].peerId !== mig2.assignedNode)!
  const both = await Promise.all(['mig1', 'mig2'].map(async (name) => await runCli(['vm', 'migrate', name, '--to', c.nodes[x].name, '--live', '--wait', '--json'], c.cliEnv(ask), 120_000)))
  for (const [i, r] of both.entries()) {
    assert.is(r.code, 0, `mig${i + 1} to ${c.nodes[x].name}: ${r.stderr}\n${r.stdout}`)
    const end = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as { phase?: string, node?: string }
    assert.equal([end.phase, end.node], ['done', c.nodes[x].name], r.stdout)
  }
  const [m1, m2] = [(await show(c, ask, 'mig1')).migration, (await show(c, ask, 'mig2')).migration]
  assert.ok(m1 != null && m2 != null && m1.started < (m2.ended ?? 0) && m2.started < (m1.ended ?? 0), `the two moves overlapped: ${JSON.stringify([m1, m2])}`)
  for (const [id, name] of [[mig1.id, 'mig1'], [vm2.id, 'mig2']]) {
    const b = await waitFor(`${name} heartbeats on ${c.nodes[x].name}`, 20_000, () => { const h = beats(x, id); return h.length >= 2 ? h : null }, 100)
    assert.ok(b[0] > 20, `${name} kept running through the concurrent move: counter ${b[0]} on ${c.nodes[x].name}`)
  }
  console.log(`  two concurrent live moves into ${c.nodes[x].name}: ${m1.ended! - m1.started} ms and ${m2.ended! - m2.started} ms, overlapping`)

  // a VM that cannot move live: --live is refused with the reason; without a flag it moves cold
  await (await c.client(ask)).call('vm.create', { spec: { ...vmSpec('idle'), memoryMiB: 96 }, start: false })
  const refused = await runCli(['vm', 'migrate', 'idle', '--to', c.nodes[x].name, '--live'], c.cliEnv(ask), 60_000)
  assert.is.not(refused.code, 0, refused.stdout)
  assert.match(refused.stderr, /idle is meant to be stopped: only a running VM migrates live.*--cold/)
  const cold = await runCli(['vm', 'migrate', 'idle', '--to', c.nodes[(x + 1) % 3].name, '--wait'], c.cliEnv(ask), 60_000)
  assert.is(cold.code, 0, cold.stderr)
  assert.match(cold.stderr + cold.stdout, /moving it cold/)
  assert.match(cold.stdout, new RegExp(`VM idle moved cold to ${c.nodes[(x + 1) % 3].name}: stopped`))
  await (await c.client(ask)).call('vm.delete', { vm: 'idle' })
  const pidsBefore = new Map([[mig1.id, qemuPidsFor(mig1.id)], [vm2.id, qemuPidsFor(vm2.id)]])
  assert.ok([...pidsBefore.values()].every((p) => p.length === 1), 'one QEMU each before the drain')

  const t0 = Date.now()
  const r = await runCli(['node', 'drain', c.nodes[x].name, '--wait', '--json'], c.cliEnv(ask), 120_000)
  figures.drainMs = Date.now() - t0
  assert.is(r.code, 0, `node drain: ${r.stderr}\n${r.stdout}`)
  const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)
  assert.equal(lines[lines.length - 1], { node: c.nodes[x].name, drained: true, live: 2, cold: 0 }, r.stdout)
  assert.ok(lines.some((l) => l.how === 'live' && l.phase === 'transferring'), `progress per VM: ${r.stdout}`)
  for (const [id, name] of [[mig1.id, 'mig1'], [vm2.id, 'mig2']]) {
    const v = await show(c, ask, name)
    const to = nodeIndex(c, v.assignedNode)
    assert.ok(to !== x, `${name} left ${c.nodes[x].name}`)
    assert.equal([v.status.phase, v.migration?.phase, v.migration?.source, v.generation], ['running', 'done', c.nodes[x].peerId, 1])
    // its counter goes on on the new host: not a fresh boot (which counts from 1)
    const b = await waitFor(`${name} heartbeats on ${c.nodes[to].name}`, 20_000, () => { const h = beats(to, id); return h.length >= 2 ? h : null }, 100)
    assert.ok(b[0] > 20, `${name} counter on ${c.nodes[to].name} starts at ${b[0]}: it kept running`)
    const pid = await waitFor(`one QEMU of ${name}`, 20_000, () => { const p = qemuPidsFor(id); return p.length === 1 && nodeOfPid(p[0]) === to ? p[0] : null }, 100)
    assert.ok(!pidsBefore.get(id)!.includes(pid))
  }
  assert.equal(await (await c.client(ask)).call('vm.list', { node: c.nodes[x].peerId }), [], 'the node is empty')
  console.log(`  drain of ${c.nodes[x].name}: 2 VMs moved live in ${figures.drainMs} ms`)
  drained = x
})

let drained = -1

guard('kill -9 of the Raft leader (neither source nor target) mid-migration: the new leader commits the rest, the move finishes', async () => {
  const ask0 = [0, 1, 2].find((i) => i !== drained)!
  const un = await runCli(['node', 'undrain', c.nodes[drained].name], c.cliEnv(ask0), 60_000)
  assert.is(un.code, 0, un.stderr)
  const st = await c.agreed([0, 1, 2], 3)
  assert.ok(st != null, 'a leader')
  const leader = nodeIndex(c, st[0].leader)
  // a VM on a node that is not the leader, moving to the third node
  let pick: { name: string, id: string, from: number } | null = null
  for (const name of ['mig1', 'mig2']) {
    const v = await show(c, ask0, name)
    const from = nodeIndex(c, v.assignedNode)
    if (from !== leader) { pick = { name, id: v.id, from }; break }
  }
  if (pick == null) { // both on the leader: move one off it first
    const v = await show(c, ask0, 'mig1')
    const to = [0, 1, 2].find((i) => i !== leader)!
    const r = await runCli(['vm', 'migrate', 'mig1', '--to', c.nodes[to].name, '--wait'], c.cliEnv(to), 90_000)
    assert.is(r.code, 0, r.stderr)
    pick = { name: 'mig1', id: v.id, from: to }
  }
  const to = [0, 1, 2].find((i) => i !== leader && i !== pick.from)!
  const [fromPid] = qemuPidsFor(pick.id)
  const { cli } = await migrateSeenMoving(pick.name, ['--to', c.nodes[to].name], to, to)
  const t0 = Date.now()
  c.kill(leader, 'SIGKILL')
  const r = await cli
  assert.is(r.code, 0, r.stderr)
  const done = await waitFor('the move finished under a new leader', 60_000, async () => {
    const v = await show(c, to, pick.name).catch(() => null)
    return v?.migration?.phase === 'done' || v?.migration?.phase === 'aborted' ? v : null
  }, 200)
  figures.leaderKillToDoneMs = Date.now() - t0
  assert.equal([done.migration?.phase, done.assignedNode, done.generation], ['done', c.nodes[to].peerId, 1], done.migration?.reason)
  const b = await waitFor(`heartbeats on ${c.nodes[to].name}`, 20_000, () => { const h = beats(to, pick.id); return h.length >= 2 ? h : null }, 100)
  assert.ok(b[0] > 20, `the counter went on: ${b[0]}`)
  // moved host to host several times by now (A -> B -> C ...): vm logs still holds its one boot and every beat
  const chain = await consoleText(c, to, pick.name)
  const cseq = parseHeartbeats(chain)
  const cjumps = cseq.flatMap((x, i) => i > 0 && x !== cseq[i - 1] + 1 ? [`${cseq[i - 1]}->${x}`] : [])
  assert.ok(markerCount(chain) === 1 && cseq[0] <= 2 && cseq.includes(b[0]), `${pick.name}'s whole console after its moves: ${cseq[0]}..${cseq.at(-1)}`)
  assert.ok(cjumps.every((j) => { const [x, y] = j.split('->').map(Number); return y === x || y === x + 2 }), `at most a line at each switchover: ${cjumps.join(', ')}`)
  await waitFor('one QEMU, on the target', 20_000, () => { const p = qemuPidsFor(pick.id); return p.length === 1 && p[0] !== fromPid && nodeOfPid(p[0]) === to }, 100)
  const st2 = await c.status(to)
  assert.ok(st2?.leader != null && st2.leader !== c.nodes[leader].peerId, 'a new leader')
  console.log(`  leader ${c.nodes[leader].name} killed mid-migration of ${pick.name} (${c.nodes[pick.from].name} → ${c.nodes[to].name}): done ${figures.leaderKillToDoneMs} ms later`)
})

test.run()
