// Which writes a node signs with its own key: the commands it proposes on its own behalf (its
// record, its VMs' status, its addresses for its VMs, the leader's scheduling, the first admins at
// bootstrap). Admin commands are not: they must come signed by an admin (cluster.submit).
import type { CommandEnvelope } from '../protocols/commands.ts'
import { authorityOf, signCommand, withLeaderTerm } from '../protocols/auth.ts'
import type { Signer } from '../protocols/auth.ts'
import { validateCommand } from '../protocols/command-schema.ts'
import type { StateMachine } from '../storage/state-machine.ts'
import { SIGNATURE_VALIDITY } from './api.ts'

/** `term`: this node's current Raft term, claimed by a leader's decision (protocols/auth.ts leaderError). */
export async function signOwn (env: CommandEnvelope, signer: Signer | null, sm: StateMachine, term: number | undefined): Promise<CommandEnvelope> {
  if (env.auth !== undefined || signer == null) return env
  // an admin's write arrives signed (above): only the first admins at bootstrap are ours to sign;
  // emptiness checks read one key each (listing the tables cost ~0.3 ms a write with 257 admins)
  const bootstrapAdmin = env.cmd.type === 'AddAdmin' && (sm.noAdmins() || sm.noNodes())
  if (authorityOf(env.cmd) === 'admin' && !bootstrapAdmin) return env
  // a leader's decision is signed for this leader's term (protocols/auth.ts leaderError)
  const cmd = authorityOf(env.cmd) === 'leader' && term !== undefined ? withLeaderTerm(env.cmd, term) : env.cmd
  const v = validateCommand(cmd) // sign exactly what every replica will verify
  if (!v.ok) return env // refused with its own error on apply
  const auth = await signCommand(signer, v.cmd, crypto.randomUUID(), sm.applied() + SIGNATURE_VALIDITY)
  return { ...env, cmd: v.cmd, auth }
}
