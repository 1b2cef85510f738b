// The NixOS path for one guest: build its runner with nix, install it where microvm.nix's
// host module expects it (/var/lib/microvms/NAME), drive the `microvm@NAME` systemd unit,
// and read its state back. Pure: every function returns argv arrays (or file writes) for the
// agent to perform, so the commands are tested here where neither systemd nor a nix store runs.
import type { VmPhase } from '../protocols/model.ts'
import { BlixardError } from '../protocols/errors.ts'
import type { GuestInterface } from './render.ts'

/** microvm.nix's host state directory (microvm.stateDir). */
export const MICROVM_STATE_DIR = '/var/lib/microvms'
/** The group microvm.nix's `microvm@` units run in; our daemon is a member (nixos/module.nix). */
export const MICROVM_GROUP = 'kvm'
/** What `systemctl show` is asked for: enough to tell running, starting, stopped and failed apart. */
export const SHOW_PROPERTIES = ['LoadState', 'ActiveState', 'SubState', 'MainPID', 'ExecMainStatus', 'Result', 'ConditionResult', 'ConditionTimestampMonotonic'] as const

export type Argv = string[]
export type HostStep =
  | { kind: 'run', argv: Argv }
  | { kind: 'write', path: string, content: string }

const VM_NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/
// flake URLs treat '#', '?' and whitespace specially: a flake directory must not contain them
const FLAKE_DIR = /^\/[A-Za-z0-9_.@+\/-]*$/
const IFNAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/

function vmName (name: string): string {
  if (!VM_NAME.test(name)) throw new BlixardError('InvalidSpec', `vm name ${JSON.stringify(name)} must be a hostname label`)
  return name
}

function flakeDir (dir: string): string {
  const parts = dir.split('/').filter((p) => p !== '')
  // at least two levels: this directory is removed with rm -rf when the VM is deleted
  if (!FLAKE_DIR.test(dir) || parts.includes('..') || parts.includes('.') || parts.length < 2) {
    throw new BlixardError('InvalidSpec', `flake directory ${JSON.stringify(dir)} must be an absolute path of plain characters, two levels deep at least`)
  }
  return '/' + parts.join('/')
}

export function unitName (name: string): string {
  return `microvm@${vmName(name)}.service`
}

export function vmStateDir (name: string, stateDir = MICROVM_STATE_DIR): string {
  return `${stateDir}/${vmName(name)}`
}

/** `path:` so that nix neither needs git nor copies files the agent did not write. */
export function guestFlakeUri (dir: string): string {
  return `path:${flakeDir(dir)}`
}

const NIX = ['nix', '--extra-experimental-features', 'nix-command flakes']

/** Builds `ATTR` of the guest's nixosConfiguration with an out-link (which is also its GC root). */
export function nixBuildArgv (dir: string, name: string, attr: 'config.microvm.declaredRunner' | 'config.system.build.toplevel', outLink: string): Argv {
  return [...NIX, 'build', '--out-link', outLink, `${guestFlakeUri(dir)}#nixosConfigurations.${vmName(name)}.${attr}`]
}

/**
 * Installs (or updates) a guest the way microvm.nix does: `current` is the runner
 * (`current/bin/microvm-run` is what `microvm@NAME` starts), `toplevel` the guest
 * system (so a changed configuration is visible), `flake` the flake URI that
 * `microvm -u NAME` would rebuild from. The unit's own ExecStartPre links `booted`.
 * Group kvm with g+w: `microvm@` runs as microvm:kvm and creates its sockets here.
 * No extra GC root under /nix/var/nix/gcroots: the out-links already are indirect roots.
 */
export function installSteps (name: string, dir: string, stateDir = MICROVM_STATE_DIR): HostStep[] {
  const vmDir = vmStateDir(name, stateDir)
  return [
    { kind: 'run', argv: ['mkdir', '-p', vmDir] },
    { kind: 'run', argv: nixBuildArgv(dir, name, 'config.microvm.declaredRunner', `${vmDir}/current`) },
    { kind: 'run', argv: nixBuildArgv(dir, name, 'config.system.build.toplevel', `${vmDir}/toplevel`) },
    { kind: 'write', path: `${vmDir}/flake`, content: guestFlakeUri(dir) },
    { kind: 'run', argv: ['chgrp', '-h', MICROVM_GROUP, vmDir, `${vmDir}/current`, `${vmDir}/toplevel`, `${vmDir}/flake`] },
    { kind: 'run', argv: ['chmod', 'g+w', vmDir] }
  ]
}

/** Deleting a guest removes everything it created (microvm.nix leaves its state dir behind: #508). */
export function removeSteps (name: string, dir: string, stateDir = MICROVM_STATE_DIR): HostStep[] {
  return [
    { kind: 'run', argv: systemctlArgv('stop', name) },
    { kind: 'run', argv: ['systemctl', 'reset-failed', unitName(name)] },
    { kind: 'run', argv: ['rm', '-rf', '--one-file-system', vmStateDir(name, stateDir)] },
    { kind: 'run', argv: ['rm', '-rf', '--one-file-system', flakeDir(dir)] }
  ]
}

export function systemctlArgv (action: 'start' | 'stop' | 'restart', name: string): Argv {
  return ['systemctl', action, unitName(name)]
}

export function systemctlShowArgv (name: string): Argv {
  return ['systemctl', 'show', unitName(name), '-p', SHOW_PROPERTIES.join(',')]
}

/** The guest console: microvm.nix's QEMU writes the serial console to stdout, hence the journal. */
export function consoleLogArgv (name: string, lines = 200, follow = false): Argv {
  if (!Number.isSafeInteger(lines) || lines < 1) throw new BlixardError('InvalidCommand', `lines must be a positive integer, got ${lines}`)
  return ['journalctl', '--unit', unitName(name), '--output', 'cat', '--no-pager', '--lines', String(lines), ...(follow ? ['--follow'] : [])]
}

/**
 * microvm.nix creates the TAP (microvm-tap-interfaces@NAME, before microvm@NAME) but does
 * not put it on a bridge: the agent does, right after the unit starts.
 */
export function attachTapArgv (iface: GuestInterface): Argv[] {
  for (const n of [iface.id, iface.bridge]) {
    if (!IFNAME.test(n)) throw new BlixardError('InvalidSpec', `interface name ${JSON.stringify(n)} is not valid`)
  }
  return [
    ['ip', 'link', 'set', 'dev', iface.id, 'master', iface.bridge],
    ['ip', 'link', 'set', 'dev', iface.id, 'up']
  ]
}

export interface UnitStatus {
  phase: VmPhase
  reason: string
  activeState: string
  subState: string
  mainPid: number | null
  exitStatus: number | null
}

/**
 * Parses `systemctl show -p …` (KEY=VALUE lines, SHOW_PROPERTIES) into our phases.
 * Unknown states are refused, not guessed.
 */
export function parseSystemctlShow (output: string): UnitStatus {
  const props = new Map<string, string>()
  for (const line of output.split('\n')) {
    const l = line.replace(/\r$/, '')
    if (l === '') continue
    const eq = l.indexOf('=')
    if (eq <= 0) throw new BlixardError('Internal', `systemctl show: unexpected line ${JSON.stringify(l)}`)
    props.set(l.slice(0, eq), l.slice(eq + 1))
  }
  const active = props.get('ActiveState')
  if (active == null) throw new BlixardError('Internal', 'systemctl show: no ActiveState in its output')
  const sub = props.get('SubState') ?? ''
  const load = props.get('LoadState') ?? 'loaded'
  const result = props.get('Result') ?? 'success'
  const pid = intProp(props, 'MainPID')
  const status = intProp(props, 'ExecMainStatus')
  const base = { activeState: active, subState: sub, mainPid: pid != null && pid > 0 ? pid : null, exitStatus: status }
  if (load === 'not-found' || load === 'error' || load === 'bad-setting' || load === 'masked') {
    return { ...base, phase: 'failed', reason: `unit ${load}: is the microvm.nix host module enabled?` }
  }
  switch (active) {
    case 'active':
    case 'reloading':
    case 'refreshing':
      return { ...base, phase: 'running', reason: sub === 'running' ? '' : `unit ${active} (${sub})` }
    case 'activating':
      return { ...base, phase: 'starting', reason: sub === 'auto-restart' ? `restarting after ${describeEnd(result, status)}` : `unit activating (${sub})` }
    case 'deactivating':
      return { ...base, phase: 'stopping', reason: `unit deactivating (${sub})` }
    case 'maintenance':
      return { ...base, phase: 'stopping', reason: 'unit in maintenance (cleaning)' }
    case 'inactive':
      if (result !== 'success') return { ...base, phase: 'failed', reason: describeEnd(result, status) }
      // a start whose ConditionPathExists=…/current/bin/microvm-run failed leaves the unit inactive with Result=success
      if (props.get('ConditionResult') === 'no' && (intProp(props, 'ConditionTimestampMonotonic') ?? 0) > 0) {
        return { ...base, phase: 'failed', reason: 'not installed: current/bin/microvm-run is missing' }
      }
      return { ...base, phase: 'stopped', reason: '' }
    case 'failed':
      return { ...base, phase: 'failed', reason: describeEnd(result, status) }
    default:
      throw new BlixardError('Internal', `systemctl show: unknown ActiveState ${JSON.stringify(active)}`)
  }
}

function intProp (props: Map<string, string>, key: string): number | null {
  const v = props.get(key)
  if (v == null || v === '') return null
  if (!/^\d+$/.test(v)) throw new BlixardError('Internal', `systemctl show: ${key}=${JSON.stringify(v)} is not a number`)
  return Number(v)
}

function describeEnd (result: string, status: number | null): string {
  switch (result) {
    case 'exit-code': return `hypervisor exited with status ${status ?? '?'}`
    case 'signal': return `hypervisor killed by signal ${status ?? '?'}`
    case 'core-dump': return `hypervisor dumped core (signal ${status ?? '?'})`
    case 'timeout': return 'unit timed out'
    case 'start-limit-hit': return 'unit hit its start limit'
    case 'success': return 'exited'
    default: return `unit result ${result}`
  }
}
