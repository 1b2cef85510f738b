// Which Hypervisor a host uses. The rule: microvm.nix when the host can build and run its guests
// — `nix` on the daemon's PATH and microvm.nix's host module installed (its `microvm@.service`
// template unit exists) — and QEMU otherwise. A host is one or the other for all its guests: the
// fence (node/fence-watchdog.ts) and a restarted daemon find guests the same way they were started.
// BLIXARD_HYPERVISOR=qemu|microvm overrides the probe (microvm refuses a host without the two).
import { access } from 'node:fs/promises'
import { onPath } from '../on-path.ts'
import { ConfigError } from '../config.ts'
import type { HypervisorKind } from './types.ts'

/** The unit microvm.nix's host module installs; NixOS links system units here. */
export const MICROVM_UNIT_TEMPLATE = '/etc/systemd/system/microvm@.service'
export const HYPERVISOR_ENV = 'BLIXARD_HYPERVISOR'

export type HypervisorSetting = HypervisorKind | 'auto'

export interface HostCapabilities {
  /** the `nix` command is on the daemon's PATH */
  nix: boolean
  /** microvm.nix's host module is installed (its microvm@ template unit exists) */
  microvmHostModule: boolean
}

export interface HypervisorChoice { kind: HypervisorKind, why: string }

/** Pure: the setting and what the host can do → which Hypervisor, and why (logged at start). */
export function chooseHypervisor (setting: HypervisorSetting, caps: HostCapabilities): HypervisorChoice {
  const missing = [caps.nix ? null : '`nix` on PATH', caps.microvmHostModule ? null : `microvm.nix's host module (${MICROVM_UNIT_TEMPLATE})`].filter((m): m is string => m != null)
  if (setting === 'qemu') return { kind: 'qemu', why: `${HYPERVISOR_ENV}=qemu` }
  if (setting === 'microvm') {
    if (missing.length > 0) throw new ConfigError('hypervisor', HYPERVISOR_ENV, `microvm, but this host lacks ${missing.join(' and ')}`)
    return { kind: 'microvm', why: `${HYPERVISOR_ENV}=microvm` }
  }
  if (missing.length === 0) return { kind: 'microvm', why: 'nix and microvm.nix\'s host module are present' }
  return { kind: 'qemu', why: `no ${missing.join(', no ')}` }
}

/** The setting from the environment; anything but qemu, microvm, auto or unset is refused by name. */
export function hypervisorSettingFromEnv (env: NodeJS.ProcessEnv = process.env): HypervisorSetting {
  const v = env[HYPERVISOR_ENV]
  if (v == null || v === '' || v === 'auto') return 'auto'
  if (v === 'qemu' || v === 'microvm') return v
  throw new ConfigError('hypervisor', HYPERVISOR_ENV, `${JSON.stringify(v)} must be qemu, microvm or auto`)
}

/** Looks at this host: `nix` in PATH's directories, and the microvm@ template unit. */
export async function probeHostCapabilities (env: NodeJS.ProcessEnv = process.env, unitTemplate = MICROVM_UNIT_TEMPLATE): Promise<HostCapabilities> {
  const nix = onPath('nix', env) !== null
  const microvmHostModule = await access(unitTemplate).then(() => true, () => false)
  return { nix, microvmHostModule }
}
