// Named errors of host networking, each mapped onto the protocol kind an RPC answers with (toBlixError).
import type { ErrorKind } from '../../protocols/commands.ts'
import { SubsystemError } from '../../protocols/errors.ts'

export type NetErrorKind =
  | 'InvalidSpec' // a name, id or address that cannot become an interface or a command
  | 'Conflict' // an interface of ours exists with another kind or configuration we cannot fix in place
  | 'Unavailable' // the host lacks what the network needs (no uplink, no underlay address)
  | 'CommandFailed' // ip/bridge exited non-zero

const TO_PROTOCOL: Record<NetErrorKind, ErrorKind> = {
  InvalidSpec: 'InvalidSpec',
  Conflict: 'Conflict',
  Unavailable: 'Unavailable',
  CommandFailed: 'Internal'
}

export class NetError extends SubsystemError<NetErrorKind> {
  constructor (kind: NetErrorKind, message: string) {
    super(kind, message, TO_PROTOCOL[kind])
    this.name = 'NetError'
  }
}
