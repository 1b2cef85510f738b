// The QMP client against a scripted fake QEMU on a unix socket: ids, errors,
// events, timeouts and a socket that dies mid-call.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createServer, type Server, type Socket } from 'node:net'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { QmpClient } from '../../node/qemu/qmp.ts'
import { QemuError } from '../../node/qemu/errors.ts'

const dir = mkdtempSync(join(tmpdir(), 'blixard-qmp-'))
let n = 0

interface Fake { path: string, server: Server, seen: Array<Record<string, unknown>>, sockets: Socket[] }

/** handler returns the reply lines for one command (or none: never answers) */
async function fake (handler: (cmd: { execute: string, id?: string, arguments?: unknown }, s: Socket) => unknown[], greet = true): Promise<Fake> {
  const path = join(dir, `q${n++}.sock`)
  const seen: Array<Record<string, unknown>> = []
  const sockets: Socket[] = []
  const server = createServer((s) => {
    sockets.push(s)
    if (greet) s.write(JSON.stringify({ QMP: { version: { qemu: { major: 7, minor: 2, micro: 22 }, package: 'fake' }, capabilities: ['oob'] } }) + '\r\n')
    let buf = ''
    s.on('data', (d) => {
      buf += d.toString()
      let i
      while ((i = buf.indexOf('\n')) >= 0) {
        const cmd = JSON.parse(buf.slice(0, i)) as { execute: string, id?: string }
        buf = buf.slice(i + 1)
        seen.push(cmd)
        for (const r of handler(cmd, s)) s.write(JSON.stringify(r) + '\r\n')
      }
    })
    s.on('error', () => {})
  })
  await new Promise<void>((resolve) => server.listen(path, resolve))
  return { path, server, seen, sockets }
}

async function rejectsWith (p: Promise<unknown>, kind: string): Promise<QemuError> {
  try { await p } catch (e) {
    assert.instance(e, QemuError)
    assert.is((e as QemuError).kind, kind, (e as Error).message)
    return e as QemuError
  }
  assert.unreachable(`expected ${kind}`)
  throw new Error('unreachable')
}

const ok = (cmd: { id?: string }) => [{ return: {}, id: cmd.id }]

test('greeting, qmp_capabilities first, then commands matched by id even out of order', async () => {
  let held: { id?: string } | null = null
  const f = await fake((cmd, s) => {
    if (cmd.execute === 'slow') { held = cmd; return [] }
    if (cmd.execute === 'fast') {
      const r: unknown[] = [{ return: { fast: true }, id: cmd.id }]
      if (held != null) r.push({ return: { slow: true }, id: held.id })
      return r
    }
    return ok(cmd)
  })
  const q = await QmpClient.connect(f.path)
  assert.is(q.greeting?.version.qemu.major, 7)
  assert.is(f.seen[0].execute, 'qmp_capabilities')
  const slow = q.execute('slow')
  await new Promise((resolve) => setTimeout(resolve, 20))
  const fast = await q.execute('fast', { a: 1 })
  assert.equal(fast, { fast: true })
  assert.equal(await slow, { slow: true })
  assert.equal(f.seen[2].arguments, { a: 1 })
  assert.is.not(f.seen[1].id, f.seen[2].id)
  await q.close()
  f.server.close()
})

test('an error reply is a QmpError with class and description', async () => {
  const f = await fake((cmd) => cmd.execute === 'bad' ? [{ error: { class: 'CommandNotFound', desc: 'The command bad has not been found' }, id: cmd.id }] : ok(cmd))
  const q = await QmpClient.connect(f.path)
  const e = await rejectsWith(q.execute('bad'), 'QmpError')
  assert.match(e.message, /CommandNotFound/)
  await q.close()
  f.server.close()
})

test('events reach listeners, waitForEvent and the iterator; the iterator ends at close', async () => {
  const f = await fake((cmd) => cmd.execute === 'system_powerdown'
    ? [{ timestamp: { seconds: 1, microseconds: 0 }, event: 'POWERDOWN' }, { return: {}, id: cmd.id }, { timestamp: { seconds: 1, microseconds: 5 }, event: 'SHUTDOWN', data: { guest: true, reason: 'guest-shutdown' } }]
    : ok(cmd))
  const q = await QmpClient.connect(f.path)
  const names: string[] = []
  q.onEvent((e) => names.push(e.event))
  const it = q.events()
  const shutdown = q.waitForEvent('SHUTDOWN', 1000)
  await q.execute('system_powerdown')
  assert.equal((await shutdown).data, { guest: true, reason: 'guest-shutdown' })
  assert.equal(names, ['POWERDOWN', 'SHUTDOWN'])
  assert.is((await it.next()).value?.event, 'POWERDOWN')
  assert.is((await it.next()).value?.event, 'SHUTDOWN')
  f.sockets[0].destroy() // qemu goes away
  assert.ok((await it.next()).done)
  f.server.close()
})

test('a command with no reply times out; a socket closed mid-call rejects with QmpClosed', async () => {
  const f = await fake((cmd, s) => {
    if (cmd.execute === 'hang') return []
    if (cmd.execute === 'die') { setTimeout(() => s.destroy(), 10); return [] }
    return ok(cmd)
  })
  const q = await QmpClient.connect(f.path, { commandTimeoutMs: 100 })
  const t0 = Date.now()
  await rejectsWith(q.execute('hang'), 'Timeout')
  assert.ok(Date.now() - t0 >= 90)
  const closed = new Promise<Error | null>((resolve) => q.onClose(resolve))
  await rejectsWith(q.execute('die', undefined, { timeoutMs: 2000 }), 'QmpClosed')
  assert.instance(await closed, QemuError)
  await rejectsWith(q.execute('after'), 'QmpClosed')
  f.server.close()
})

test('connect: absent socket retries until the timeout; no greeting is a Timeout', async () => {
  const t0 = Date.now()
  await rejectsWith(QmpClient.connect(join(dir, 'absent.sock'), { timeoutMs: 150 }), 'Timeout')
  assert.ok(Date.now() - t0 >= 100, 'it retried')
  const silent = await fake(ok, false)
  const e = await rejectsWith(QmpClient.connect(silent.path, { timeoutMs: 150 }), 'Timeout')
  assert.match(e.message, /greeting/)
  silent.server.close()
})

test('connect waits for a socket that appears late', async () => {
  const path = join(dir, 'late.sock')
  const pending = QmpClient.connect(path, { timeoutMs: 2000 })
  await new Promise((resolve) => setTimeout(resolve, 100))
  const server = createServer((s) => {
    s.write(JSON.stringify({ QMP: { version: { qemu: { major: 7, minor: 2, micro: 0 }, package: '' }, capabilities: [] } }) + '\n')
    s.on('data', (d) => { const c = JSON.parse(d.toString()) as { id: string }; s.write(JSON.stringify({ return: {}, id: c.id }) + '\n') })
  })
  await new Promise<void>((resolve) => server.listen(path, resolve))
  const q = await pending
  assert.ok(!q.closed)
  await q.close()
  assert.ok(q.closed)
  server.close()
})

test.after(() => { rmSync(dir, { recursive: true, force: true }) })
test.run()
