// The setup the real-process Ceph VM tests share (cluster-disk, ha-disk): 3 blixard-node processes
// configured with a throwaway single-host Ceph, a VM whose data disk is an RBD volume, the
// guest's console per node, and the disk writer's log read back from the image and judged.
import type { Test } from 'uvu'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { open } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { waitFor, type TestCluster } from '../cluster/harness.ts'
import { nodeIndex, show, vmSuite } from '../vm/helpers.ts'
import { RbdClient } from '../../storage/rbd.ts'
import { judgeWriterLog, readWriterLog, type WriterVerdict } from '../../node/qemu/disk-writer-log.ts'
import { startTestCeph, type TestCeph } from './single-host-ceph.ts'
import type { VmRecord } from '../../protocols/model.ts'

export interface CephVmOptions {
  /** the VM's name */
  vm: string
  figures?: Record<string, number>
  cleanup?: () => Promise<void> | void
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
  /** exports the volume's image and judges the disk writer's log on it */
  judgeDisk: (volume: string) => Promise<WriterVerdict>
}

export function cephVmSuite (test: Test, c: TestCluster, o: CephVmOptions): CephVm {
  let ceph: TestCeph | null = null
  let rbd: RbdClient | null = null
  let vmId = ''
  const guard = vmSuite(test, c, {
    vmIds: () => vmId === '' ? [] : [vmId],
    logLines: 30,
    ...(o.figures != null ? { figures: o.figures } : {}),
    prepare: async () => {
      ceph = await startTestCeph()
      console.log(`  ceph start took ${ceph.startSeconds.toFixed(1)} s`)
      rbd = new RbdClient({ conf: ceph.conf, keyring: ceph.keyring, id: 'admin', timeoutMs: 20_000 })
      return ['--ceph-conf', ceph.conf, '--ceph-keyring', ceph.keyring, '--ceph-id', 'admin']
    },
    ready: async () => { await waitFor('3 nodes registered', 30_000, async () => (await (await c.client(0)).call('node.list', {})).length === 3, 200) },
    cleanup: async () => { await o.cleanup?.(); await ceph?.destroy() }
  })
  const client = (): RbdClient => { if (rbd == null) throw new Error('ceph is not up'); return rbd }
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
    judgeDisk: async (volume) => {
      const dir = mkdtempSync(join(tmpdir(), 'blixard-disk-'))
      try {
        const file = join(dir, 'image')
        await client().exportFile('rbd', volume, file, { timeoutMs: 120_000 })
        const fh = await open(file, 'r')
        try {
          return judgeWriterLog(await readWriterLog(async (offset, length) => {
            const buf = Buffer.alloc(length)
            const { bytesRead } = await fh.read(buf, 0, length, offset)
            return buf.subarray(0, bytesRead)
          }))
        } finally { await fh.close() }
      } finally { rmSync(dir, { recursive: true, force: true }) }
    }
  }
}
