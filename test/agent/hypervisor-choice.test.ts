// Which Hypervisor a host gets (node/hypervisor/choose.ts): microvm.nix only when nix and the
// microvm host module are both present, QEMU otherwise; the BLIXARD_HYPERVISOR override, its bad
// values refused by name; and the probe over a real PATH and unit file made here.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chooseHypervisor, hypervisorSettingFromEnv, probeHostCapabilities } from '../../node/hypervisor/choose.ts'

const all = { nix: true, microvmHostModule: true }

test('auto: microvm.nix with both nix and the host module, QEMU when either is missing', () => {
  assert.is(chooseHypervisor('auto', all).kind, 'microvm')
  const noModule = chooseHypervisor('auto', { nix: true, microvmHostModule: false })
  assert.is(noModule.kind, 'qemu')
  assert.match(noModule.why, /microvm\.nix's host module/)
  const noNix = chooseHypervisor('auto', { nix: false, microvmHostModule: true })
  assert.is(noNix.kind, 'qemu')
  assert.match(noNix.why, /nix/)
  assert.is(chooseHypervisor('auto', { nix: false, microvmHostModule: false }).kind, 'qemu')
})

test('the override: qemu always possible; microvm refused on a host that cannot, naming what is missing', () => {
  assert.is(chooseHypervisor('qemu', all).kind, 'qemu')
  assert.is(chooseHypervisor('microvm', all).kind, 'microvm')
  assert.throws(() => chooseHypervisor('microvm', { nix: true, microvmHostModule: false }), /BLIXARD_HYPERVISOR.*lacks microvm\.nix's host module/)
  assert.throws(() => chooseHypervisor('microvm', { nix: false, microvmHostModule: true }), /lacks `nix` on PATH/)
})

test('BLIXARD_HYPERVISOR: unset, empty and auto mean auto; anything else but qemu or microvm is refused', () => {
  assert.is(hypervisorSettingFromEnv({}), 'auto')
  assert.is(hypervisorSettingFromEnv({ BLIXARD_HYPERVISOR: '' }), 'auto')
  assert.is(hypervisorSettingFromEnv({ BLIXARD_HYPERVISOR: 'microvm' }), 'microvm')
  assert.is(hypervisorSettingFromEnv({ BLIXARD_HYPERVISOR: 'qemu' }), 'qemu')
  assert.throws(() => hypervisorSettingFromEnv({ BLIXARD_HYPERVISOR: 'firecracker' }), /"firecracker" must be qemu, microvm or auto/)
})

test('the probe: nix must be an executable in a PATH directory; the unit template must exist', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'blx-hvprobe-'))
  try {
    const bin = join(dir, 'bin')
    mkdirSync(bin)
    const unit = join(dir, 'microvm@.service')
    assert.equal(await probeHostCapabilities({ PATH: bin }, unit), { nix: false, microvmHostModule: false })
    writeFileSync(join(bin, 'nix'), '#!/bin/sh\n')
    assert.equal(await probeHostCapabilities({ PATH: bin }, unit), { nix: false, microvmHostModule: false }, 'not executable')
    chmodSync(join(bin, 'nix'), 0o755)
    writeFileSync(unit, '[Unit]\n')
    assert.equal(await probeHostCapabilities({ PATH: `relative:${bin}` }, unit), { nix: true, microvmHostModule: true })
    assert.equal(await probeHostCapabilities({ PATH: 'relative' }, unit), { nix: false, microvmHostModule: true }, 'relative PATH entries are not searched')
  } finally { rmSync(dir, { recursive: true, force: true }) }
})

test.run()
