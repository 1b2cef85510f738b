// CLI commands for warm pools: `blixard pool set NAME --size N [--image IMAGE] [--vcpus V]
// [--memory MiB]`, `pool list`, `pool delete NAME`. The record goes through Raft (admin-signed); every
// host then keeps that many pre-booted, paused guests of the image and shape, and a `vm create` of
// that image and shape (no volumes, networks or kernel parameters) is handed one of them instead of
// booting. Only the tiny image can be held warm today (the cluster refuses others, saying why).
import type { WarmPoolRecord } from '../../protocols/pools.ts'
import { MAX_WARM_POOL_SIZE, poolImage } from '../../protocols/pools.ts'
import { imageLabel } from '../../protocols/images.ts'
import { imageFlags, int, UsageError } from './args.ts'
import { parseConstraint } from './constraints.ts'
import { formatConstraint } from '../../placement/filters.ts'
import type { FlagSpec, Parsed } from './args.ts'
import { EXIT } from './errors.ts'
import { invocationKey, mutate } from './idempotent.ts'
import { ago, table } from './format.ts'
import type { CliHelpers } from './resources.ts'

interface Out { json: boolean, data: (value: unknown, human: () => string) => void, progress: (line: string) => void }
interface PoolCommand { summary: string, usage: string, flags?: Record<string, FlagSpec>, run: (p: Parsed, out: Out) => Promise<number> }

/** the shape `vm create` gives a VM unless told otherwise, so a bare `pool set` serves bare creates */
const DEFAULT_VCPUS = 1
const DEFAULT_MEMORY_MIB = 128

function shape (p: WarmPoolRecord): string { return `${p.vcpus} vCPU × ${p.memoryMiB} MiB` }
function image (p: WarmPoolRecord): string { return imageLabel(poolImage(p)) }

function where (p: WarmPoolRecord): string { return p.constraints === undefined ? 'every node' : p.constraints.map(formatConstraint).join(', ') }

export function poolCommands ({ withCluster, need, stale }: CliHelpers): Record<string, PoolCommand> {
  return {
    'pool set': {
      summary: 'Declare or resize a warm pool: pre-booted paused guests per node that matching creates take',
      usage: 'blixard pool set NAME --size N [--image tiny | --flake REF] [--vcpus V] [--memory MiB] [--constraint EXPR]... [--json]',
      flags: {
        size: { value: true, arg: 'N', help: `warm guests per node (0-${MAX_WARM_POOL_SIZE}; 0 keeps the pool and stops its guests)` },
        image: { value: true, arg: 'NAME', help: 'the image of the guests (a create must ask for the same); only "tiny" can be held warm', default: 'tiny' },
        flake: { value: true, arg: 'REF', help: 'a flake image instead (refused by the cluster until a flake guest can be held warm)' },
        vcpus: { value: true, arg: 'V', help: 'vCPUs of the guests (a create must ask for the same)', default: String(DEFAULT_VCPUS) },
        memory: { value: true, arg: 'MiB', help: 'memory of the guests (a create must ask for the same)', default: String(DEFAULT_MEMORY_MIB) },
        constraint: { value: true, repeat: true, arg: 'EXPR', help: 'only nodes whose labels meet it keep guests: pool==yes, zone in [a, b] (default: every node)' }
      },
      run: async (p, out) => await withCluster(p, async ({ client }) => {
        const name = need(p, 1, 'NAME')[0]
        const constraints = (p.flags.get('constraint') ?? []).map(parseConstraint)
        const params = { name, image: imageFlags(p), size: int(p, 'size', -1, 0, MAX_WARM_POOL_SIZE), vcpus: int(p, 'vcpus', DEFAULT_VCPUS, 1), memoryMiB: int(p, 'memory', DEFAULT_MEMORY_MIB, 1), ...(constraints.length > 0 ? { constraints } : {}) }
        if (params.size < 0) throw new UsageError('pool set needs --size N')
        const r = await mutate(client, invocationKey(p), 'pool.set', params)
        out.data(r, () => `warm pool ${r.name}: ${r.size} guest(s) of image ${image(r)}, ${shape(r)} per node on ${where(r)} (each host boots them in the background)`)
        return EXIT.ok
      })
    },
    'pool list': {
      summary: 'The declared warm pools',
      usage: 'blixard pool list [--json] [--stale]',
      run: async (p, out) => await withCluster(p, async ({ client }) => {
        const pools = await client.call('pool.list', stale(p))
        out.data(pools, () => pools.length === 0 ? 'no warm pools' : table(['name', 'per node', 'image', 'shape', 'nodes', 'set'], pools.map((x) => [x.name, String(x.size), image(x), shape(x), where(x), `${ago(Date.now() - x.setAt)} ago`])))
        return EXIT.ok
      })
    },
    'pool delete': {
      summary: 'Remove a warm pool; every host stops and removes its guests of it',
      usage: 'blixard pool delete NAME [--json]',
      run: async (p, out) => await withCluster(p, async ({ client }) => {
        const name = need(p, 1, 'NAME')[0]
        const r = await mutate(client, invocationKey(p), 'pool.delete', { name })
        out.data(r, () => `warm pool ${name} deleted (its guests are removed from every host)`)
        return EXIT.ok
      })
    }
  }
}
