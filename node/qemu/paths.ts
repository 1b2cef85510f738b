// Where one VM's runtime files live: <dataDir>/vms/<vmId>/. The driver owns
// this directory; re-adoption after a daemon restart starts from it.
import { join } from 'node:path'
import { QemuError } from './errors.ts'

/** VM ids become directory names and QEMU option values: no '/', '..', ',' or spaces. */
export const VM_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/

export function checkVmId (vmId: string): string {
  if (!VM_ID.test(vmId)) throw new QemuError('InvalidSpec', `vm id must match ${VM_ID.source}: ${JSON.stringify(vmId)}`)
  return vmId
}

export interface RuntimePaths {
  dir: string
  /** what the guest wrote on its serial console (QEMU's chardev logfile) */
  serialLog: string
  /** what the guest printed on the hosts it ran on before a live move into this one (the source's
   * history and console, pulled at the switchover): read before serialLog */
  consoleHistory: string
  serialSock: string
  qmpSock: string
  /** the pid of the qemu process, written after spawn */
  pidFile: string
  /** the launch spec, generation and argv (LaunchRecord) */
  specFile: string
  /** how the last qemu ended (ExitRecord), written by the driver that saw it */
  exitFile: string
  /** qemu's own stdout and stderr */
  qemuLog: string
}

export function vmsDir (dataDir: string): string {
  return join(dataDir, 'vms')
}

export function runtimePaths (dataDir: string, vmId: string): RuntimePaths {
  const dir = join(vmsDir(dataDir), checkVmId(vmId))
  return {
    dir,
    serialLog: join(dir, 'serial.log'),
    consoleHistory: join(dir, 'console-history.log'),
    serialSock: join(dir, 'serial.sock'),
    qmpSock: join(dir, 'qmp.sock'),
    pidFile: join(dir, 'qemu.pid'),
    specFile: join(dir, 'spec.json'),
    exitFile: join(dir, 'exit.json'),
    qemuLog: join(dir, 'qemu.log')
  }
}
