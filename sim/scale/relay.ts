// The relay protocol the scale model runs beside the real Raft core: how a replica outside the
// Raft configuration is fed committed entries by a voter (follower-relay, read-through) or by
// another learner (relay-tree), and how a host without a replica follows its own records
// (read-through). Only committed entries travel: a relay forwards what it has applied, as it
// arrives (before its own fsync: durability is the voters' job), so a learner's log is always a
// prefix of the committed log and never needs truncating.
//
// - feed {prev, entries, commit}: entries prev+1.. from the feeder; empty, it is the heartbeat.
//   A learner that sees prev or commit beyond its log asks again (sub) from its last index:
//   loss and a feeder that restarted behind are both healed by that one rule.
// - sub {applied}: subscribe, or resubscribe from `applied`. A voter that leads answers bye
//   (the leader feeds no learner); a feed from anyone but the chosen feeder is answered unsub.
// - A learner that hears nothing from its feeder for RELAY_TIMEOUT_MS suspects it and subscribes
//   to its next candidate (topology.ts decides the order).
// - watch {since} / event {after, entries, upTo}: a host's watch on the records that concern it;
//   `after` lets the host see a lost event and watch again from what it has.
import type { Entry } from '../../protocols/raft/types.ts'

export type RelayMsg =
  | { kind: 'feed', from: string, to: string, prev: number, entries: Entry[], commit: number, lead: string | null }
  | { kind: 'sub', from: string, to: string, applied: number }
  | { kind: 'unsub', from: string, to: string }
  | { kind: 'bye', from: string, to: string, lead: string | null }
  | { kind: 'watch', from: string, to: string, since: number }
  | { kind: 'event', from: string, to: string, after: number, entries: Entry[], upTo: number }

/** virtual ms without a word from the feeder before a learner moves on (the election timeout) */
export const RELAY_TIMEOUT_MS = 100
/** virtual ms between heartbeats a feeder sends a quiet subscriber (Raft's heartbeat interval) */
export const RELAY_HEARTBEAT_MS = 20
/** a watch's keep-alive, and the host's patience (3 of them) */
export const WATCH_KEEPALIVE_MS = 50
export const WATCH_TIMEOUT_MS = 150
/** entries per feed message */
export const MAX_FEED_ENTRIES = 256

/** Planted bugs for the checker's own tests: a learner that appends across a gap in its log; a
 * host that takes an event after a lost one as if nothing were missing. */
export type RelayBug = 'accept-gap' | 'ignore-lost-event'

/** What a feeder forwards from: a voter's applied log, or a learner's own. */
export interface LogSource {
  committed: () => number
  /** entries [lo, hi) */
  entries: (lo: number, hi: number) => Entry[]
}

export interface RelayEnv {
  now: () => number
  send: (m: RelayMsg) => void
}

/** The serving side: subscribers fed from a log source, and (read-through) watches. */
export class Feeder {
  private readonly subs = new Map<string, { next: number, lastSent: number }>()
  private readonly watchers = new Map<string, { sentUpTo: number, lastSent: number }>()
  private scanned: number

  constructor (
    readonly id: string,
    private readonly src: LogSource,
    private readonly env: RelayEnv,
    private readonly lead: () => string | null,
    /** the host a committed entry concerns (read-through watches); null: none */
    private readonly concerns: (e: Entry) => string | null
  ) {
    this.scanned = src.committed()
  }

  subscribers (): number { return this.subs.size }
  watches (): number { return this.watchers.size }

  subscribe (who: string, applied: number): void {
    this.subs.set(who, { next: applied + 1, lastSent: -Infinity })
    this.pump()
  }

  unsubscribe (who: string): void {
    this.subs.delete(who)
    this.watchers.delete(who)
  }

  watch (who: string, since: number): void {
    const c = this.src.committed()
    const mine = since < c ? this.src.entries(since + 1, c + 1).filter((e) => this.concerns(e) === who) : []
    const upTo = Math.max(since, c)
    this.env.send({ kind: 'event', from: this.id, to: who, after: since, entries: mine, upTo })
    this.watchers.set(who, { sentUpTo: upTo, lastSent: this.env.now() })
  }

  /** Tell every subscriber to go elsewhere (this voter leads now), and forget them. */
  byeAll (): void {
    for (const who of [...this.subs.keys(), ...this.watchers.keys()]) this.env.send({ kind: 'bye', from: this.id, to: who, lead: this.lead() })
    this.subs.clear()
    this.watchers.clear()
  }

  /** A crash: subscriptions live in memory only. */
  reset (): void {
    this.subs.clear()
    this.watchers.clear()
    this.scanned = this.src.committed()
  }

  /** Forward whatever is committed here and not yet sent. */
  pump (): void {
    const c = this.src.committed()
    const now = this.env.now()
    for (const [who, s] of this.subs) {
      while (s.next <= c) {
        const entries = this.src.entries(s.next, Math.min(c + 1, s.next + MAX_FEED_ENTRIES))
        if (entries.length === 0) break
        this.env.send({ kind: 'feed', from: this.id, to: who, prev: s.next - 1, entries, commit: c, lead: this.lead() })
        s.next += entries.length
        s.lastSent = now
      }
    }
    if (this.watchers.size > 0 && c > this.scanned) {
      const batches = new Map<string, Entry[]>()
      for (const e of this.src.entries(this.scanned + 1, c + 1)) {
        const who = this.concerns(e)
        const w = who === null ? undefined : this.watchers.get(who)
        if (who === null || w === undefined || e.index <= w.sentUpTo) continue
        const b = batches.get(who)
        if (b === undefined) batches.set(who, [e]); else b.push(e)
      }
      for (const [who, entries] of batches) {
        const w = this.watchers.get(who)
        if (w === undefined) continue
        this.env.send({ kind: 'event', from: this.id, to: who, after: w.sentUpTo, entries, upTo: c })
        w.sentUpTo = c
        w.lastSent = now
      }
    }
    this.scanned = Math.max(this.scanned, c)
  }

  /** Heartbeats to quiet subscribers, keep-alives to quiet watches. */
  heartbeat (): void {
    const now = this.env.now()
    const c = this.src.committed()
    for (const [who, s] of this.subs) {
      if (now - s.lastSent < RELAY_HEARTBEAT_MS) continue
      this.env.send({ kind: 'feed', from: this.id, to: who, prev: s.next - 1, entries: [], commit: c, lead: this.lead() })
      s.lastSent = now
    }
    for (const [who, w] of this.watchers) {
      if (now - w.lastSent < WATCH_KEEPALIVE_MS) continue
      // nothing for `who` in (sentUpTo, scanned]: pump() would have sent it
      const upTo = Math.max(w.sentUpTo, this.scanned)
      this.env.send({ kind: 'event', from: this.id, to: who, after: w.sentUpTo, entries: [], upTo })
      w.sentUpTo = upTo
      w.lastSent = now
    }
  }
}

export interface LearnerHooks {
  /** an entry joined this learner's log (the checker compares it with the committed one) */
  onAppend: (who: string, e: Entry, now: number) => void
}

/** The first candidate (best first) that is not `self` and not suspected; when every one is
 * suspected, the suspicions are dropped and the best is tried again. */
function pickUpstream (candidates: string[], self: string, suspects: Set<string>): string | undefined {
  const cs = candidates.filter((c) => c !== self)
  const next = cs.find((c) => !suspects.has(c))
  if (next !== undefined) return next
  suspects.clear()
  return cs[0]
}

/** A replica outside the Raft configuration: it keeps the committed log it is fed, and (relay-tree,
 * read-through) feeds others from it. Its log is durable: a crash keeps it, loses subscriptions. */
export class RelayLearner {
  readonly log: Entry[] = []
  up = true
  feeder: string | null = null
  knownLeader: string | null = null
  readonly serving: Feeder
  private lastHeard = 0
  private askedAt = -Infinity
  private readonly suspects = new Set<string>()
  /** feeders subscribed to over the run (attach events), for the report */
  attaches = 0

  constructor (
    readonly id: string,
    private readonly env: RelayEnv,
    /** candidates best first, given the leader this learner knows of */
    private readonly candidates: (knownLeader: string | null) => string[],
    private readonly hooks: LearnerHooks,
    private readonly bugs: ReadonlySet<RelayBug>,
    concerns: (e: Entry) => string | null
  ) {
    const src: LogSource = {
      committed: () => this.log.length,
      entries: (lo, hi) => this.log.slice(lo - 1, hi - 1)
    }
    this.serving = new Feeder(id, src, env, () => this.knownLeader, concerns)
  }

  last (): number { return this.log.length }

  crash (): void {
    this.up = false
    this.feeder = null
    this.serving.reset()
  }

  restart (): void {
    this.up = true
    this.suspects.clear()
    this.attach()
  }

  tick (): void {
    if (!this.up) return
    if (this.feeder === null) { this.attach(); return }
    if (this.env.now() - this.lastHeard > RELAY_TIMEOUT_MS) {
      this.suspects.add(this.feeder)
      this.attach()
    }
    this.serving.heartbeat()
  }

  private attach (): void {
    const next = pickUpstream(this.candidates(this.knownLeader), this.id, this.suspects)
    if (next === undefined) return
    this.feeder = next
    this.attaches++
    this.lastHeard = this.env.now()
    this.askedAt = this.env.now()
    this.env.send({ kind: 'sub', from: this.id, to: next, applied: this.last() })
  }

  private askAgain (): void {
    if (this.feeder === null || this.env.now() - this.askedAt < RELAY_HEARTBEAT_MS) return
    this.askedAt = this.env.now()
    this.env.send({ kind: 'sub', from: this.id, to: this.feeder, applied: this.last() })
  }

  receive (m: RelayMsg): void {
    if (!this.up) return
    switch (m.kind) {
      case 'feed': {
        if (m.from !== this.feeder) { this.env.send({ kind: 'unsub', from: this.id, to: m.from }); return }
        this.lastHeard = this.env.now()
        this.suspects.delete(m.from)
        this.knownLeader = m.lead
        if (m.prev > this.last() && !this.bugs.has('accept-gap')) { this.askAgain(); return }
        for (const e of m.entries) {
          if (e.index <= this.last()) continue
          if (e.index !== this.last() + 1 && !this.bugs.has('accept-gap')) break
          this.log.push(e)
          this.hooks.onAppend(this.id, e, this.env.now())
        }
        if (m.commit > this.last()) this.askAgain()
        this.serving.pump()
        return
      }
      case 'bye':
        if (m.from !== this.feeder) return
        // the feeder leads now (or left): another candidate, without suspecting anyone
        this.knownLeader = m.lead
        this.feeder = null
        this.attach()
        return
      case 'sub': this.serving.subscribe(m.from, m.applied); return
      case 'unsub': this.serving.unsubscribe(m.from); return
      case 'watch': this.serving.watch(m.from, m.since); return
      case 'event': return
    }
  }
}

/** A host without a replica (read-through): it follows the records that concern it through a
 * watch on one replica, and knows how far it has seen (upTo) so that it can resume elsewhere. */
export class WatchHost {
  readonly got: Entry[] = []
  upTo = 0
  up = true
  replica: string | null = null
  private lastHeard = 0
  private askedAt = -Infinity
  private readonly suspects = new Set<string>()
  attaches = 0

  constructor (
    readonly id: string,
    private readonly env: RelayEnv,
    private readonly candidates: (knownLeader: string | null) => string[],
    private readonly onEvent: (who: string, e: Entry, now: number) => void,
    private readonly bugs: ReadonlySet<RelayBug>
  ) {}

  private knownLeader: string | null = null

  tick (): void {
    if (!this.up) return
    if (this.replica === null) { this.attach(); return }
    if (this.env.now() - this.lastHeard > WATCH_TIMEOUT_MS) {
      this.suspects.add(this.replica)
      this.attach()
    }
  }

  private attach (): void {
    const next = pickUpstream(this.candidates(this.knownLeader), this.id, this.suspects)
    if (next === undefined) return
    this.replica = next
    this.attaches++
    this.lastHeard = this.env.now()
    this.askedAt = this.env.now()
    this.env.send({ kind: 'watch', from: this.id, to: next, since: this.upTo })
  }

  receive (m: RelayMsg): void {
    if (!this.up) return
    if (m.kind === 'bye') {
      if (m.from !== this.replica) return
      this.knownLeader = m.lead
      this.replica = null
      this.attach()
      return
    }
    if (m.kind !== 'event') return
    if (m.from !== this.replica) { this.env.send({ kind: 'unsub', from: this.id, to: m.from }); return }
    this.lastHeard = this.env.now()
    this.suspects.delete(m.from)
    if (m.after !== this.upTo && !this.bugs.has('ignore-lost-event')) {
      // an event was lost (or the replica restarted): watch again from what we have
      if (m.after > this.upTo && this.env.now() - this.askedAt >= RELAY_HEARTBEAT_MS) {
        this.askedAt = this.env.now()
        this.env.send({ kind: 'watch', from: this.id, to: m.from, since: this.upTo })
      }
      if (m.after > this.upTo) return
    }
    for (const e of m.entries) {
      if (e.index <= this.upTo) continue
      this.got.push(e)
      this.onEvent(this.id, e, this.env.now())
    }
    this.upTo = Math.max(this.upTo, m.upTo)
  }
}
