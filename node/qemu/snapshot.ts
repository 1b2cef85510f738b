// Memory + device state snapshots of a running QEMU, through QEMU's migration stream:
// the guest is paused, `migrate`d into a unix socket this process listens on and writes to a file,
// then resumed. A restore starts a QEMU with the same devices and `-incoming unix:SOCK`, this
// process streams the file into that socket, and `cont` resumes the guest where it was saved.
// Never `exec:` (a shell command in QEMU's hands) and never a TCP port: the same rule as live
// migration (migrate.ts localMigrationUri). QEMU 7.2 has no `file:` migration URI.
import { createReadStream, createWriteStream } from 'node:fs'
import { rename, rm, stat } from 'node:fs/promises'
import { connect, createServer, type Socket } from 'node:net'
import type { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { QmpClient } from './qmp.ts'
import { QemuError } from './errors.ts'
import { localMigrationUri, migrateTo, runState, setMigrationParameters, waitForMigration } from './migrate.ts'

/** Bytes per second QEMU may write a paused guest's state at: the guest is stopped meanwhile, so
 * QEMU's own default (128 MiB/s) would only lengthen the pause. */
export const SNAPSHOT_MAX_BANDWIDTH = 4 * 1024 * 1024 * 1024
/** A save or load that has not finished by then failed (a 4 GiB guest writes in seconds). */
export const SNAPSHOT_TIMEOUT_MS = 120_000
/** The restoring QEMU makes its incoming socket within tens of ms of its spawn: waited this long. */
export const INCOMING_WAIT_MS = 15_000
const INCOMING_POLL_MS = 10
/** After the last byte, QEMU loads the devices and reaches 'paused': polled this often. */
const LOAD_POLL_MS = 20

/** How a write ends when QEMU closed the socket first. */
const CLOSED_BY_PEER = new Set(['ERR_STREAM_PREMATURE_CLOSE', 'EPIPE', 'ECONNRESET'])

const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

export interface SaveResult {
  sizeBytes: number
  /** how long the guest stood still (ms): stop → cont */
  pausedMs: number
}

/**
 * Pauses the guest, writes its memory and device state to `file` (through `sock`, a unix socket
 * path this process listens on while QEMU connects), and resumes it if it was running. The file
 * appears complete or not at all (written as FILE.partial, then renamed). `whilePaused` runs once
 * the state is saved and before the guest resumes (the disks' snapshots: they then match the
 * memory); its failure fails the save.
 */
export async function saveState (qmp: QmpClient, file: string, sock: string, opts: { timeoutMs?: number, whilePaused?: () => Promise<void> } = {}): Promise<SaveResult> {
  const uri = localMigrationUri(`unix:${sock}`)
  const partial = `${file}.partial`
  await rm(sock, { force: true })
  let written: Promise<void> | null = null
  const server = createServer({ allowHalfOpen: false }, (conn: Socket) => {
    if (written != null) { conn.destroy(); return } // QEMU connects once; anyone else is refused
    written = pipeline(conn, createWriteStream(partial))
  })
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(sock, () => { server.off('error', reject); resolve() }) })
  const t0 = Date.now()
  const wasRunning = (await runState(qmp)) === 'running'
  try {
    await setMigrationParameters(qmp, { maxBandwidth: SNAPSHOT_MAX_BANDWIDTH })
    if (wasRunning) await qmp.execute('stop')
    await migrateTo(qmp, uri)
    await waitForMigration(qmp, { timeoutMs: opts.timeoutMs ?? SNAPSHOT_TIMEOUT_MS })
    if (written == null) throw new QemuError('QmpError', 'QEMU completed the save without connecting to the snapshot socket')
    await written
    await opts.whilePaused?.()
    await rename(partial, file)
  } catch (e) {
    await rm(partial, { force: true })
    throw e
  } finally {
    // a failed save leaves the guest as it was too: running again
    if (wasRunning) await qmp.execute('cont').catch(() => {})
    server.close()
    await rm(sock, { force: true })
  }
  const pausedMs = Date.now() - t0
  return { sizeBytes: (await stat(file)).size, pausedMs }
}

/**
 * Streams `source` (a file, or a stream such as an RBD image's export) into a QEMU that waits with
 * `-incoming unix:SOCK` (started with the devices the state was saved with), waits until it has
 * loaded it (paused), then resumes the guest.
 */
export async function loadState (qmp: () => Promise<QmpClient>, source: string | (() => Readable), sock: string, opts: { timeoutMs?: number } = {}): Promise<void> {
  const deadline = Date.now() + (opts.timeoutMs ?? SNAPSHOT_TIMEOUT_MS)
  const socketDeadline = Date.now() + INCOMING_WAIT_MS
  // QEMU binds the socket (the file appears) a moment before it listens on it: a connect in
  // between is refused (seen in CI under load: ECONNREFUSED on a clone's first start), so a refused
  // or missing socket is tried again until the deadline
  let conn: Socket
  for (;;) {
    let ready = false
    try { ready = (await stat(sock)).isSocket() } catch {}
    if (ready) {
      const c = connect(sock)
      const err = await new Promise<NodeJS.ErrnoException | null>((resolve) => { c.once('connect', () => { resolve(null) }); c.once('error', resolve) })
      if (err == null) { conn = c; break }
      c.destroy()
      if (err.code !== 'ECONNREFUSED' && err.code !== 'ENOENT') throw err
    }
    if (Date.now() > socketDeadline) throw new QemuError('Timeout', `the restoring QEMU ${ready ? 'refused connections on' : 'made no'} incoming socket ${sock} within ${INCOMING_WAIT_MS} ms`)
    await sleep(INCOMING_POLL_MS)
  }
  const input = typeof source === 'string' ? createReadStream(source) : source()
  try { await pipeline(input, conn) } catch (e) {
    // QEMU closes the socket as soon as it has read the stream's end marker, which can race our
    // own end of the write (seen once under load: "Premature close" after a complete load). Its
    // run state below is the judge: a QEMU that failed to load has quit, or is not paused
    if (!CLOSED_BY_PEER.has((e as NodeJS.ErrnoException).code ?? '')) throw e
    input.destroy()
  }
  const q = await qmp()
  for (;;) {
    const st = await runState(q)
    if (st === 'paused' || st === 'running') break
    if (st !== 'inmigrate') throw new QemuError('QmpError', `the restoring QEMU is ${st}, not loading the snapshot`)
    if (Date.now() > deadline) throw new QemuError('Timeout', `the snapshot did not load within ${opts.timeoutMs ?? SNAPSHOT_TIMEOUT_MS} ms`)
    await sleep(LOAD_POLL_MS)
  }
  await q.execute('cont')
}
