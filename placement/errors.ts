// Placement errors carry the same named kinds that travel over RPC, so the caller can forward them unchanged.
import type { BlixError, ErrorKind } from '../protocols/commands.ts'

export class PlacementError extends Error implements BlixError {
  readonly kind: ErrorKind
  constructor (kind: ErrorKind, message: string) {
    super(message)
    this.kind = kind
    this.name = 'PlacementError'
  }
}
