// Load gossip: every node publishes a LoadReport on /blixard/load/1 each interval and keeps the
// freshest valid report of every node with its age (measured on the receiver's clock, so skew
// between hosts does not matter). A report whose `node` is not the gossip signer is dropped.
import type { PeerId, Startable } from '@libp2p/interface'
import type { GossipSub, Message as GossipMessage } from '@libp2p/gossipsub'
import { TopicValidatorResult } from '@libp2p/gossipsub'
import { LOAD_TOPIC, isNewer, validateLoadReport, type LoadReport } from '../../protocols/load.ts'
import { decodePayload, encodePayload } from '../../protocols/framing.ts'
import { BlixardError } from '../../protocols/errors.ts'
import { LOAD_INTERVAL_MS, LOAD_MAX_FUTURE_SKEW_MS, LOAD_STALE_MS, MAX_LOAD_REPORT_BYTES } from '../../protocols/limits.ts'
import { createLogger, errFields, type Logger } from '../log.ts'

/** The local figures a report carries; the service adds node, at and seq. */
export type LoadSample = Omit<LoadReport, 'node' | 'at' | 'seq'>

export interface LoadGossipInit {
  /** default LOAD_TOPIC */
  topic?: string
  /** publish period (ms), default LOAD_INTERVAL_MS; 0 disables the timer (publishNow only) */
  intervalMs?: number
  /** reads the local figures for each report */
  sample: () => LoadSample | Promise<LoadSample>
  /** reports older than this are marked stale (ms), default LOAD_STALE_MS */
  staleMs?: number
  /** the clock (ms), default Date.now */
  now?: () => number
  /** name of the gossipsub service in the host, default 'pubsub' */
  pubsubService?: string
  /** every accepted report (including our own) */
  onReport?: (r: LoadReport) => void
  log?: Logger
  /** nodes tracked at most; the stalest is forgotten first (default 4096) */
  maxNodes?: number
}

export interface AgedLoadReport extends LoadReport {
  /** ms since this node received it */
  ageMs: number
  stale: boolean
}

export interface LoadGossip extends Startable {
  readonly topic: string
  /** the freshest report of every node, with its age */
  reports: () => AgedLoadReport[]
  get: (node: string) => AgedLoadReport | null
  /** samples and publishes one report now; resolves to the number of peers it went to */
  publishNow: () => Promise<number>
  /** resolves once at least `peers` peers subscribe to the topic (the mesh must form before
   * a publish reaches anyone); rejects after `timeoutMs` */
  waitForSubscribers: (peers: number, timeoutMs?: number) => Promise<void>
  /** reports refused since start */
  rejected: () => number
}

export interface LoadGossipComponents {
  peerId: PeerId
}

export function loadGossip (init: LoadGossipInit): (components: LoadGossipComponents) => LoadGossip {
  return (components) => new LoadGossipService(components, init)
}

class LoadGossipService implements LoadGossip {
  readonly topic: string
  private readonly now: () => number
  private readonly log: Logger
  private readonly latest = new Map<string, { r: LoadReport, receivedAt: number }>()
  private seq = 0
  private timer: ReturnType<typeof setInterval> | null = null
  private pubsub: GossipSub | null = null
  private refused = 0
  private started = false

  constructor (private readonly components: LoadGossipComponents, private readonly init: LoadGossipInit) {
    this.topic = init.topic ?? LOAD_TOPIC
    this.now = init.now ?? Date.now
    this.log = init.log ?? createLogger({ component: 'net' })
  }

  readonly [Symbol.toStringTag] = '@blixard/load-gossip'

  async start (): Promise<void> { this.started = true }

  /** Gossipsub refuses subscriptions before it has started: subscribe once every service has. */
  async afterStart (): Promise<void> {
    const name = this.init.pubsubService ?? 'pubsub'
    const pubsub = (this.components as unknown as Record<string, GossipSub | undefined>)[name]
    if (pubsub == null) throw new Error(`load gossip needs the gossipsub service '${name}'`)
    this.pubsub = pubsub
    pubsub.topicValidators.set(this.topic, (peer, msg) => this.check(msg) == null ? TopicValidatorResult.Reject : TopicValidatorResult.Accept)
    pubsub.addEventListener('message', this.onMessage)
    pubsub.subscribe(this.topic)
    const every = this.init.intervalMs ?? LOAD_INTERVAL_MS
    if (every > 0) {
      this.timer = setInterval(() => { this.publishNow().catch(err => this.log.warn('load.publish.failed', errFields(err))) }, every)
      this.timer.unref()
    }
  }

  async stop (): Promise<void> {
    this.started = false
    if (this.timer != null) clearInterval(this.timer)
    this.timer = null
    if (this.pubsub != null) {
      this.pubsub.removeEventListener('message', this.onMessage)
      this.pubsub.topicValidators.delete(this.topic)
      try { this.pubsub.unsubscribe(this.topic) } catch { /* gossipsub may have stopped first */ }
    }
  }

  isStarted (): boolean { return this.started }

  async publishNow (): Promise<number> {
    if (this.pubsub == null) throw new Error('load gossip is not started')
    const report: LoadReport = { ...await this.init.sample(), node: this.components.peerId.toString(), at: Math.round(this.now()), seq: ++this.seq }
    this.accept(report) // validated like anyone else's: a bad sample is our bug, caught here
    const res = await this.pubsub.publish(this.topic, encodePayload(report))
    return res.recipients.length
  }

  reports (): AgedLoadReport[] {
    return [...this.latest.keys()].map(n => this.get(n)).filter((r): r is AgedLoadReport => r != null)
  }

  get (node: string): AgedLoadReport | null {
    const e = this.latest.get(node)
    if (e == null) return null
    const ageMs = Math.max(0, this.now() - e.receivedAt)
    return { ...e.r, ageMs, stale: ageMs > (this.init.staleMs ?? LOAD_STALE_MS) }
  }

  rejected (): number { return this.refused }

  async waitForSubscribers (peers: number, timeoutMs = 10_000): Promise<void> {
    const t0 = Date.now()
    while (this.pubsub == null || this.pubsub.getSubscribers(this.topic).length < peers) {
      if (Date.now() - t0 > timeoutMs) throw new Error(`fewer than ${peers} peers joined ${this.topic} within ${timeoutMs} ms`)
      await new Promise(resolve => setTimeout(resolve, 20))
    }
  }

  /** The report in a gossip message when valid and signed by the node it is about, else null. */
  private check (msg: GossipMessage): LoadReport | null {
    if (msg.topic !== this.topic) return null
    try {
      if (msg.type !== 'signed') throw new BlixardError('BadMessage', 'unsigned load report')
      if (msg.data.byteLength > MAX_LOAD_REPORT_BYTES) throw new BlixardError('TooLarge', `load report of ${msg.data.byteLength} bytes`)
      const r = validateLoadReport(decodePayload(msg.data))
      if (r.node !== msg.from.toString()) throw new BlixardError('BadMessage', `load.node '${r.node}' is not the signer ${msg.from.toString()}`)
      if (r.at > this.now() + LOAD_MAX_FUTURE_SKEW_MS) throw new BlixardError('BadMessage', 'load.at is in the future')
      return r
    } catch (err) {
      this.refused++
      this.log.warn('load.report.rejected', { from: msg.type === 'signed' ? msg.from.toString() : null, ...errFields(err) })
      return null
    }
  }

  private readonly onMessage = (evt: CustomEvent<GossipMessage>): void => {
    const msg = evt.detail
    if (msg.topic !== this.topic) return
    const r = this.check(msg)
    if (r != null) this.accept(r)
  }

  private accept (r: LoadReport): void {
    validateLoadReport(r)
    const old = this.latest.get(r.node)
    if (old != null && !isNewer(r, old.r)) return
    this.latest.set(r.node, { r, receivedAt: this.now() })
    if (this.latest.size > (this.init.maxNodes ?? 4096)) {
      let oldest: string | null = null
      let t = Infinity
      for (const [n, e] of this.latest) if (e.receivedAt < t) { t = e.receivedAt; oldest = n }
      if (oldest != null) this.latest.delete(oldest)
    }
    try { this.init.onReport?.(r) } catch (err) { this.log.error('load.onReport.failed', errFields(err)) }
  }
}
