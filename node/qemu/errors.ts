// Named errors of the execution layer. Each maps onto a protocol ErrorKind so
// the agent can report it through Raft and the CLI can phrase it.
import type { ErrorKind } from '../../protocols/commands.ts'

export type QemuErrorKind =
  | 'InvalidSpec' // the launch spec cannot become a QEMU command line
  | 'NotFound' // no runtime dir (or tiny guest, kernel) for that id
  | 'AlreadyRunning' // start of a VM whose qemu is alive
  | 'NotRunning' // stop/kill of a VM that has no live qemu
  | 'SpawnFailed' // qemu could not be executed
  | 'BootFailed' // qemu exited before the guest was ready
  | 'Timeout' // a bounded wait ran out
  | 'QmpError' // QMP answered with an error object
  | 'QmpClosed' // the QMP socket closed (qemu exited) during a call
  | 'Closed' // the driver was closed

export class QemuError extends Error {
  readonly kind: QemuErrorKind
  constructor (kind: QemuErrorKind, message: string) {
    super(message)
    this.name = 'QemuError'
    this.kind = kind
  }
}

const TO_PROTOCOL: Record<QemuErrorKind, ErrorKind> = {
  InvalidSpec: 'InvalidSpec',
  NotFound: 'NotFound',
  AlreadyRunning: 'Conflict',
  NotRunning: 'Conflict',
  SpawnFailed: 'Internal',
  BootFailed: 'Internal',
  Timeout: 'Timeout',
  QmpError: 'Internal',
  QmpClosed: 'Unavailable',
  Closed: 'Unavailable'
}

/** The protocol error kind an agent reports for a driver error. */
export function protocolKind (kind: QemuErrorKind): ErrorKind {
  return TO_PROTOCOL[kind]
}
