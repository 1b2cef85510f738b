// Fuzzer (bounded, a few seconds): random and mutated frames on the Raft wire schema and the RPC
// frame schema, as an authenticated member would send them, through decode → validate → admit →
// RawNode.step on a follower with a MemoryLogStore. Properties: nothing but a wire error (BadMessage, TooLarge) escapes
// decoding; step never throws on what admission lets through; and input that decoding or
// admission refuses changes nothing (term, vote, commit, last index, configuration, no Ready).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import fc from 'fast-check'
import { admitRaftMessage } from '../../node/core/raft-ingress.ts'
import { checkEntryData } from '../../node/core/raft-ingress-context.ts'
import { decodePayload, encodePayload } from '../../protocols/framing.ts'
import { isWireError } from '../../protocols/errors.ts'
import { validateBatch, validateMessage } from '../../protocols/raft-wire.ts'
import { validateClientFrame } from '../../protocols/rpc.ts'
import { RawNode } from '../../protocols/raft/rawnode.ts'
import { MemoryLogStore } from '../../sim/memory-log-store.ts'
import { encodeEnvelope, validateSnapshot } from '../../storage/state-machine.ts'

const IDS = ['n1', 'n2', 'n3']
const LEARNER = 'l1'
const RUNS = 1000

function follower (): RawNode {
  const store = new MemoryLogStore({ conf: { voters: IDS, learners: [LEARNER] } })
  let x = 7
  const random = (): number => { x = (x * 1103515245 + 12345) % 2147483648; return x / 2147483648 }
  return new RawNode({ id: 'n1', storage: store, electionTick: 10, heartbeatTick: 1, random, preVote: true, checkQuorum: true, relayLearners: true })
}

function fingerprint (n: RawNode): string {
  const s = n.status()
  return JSON.stringify({ term: s.term, vote: s.vote, commit: s.commit, lead: s.lead, conf: s.conf, last: n.lastIndex(), ready: n.hasReady() })
}

const cmd = encodeEnvelope({ cmd: { type: 'AddAdmin', peerId: '12D3KooWA', name: 'a' }, at: 1, key: 'k' })
const int = fc.oneof(fc.nat(5), fc.nat(5), fc.constantFrom(0, 1, 2, 2 ** 48, 2 ** 48 + 1, Number.MAX_SAFE_INTEGER, -1, 1.5), fc.nat(50))
const bytes = fc.oneof(fc.uint8Array({ maxLength: 64 }), fc.constant(cmd))
const peer = fc.constantFrom('n1', 'n2', 'n3', LEARNER, 'x')
const type = fc.constantFrom('MsgApp', 'MsgAppResp', 'MsgPreVote', 'MsgVote', 'MsgSnap', 'MsgHeartbeat', 'MsgHeartbeatResp', 'MsgTransferLeader', 'MsgTimeoutNow', 'MsgReadIndex', 'MsgRelayApp', 'MsgRelaySnap', 'MsgRelayAppResp', 'MsgRelaySub', 'MsgHup', 'MsgProp', 'Nope')
const entry = fc.record({ term: int, index: int, type: fc.constantFrom('normal', 'conf', 'x'), data: bytes })
const rawMsg = fc.record({
  type, from: fc.constantFrom('n2', 'n2', 'n2', 'n3', LEARNER, 'x'), to: fc.constantFrom('n1', 'n1', 'n1', 'n2'), term: fc.oneof(fc.nat(3), int),
  logTerm: fc.option(int, { nil: undefined, freq: 2 }), index: fc.option(int, { nil: undefined, freq: 2 }), commit: fc.option(int, { nil: undefined, freq: 2 }),
  entries: fc.option(fc.array(entry, { maxLength: 3 }), { nil: undefined, freq: 2 }),
  snapshot: fc.option(fc.record({ meta: fc.record({ index: int, term: int, conf: fc.record({ voters: fc.array(peer, { maxLength: 3 }), learners: fc.constant([]) }) }), data: bytes }), { nil: undefined, freq: 2 }),
  context: fc.option(bytes, { nil: undefined, freq: 2 }),
  lead: fc.option(peer, { nil: undefined, freq: 2 })
}, { requiredKeys: ['type', 'from', 'to', 'term'] })
/** a frame: structured (often almost valid), then maybe mutated byte-wise */
const frame = fc.tuple(fc.array(rawMsg, { maxLength: 3 }), fc.oneof(fc.constant([] as Array<[number, number]>), fc.constant([] as Array<[number, number]>), fc.array(fc.tuple(fc.nat(), fc.nat(255)), { minLength: 1, maxLength: 3 })), fc.constantFrom(false, false, false, true))
  .map(([msgs, flips, truncate]) => {
    const b = encodePayload(msgs.map(m => Object.fromEntries(Object.entries(m).filter(([, v]) => v !== undefined))))
    for (const [at, v] of flips) if (b.byteLength > 0) b[at % b.byteLength] = v
    return truncate ? b.subarray(0, Math.max(0, b.byteLength - 1)) : b
  })

test('Raft frames from an authenticated member: no throw escapes, refused input changes nothing', () => {
  let admitted = 0
  let refused = 0
  fc.assert(fc.property(frame, fc.constantFrom('n2', 'n2', 'n3', LEARNER), fc.constantFrom(0, 3), (bytes, sender, ticks) => {
    const node = follower()
    for (let i = 0; i < ticks; i++) node.tick()
    if (node.hasReady()) node.advance(node.ready())
    let batch: unknown[]
    try { batch = validateBatch(decodePayload(bytes)) } catch (e) { assert.ok(isWireError(e), String(e)); refused++; return }
    for (const raw of batch) {
      const before = fingerprint(node)
      let msg
      try { msg = validateMessage(raw) } catch (e) { assert.ok(isWireError(e), String(e)); refused++; continue }
      const s = node.status()
      const v = admitRaftMessage(sender, msg, {
        self: 'n1', voters: s.conf.voters, learners: s.conf.learners, term: s.term, leader: s.lead, isLeader: s.role === 'leader',
        lastIndex: node.lastIndex(), checkEntry: checkEntryData, checkSnapshot: validateSnapshot
      })
      if (!v.ok) { refused++; assert.is(fingerprint(node), before, `${v.reason} changed state`); continue }
      admitted++
      node.step(msg) // must not throw
      if (node.hasReady()) node.advance(node.ready())
    }
  }), { numRuns: RUNS, seed: 12 })
  console.log(`  raft fuzz: ${admitted} admitted, ${refused} refused`)
  assert.ok(refused > 0 && admitted > 0, 'the generator reaches both sides')
})

test('RPC client frames: random and mutated bytes give a wire error or a request, never another throw', () => {
  const good = fc.record({ id: int, method: fc.constantFrom('vm.list', 'cluster.status', ''), params: fc.option(fc.anything({ maxDepth: 2 }), { nil: undefined, freq: 2 }), cancel: fc.option(fc.constantFrom(true, false, 1), { nil: undefined, freq: 2 }) })
  fc.assert(fc.property(good, fc.array(fc.tuple(fc.nat(), fc.nat(255)), { maxLength: 2 }), (req, flips) => {
    const b = encodePayload(Object.fromEntries(Object.entries(req).filter(([, v]) => v !== undefined)))
    for (const [at, v] of flips) if (b.byteLength > 0) b[at % b.byteLength] = v
    try { validateClientFrame(decodePayload(b)) } catch (e) { assert.ok(isWireError(e), String(e)) }
  }), { numRuns: RUNS * 2, seed: 13 })
})

test.run()
