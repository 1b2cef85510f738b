// blixard-node: the daemon's entry point.
import './polyfill.ts'
import { loadConfig, ConfigError, configHelp, type ConfigWarning } from './config.ts'
import { Daemon } from './daemon.ts'
import { createLogger } from './log.ts'
import { startMemoryTrim } from './memory-trim.ts'
import { recoverCommand, RecoverError } from './recover.ts'
import { CorruptStoreError, STORE_CORRUPT_EXIT } from './store-check.ts'
import { FailpointSpecError, loadFailpoints } from '../storage/failpoints.ts'

async function main (argv: string[]): Promise<number> {
  if (argv[0] === 'admin' && argv[1] === 'recover') {
    try {
      process.stdout.write(`${await recoverCommand(argv.slice(2))}\n`)
      return 0
    } catch (err) {
      if (err instanceof RecoverError) { process.stderr.write(`blixard-node: ${err.message}\n`); return 2 }
      throw err
    }
  }
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`blixard-node: the Blixard daemon (one per host)\n\nUsage: blixard-node [--config FILE] [flags]\n       blixard-node admin recover --data-dir DIR --admin PEERID   (offline: vote to make PEERID an admin on next start; see README "Security model")\n\nEvery key can be set in the TOML file, as a flag, or as an environment variable:\n${configHelp()}\n`)
    return 0
  }
  let cfg
  const warnings: ConfigWarning[] = []
  try {
    cfg = await loadConfig(argv, process.env, (w) => warnings.push(w))
  } catch (err) {
    if (err instanceof ConfigError) { process.stderr.write(`blixard-node: ${err.message}\nSee blixard-node --help for every key.\n`); return 2 }
    throw err
  }
  let failpoints
  try { failpoints = loadFailpoints() } catch (err) {
    if (err instanceof FailpointSpecError) { process.stderr.write(`blixard-node: ${err.message}\n`); return 2 }
    throw err
  }
  const log = createLogger({ node: cfg.name }, { level: cfg.logLevel })
  for (const w of warnings) log.warn(`config ${w.key} (${w.source}): ${w.message}`, { key: w.key, source: w.source })
  if (failpoints.size > 0) log.warn('failpoints armed (tests only)', { failpoints: [...failpoints].map(([p, a]) => `${p}=${a.action}${a.arg != null ? `(${a.arg})` : ''}`) })
  // A promise nobody awaited that failed (a library's background task, a peer that vanished
  // mid-call): logged, the node keeps serving. An exception thrown out of a callback leaves state
  // unknown: logged with its stack as a structured line, then exit (systemd restarts the node;
  // Raft's log and the state machine are durable, guests keep running and are re-adopted).
  process.on('unhandledRejection', (reason) => { log.error('unhandled rejection (ignored)', { err: reason }) })
  process.on('uncaughtException', (err) => {
    log.error('fatal: uncaught exception; exiting', { err, stack: err.stack })
    process.exit(70)
  })
  let daemon: Daemon
  try {
    daemon = await Daemon.start(cfg, { log, bootstrapExpect: cfg.bootstrapExpect, admins: cfg.admins })
  } catch (err) {
    if (err instanceof CorruptStoreError) {
      log.error('refusing to start: bad data in the store', { file: err.file, problem: err.problem })
      process.stderr.write(`blixard-node: ${err.message}\n`)
      process.exit(STORE_CORRUPT_EXIT)
    }
    log.error('cannot start', { err })
    process.stderr.write(`blixard-node: cannot start: ${(err as Error).message}\n`)
    process.exit(1) // the half-started libp2p host would keep the process alive
  }
  // the young generation a burst of load grew goes back once the node is idle (node/memory-trim.ts)
  const stopTrim = startMemoryTrim({
    onEnd: (e) => {
      const f = { reason: e.reason, fromMiB: +(e.fromBytes / 1048576).toFixed(1), toMiB: +(e.toBytes / 1048576).toFixed(1), ms: Math.round(e.ms) }
      // cut short by load coming back is normal; a reducer that never came is worth a line
      if (e.reason === 'timeout') log.info('idle: young generation not given back in time', f)
      else log.debug(`idle: young generation ${e.shrunk ? 'given back' : 'kept (busy again)'}`, f)
    }
  })
  await new Promise<void>((resolve) => {
    let stopping = false
    const stop = (signal: string): void => {
      if (stopping) { log.warn('second signal: exiting now', { signal }); process.exit(130) }
      stopping = true
      stopTrim()
      log.info('shutting down', { signal })
      daemon.stop().then(resolve, (err: unknown) => { log.error('unclean shutdown', { err }); resolve() })
    }
    process.on('SIGTERM', () => { stop('SIGTERM') })
    process.on('SIGINT', () => { stop('SIGINT') })
  })
  return 0
}

main(process.argv.slice(2)).then((code) => { process.exit(code) }, (err: unknown) => {
  process.stderr.write(`blixard-node: ${(err as Error).stack ?? String(err)}\n`)
  process.exitCode = 1
})
