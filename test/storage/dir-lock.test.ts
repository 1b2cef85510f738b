// One process at a time in a Raft log directory (storage/dir-lock.ts): a second live process is
// refused with its pid named, and a lock left by a dead process, a restarted one (same pid, other
// start time) or another boot is taken over without a hand.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawn } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { WalLogStore } from '../../storage/wal-log-store.ts'
import { DirLockedError, LOCK_FILE } from '../../storage/dir-lock.ts'
import { tempDir } from './tmpdir.ts'
import { openCheckedLogStore, CorruptStoreError } from '../../node/store-check.ts'

const conf = { voters: ['a'], learners: [] }
const CHILD = `
const { WalLogStore } = await import(${JSON.stringify(new URL('../../storage/wal-log-store.ts', import.meta.url).href)})
const s = WalLogStore.open(process.argv[1])
process.stdout.write('open\\n')
process.stdin.on('data', () => { s.close(); process.exit(0) })
`

test('a second live process is refused, naming the holder; once it closes, the directory opens', async () => {
  const dir = tempDir()
  WalLogStore.open(dir, { initialConf: conf }).close()
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', CHILD, dir], { stdio: ['pipe', 'pipe', 'inherit'] })
  await new Promise<void>((resolve) => child.stdout.on('data', (d: Buffer) => { if (d.toString().includes('open')) resolve() }))
  try {
    assert.throws(() => WalLogStore.open(dir), (e: unknown) => e instanceof DirLockedError && e.pid === child.pid && e.message.includes(`pid ${child.pid}`) && e.message.includes(join(dir, LOCK_FILE)))
  } finally {
    child.stdin.write('close\n')
    await new Promise((resolve) => child.on('exit', resolve))
  }
  assert.not.ok(existsSync(join(dir, LOCK_FILE)), 'closing gave the lock back')
  const s = WalLogStore.open(dir)
  assert.is(s.lastIndex(), 0)
  s.close()
})

test('a lock left by a process that died (SIGKILL) is taken over', async () => {
  const dir = tempDir()
  WalLogStore.open(dir, { initialConf: conf }).close()
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', CHILD, dir], { stdio: ['pipe', 'pipe', 'inherit'] })
  await new Promise<void>((resolve) => child.stdout.on('data', (d: Buffer) => { if (d.toString().includes('open')) resolve() }))
  child.kill('SIGKILL')
  await new Promise((resolve) => child.on('exit', resolve))
  assert.ok(existsSync(join(dir, LOCK_FILE)), 'the dead process left its lock')
  const s = WalLogStore.open(dir)
  assert.is(readFileSync(join(dir, LOCK_FILE), 'utf8').split(' ')[0], String(process.pid))
  s.close()
})

test('a lock of a live pid with another start time (the pid was reused) or from another boot is stale', () => {
  const dir = tempDir()
  WalLogStore.open(dir, { initialConf: conf }).close()
  const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
  writeFileSync(join(dir, LOCK_FILE), `${process.ppid} 1 ${boot}\n`)
  WalLogStore.open(dir).close()
  writeFileSync(join(dir, LOCK_FILE), `${process.ppid} ${'x'} 00000000-0000-0000-0000-000000000000\n`)
  WalLogStore.open(dir).close()
  // and the same live parent with its real start time and this boot is a holder
  const stat = readFileSync(`/proc/${process.ppid}/stat`, 'utf8')
  const start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]
  writeFileSync(join(dir, LOCK_FILE), `${process.ppid} ${start} ${boot}\n`)
  assert.throws(() => WalLogStore.open(dir), (e: unknown) => e instanceof DirLockedError && e.pid === process.ppid)
})

test('the daemon\'s open says another process holds the log, not that its data is bad', async () => {
  const dir = tempDir()
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', CHILD, join(dir, 'raft')], { stdio: ['pipe', 'pipe', 'inherit'] })
  await new Promise<void>((resolve) => child.stdout.on('data', (d: Buffer) => { if (d.toString().includes('open')) resolve() }))
  try {
    assert.throws(() => openCheckedLogStore(dir), (e: unknown) => e instanceof DirLockedError && !(e instanceof CorruptStoreError))
  } finally {
    child.stdin.write('close\n')
    await new Promise((resolve) => child.on('exit', resolve))
  }
  openCheckedLogStore(dir).close()
})

test.run()
