// CLI commands of issue 19: `blixard quota set|show`. Every limit is optional (left out:
// unlimited); `--json` prints the records as the node answers them.
import type { QuotaLimits, QuotaUsage } from '../../protocols/model.ts'
import { QUOTA_LIMIT_MAX } from '../../protocols/command-schema.ts'
import type { QuotaView } from '../../protocols/rpc-sched.ts'
import { bool, flag, int, sizeMiB, UsageError } from './args.ts'
import { EXIT } from './errors.ts'
import { invocationKey, mutate } from './idempotent.ts'
import { table } from './format.ts'
import { formatMiB } from '../../protocols/vm-limits.ts'
import type { CliHelpers, ResourceCommand } from './resources.ts'

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
      summary: "Set a project's quota (VMs with --project NAME count against it); a limit left out is unlimited",
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
      summary: 'Show the live migrations the rebalancer would start now and the imbalance they would leave (changes nothing)',
      usage: 'blixard rebalance --dry-run [--stale]',
      flags: { 'dry-run': { help: 'show the plan (the only mode: the leader applies it itself when its nodes run with BLIXARD_REBALANCE=on)' } },
      run: async (p, out) => {
        if (!bool(p, 'dry-run')) throw new UsageError('give --dry-run: the plan is applied by the leader itself when the nodes run with BLIXARD_REBALANCE=on')
        return await withCluster(p, async ({ client }) => {
        const [plan, nodes] = await Promise.all([client.call('rebalance.plan', stale(p)), client.call('node.list', { stale: true })])
        const nm = new Map(nodes.map((n) => [n.id, n.name]))
          out.data(plan, () => `${plan.why}\nimbalance (variance of node fill): ${plan.before.toFixed(4)} → ${plan.after.toFixed(4)}; rebalancer ${plan.enabled ? 'on' : 'off (BLIXARD_REBALANCE=on turns it on)'}\n\n${table(['vm', 'from', 'to', 'gain'], plan.moves.map((m) => [m.name, nm.get(m.from) ?? m.from, nm.get(m.to) ?? m.to, m.gain.toFixed(4)]))}`)
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
