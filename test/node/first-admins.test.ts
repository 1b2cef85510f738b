// The first admins of a new cluster (`blixard-node --admin A --admin B …`): the bootstrap node adds
// them while no node is registered, the only time anyone may sign an AddAdmin (storage/
// state-machine.ts checkAuthority). Here the shipped Membership bootstraps over a real LMDB log store
// and a real state machine checking signatures (the node's own key signs, as node/own-commands.ts
// does); Raft is this node alone, so a proposal applies at once. One AddAdmin fails the first time
// (a lost leadership or a timeout, as under load), and the self-registration round runs meanwhile,
// as the daemon's timer would. Every configured admin must end up an admin, and the node registered
// after them: an admin lost here is lost for good (a later AddAdmin needs an admin's signature).
import '../../node/polyfill.ts'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { Membership } from '../../node/membership.ts'
import type { MembershipRaft } from '../../node/membership.ts'
import { signOwn } from '../../node/own-commands.ts'
import { WalLogStore } from '../../storage/wal-log-store.ts'
import { LmdbKv } from '../../storage/lmdb-kv.ts'
import { StateMachine } from '../../storage/state-machine.ts'
import { encodeEnvelope } from '../../storage/envelope.ts'
import { createLogger } from '../../node/log.ts'
import type { CommandEnvelope } from '../../protocols/commands.ts'
import type { RaftStatus } from '../../protocols/raft/rawnode.ts'
import { tempDir, removeDir } from '../storage/tmpdir.ts'

test('every configured first admin is added, one that failed once is proposed again, and the node registers after them', async () => {
  const dir = tempDir('blix-first-admins-')
  const key = await generateKeyPair('Ed25519')
  const self = peerIdFromPrivateKey(key).toString()
  const signer = { peerId: self, sign: async (d: Uint8Array) => await key.sign(d) }
  const admins = await Promise.all([1, 2, 3].map(async () => peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()))
  const kv = LmdbKv.open(`${dir}/state`)
  const sm = new StateMachine(kv)
  const store = WalLogStore.open(`${dir}/raft`)
  let index = 1
  let leader = false
  const proposed: string[] = []
  let failedOnce = false
  const raft: MembershipRaft = {
    status: (): RaftStatus => ({ id: self, term: 2, vote: self, commit: index, applied: index, lead: leader ? self : null, role: leader ? 'leader' : 'follower', conf: { voters: [self], learners: [] }, pendingConfIndex: 0 }),
    leaderId: () => leader ? self : null,
    isLeader: () => leader,
    stop: async () => {},
    campaign: () => { leader = true },
    proposeConfChange: async () => {}
  }
  let started = false
  const m = new Membership({
    self: () => self,
    cfg: { name: 'node1', labels: {}, capacity: { cpu: 2, memoryMiB: 1024, diskGiB: 10 }, autopilot: { deadAfterMs: 10_000, intervalMs: 2_000 }, ceph: { conf: null } },
    expect: 1,
    admins,
    sm,
    store,
    raft: () => started ? raft : null,
    startRaft: () => { started = true },
    connectedPeers: () => [],
    ownAddrs: () => ['/ip4/127.0.0.1/tcp/1'],
    addPeerAddrs: async () => {},
    client: async () => { throw new Error('no peers here') },
    propose: async (env: CommandEnvelope) => {
      const what = env.cmd.type === 'AddAdmin' ? `AddAdmin ${admins.indexOf(env.cmd.peerId)}` : env.cmd.type
      proposed.push(what)
      // the second admin's first proposal is lost, as a leadership change or a timeout loses one
      if (what === 'AddAdmin 1' && !failedOnce) { failedOnce = true; await new Promise((resolve) => setTimeout(resolve, 5)); throw new Error('proposal timed out') }
      const signed = await signOwn(env, signer, sm, 2)
      return sm.apply(++index, encodeEnvelope(signed), 2)
    },
    recovery: { pending: async () => null, done: async () => {} },
    note: () => {},
    log: createLogger({ node: 'node1' }, { level: 'error' }),
    now: () => Date.now(),
    sleep: async (ms) => await new Promise((resolve) => setTimeout(resolve, Math.min(ms, 20)))
  })
  try {
    // the daemon runs registration on its own timer: here, every few ms while formation runs
    let forming = true
    const registering = (async () => { while (forming) { await m.registerSelf(); await new Promise((resolve) => setTimeout(resolve, 2)) } })()
    await m.formationRound()
    forming = false
    await registering
    await m.registerSelf()
    assert.ok(failedOnce, 'one proposal failed')
    assert.equal(admins.map((a) => sm.isAdmin(a)), [true, true, true], `every configured admin is an admin (proposed: ${proposed.join(', ')})`)
    assert.ok(sm.getNode(self) != null, 'the node registered')
    const firstRegistration = proposed.indexOf('RegisterNode')
    const lastAdmin = Math.max(...[0, 1, 2].map((i) => proposed.lastIndexOf(`AddAdmin ${i}`)))
    assert.ok(firstRegistration > lastAdmin, `registration after the admins: ${proposed.join(', ')}`)
  } finally {
    store.close?.()
    kv.close()
    removeDir(dir)
  }
})

test.run()
