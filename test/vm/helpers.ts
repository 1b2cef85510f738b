// What the VM tests look at on the host itself, not through Blixard: qemu
// processes in /proc, runtime dirs under each node's data dir, network links.
// Checking the host directly is the point: the cluster's own view could be wrong.
import { execFileSync } from 'node:child_process'
import { cpSync, existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { VmRecord } from '../../protocols/model.ts'
import type { TestCluster } from '../cluster/harness.ts'
import type { Test } from 'uvu'
import { runCli, waitFor } from '../cluster/harness.ts'

export const MARKER = 'BLIXARD-GUEST-UP'

/** argv of a live process, null when gone or a zombie */
export function cmdline (pid: number): string[] | null {
  try {
    const raw = readFileSync(`/proc/${pid}/cmdline`, 'utf8')
    return raw === '' ? null : raw.replace(/\0$/, '').split('\0')
  } catch { return null }
}

/** every live qemu whose command line names this VM id (any node, any data dir), or this path */
export function qemuPidsFor (vmId: string): number[] {
  const out: number[] = []
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    const argv = cmdline(Number(name))
    if (argv == null || !argv[0].includes('qemu-system')) continue
    if (argv.some((a) => a.includes(vmId))) out.push(Number(name))
  }
  return out
}

export function runtimeDir (c: TestCluster, node: number, vmId: string): string {
  return join(c.nodes[node].dir, 'vms', vmId)
}

/** indexes of the nodes whose data dir holds a runtime dir for the VM */
export function nodesWithRuntimeDir (c: TestCluster, vmId: string): number[] {
  return c.nodes.map((_n, i) => i).filter((i) => existsSync(runtimeDir(c, i, vmId)))
}

/** the pid the driver recorded, if the file is there */
export function pidFile (c: TestCluster, node: number, vmId: string): number | null {
  try { return Number(readFileSync(join(runtimeDir(c, node, vmId), 'qemu.pid'), 'utf8').trim()) } catch { return null }
}

/** names of the host's network links (`ip -o link`) */
export function links (): string[] {
  const out = execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' })
  return out.split('\n').map((l) => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1]).filter((x): x is string => x != null)
}

export async function show (c: TestCluster, i: number, vm: string): Promise<VmRecord> {
  return await (await c.client(i)).call('vm.show', { vm })
}

/** the console through the CLI (`vm logs`): a CLI process start costs seconds on a loaded host */
export async function consoleViaCli (c: TestCluster, i: number, vm: string): Promise<string> {
  const r = await runCli(['vm', 'logs', vm], c.cliEnv(i), 60_000)
  if (r.code !== 0) throw new Error(`vm logs ${vm}: exit ${r.code}: ${r.stderr}`)
  return r.stdout
}

/** the console of the current boot through RPC vm.logs (what the CLI calls), asked of node i */
export async function consoleText (c: TestCluster, i: number, vm: string): Promise<string> {
  let text = ''
  for await (const chunk of (await c.client(i)).watch('vm.logs', { vm })) text += chunk.text
  return text
}

export function markerCount (text: string): number {
  return text.split(MARKER).length - 1
}

/** waits until the VM's phase is `phase` (read from node i) and returns the record */
export async function waitPhase (c: TestCluster, i: number, vm: string, phase: string, timeoutMs: number): Promise<VmRecord> {
  return await waitFor(`${vm} ${phase}`, timeoutMs, async () => {
    const v = await show(c, i, vm)
    return v.status.phase === phase ? v : null
  }, 200)
}

export function nodeIndex (c: TestCluster, nodeId: string | null): number {
  const i = c.nodes.findIndex((n) => n.peerId === nodeId)
  if (i < 0) throw new Error(`no test node with id ${String(nodeId)}`)
  return i
}

/** the value after `-m` in a qemu argv */
export function memoryArg (argv: string[]): string | null {
  const at = argv.indexOf('-m')
  return at >= 0 ? argv[at + 1] ?? null : null
}

export interface SuiteOptions {
  /** the VMs the tests made: their qemu processes are killed after the nodes stop */
  vmIds: () => string[]
  /** printed after the run */
  figures?: Record<string, number>
  /** lines of each node's log printed when a test failed */
  logLines?: number
  /** before the nodes start (a Ceph to point them at, say); returns extra blixard-node flags */
  prepare?: () => Promise<string[]>
  /** after the nodes are up */
  ready?: () => Promise<void>
  /** extra environment of every node process */
  startEnv?: NodeJS.ProcessEnv
  /** after the nodes and guests are gone (devices, Ceph) */
  cleanup?: () => Promise<void> | void
  /** how node i starts, given the extra flags (default: c.start on 127.0.0.1; the HA test: in a network namespace) */
  start?: (i: number, extra: string[]) => void
}

/**
 * The frame shared by the tests that run 3 real nodes and real guests: before, start the nodes
 * and wait for 3 voters and a leader; after, stop the nodes first (a live agent would restart a
 * killed guest, and guests outlive their daemon), kill what is left of the tests' guests, and
 * print the figures, and the node logs if a test failed. Returns `guard`: test() that records a failure.
 */
export function vmSuite (test: Test, c: TestCluster, o: SuiteOptions): (name: string, fn: () => Promise<void>) => void {
  let failed = false
  test.before(async () => {
    try {
      const extra = await o.prepare?.() ?? []
      await c.prepare()
      for (const i of [0, 1, 2]) {
        if (o.start != null) o.start(i, extra)
        else c.start(i, extra, undefined, o.startEnv ?? {})
      }
      await waitFor('3 voters and a leader', 120_000, async () => await c.agreed([0, 1, 2], 3), 250)
      // and every node registered: a create that fits nowhere is refused at once now, so a test
      // whose first VM is pinned to the last node to register would race its registration
      await waitFor('3 nodes registered', 60_000, async () => (await (await c.client(0)).call('node.list', {})).length === 3, 200)
      await o.ready?.()
    } catch (err) {
      // uvu reports every test failed and not why: say it here (the logs go with the after hook)
      failed = true
      console.log(`  setup failed: ${(err as Error).stack ?? String(err)}`)
      throw err
    }
  })
  test.after(async () => {
    if (failed) console.log(c.logTails(o.logLines ?? 25))
    // BLIXARD_TEST_KEEP_LOGS=DIR: the nodes' logs are copied there before the cluster's dir goes
    const keep = process.env.BLIXARD_TEST_KEEP_LOGS
    if (keep != null) for (const n of c.nodes) cpSync(n.dir, join(keep, n.name), { recursive: true, filter: (f) => !f.includes('/vms/') && !f.endsWith('.mdb') })
    await c.stop()
    for (const id of o.vmIds()) for (const pid of qemuPidsFor(id)) process.kill(pid, 'SIGKILL')
    await o.cleanup?.()
    if (o.figures != null) console.log(`  figures: ${JSON.stringify(o.figures)}`)
  })
  return (name, fn) => {
    test(name, async () => {
      try { await fn() } catch (err) { failed = true; throw err }
    })
  }
}

/**
 * The HA tests' "moved" condition: the VM (asked of node `ask`) running on a host other than `from`,
 * with exactly one QEMU of it alive and that not the old one (`oldPid`).
 */
export async function runningElsewhere (c: TestCluster, ask: number, vm: string, vmId: string, from: number, oldPid: number | undefined, timeoutMs = 120_000): Promise<VmRecord> {
  return await waitFor('the VM running on another host', timeoutMs, async () => {
    const v = await show(c, ask, vm)
    const pids = qemuPidsFor(vmId)
    return v.status.phase === 'running' && v.assignedNode !== c.nodes[from].peerId && pids.length === 1 && pids[0] !== oldPid ? v : null
  }, 200)
}
