// Named errors of host networking, mapped onto protocol kinds for the agent's reports.
import type { ErrorKind } from '../../protocols/commands.ts'

export type NetErrorKind =
  | 'InvalidSpec' // a name, id or address that cannot become an interface or a command
  | 'Conflict' // an interface of ours exists with another kind or configuration we cannot fix in place
  | 'Unavailable' // the host lacks what the network needs (no uplink, no underlay address)
  | 'CommandFailed' // ip/bridge exited non-zero

export class NetError extends Error {
  readonly kind: NetErrorKind
  constructor (kind: NetErrorKind, message: string) {
    super(message)
    this.name = 'NetError'
    this.kind = kind
  }
}

const TO_PROTOCOL: Record<NetErrorKind, ErrorKind> = {
  InvalidSpec: 'InvalidSpec',
  Conflict: 'Conflict',
  Unavailable: 'Unavailable',
  CommandFailed: 'Internal'
}

export function netProtocolKind (kind: NetErrorKind): ErrorKind {
  return TO_PROTOCOL[kind]
}
