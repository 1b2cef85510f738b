// Virtual time for the simulator, in milliseconds. Nothing in sim/ reads the
// wall clock: time moves only when the scheduler runs the next event.

export class Clock {
  private t = 0

  now (): number {
    return this.t
  }

  /** Only the scheduler moves time, and never backwards. */
  advanceTo (t: number): void {
    if (t < this.t) throw new RangeError(`clock cannot go back from ${this.t} to ${t}`)
    this.t = t
  }
}
