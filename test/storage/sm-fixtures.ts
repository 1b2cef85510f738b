// Small builders for state machine tests.
import type { ApplyResult, Command } from '../../protocols/commands.ts'
import type { VmSpec } from '../../protocols/model.ts'
import { MemoryKv } from '../../storage/memory-kv.ts'
import { StateMachine, UNCHECKED_AUTHORITY, encodeEnvelope } from '../../storage/state-machine.ts'

export function spec (name: string, over: Partial<VmSpec> = {}): VmSpec {
  return {
    name, vcpus: 1, memoryMiB: 128, diskGiB: 1, hypervisor: 'qemu', image: { kind: 'tiny' }, volumes: [], networks: [],
    kernelParams: [], constraints: [], antiAffinityGroup: null, affinity: [], spreadLabel: null, priority: 0,
    restartPolicy: 'always', requires: [], ...over
  }
}

export function registerNode (id: string, over: { cpu?: number, maxVms?: number | null, addrs?: string[], name?: string } = {}): Command {
  return {
    type: 'RegisterNode',
    node: {
      id, name: over.name ?? `node-${id}`, addrs: over.addrs ?? ['/ip4/127.0.0.1/tcp/1'], labels: { zone: 'a' },
      capacity: { cpu: over.cpu ?? 4, memoryMiB: 4096, diskGiB: 100 }, overcommit: { cpu: 1, memory: 1, disk: 1 },
      capabilities: ['qemu'], maxVms: over.maxVms === undefined ? null : over.maxVms
    }
  }
}

/** A state machine plus `run(cmd)` that applies at the next index with at = index * 1000. */
export function harness (): { sm: StateMachine, run: (cmd: Command, key?: string) => ApplyResult, index: () => number } {
  const sm = new StateMachine(new MemoryKv(), UNCHECKED_AUTHORITY)
  let i = 0
  return {
    sm,
    index: () => i,
    run: (cmd, key) => {
      i++
      return sm.apply(i, encodeEnvelope(key === undefined ? { cmd, at: i * 1000 } : { cmd, at: i * 1000, key }))
    }
  }
}

export function errorKind (r: ApplyResult): string {
  return r.ok ? 'ok' : r.error.kind
}
