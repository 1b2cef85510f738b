// Simulated clients: each runs one operation at a time on a small pool of VMs
// (create, update spec, set desired state, delete, linearizable read, stale
// read), talks to the replica it believes leads, follows NotLeader hints,
// retries a write with the same idempotency key, and gives up after a
// deadline (the outcome is then unknown). Everything lands in the History.
import type { Command } from '../protocols/commands.ts'
import type { VmDesiredState, VmSpec } from '../protocols/model.ts'
import type { Cluster, ClientRequest } from './cluster.ts'
import type { History, Op, OpInput, OpKind } from './history.ts'
import { viewString } from './history.ts'
import type { Prng } from './prng.ts'
import type { RpcReply } from './replica.ts'
import type { EventQueue } from './event-queue.ts'

/** virtual ms: one attempt's patience, and the whole operation's */
export const ATTEMPT_TIMEOUT_MS = 200
export const OP_DEADLINE_MS = 1500

export interface WorkloadOptions {
  sched: EventQueue
  rng: Prng
  cluster: Cluster
  history: History
  clients: number
  vms: number
  trace: ((line: string) => void) | null
}

export function vmSpec (name: string, vcpus: number, memoryMiB: number): VmSpec {
  return {
    name,
    vcpus,
    memoryMiB,
    diskGiB: 1,
    hypervisor: 'qemu',
    image: { kind: 'tiny' },
    volumes: [],
    networks: [],
    kernelParams: [],
    constraints: [],
    antiAffinityGroup: null,
    affinity: [],
    spreadLabel: null,
    priority: 0,
    restartPolicy: 'always',
    requires: []
  }
}

const KINDS: Array<[OpKind, number]> = [
  ['create', 25], ['update', 15], ['desire', 12], ['delete', 10], ['read', 28], ['stale-read', 10]
]
/** The first client is a reader (a dashboard): it stays with the replica that answers its reads,
 * which is how a deposed leader's stale answers would reach a client. */
const READER_KINDS: Array<[OpKind, number]> = [['read', 85], ['stale-read', 10], ['desire', 5]]

class Client {
  private guess: string
  private op: Op | null = null
  private deadline = 0

  constructor (readonly name: string, private readonly w: Workload, private readonly rng: Prng, private readonly kinds: Array<[OpKind, number]>) {
    this.guess = rng.pick(w.o.cluster.memberIds())
  }

  next (): void {
    if (!this.w.running) return
    this.w.o.sched.after(this.rng.range(1, 40), () => this.begin())
  }

  private begin (): void {
    if (!this.w.running) return
    const kind = this.pickKind()
    const vm = `vm${this.rng.range(1, this.w.o.vms)}`
    const input: OpInput = {}
    if (kind === 'create' || kind === 'update') {
      input.vcpus = this.rng.range(1, 8)
      input.memoryMiB = 128 * this.rng.range(1, 16)
    }
    if (kind === 'create' || kind === 'desire') input.desired = this.rng.chance(0.5) ? 'running' : 'stopped'
    const now = this.w.o.sched.now()
    const write = kind !== 'read' && kind !== 'stale-read'
    const op = this.w.o.history.begin(this.name, kind, vm, input, now, null)
    if (write) op.key = `${this.name}-${op.id}`
    this.op = op
    this.deadline = now + OP_DEADLINE_MS
    this.w.o.trace?.(`${this.name} call #${op.id} ${kind} ${vm} ${JSON.stringify(input)}`)
    this.attempt(this.guess)
  }

  private pickKind (): OpKind {
    let total = 0
    for (const [, w] of this.kinds) total += w
    let x = this.rng.int(total)
    for (const [k, w] of this.kinds) {
      if (x < w) return k
      x -= w
    }
    return 'read'
  }

  private request (op: Op): ClientRequest {
    const at = this.w.o.sched.now()
    const i = op.input
    let cmd: Command
    switch (op.kind) {
      case 'create':
        cmd = { type: 'CreateVm', id: op.vm, spec: vmSpec(op.vm, i.vcpus as number, i.memoryMiB as number), desired: i.desired as VmDesiredState }
        break
      case 'update':
        cmd = { type: 'UpdateVmSpec', id: op.vm, spec: vmSpec(op.vm, i.vcpus as number, i.memoryMiB as number) }
        break
      case 'desire':
        cmd = { type: 'SetVmDesiredState', id: op.vm, desired: i.desired as VmDesiredState }
        break
      case 'delete':
        cmd = { type: 'DeleteVm', id: op.vm }
        break
      case 'read':
        return { kind: 'read', vm: op.vm }
      case 'stale-read':
        return { kind: 'stale-read', vm: op.vm }
    }
    return { kind: 'write', env: { cmd, at, key: op.key as string } }
  }

  private attempt (target: string): void {
    const op = this.op as Op
    op.attempts++
    const sched = this.w.o.sched
    const req = this.request(op)
    const attemptNo = op.attempts
    sched.after(this.rng.range(1, 3), () => {
      this.w.o.cluster.request(target, req, (r) => {
        sched.after(this.rng.range(1, 3), () => this.onReply(op, r))
      })
    })
    sched.after(ATTEMPT_TIMEOUT_MS, () => {
      if (this.op !== op || op.attempts !== attemptNo) return
      this.w.o.trace?.(`${this.name} #${op.id} attempt ${attemptNo} to ${target} timed out`)
      this.guess = this.rng.pick(this.w.o.cluster.memberIds())
      this.retry(0)
    })
  }

  private retry (delay: number): void {
    const op = this.op as Op
    if (this.w.o.sched.now() + delay >= this.deadline) {
      this.w.o.trace?.(`${this.name} #${op.id} gave up: outcome unknown`)
      this.op = null
      this.next()
      return
    }
    const attemptsBefore = op.attempts
    this.w.o.sched.after(delay, () => {
      if (this.op === op && op.attempts === attemptsBefore) this.attempt(this.guess)
    })
  }

  private onReply (op: Op, r: RpcReply): void {
    if (this.op !== op) return // a late answer to an operation already finished or given up
    const final = r.ok || r.index >= 0 || r.definite === true
    if (!final) {
      if (r.error.kind === 'NotLeader' && r.error.leader !== undefined && r.error.leader !== r.node) {
        this.guess = r.error.leader
        this.retry(this.rng.range(1, 5))
      } else {
        this.guess = this.rng.pick(this.w.o.cluster.memberIds())
        this.retry(this.rng.range(10, 30))
      }
      return
    }
    const now = this.w.o.sched.now()
    op.ret = now
    op.node = r.node
    op.index = r.index >= 0 ? r.index : null
    op.data = r.data
    if (r.ok) {
      op.output = { ok: true, view: r.view }
      op.incarnation = r.incarnation
      op.applied = r.applied
    } else {
      op.output = { ok: false, error: r.error.kind }
    }
    if (op.kind !== 'stale-read') this.guess = r.node
    this.w.o.trace?.(`${this.name} ret #${op.id} from ${r.node} ${r.ok ? 'ok ' + (op.kind === 'read' || op.kind === 'stale-read' ? viewString(r.view) : '') : r.error.kind} index=${r.index}`)
    this.w.okAt(op, now)
    this.op = null
    this.next()
  }
}

export class Workload {
  running = false
  /** the first time after `since` that an operation called after `since` completed */
  private since = Infinity
  completedAfter: number | null = null
  private readonly clients: Client[] = []

  constructor (readonly o: WorkloadOptions) {
    for (let i = 1; i <= o.clients; i++) this.clients.push(new Client(`c${i}`, this, o.rng.fork(`client/${i}`), i === 1 ? READER_KINDS : KINDS))
  }

  start (): void {
    this.running = true
    for (const c of this.clients) c.next()
  }

  stop (): void {
    this.running = false
  }

  /** Start watching for the first write called at or after `t` that completes (liveness). */
  watchFrom (t: number): void {
    this.since = t
    this.completedAfter = null
  }

  okAt (op: Op, now: number): void {
    if (this.completedAfter === null && op.call >= this.since && op.kind !== 'stale-read' && op.kind !== 'read') this.completedAfter = now
  }
}
