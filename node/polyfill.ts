// Node 20 lacks Promise.withResolvers (Node 22+), and libp2p 3 (streams, yamux, ping, the peer
// store) calls it at runtime. Every entry point imports this module first.
interface Resolvers<T> {
  promise: Promise<T>
  resolve: (v: T | PromiseLike<T>) => void
  reject: (e?: unknown) => void
}
type WithResolvers = <T>() => Resolvers<T>
const P = Promise as unknown as { withResolvers?: WithResolvers }
if (typeof P.withResolvers !== 'function') {
  P.withResolvers = function withResolvers<T> (): Resolvers<T> {
    let resolve!: (v: T | PromiseLike<T>) => void
    let reject!: (e?: unknown) => void
    const promise = new Promise<T>((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}
export {}
