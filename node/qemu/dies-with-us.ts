// A short-lived QEMU that must not outlive the process that started it: the KVM probe's test boot
// and the benchmark anchor's bare boot. Run under util-linux's `setpriv --pdeathsig KILL`, the
// kernel kills it when its parent dies first. A daemon stopped or SIGKILLed in the seconds a probe
// takes (a KVM that never boots the guest takes the whole 8 s timeout) otherwise left the guest
// running for good, a full core's worth of QEMU spinning on a host that cannot run it (three such,
// leaked by a benchmark's short-lived cluster, took ~1.1 of this machine's 2 cores from every
// benchmark after them). Real guests are never started this way: they outlive a daemon restart.
import { onPath } from '../on-path.ts'

/** util-linux's setpriv, looked up once (null: not on PATH). */
let setprivPath: string | null | undefined

/** The command and arguments to spawn `binary args` so that it dies with this process. setpriv
 * execs it in place (the child's pid is the binary's own, so kills reach it directly); without
 * setpriv on PATH, the binary is spawned plainly, as before. PDEATHSIG follows the thread that
 * forked: Node spawns from its main thread, which lives as long as the process. */
export function diesWithUs (binary: string, args: string[]): [string, string[]] {
  if (setprivPath === undefined) setprivPath = onPath('setpriv')
  const wrap = setprivPath
  return wrap === null ? [binary, args] : [wrap, ['--pdeathsig', 'KILL', '--', binary, ...args]]
}
