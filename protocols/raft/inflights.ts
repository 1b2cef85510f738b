// The pipelining window for one follower: the last index of each MsgApp sent
// and not yet acknowledged. Full means stop sending until acks free slots.

export class Inflights {
  private readonly indexes: number[] = []
  private readonly sizes: number[] = []
  private bytes = 0
  readonly capacity: number
  readonly maxBytes: number

  /** maxBytes 0 means no byte limit. */
  constructor (capacity: number, maxBytes = 0) {
    this.capacity = capacity
    this.maxBytes = maxBytes
  }

  add (lastIndex: number, bytes: number): void {
    this.indexes.push(lastIndex)
    this.sizes.push(bytes)
    this.bytes += bytes
  }

  /** Free every message whose last index is <= to (acknowledged). */
  freeLE (to: number): void {
    let k = 0
    while (k < this.indexes.length && this.indexes[k] <= to) {
      this.bytes -= this.sizes[k]
      k++
    }
    if (k > 0) {
      this.indexes.splice(0, k)
      this.sizes.splice(0, k)
    }
  }

  /** Free the oldest message (a heartbeat answer shows the follower is alive; let one more go). */
  freeFirstOne (): void {
    if (this.indexes.length > 0) this.freeLE(this.indexes[0])
  }

  full (): boolean {
    return this.indexes.length >= this.capacity || (this.maxBytes > 0 && this.bytes >= this.maxBytes)
  }

  count (): number {
    return this.indexes.length
  }

  reset (): void {
    this.indexes.length = 0
    this.sizes.length = 0
    this.bytes = 0
  }
}
