// The NixOS guest path's commands (nix build, install under /var/lib/microvms, systemctl)
// and the parser of `systemctl show`. Systemd and a nix store do not run here: these
// tests check the argv the agent would run and the parsing of real systemctl output shapes.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { BlixardError } from '../../protocols/errors.ts'
import {
  unitName, nixBuildArgv, installSteps, removeSteps, systemctlArgv, systemctlShowArgv,
  parseSystemctlShow, attachTapArgv, consoleLogArgv, guestFlakeUri, SHOW_PROPERTIES
} from '../../nixos/microvm-host.ts'

function kind (f: () => unknown, k: string): void {
  try { f() } catch (e) {
    assert.ok(e instanceof BlixardError, String(e))
    assert.is(e.kind, k)
    return
  }
  assert.unreachable(`expected ${k}`)
}

test('nix build of the declared runner from the rendered flake directory', () => {
  assert.equal(nixBuildArgv('/var/lib/blixard/guests/web-1', 'web-1', 'config.microvm.declaredRunner', '/var/lib/microvms/web-1/current'), [
    'nix', '--extra-experimental-features', 'nix-command flakes', 'build',
    '--out-link', '/var/lib/microvms/web-1/current',
    'path:/var/lib/blixard/guests/web-1#nixosConfigurations.web-1.config.microvm.declaredRunner'
  ])
  assert.is(guestFlakeUri('/var/lib/blixard/guests/a/'), 'path:/var/lib/blixard/guests/a')
})

test('install follows microvm.nix: current runner, toplevel, flake file, group kvm writable', () => {
  const steps = installSteps('web-1', '/var/lib/blixard/guests/web-1')
  assert.equal(steps, [
    { kind: 'run', argv: ['mkdir', '-p', '/var/lib/microvms/web-1'] },
    { kind: 'run', argv: ['nix', '--extra-experimental-features', 'nix-command flakes', 'build', '--out-link', '/var/lib/microvms/web-1/current', 'path:/var/lib/blixard/guests/web-1#nixosConfigurations.web-1.config.microvm.declaredRunner'] },
    { kind: 'run', argv: ['nix', '--extra-experimental-features', 'nix-command flakes', 'build', '--out-link', '/var/lib/microvms/web-1/toplevel', 'path:/var/lib/blixard/guests/web-1#nixosConfigurations.web-1.config.system.build.toplevel'] },
    { kind: 'write', path: '/var/lib/microvms/web-1/flake', content: 'path:/var/lib/blixard/guests/web-1' },
    { kind: 'run', argv: ['chgrp', '-h', 'kvm', '/var/lib/microvms/web-1', '/var/lib/microvms/web-1/current', '/var/lib/microvms/web-1/toplevel', '/var/lib/microvms/web-1/flake'] },
    { kind: 'run', argv: ['chmod', 'g+w', '/var/lib/microvms/web-1'] }
  ])
  // another state dir (microvm.stateDir) is honoured
  assert.equal(installSteps('a', '/srv/g/a', '/srv/microvms')[0], { kind: 'run', argv: ['mkdir', '-p', '/srv/microvms/a'] })
})

test('remove stops the unit and deletes its state and flake directories', () => {
  assert.equal(removeSteps('web-1', '/var/lib/blixard/guests/web-1').map((s) => s.kind === 'run' ? s.argv : []), [
    ['systemctl', 'stop', 'microvm@web-1.service'],
    ['systemctl', 'reset-failed', 'microvm@web-1.service'],
    ['rm', '-rf', '--one-file-system', '/var/lib/microvms/web-1'],
    ['rm', '-rf', '--one-file-system', '/var/lib/blixard/guests/web-1']
  ])
})

test('systemctl start/stop/restart/show of microvm@NAME', () => {
  assert.equal(systemctlArgv('start', 'web-1'), ['systemctl', 'start', 'microvm@web-1.service'])
  assert.equal(systemctlArgv('stop', 'web-1'), ['systemctl', 'stop', 'microvm@web-1.service'])
  assert.equal(systemctlArgv('restart', 'web-1'), ['systemctl', 'restart', 'microvm@web-1.service'])
  assert.equal(systemctlShowArgv('web-1'), ['systemctl', 'show', 'microvm@web-1.service', '-p', SHOW_PROPERTIES.join(',')])
  assert.ok(SHOW_PROPERTIES.includes('ActiveState') && SHOW_PROPERTIES.includes('SubState') && SHOW_PROPERTIES.includes('MainPID') && SHOW_PROPERTIES.includes('ExecMainStatus'))
})

test('console log from the journal, and TAP onto its bridge', () => {
  assert.equal(consoleLogArgv('web-1', 50), ['journalctl', '--unit', 'microvm@web-1.service', '--output', 'cat', '--no-pager', '--lines', '50'])
  assert.equal(consoleLogArgv('web-1', 10, true).at(-1), '--follow')
  assert.equal(attachTapArgv({ id: 'bx0', mac: '02:00:00:00:00:01', bridge: 'br0' }), [
    ['ip', 'link', 'set', 'dev', 'bx0', 'master', 'br0'],
    ['ip', 'link', 'set', 'dev', 'bx0', 'up']
  ])
})

test('names that could escape a path or a unit name are refused', () => {
  kind(() => unitName('../etc'), 'InvalidSpec')
  kind(() => unitName('a b'), 'InvalidSpec')
  kind(() => unitName('x;reboot'), 'InvalidSpec')
  kind(() => installSteps('web-1', 'relative/dir'), 'InvalidSpec')
  kind(() => installSteps('web-1', '/var/lib/x#y'), 'InvalidSpec')
  kind(() => removeSteps('web-1', '/'), 'InvalidSpec')
  kind(() => removeSteps('web-1', '/var'), 'InvalidSpec')
  kind(() => removeSteps('web-1', '/var/lib/../..'), 'InvalidSpec')
  kind(() => attachTapArgv({ id: 'bx0', mac: '02:00:00:00:00:01', bridge: 'br0 master x' }), 'InvalidSpec')
  kind(() => consoleLogArgv('web-1', 0), 'InvalidCommand')
})

// Output shapes as systemd prints them for `-p` (one KEY=VALUE per line, in systemd's order).
const show = (o: Record<string, string>): string => Object.entries(o).map(([k, v]) => `${k}=${v}`).join('\n') + '\n'

test('parse: a running guest', () => {
  const s = parseSystemctlShow(show({ LoadState: 'loaded', ActiveState: 'active', SubState: 'running', MainPID: '4242', ExecMainStatus: '0', Result: 'success', ConditionResult: 'yes', ConditionTimestampMonotonic: '123' }))
  assert.equal(s, { activeState: 'active', subState: 'running', mainPid: 4242, exitStatus: 0, phase: 'running', reason: '' })
})

test('parse: never started, cleanly stopped, starting, stopping', () => {
  const never = parseSystemctlShow(show({ LoadState: 'loaded', ActiveState: 'inactive', SubState: 'dead', MainPID: '0', ExecMainStatus: '0', Result: 'success', ConditionResult: 'no', ConditionTimestampMonotonic: '0' }))
  assert.is(never.phase, 'stopped')
  assert.is(never.mainPid, null)
  assert.is(parseSystemctlShow(show({ ActiveState: 'inactive', SubState: 'dead', MainPID: '0', ExecMainStatus: '0', Result: 'success' })).phase, 'stopped')
  const starting = parseSystemctlShow(show({ ActiveState: 'activating', SubState: 'start-pre', MainPID: '0', ExecMainStatus: '0', Result: 'success' }))
  assert.is(starting.phase, 'starting')
  assert.match(starting.reason, /start-pre/)
  assert.is(parseSystemctlShow(show({ ActiveState: 'deactivating', SubState: 'stop-sigterm', MainPID: '77', ExecMainStatus: '0', Result: 'success' })).phase, 'stopping')
})

test('parse: crashed, killed, restarting, not installed, unit missing', () => {
  const crashed = parseSystemctlShow(show({ ActiveState: 'failed', SubState: 'failed', MainPID: '0', ExecMainStatus: '1', Result: 'exit-code' }))
  assert.equal([crashed.phase, crashed.reason, crashed.exitStatus], ['failed', 'hypervisor exited with status 1', 1])
  const killed = parseSystemctlShow(show({ ActiveState: 'inactive', SubState: 'dead', MainPID: '0', ExecMainStatus: '9', Result: 'signal' }))
  assert.equal([killed.phase, killed.reason], ['failed', 'hypervisor killed by signal 9'])
  const restarting = parseSystemctlShow(show({ ActiveState: 'activating', SubState: 'auto-restart', MainPID: '0', ExecMainStatus: '137', Result: 'exit-code' }))
  assert.equal([restarting.phase, restarting.reason], ['starting', 'restarting after hypervisor exited with status 137'])
  const notInstalled = parseSystemctlShow(show({ LoadState: 'loaded', ActiveState: 'inactive', SubState: 'dead', MainPID: '0', ExecMainStatus: '0', Result: 'success', ConditionResult: 'no', ConditionTimestampMonotonic: '99881' }))
  assert.equal([notInstalled.phase, notInstalled.reason], ['failed', 'not installed: current/bin/microvm-run is missing'])
  const missing = parseSystemctlShow(show({ LoadState: 'not-found', ActiveState: 'inactive', SubState: 'dead', MainPID: '0', ExecMainStatus: '0', Result: 'success' }))
  assert.is(missing.phase, 'failed')
  assert.match(missing.reason, /not-found/)
})

test('parse: CRLF and order do not matter; garbage and unknown states are refused', () => {
  assert.is(parseSystemctlShow('MainPID=5\r\nActiveState=active\r\nSubState=running\r\n').mainPid, 5)
  kind(() => parseSystemctlShow(''), 'Internal')
  kind(() => parseSystemctlShow('Failed to connect to bus: No such file or directory\n'), 'Internal')
  kind(() => parseSystemctlShow('ActiveState=exploding\n'), 'Internal')
  kind(() => parseSystemctlShow('ActiveState=active\nMainPID=-1\n'), 'Internal')
})

test.run()
