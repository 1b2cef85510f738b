// Bounds on the HTTP endpoints that do work per request (node/http.ts): the dashboard's state feed
// and /metrics (a walk over every node and VM), its VM view (a placement explain and a console tail
// that may come from another node) and its signed actions (a Raft write each). A client on the
// listen address, or a page it was tricked into loading, must not be able to keep the node busy or
// make it hold unbounded memory: each request takes a token from its client's bucket and from one
// shared by all clients, and the costly ones count against a number in progress; past either, the
// answer is 429 with what the bound is and when to retry.

export interface ClassLimits { perClientPerSec: number, perClientBurst: number, allPerSec: number, allBurst: number }
export interface HttpLimits { view: ClassLimits, work: ClassLimits, workInFlight: number, maxClients: number, headersTimeoutMs: number, requestTimeoutMs: number }

/** The named bounds. */
export const HTTP_LIMITS: Readonly<HttpLimits> = {
  /** /api/state and /metrics: the page polls the state once a second (a few tabs fit), a
   * Prometheus scrape is every few seconds */
  view: { perClientPerSec: 20, perClientBurst: 40, allPerSec: 100, allBurst: 200 },
  /** /api/vm, /api/prepare, /api/submit: an open VM view asks every other second, a click is one
   * prepare and one submit */
  work: { perClientPerSec: 5, perClientBurst: 10, allPerSec: 20, allBurst: 40 },
  /** /api/vm and actions in progress at once (an action may wait on Raft for 30 s): past it, 429 */
  workInFlight: 8,
  /** clients whose buckets are kept; the least recently seen is forgotten first (a forgotten
   * client starts again with a full bucket, which the shared bucket still bounds) */
  maxClients: 1024,
  /** a request's headers and body must arrive within these (a client trickling bytes would
   * otherwise hold one of the workInFlight places for Node's default 300 s) */
  headersTimeoutMs: 5_000,
  requestTimeoutMs: 10_000
}

export type LimitClass = 'view' | 'work'

interface Bucket { tokens: number, at: number }

/** Token buckets per client and for all clients, per class; `now` injected for tests. */
export class RequestLimiter {
  private readonly clients = new Map<string, Record<LimitClass, Bucket>>()
  private readonly all: Record<LimitClass, Bucket>
  private inFlight = 0
  constructor (private readonly limits: Readonly<HttpLimits> = HTTP_LIMITS, private readonly now: () => number = Date.now) {
    const t = now()
    this.all = { view: { tokens: limits.view.allBurst, at: t }, work: { tokens: limits.work.allBurst, at: t } }
  }

  /** Take a token for `client`'s request of class `cls`: null when it may go on, else why not
   * (for the 429 body) and the seconds to wait. */
  take (client: string, cls: LimitClass): { why: string, retryAfterS: number } | null {
    const l = this.limits[cls]
    const t = this.now()
    let mine = this.clients.get(client)
    if (mine === undefined) {
      if (this.clients.size >= this.limits.maxClients) this.clients.delete(this.clients.keys().next().value as string)
      mine = { view: { tokens: this.limits.view.perClientBurst, at: t }, work: { tokens: this.limits.work.perClientBurst, at: t } }
    } else this.clients.delete(client) // re-inserted below: the map's order is least recently seen first
    this.clients.set(client, mine)
    const own = refill(mine[cls], l.perClientPerSec, l.perClientBurst, t)
    const shared = refill(this.all[cls], l.allPerSec, l.allBurst, t)
    const paths = cls === 'view' ? '/api/state and /metrics' : '/api/vm, /api/prepare and /api/submit'
    if (own.tokens < 1) return { why: `too many requests from ${client}: at most ${l.perClientPerSec} a second (bursts of ${l.perClientBurst}) per client on ${paths}`, retryAfterS: Math.ceil((1 - own.tokens) / l.perClientPerSec) }
    if (shared.tokens < 1) return { why: `too many requests: at most ${l.allPerSec} a second (bursts of ${l.allBurst}) from all clients together on ${paths}`, retryAfterS: Math.ceil((1 - shared.tokens) / l.allPerSec) }
    own.tokens -= 1
    shared.tokens -= 1
    return null
  }

  /** A costly request starts: false (and nothing counted) when workInFlight are in progress. */
  begin (): boolean {
    if (this.inFlight >= this.limits.workInFlight) return false
    this.inFlight++
    return true
  }

  end (): void { this.inFlight = Math.max(0, this.inFlight - 1) }

  /** for tests and metrics: clients tracked, requests in progress */
  size (): { clients: number, inFlight: number } { return { clients: this.clients.size, inFlight: this.inFlight } }
}

function refill (b: Bucket, perSec: number, burst: number, t: number): Bucket {
  if (t > b.at) { b.tokens = Math.min(burst, b.tokens + (t - b.at) * perSec / 1000); b.at = t }
  return b
}
