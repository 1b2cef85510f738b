// The setup the real-process Ceph VM tests share (cluster-disk, ha-disk): 3 blixard-node processes
// (on 127.0.0.1, or each in its own network namespace) configured with a throwaway single-host Ceph, a VM whose data disk is an RBD volume, the
// guest's console per node, and the disk writer's log read back from the image and judged.
import type { Test } from 'uvu'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { waitFor, type TestCluster } from '../cluster/harness.ts'
import { nodeIndex, show, vmSuite } from '../vm/helpers.ts'
import { RbdClient } from '../../storage/rbd.ts'
import { judgeWriterLog, readWriterLog, type WriterVerdict } from '../../node/qemu/disk-writer-log.ts'
import { startTestCeph, type TestCeph } from './single-host-ceph.ts'
import type { NetnsSwitch } from '../cluster/netns-switch.ts'
import type { VmRecord } from '../../protocols/model.ts'

const execFileP = promisify(execFile)
/** Bound on one `rados get` (a client with no monitor waits forever). */
const RADOS_TIMEOUT_S = 60

export interface CephVmOptions {
  /** the VM's name */
  vm: string
  figures?: Record<string, number>
  cleanup?: () => Promise<void> | void
  /**
   * The nodes in network namespaces (test/cluster/netns-switch.ts): `up` before Ceph starts (Ceph
   * binds `cephAddr`, an address of the test's network the namespaces reach), `start` runs node i
   * in its namespace, `down` after everything else is gone.
   */
  net?: { up: () => void, cephAddr: string, start: (i: number, extra: string[]) => void, down: () => void }
}

/** CephVmOptions.net for `c`'s nodes, each in its own namespace `ns[i]` on `net` (address i + 1),
 * listening and known to the others at its switch address (which it advertises: the VXLAN underlay
 * and the migration listener take it from there), the test itself and Ceph at `rootHost`. */
export function switchedNodes (c: TestCluster, net: NetnsSwitch, ns: string[], rootHost: number): NonNullable<CephVmOptions['net']> {
  return {
    cephAddr: net.addr(rootHost),
    up: () => {
      net.up()
      ns.forEach((n, i) => { net.attach(n, `v${i + 1}`, i + 1) })
      net.attachRoot(`${net.tag}r`, rootHost)
    },
    start: (i, extra) => {
      c.nodes.forEach((n, j) => { n.addr = `/ip4/${net.addr(j + 1)}/tcp/${n.port}/p2p/${n.peerId}` })
      c.start(i, [...extra, '--listen', `/ip4/${net.addr(i + 1)}/tcp/${c.nodes[i].port}`], c.keyFile, {}, ['ip', 'netns', 'exec', ns[i]])
    },
    down: () => { net.teardown() }
  }
}

export interface CephVm {
  guard: (name: string, fn: () => Promise<void>) => void
  rbd: () => RbdClient
  vmId: () => string
  setVmId: (id: string) => void
  /** the guest's console as node i's driver wrote it ('' before its first boot there) */
  serial: (node: number) => string
  /** waits for the VM running (asked of node `ask`), away from `notOn` when given; a failed VM throws */
  runningOn: (ask: number, notOn: number | null, timeoutMs: number) => Promise<VmRecord>
  /** reads the disk writer's log off the volume's image (its RADOS objects) and judges it */
  judgeDisk: (volume: string) => Promise<WriterVerdict>
  /** `length` bytes of the volume's image from `offset`, read off its RADOS objects (zeros where never written) */
  readDisk: (volume: string, offset: number, length: number) => Promise<Buffer>
}

export function cephVmSuite (test: Test, c: TestCluster, o: CephVmOptions): CephVm {
  let ceph: TestCeph | null = null
  let rbd: RbdClient | null = null
  let vmId = ''
  const guard = vmSuite(test, c, {
    vmIds: () => vmId === '' ? [] : [vmId],
    logLines: 30,
    ...(o.figures != null ? { figures: o.figures } : {}),
    ...(o.net != null ? { start: o.net.start } : {}),
    prepare: async () => {
      o.net?.up()
      ceph = await startTestCeph(o.net?.cephAddr)
      console.log(`  ceph start took ${ceph.startSeconds.toFixed(1)} s`)
      rbd = new RbdClient({ conf: ceph.conf, keyring: ceph.keyring, id: 'admin', timeoutMs: 20_000 })
      return ['--ceph-conf', ceph.conf, '--ceph-keyring', ceph.keyring, '--ceph-id', 'admin']
    },
    cleanup: async () => {
      try { await o.cleanup?.(); await ceph?.destroy() } finally { o.net?.down() }
    }
  })
  const client = (): RbdClient => { if (rbd == null) throw new Error('ceph is not up'); return rbd }
  /** Reads an image's bytes off its RADOS objects (rados get of rbd_data.<id>.<object no>). */
  const readDisk = async (volume: string, offset: number, length: number): Promise<Buffer> => {
    const info = await client().info('rbd', volume)
    const dir = mkdtempSync(join(tmpdir(), 'blixard-disk-'))
    try {
      const object = async (no: number): Promise<Buffer> => {
        const file = join(dir, `obj${no}`)
        const name = `rbd_data.${info.id}.${no.toString(16).padStart(16, '0')}`
        try {
          await execFileP('timeout', ['-k', '2', String(RADOS_TIMEOUT_S), 'rados', '-c', ceph!.conf, '--keyring', ceph!.keyring, '--id', 'admin', '-p', 'rbd', 'get', name, file])
        } catch (e) {
          // never written: reads as zeros (rados says ENOENT); anything else is a failed read
          if (/No such file or directory/.test((e as { stderr?: string }).stderr ?? '')) return Buffer.alloc(0)
          throw e
        }
        try { return readFileSync(file) } finally { rmSync(file, { force: true }) }
      }
      const out = Buffer.alloc(length)
      for (let at = offset; at < offset + length;) {
        const no = Math.floor(at / info.objectSizeBytes)
        const inObj = at - no * info.objectSizeBytes
        const take = Math.min(info.objectSizeBytes - inObj, offset + length - at)
        ;(await object(no)).subarray(inObj, inObj + take).copy(out, at - offset)
        at += take
      }
      return out
    } finally { rmSync(dir, { recursive: true, force: true }) }
  }
  return {
    guard,
    rbd: client,
    vmId: () => vmId,
    setVmId: (id) => { vmId = id },
    serial: (node) => { try { return readFileSync(join(c.nodes[node].dir, 'vms', vmId, 'serial.log'), 'utf8') } catch { return '' } },
    runningOn: async (ask, notOn, timeoutMs) => await waitFor(`VM running${notOn == null ? '' : ` away from node ${notOn}`}`, timeoutMs, async () => {
      const v = await show(c, ask, o.vm)
      if (v.status.phase === 'failed') throw new Error(`VM failed: ${v.status.reason}`)
      return v.status.phase === 'running' && v.assignedNode != null && nodeIndex(c, v.assignedNode) !== notOn ? v : null
    }, 250),
    readDisk: async (volume, offset, length) => await readDisk(volume, offset, length),
    judgeDisk: async (volume) => {
      // Only the log's objects are read, region by region until the first empty one: exporting the
      // whole 1 GiB image took 12 s on a loaded host. Past the last byte written the disk reads
      // zeros: empty slots, where the judge stops
      return judgeWriterLog(await readWriterLog(async (offset, length) => await readDisk(volume, offset, length)))
    }
  }
}
