// CLI commands of quotas and rebalancing: `blixard quota set|show`, `blixard rebalance --dry-run|--apply`. Every limit is optional (left out:
// unlimited); `--json` prints the records as the node answers them.
import type { QuotaLimits, QuotaUsage } from '../../protocols/model.ts'
import type { QuotaView, RebalanceView } from '../../protocols/rpc-sched.ts'
import { bool, flag, int, sizeMiB, UsageError } from './args.ts'
import { EXIT } from './errors.ts'
import { invocationKey, mutate } from './idempotent.ts'
import { table } from './format.ts'
import { QUOTA_LIMIT_MAX, formatMiB } from '../../protocols/vm-limits.ts'
import type { CliHelpers, ResourceCommand } from './resources.ts'
import type { Parsed } from './args.ts'

/** What each rebalancer mode does, for `rebalance --dry-run` (config rebalance.mode, BLIXARD_REBALANCE). */
const REBALANCE_MODE_TEXT: Record<RebalanceView['mode'], string> = {
  off: 'it moves nothing by itself; --apply runs this plan by hand',
  join: 'it fills a node that joins or becomes ready empty; this plan is what --apply, or mode skew, runs',
  skew: 'it runs this plan by itself, within its budget'
}

interface Out { json: boolean, data: (value: unknown, human: () => string) => void, progress: (line: string) => void }

/** `rebalance --apply`: the moves it starts unless --max-moves says otherwise (the rebalancer's own
 * hourly budget), how long it follows one round of moves, how often it looks, and how many rounds
 * of plan-and-move it runs at most (each round is at most the plan's concurrent budget). */
export const REBALANCE_APPLY_MAX_MOVES = 20
const REBALANCE_APPLY_WAIT_S = 600
const REBALANCE_APPLY_POLL_MS = 500
const REBALANCE_APPLY_MAX_ROUNDS = 100

interface AppliedMove { vm: string, name: string, from: string, to: string, gain: number, outcome: 'done' | 'aborted' | 'refused' | 'timeout', reason?: string }

/** Plan, start each move as an admin-signed live migration, follow them to their end; again until
 * the plan is empty, a round moved nothing, or the budget is spent. Exit 0 when every move it
 * started finished (an empty plan included), 1 otherwise. */
async function applyRebalance (p: Parsed, out: Out, withCluster: CliHelpers['withCluster']): Promise<number> {
  const max = int(p, 'max-moves', REBALANCE_APPLY_MAX_MOVES, 1, 10_000)
  const waitMs = int(p, 'timeout', REBALANCE_APPLY_WAIT_S, 1, 86_400) * 1000
  const base = invocationKey(p)
  return await withCluster(p, async ({ client }) => {
    const nodes = await client.call('node.list', { stale: true })
    const nm = new Map(nodes.map((n) => [n.id, n.name]))
    const name = (id: string): string => nm.get(id) ?? id
    const moves: AppliedMove[] = []
    let first: { before: number, why: string } | null = null
    let last = 0
    for (let round = 0; round < REBALANCE_APPLY_MAX_ROUNDS && moves.length < max; round++) {
      const plan = await client.call('rebalance.plan', {})
      first ??= { before: plan.before, why: plan.why }
      last = plan.after
      if (plan.moves.length === 0) { out.progress(plan.why); break }
      const started: Array<{ m: AppliedMove, started: number }> = []
      for (const m of plan.moves.slice(0, max - moves.length)) {
        const rec: AppliedMove = { vm: m.vm, name: m.name, from: m.from, to: m.to, gain: m.gain, outcome: 'refused' }
        moves.push(rec)
        try {
          // one key per move of this invocation: a retried call starts no second move
          const vm = await mutate(client, `${base}:${moves.length}`, 'vm.migrate', { vm: m.vm, to: m.to })
          started.push({ m: rec, started: vm.migration?.started ?? 0 })
          out.progress(`moving VM ${m.name}: ${name(m.from)} → ${name(m.to)} (imbalance −${m.gain.toFixed(4)})`)
        } catch (err) {
          rec.reason = err instanceof Error ? err.message : String(err)
          out.progress(`VM ${m.name} not moved: ${rec.reason}`)
        }
      }
      if (started.length === 0) break
      const deadline = Date.now() + waitMs
      for (const s of started) {
        for (;;) {
          const vm = await client.call('vm.show', { vm: s.m.vm })
          const mg = vm.migration
          if (mg != null && mg.started === s.started && (mg.phase === 'done' || mg.phase === 'aborted')) {
            s.m.outcome = mg.phase
            if (mg.reason != null) s.m.reason = mg.reason
            out.progress(`VM ${s.m.name} ${mg.phase === 'done' ? `now on ${name(s.m.to)}` : `stays on ${name(s.m.from)}: ${mg.reason ?? 'aborted'}`}`)
            break
          }
          if (Date.now() > deadline) { s.m.outcome = 'timeout'; out.progress(`VM ${s.m.name} still moving after ${waitMs / 1000} s (${mg?.phase ?? 'no migration'}): not waiting any longer`); break }
          await new Promise((resolve) => setTimeout(resolve, REBALANCE_APPLY_POLL_MS))
        }
      }
      if (!started.some((s) => s.m.outcome === 'done')) break
    }
    const result = { before: first?.before ?? 0, after: last, moves }
    const ok = moves.every((m) => m.outcome === 'done')
    out.data(result, () => moves.length === 0
      ? `nothing to move: ${first?.why ?? ''}`
      : `${moves.filter((m) => m.outcome === 'done').length} of ${moves.length} moves done; imbalance (variance of node fill) ${result.before.toFixed(4)} → ${last.toFixed(4)} as planned\n\n${table(['vm', 'from', 'to', 'outcome'], moves.map((m) => [m.name, name(m.from), name(m.to), m.reason != null ? `${m.outcome}: ${m.reason}` : m.outcome]))}`)
    return ok ? EXIT.ok : EXIT.error
  })
}

function cell (used: number, limit: number | undefined, fmt: (n: number) => string = String): string {
  return limit === undefined ? `${fmt(used)} / -` : `${fmt(used)} / ${fmt(limit)}`
}

function row (q: QuotaView): string[] {
  const l: QuotaLimits = q.limits ?? {}
  const u: QuotaUsage = q.usage
  return [q.project, cell(u.vms, l.vms), cell(u.vcpus, l.vcpus), cell(u.memoryMiB, l.memoryMiB, formatMiB), cell(u.diskGiB, l.diskGiB, (n) => `${n}G`), cell(u.ips, l.ips)]
}

export function schedCommands ({ withCluster, need, stale }: CliHelpers): Record<string, ResourceCommand> {
  return {
    'quota set': {
      summary: "Set a project's quota (VMs with --project NAME count against it, VMs created without one are in the project default); a limit left out is unlimited",
      usage: 'blixard quota set PROJECT [--vms N] [--vcpus N] [--memory SIZE] [--disk GIB] [--ips N] | --clear',
      flags: {
        vms: { value: true, arg: 'N', help: 'most VMs of the project' },
        vcpus: { value: true, arg: 'N', help: 'most vCPUs over its VMs' },
        memory: { value: true, arg: 'SIZE', help: 'most guest memory over its VMs (M, G or T)' },
        disk: { value: true, arg: 'GIB', help: 'most local root disk over its VMs, in GiB' },
        ips: { value: true, arg: 'N', help: 'most network addresses (one per --network of each VM)' },
        clear: { help: 'remove the quota (the project is unlimited again)' }
      },
      run: async (p, out) => await withCluster(p, async ({ client }) => {
        const project = need(p, 1, 'PROJECT')[0]
        const given = ['vms', 'vcpus', 'memory', 'disk', 'ips'].filter((f) => flag(p, f) != null)
        if (bool(p, 'clear') && given.length > 0) throw new UsageError(`--clear removes the quota: give it alone, not with --${given.join(', --')}`)
        if (!bool(p, 'clear') && given.length === 0) throw new UsageError('give at least one limit (--vms, --vcpus, --memory, --disk, --ips), or --clear')
        let limits: QuotaLimits | null = null
        if (!bool(p, 'clear')) {
          limits = {}
          if (flag(p, 'vcpus') != null) limits.vcpus = int(p, 'vcpus', 0, 0, QUOTA_LIMIT_MAX)
          if (flag(p, 'memory') != null) limits.memoryMiB = sizeMiB(p, 'memory', 0, 0, QUOTA_LIMIT_MAX)
          if (flag(p, 'disk') != null) limits.diskGiB = int(p, 'disk', 0, 0, QUOTA_LIMIT_MAX)
          if (flag(p, 'vms') != null) limits.vms = int(p, 'vms', 0, 0, QUOTA_LIMIT_MAX)
          if (flag(p, 'ips') != null) limits.ips = int(p, 'ips', 0, 0, QUOTA_LIMIT_MAX)
        }
        const q = await mutate(client, invocationKey(p), 'quota.set', { project, limits })
        out.data(q, () => q.limits === null ? `quota of project ${q.project} cleared` : `quota of project ${q.project} set\n\n${table(['project', 'vms', 'vcpus', 'memory', 'disk', 'ips'], [row(q)])}`)
        return EXIT.ok
      })
    },
    rebalance: {
      summary: 'Show the live migrations the rebalancer would start now (--dry-run), or start them and follow them to the end (--apply)',
      usage: 'blixard rebalance --dry-run [--stale] | --apply [--max-moves N] [--timeout SECONDS] [--json]',
      flags: {
        'dry-run': { help: 'show the plan and the imbalance it would leave (changes nothing)' },
        apply: { help: 'start the plan\'s moves, each an admin-signed live migration (vm migrate), wait for them, plan again, until nothing helps or --max-moves' },
        'max-moves': { value: true, arg: 'N', help: 'moves --apply starts at most', default: String(REBALANCE_APPLY_MAX_MOVES) },
        timeout: { value: true, arg: 'SECONDS', help: 'how long --apply waits for each round of moves', default: String(REBALANCE_APPLY_WAIT_S) }
      },
      run: async (p, out) => {
        const dry = bool(p, 'dry-run')
        const apply = bool(p, 'apply')
        if (dry === apply) throw new UsageError('give --dry-run (show the plan) or --apply (run it), one of them')
        if (apply) return await applyRebalance(p, out, withCluster)
        return await withCluster(p, async ({ client }) => {
        const [plan, nodes] = await Promise.all([client.call('rebalance.plan', stale(p)), client.call('node.list', { stale: true })])
        const nm = new Map(nodes.map((n) => [n.id, n.name]))
          out.data(plan, () => `${plan.why}\nimbalance (variance of node fill): ${plan.before.toFixed(4)} → ${plan.after.toFixed(4)}; the leader's rebalancer: mode ${plan.mode} (${REBALANCE_MODE_TEXT[plan.mode]})\n\n${table(['vm', 'from', 'to', 'gain'], plan.moves.map((m) => [m.name, nm.get(m.from) ?? m.from, nm.get(m.to) ?? m.to, m.gain.toFixed(4)]))}`)
          return EXIT.ok
        })
      }
    },
    'quota show': {
      summary: 'Show projects: what each holds against its quota (used / limit; - is unlimited)',
      usage: 'blixard quota show [PROJECT] [--stale]',
      run: async (p, out) => await withCluster(p, async ({ client }) => {
        const project = p.positionals[0]
        const list = await client.call('quota.show', { ...stale(p), ...(project !== undefined ? { project } : {}) })
        out.data(list, () => list.length === 0 ? 'no project has a quota or VMs' : table(['project', 'vms', 'vcpus', 'memory', 'disk', 'ips'], list.map(row)))
        return EXIT.ok
      })
    }
  }
}
