// Named errors of the execution layer. Each maps onto a protocol ErrorKind, the kind an RPC
// answers with when one reaches it (toBlixError), so the CLI can phrase it.
import type { ErrorKind } from '../../protocols/commands.ts'
import { SubsystemError } from '../../protocols/errors.ts'

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

export class QemuError extends SubsystemError<QemuErrorKind> {
  constructor (kind: QemuErrorKind, message: string) {
    super(kind, message, TO_PROTOCOL[kind])
    this.name = 'QemuError'
  }
}
