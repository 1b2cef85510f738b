// The seam between the agent and whatever runs guests on this host. Two implementations: the QEMU
// driver (node/hypervisor/qemu.ts over node/qemu/driver.ts, every host) and microvm.nix under
// systemd (node/hypervisor/microvm.ts, NixOS hosts with microvm.nix's host module); which one a
// host uses is node/hypervisor/choose.ts. The agent sees only this interface: it observes guests
// with list(), decides (node/agent-decide.ts) and acts through start/stop/cleanup.
import type { VmRecord } from '../../protocols/model.ts'
import type { HostBindings } from '../qemu/launch-spec.ts'
import type { StopRequest } from '../qemu/exit.ts'

/** How a guest ended, as much as the agent's restart policy needs. */
export interface GuestExit {
  reason: string
  /** what this host asked for ('stop' from the agent or an operator's stop); null: nobody asked */
  requested: StopRequest
}

/** One guest this host has (had) a runtime for, as the hypervisor sees it now. */
export type GuestStatus =
  | { state: 'running', vmId: string, generation: number, ready: boolean, ip: string | null }
  | { state: 'stopped', vmId: string, generation: number, exit: GuestExit | null }
  | { state: 'crashed', vmId: string, generation: number, exit: GuestExit }

/** What happens to guests between two observations: reported at once rather than at the next round. */
export type GuestEvent =
  | { type: 'running', vmId: string, generation: number, ip: string | null, adopted: boolean }
  | { type: 'failed', vmId: string, generation: number, reason: string }
  | { type: 'stopped', vmId: string, generation: number, exit: GuestExit }

/** A guest to start: its record and the host side this node built for it (node/host-resources.ts). */
export interface GuestStart {
  vm: VmRecord
  host: Omit<HostBindings, 'tinyGuest'>
}

export interface ConsoleOptions {
  follow?: boolean
  tailBytes?: number
  /** false: only this host's console, without what the guest printed before a live move here */
  history?: boolean
  signal?: AbortSignal
}

export type HypervisorKind = 'qemu' | 'microvm'

export interface Hypervisor {
  readonly kind: HypervisorKind
  /** Host preparation kept off the first start's latency (QEMU: the tiny guest, the KVM probe). */
  prepare: () => Promise<void>
  /** Why this host cannot launch this VM at all (a missing tiny guest, an image kind it does not
   * run), or null. Checked before every start: the answer becomes a 'failed' report. */
  cannotLaunch: (vm: VmRecord) => string | null
  /** Every guest with a runtime on this host (including stopped and crashed ones not cleaned up). */
  list: () => Promise<GuestStatus[]>
  /** Resolves once the guest is launched; readiness comes later (list(), or a 'running' event). */
  start: (g: GuestStart) => Promise<void>
  /** Graceful stop; resolves with how it ended. */
  stop: (vmId: string) => Promise<GuestExit>
  /** Removes everything start() made for the VM (killing a live guest). Idempotent. */
  cleanup: (vmId: string) => Promise<void>
  onEvent: (fn: (e: GuestEvent) => void) => () => void
  /** The guest's console output; NotFound (an error with kind 'NotFound') when it never started here. */
  logs: (vmId: string, opts?: ConsoleOptions) => AsyncGenerator<string>
  /** Stops watching; guests keep running (the next daemon re-adopts them). */
  close: () => Promise<void>
}
