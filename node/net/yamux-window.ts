// yamux window updates sent when half the receive window is used, not after every data frame.
//
// js-yamux (libp2p 3) answers every data frame it reads with a WINDOW_UPDATE returning exactly the
// bytes it just consumed. For Raft's and RPC's small messages that is one extra frame per message
// in each direction: at one write in flight the leader's 30-byte updates (12 bytes of yamux, the
// rest Noise) were about half its socket writes per Raft write (strace, bench:raft, 1 client), each
// an encryption, a cipher pass and a syscall on both ends, and coalescing (coalesce.ts) only merges
// them with frames that happen to leave in the same turn.
//
// The yamux spec leaves it to the receiver when to return credit. HashiCorp's yamux (which go-yamux
// follows) sends an update only once the credit to return reaches half the window, or when the
// update has to carry a flag (SYN/ACK). Here the same rule: a stream in Established state with less
// than half of its receive window consumed sends nothing yet. The sender then always keeps at least
// half a window (128 KiB at first) to send into, so nothing stalls: by the time it could run out,
// the receiver has consumed half and answered. A paused stream (its reader behind) sends no update,
// as before; on resume it sends one if half is due, and its sender still has room otherwise.
import { YamuxStream, StreamState } from '@libp2p/yamux/stream'

interface WindowFields { state: StreamState, recvWindow: number, recvWindowCapacity: number }

let installed = false

/** Replaces YamuxStream's update rule for every stream of this process (idempotent). */
export function halfWindowUpdates (): void {
  if (installed) return
  installed = true
  const proto = YamuxStream.prototype as unknown as { sendWindowUpdate: (this: YamuxStream) => void }
  const everyFrame = proto.sendWindowUpdate
  proto.sendWindowUpdate = function (this: YamuxStream): void {
    const s = this as unknown as WindowFields
    if (s.state === StreamState.Established && s.recvWindow - s.recvWindowCapacity < s.recvWindow / 2) return
    everyFrame.call(this)
  }
}
