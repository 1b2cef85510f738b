// The Hypervisor of hosts without microvm.nix (and of every test here): the QEMU driver
// (node/qemu/driver.ts), which runs each guest as a detached qemu and re-adopts it after a daemon
// restart. This adapter adds what the agent used to do around the driver: the tiny guest's files
// and the spec → launch-spec translation. The driver stays reachable (`driver`) for what is QEMU's
// own: live migration (node/migration/service.ts) talks QMP through it.
import type { VmRecord } from '../../protocols/model.ts'
import type { Logger } from '../log.ts'
import type { QemuDriver } from '../qemu/driver.ts'
import { launchSpecFromVm } from '../qemu/launch-spec.ts'
import { loadTinyGuest, type TinyGuest } from '../qemu/tiny-guest.ts'
import type { ConsoleOptions, GuestEvent, GuestExit, GuestStart, GuestStatus, Hypervisor } from './types.ts'

export interface QemuHypervisorOptions {
  /** where the tiny guest lives (default .guest/ of the checkout) */
  guestDir?: string
  log: Logger
}

export class QemuHypervisor implements Hypervisor {
  readonly kind = 'qemu' as const
  private tiny: TinyGuest | null = null
  private tinyError: string | null = null

  constructor (readonly driver: QemuDriver, private readonly o: QemuHypervisorOptions) {}

  async prepare (): Promise<void> {
    try { this.tiny = await loadTinyGuest(this.o.guestDir) } catch (err) {
      this.tinyError = `no tiny guest on this host (${(err as Error).message}); run scripts/build-tiny-guest.sh`
      this.o.log.warn('tiny guest unavailable', { err })
    }
    // KVM or TCG is probed with a test boot: start it now, not inside the first create's latency
    if (this.tiny != null) void this.driver.resolveAccel().catch((err: unknown) => { this.o.log.warn('accelerator probe failed', { err }) })
  }

  cannotLaunch (vm: VmRecord): string | null {
    if (vm.spec.image.kind === 'tiny' && this.tiny == null) return this.tinyError ?? 'no tiny guest on this host'
    return null
  }

  async list (): Promise<GuestStatus[]> { return await this.driver.list() }

  async start (g: GuestStart): Promise<void> {
    await this.driver.start(launchSpecFromVm(g.vm, { ...g.host, tinyGuest: this.tiny ?? undefined }))
  }

  async stop (vmId: string): Promise<GuestExit> { return await this.driver.stop(vmId) }

  async cleanup (vmId: string): Promise<void> { await this.driver.cleanup(vmId) }

  onEvent (fn: (e: GuestEvent) => void): () => void {
    return this.driver.onEvent((e) => {
      // 'starting' and 'stopping' are the driver's own steps: the agent reports those itself
      if (e.type === 'running' || e.type === 'failed' || e.type === 'stopped') fn(e)
    })
  }

  logs (vmId: string, opts: ConsoleOptions = {}): AsyncGenerator<string> { return this.driver.logs(vmId, opts) }

  async close (): Promise<void> { await this.driver.close() }
}
