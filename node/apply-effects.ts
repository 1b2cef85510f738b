// What an applied command sets in motion on this node besides the state machine: learning a
// registered node's addresses (so Raft can reach members it never discovered), waking the
// scheduler for a new VM, the rebalancer for a node that joined or became ready, the agent for anything that may change what runs here, and the migration,
// volume, snapshot and warm-pool services for their commands. The decision
// is a pure function (effectsOf); carryOut wakes the services node/daemon.ts hands it.
import type { ApplyResult, CommandEnvelope } from '../protocols/commands.ts'
import { SNAPSHOT_COMMAND_TYPES } from '../protocols/snapshots.ts'
import { POOL_COMMAND_TYPES } from '../protocols/pools.ts'
import type { NodeRecord } from '../protocols/model.ts'

export interface AppliedEffects {
  /** a node whose addresses to learn from the state machine (not this one) */
  learnAddrsOf: string | null
  kickScheduler: boolean
  kickAgent: boolean
  /** a migration record changed (or a node went down, which ends its migrations) */
  kickMigrations: boolean
  /** a volume change to carry out, or a node change that may make this node the volume reconciler */
  kickVolumes: boolean
  /** a VM snapshot to take, restore, delete or finish reporting (node/snapshots/) */
  kickSnapshots: boolean
  /** a warm pool's settings changed: this host's pool service refills or drains (node/pools/) */
  kickPools: boolean
  /** a node that joined (registered for the first time) or was set ready: the rebalancer may fill it */
  nodeReady: string | null
}

const VOLUME_COMMANDS: ReadonlySet<string> = new Set(['CreateVolume', 'ResizeVolume', 'SnapshotVolume', 'DeleteVolume', 'ReportVolume', 'RegisterNode', 'UpdateNode', 'RemoveNode', 'MarkNodeDown'])
const MIGRATION_COMMANDS: ReadonlySet<string> = new Set(['StartMigration', 'EvacuateVm', 'ReportMigration', 'CancelMigration', 'ExpireMigration', 'MarkNodeDown'])

export function effectsOf (self: string, env: CommandEnvelope, r: ApplyResult): AppliedEffects {
  const none: AppliedEffects = { learnAddrsOf: null, kickScheduler: false, kickAgent: false, kickMigrations: false, kickVolumes: false, kickSnapshots: false, kickPools: false, nodeReady: null }
  if (!r.ok) return none
  const cmd = env.cmd
  const node = cmd.type === 'RegisterNode' ? cmd.node.id : cmd.type === 'UpdateNode' ? cmd.id : null
  return {
    learnAddrsOf: node !== null && node !== self ? node : null,
    // a volume made ready may let a VM waiting for it be placed (node/scheduler.ts)
    kickScheduler: cmd.type === 'CreateVm' || cmd.type === 'ReportVolume',
    // a status report or a new admin changes nothing the agent acts on
    kickAgent: cmd.type !== 'ReportVmStatus' && cmd.type !== 'AddAdmin',
    kickMigrations: MIGRATION_COMMANDS.has(cmd.type),
    kickVolumes: VOLUME_COMMANDS.has(cmd.type),
    kickSnapshots: SNAPSHOT_COMMAND_TYPES.has(cmd.type),
    kickPools: POOL_COMMAND_TYPES.has(cmd.type),
    nodeReady: cmd.type === 'UpdateNode' && cmd.state === 'ready' ? cmd.id : cmd.type === 'RegisterNode' && firstRegistration(r.value) ? cmd.node.id : null
  }
}

/** A RegisterNode's record that it created (a restarting node registers again: its registeredAt
 * stays, its updatedAt moves on). */
function firstRegistration (rec: unknown): boolean {
  const n = rec as Partial<NodeRecord> | undefined
  return n?.registeredAt !== undefined && n.registeredAt === n.updatedAt
}

/** The services an applied command may wake (node/execution.ts Execution has them all). */
export interface EffectTargets {
  scheduler: { kick: () => unknown }
  agent: { kick: () => void }
  migrations: { kick: () => void }
  volumes: { kick: () => void } | null
  snapshots: { kick: () => void }
  pools: { kick: () => void }
  /** null when the rebalancer is off (config rebalance.mode) */
  rebalancer: { nodeReady: (node: string) => void } | null
}

/** Carry out `fx`: learn a node's addresses (looked up in the committed state) and wake the
 * services it names; `exec` is null before the execution block started. */
export function carryOut (fx: AppliedEffects, exec: EffectTargets | null, learn: { addrsOf: (node: string) => string[] | undefined, learnAddrs: (node: string, addrs: string[]) => Promise<void> }): void {
  const addrs = fx.learnAddrsOf == null ? undefined : learn.addrsOf(fx.learnAddrsOf)
  if (fx.learnAddrsOf != null && addrs !== undefined) void learn.learnAddrs(fx.learnAddrsOf, addrs)
  if (exec === null) return
  if (fx.kickScheduler) void exec.scheduler.kick()
  if (fx.kickAgent) exec.agent.kick()
  if (fx.kickMigrations) exec.migrations.kick()
  if (fx.kickVolumes) exec.volumes?.kick()
  if (fx.kickSnapshots) exec.snapshots.kick()
  if (fx.kickPools) exec.pools.kick()
  if (fx.nodeReady != null) exec.rebalancer?.nodeReady(fx.nodeReady)
}
