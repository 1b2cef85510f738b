// The idle trim of V8's young generation (node/memory-trim.ts): when it starts and ends (the pure
// step, as a table), and, in a real node process with 16 MiB semi-spaces, that a young generation
// grown by load goes back to its minimum once the process idles, and grows again under load (the
// memory-reducing mode is off again afterwards).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { TRIM_CONFIG, TRIM_INITIAL, trimStep, type TrimState } from '../../node/memory-trim.ts'

const MiB = 1024 * 1024
const c = TRIM_CONFIG
const busy = 0.5
const idle = 0.01

function run (obs: Array<[number, number, number]>, s0: TrimState = TRIM_INITIAL): string[] {
  let s = s0
  const out: string[] = []
  for (const [now, elu, young] of obs) {
    const r = trimStep(s, { now, elu, youngBytes: young * MiB })
    s = r.state
    out.push(r.action.kind === 'end' ? `end:${r.action.reason}` : r.action.kind)
  }
  return out
}

test('trimStep: trims only after TRIM_IDLE_MS of an idle loop with a young generation above the bound', () => {
  const t = c.idleMs
  assert.equal(run([[0, idle, 32], [t / 2, idle, 32], [t - 1, idle, 32], [t, idle, 32]]), ['none', 'none', 'none', 'start'])
  // a busy check in between starts the idle time again
  assert.equal(run([[0, idle, 32], [t / 2, busy, 32], [t, idle, 32], [t + t / 2, idle, 32], [t / 2 + t + t / 2, idle, 32]]), ['none', 'none', 'none', 'none', 'start'])
  // a small young generation is left alone, however long the idleness
  assert.equal(run([[0, idle, 2], [t, idle, 4], [3 * t, idle, 2]]), ['none', 'none', 'none'])
})

test('trimStep: a trim ends when the young generation is small, the loop is busy, or the bound passes; a failed one waits before the next', () => {
  const reducing: TrimState = { phase: 'reducing', since: 1000, fromBytes: 32 * MiB }
  assert.equal(run([[1500, idle, 32], [9000, idle, 2]], reducing), ['none', 'end:shrunk'])
  assert.equal(run([[1500, busy, 32]], reducing), ['end:busy'])
  assert.equal(run([[1000 + c.maxReducingMs - 1, idle, 32], [1000 + c.maxReducingMs, idle, 32]], reducing), ['none', 'end:timeout'])
  // after a timeout, idle and large again: not before TRIM_RETRY_MS
  const end = 1000 + c.maxReducingMs
  const r = trimStep(reducing, { now: end, elu: idle, youngBytes: 32 * MiB })
  assert.is(r.state.phase, 'watching')
  const obs: Array<[number, number, number]> = [[end + 1, idle, 32], [end + c.idleMs + 1, idle, 32], [end + c.retryMs - 1, idle, 32], [end + c.retryMs, idle, 32]]
  assert.equal(run(obs, r.state), ['none', 'none', 'none', 'start'])
  // after a shrink, the next trim needs only a new idle period
  const s = trimStep(reducing, { now: 9000, elu: idle, youngBytes: 2 * MiB }).state
  assert.equal(run([[9001, idle, 32], [9001 + c.idleMs, idle, 32]], s), ['none', 'start'])
})

// A child node with the daemon's semi-space bound: load (objects that survive a while) grows the
// young generation to 2 x 16 MiB; then idle with the trim on (short idle time); then load again.
const CHILD = `
import { startMemoryTrim, youngGenerationBytes, TRIM_CONFIG } from ${JSON.stringify(fileURLToPath(new URL('../../node/memory-trim.ts', import.meta.url)))}
const say = (o) => process.stdout.write(JSON.stringify(o) + '\\n')
function load (ms) {
  let keep = []
  const t = Date.now()
  while (Date.now() - t < ms) { keep.push({ a: new Array(20).fill(1), s: 'x'.repeat(40) + Math.random() }); if (keep.length > 60000) keep = keep.slice(30000) }
  return keep.length
}
load(1500)
say({ at: 'loaded', young: youngGenerationBytes() })
// an idle daemon still allocates (timers, heartbeats): ~2 KB a millisecond here
const tick = setInterval(() => { const x = []; for (let i = 0; i < 100; i++) x.push({ i }) }, 10)
const stop = startMemoryTrim({ checkMs: 200, config: { ...TRIM_CONFIG, idleMs: 600 },
  onStart: (b) => say({ at: 'start', young: b }),
  onEnd: (e) => {
    say({ at: 'end', reason: e.reason, young: youngGenerationBytes() })
    stop(); clearInterval(tick)
    load(1500)
    say({ at: 'reloaded', young: youngGenerationBytes() })
    process.exit(0)
  } })
setTimeout(() => { say({ at: 'gave up', young: youngGenerationBytes() }); process.exit(1) }, 40000)
`

test('a real node with 16 MiB semi-spaces gives its grown young generation back when idle, and grows it again under load', async () => {
  const child = spawn(process.execPath, ['--max-semi-space-size=16', '--import', 'tsx', '--input-type=module', '-e', CHILD], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve))
  const lines = out.trim().split('\n').map((l) => JSON.parse(l) as { at: string, young: number, reason?: string })
  const at = (k: string): { young: number, reason?: string } => {
    const l = lines.find((x) => x.at === k)
    if (l === undefined) throw new Error(`the child never said "${k}": ${out}`)
    return l
  }
  assert.is(code, 0, out)
  assert.ok(at('loaded').young >= 16 * MiB, `load grew the young generation: ${at('loaded').young}`)
  assert.ok(at('start').young > c.aboveBytes)
  assert.is(at('end').reason, 'shrunk', out)
  assert.ok(at('end').young <= c.aboveBytes, `given back: ${at('end').young}`)
  assert.ok(at('reloaded').young >= 8 * MiB, `the mode is off again, so load grows it: ${at('reloaded').young}`)
})

test.run()
