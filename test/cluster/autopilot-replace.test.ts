// Autopilot with real blixard-node processes on 127.0.0.1: with one of 3 voters killed -9,
// autopilot keeps 3 voters past its dead timeout (it used to remove the dead voter and demote a
// healthy one: 3 → 1); a 4th node started then replaces the dead voter. Autopilot's timings are
// shortened by flags so the test waits ~2 s for "dead", not 10.
// Ports 17820-17823.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { TestCluster, waitFor, sleep } from './harness.ts'

const DEAD_AFTER_MS = 2_000
const INTERVAL_MS = 250
const c = new TestCluster({
  nodes: 4,
  basePort: 17820,
  extraArgs: ['--autopilot-dead-after-ms', String(DEAD_AFTER_MS), '--autopilot-interval-ms', String(INTERVAL_MS)]
}, 'autopilot')
let failed = false

test.before(async () => { await c.prepare() })
test.after(async () => {
  if (failed) console.log(c.logTails())
  await c.stop()
})

/** the cluster events node i holds now (the start of a `cluster.events` stream) */
async function collectEvents (i: number): Promise<string[]> {
  const cl = await c.client(i)
  const out: string[] = []
  const sub = cl.watch('cluster.events', {})
  const t = setTimeout(() => { sub.cancel() }, 1_000) // the backlog arrives at once; then it is live
  try {
    for await (const e of sub) out.push(e.text)
  } finally { clearTimeout(t) }
  return out
}

test('1 of 3 voters killed: 3 voters kept past the dead timeout; a 4th node replaces the dead voter', async () => {
  try {
    for (const i of [0, 1, 2]) c.start(i)
    const sts = await waitFor('3 nodes agreeing on a leader with 3 voters', 90_000, async () => await c.agreed([0, 1, 2], 3), 250)
    const leader = c.nodes.findIndex((n) => n.peerId === sts[0].leader)
    const victim = [0, 1, 2].find((i) => i !== leader)!
    const survivors = [0, 1, 2].filter((i) => i !== victim)
    const deadId = c.nodes[victim].peerId
    c.kill(victim, 'SIGKILL')
    await c.exited(victim)
    const killedAt = Date.now()

    // The leader decides about the dead voter, says why, and keeps it.
    await waitFor('the leader to log that it keeps the dead voter', 20_000, () => c.log(leader).includes(`keeping 3 voters with ${deadId} unreachable`), 100)
    assert.ok(Date.now() - killedAt >= DEAD_AFTER_MS - INTERVAL_MS, 'decided before the dead timeout')
    await sleep(4 * INTERVAL_MS) // a few more autopilot rounds: the old code removed a voter in each
    for (const i of survivors) {
      const st = await waitFor(`a status from ${c.nodes[i].name}`, 10_000, async () => await c.status(i))
      assert.equal([...st.voters].sort(), c.nodes.slice(0, 3).map((n) => n.peerId).sort(), `${c.nodes[i].name} voters`)
      assert.equal(st.learners, [])
    }
    // the decision is a cluster event too, with its reason
    const events = await collectEvents(leader)
    // events name nodes (a node not registered yet by the end of its id)
    const deadName = new RegExp(`keeping 3 voters with (${c.nodes[victim].name}|…${deadId.slice(-12)}) unreachable`)
    assert.ok(events.some((e) => deadName.test(e)), events.join('\n'))

    // A 4th node joins as a learner, catches up, and replaces the dead voter: never fewer than 3 voters.
    c.start(3)
    const newId = c.nodes[3].peerId
    let minVoters = 3
    let maxVoters = 3
    const jointSeen: string[][] = []
    const after = await waitFor('node4 to replace the dead voter', 90_000, async () => {
      const st = await c.status(leader, true)
      if (st == null) return null
      minVoters = Math.min(minVoters, st.voters.length)
      maxVoters = Math.max(maxVoters, st.voters.length)
      // seen mid-change (100 ms polls may miss it): the old set still has to agree
      if (st.joint != null) jointSeen.push([...st.joint.votersOutgoing])
      return st.voters.includes(newId) && !st.voters.includes(deadId) ? st : null
    }, 100)
    assert.is(after.voters.length, 3)
    assert.is(minVoters, 3, 'the voter count fell below 3 during the replacement')
    // One joint step (incoming voters are the 3 new ones at once), not promote-then-remove via 4.
    assert.is(maxVoters, 3, 'the replacement went through 4 voters instead of one joint step')
    for (const old of jointSeen) assert.ok(old.includes(deadId) && !old.includes(newId), `joint status names the old voters: ${old.join(', ')}`)
    type Logged = { ts: string, decision: string, change?: { type: string }, promote?: string, remove?: string, why: string }
    const decisions = c.log(leader).split('\n').filter((l) => l.includes('"msg":"autopilot"')).map((l) => JSON.parse(l) as Logged)
      .filter((d) => Date.parse(d.ts) >= killedAt)
    assert.ok(decisions.some((d) => d.decision === 'replace' && d.promote === newId && d.remove === deadId), JSON.stringify(decisions))
    // after the kill, the only other changes are adding node4 as a learner: no lone remove or promote
    assert.not.ok(decisions.some((d) => d.decision === 'change' && d.change?.type !== 'addLearner'), JSON.stringify(decisions))
    await waitFor('survivors and node4 to agree on 3 voters', 15_000, async () => await c.agreed([...survivors, 3], 3))
  } catch (err) { failed = true; throw err }
})

test.run()
