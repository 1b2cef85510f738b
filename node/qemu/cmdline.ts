// The qemu-system-x86_64 command line for one microVM, built the way
// microvm.nix's QEMU runner does (-M microvm, direct kernel boot, virtio-mmio
// devices). Pure: every input is passed in, the result is an argv.
import { basename } from 'node:path'
import { QemuError } from './errors.ts'
import { VM_ID } from './paths.ts'
import { VM_LIMITS } from '../../protocols/vm-limits.ts'

export type Accel = 'kvm' | 'tcg'

/** A virtio-blk disk: a local file, or a Ceph RBD image through QEMU's librbd driver. */
export type DriveSpec =
  | { kind: 'file', path: string, format?: 'raw' | 'qcow2', readOnly?: boolean, cache?: DriveCache }
  | { kind: 'rbd', pool: string, image: string, conf: string, id?: string, readOnly?: boolean, cache?: DriveCache }

/** none = O_DIRECT (needs a filesystem that supports it); writeback = librbd's cache. */
export type DriveCache = 'none' | 'writeback'

/** A virtio-net device on an existing TAP (the network layer creates the TAP). */
export interface NicSpec {
  tap: string
  mac: string
}

export interface BootSpec {
  kernel: string
  initrd?: string
  /** kernel parameters after the driver's own (console, panic, tsc_early_khz) */
  params?: string[]
}

export interface QemuMachine {
  vmId: string
  vcpus: number
  memoryMiB: number
  boot: BootSpec
  drives?: DriveSpec[]
  nics?: NicSpec[]
}

export interface HostFacts {
  accel: Accel
  /** the host TSC in kHz; without it a guest short of CPU can hang calibrating its clock */
  tscKhz: number | null
  qemuBinary?: string
}

/** The sockets and log the command line points at (see paths.ts). */
export interface RuntimeSockets {
  serialSock: string
  serialLog: string
  qmpSock: string
}

export interface QemuArgv {
  binary: string
  args: string[]
}

export const DEFAULT_QEMU_BINARY = 'qemu-system-x86_64'
/** The spec bounds shared with the CLI and the state machine (protocols/vm-limits.ts). */
export const MIN_MEMORY_MIB = VM_LIMITS.minMemoryMiB
export const MAX_VCPUS = VM_LIMITS.maxVcpus
/** sun_path is 108 bytes including the terminating NUL */
const MAX_SOCKET_PATH = 107
const TAP = /^[A-Za-z0-9_.-]{1,15}$/
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i
const RBD_NAME = /^[A-Za-z0-9_.-]+$/
const BASE_PARAMS = ['console=ttyS0', 'reboot=t', 'panic=-1', 'quiet']

function invalid (msg: string): never {
  throw new QemuError('InvalidSpec', msg)
}

/** A value inside a QEMU option list, where ',' must be doubled. */
export function optValue (s: string): string {
  return s.replace(/,/g, ',,')
}

function socketPath (p: string, what: string): string {
  if (Buffer.byteLength(p) > MAX_SOCKET_PATH) invalid(`${what} path longer than ${MAX_SOCKET_PATH} bytes: ${p}`)
  return p
}

function driveFile (d: DriveSpec): string {
  if (d.kind === 'file') {
    if (d.path === '') invalid('drive path is empty')
    return optValue(d.path)
  }
  for (const [k, v] of [['pool', d.pool], ['image', d.image], ['id', d.id]] as const) {
    if (v != null && !RBD_NAME.test(v)) invalid(`rbd ${k} must match ${RBD_NAME.source}: ${v}`)
  }
  // ':' separates options inside an rbd: filename
  if (d.conf === '' || d.conf.includes(':')) invalid(`rbd conf path must be non-empty and contain no ':': ${d.conf}`)
  return optValue(`rbd:${d.pool}/${d.image}:conf=${d.conf}${d.id != null ? `:id=${d.id}` : ''}`)
}

function driveArgs (d: DriveSpec, i: number): string[] {
  const cache = d.cache ?? (d.kind === 'rbd' ? 'writeback' : 'none')
  const format = d.kind === 'file' ? (d.format ?? 'raw') : 'raw'
  const opts = [`id=d${i}`, `file=${driveFile(d)}`, `format=${format}`, 'if=none', `cache=${cache}`, 'aio=threads']
  if (d.readOnly === true) opts.push('readonly=on')
  return ['-drive', opts.join(','), '-device', `virtio-blk-device,drive=d${i}`]
}

function nicArgs (n: NicSpec, i: number): string[] {
  if (!TAP.test(n.tap)) invalid(`TAP name must match ${TAP.source}: ${n.tap}`)
  if (!MAC.test(n.mac)) invalid(`MAC must be six hex octets: ${n.mac}`)
  if ((parseInt(n.mac.slice(0, 2), 16) & 1) === 1) invalid(`MAC must be unicast: ${n.mac}`)
  // no vhost: these hosts have no /dev/vhost-net, and TCG gains nothing from it
  return [
    '-netdev', `tap,id=n${i},ifname=${n.tap},script=no,downscript=no`,
    '-device', `virtio-net-device,netdev=n${i},mac=${n.mac.toLowerCase()}`
  ]
}

/** The kernel command line: the driver's base parameters, then the spec's. */
export function kernelParams (host: Pick<HostFacts, 'tscKhz'>, params: string[] = []): string {
  for (const p of params) if (p === '' || /\s/.test(p)) invalid(`kernel parameter must be one non-empty word: ${JSON.stringify(p)}`)
  const tsc = host.tscKhz != null ? [`tsc_early_khz=${host.tscKhz}`] : []
  return [...BASE_PARAMS, ...tsc, ...params].join(' ')
}

/** The `-name` value that ties a qemu process to its VM (checked on re-adoption). */
export function guestName (vmId: string): string {
  return `guest=${vmId}`
}

export function buildQemuArgv (vm: QemuMachine, host: HostFacts, rt: RuntimeSockets): QemuArgv {
  if (!VM_ID.test(vm.vmId)) invalid(`vm id must match ${VM_ID.source}: ${vm.vmId}`)
  if (!Number.isInteger(vm.vcpus) || vm.vcpus < 1 || vm.vcpus > MAX_VCPUS) invalid(`vcpus must be an integer in 1..${MAX_VCPUS}: ${vm.vcpus}`)
  if (!Number.isInteger(vm.memoryMiB) || vm.memoryMiB < MIN_MEMORY_MIB) invalid(`memoryMiB must be an integer ≥ ${MIN_MEMORY_MIB}: ${vm.memoryMiB}`)
  if (vm.boot.kernel === '') invalid('boot.kernel is empty')
  if (host.tscKhz != null && (!Number.isInteger(host.tscKhz) || host.tscKhz <= 0)) invalid(`tscKhz must be a positive integer: ${host.tscKhz}`)
  const accel = host.accel === 'kvm' ? ['-accel', 'kvm', '-cpu', 'host'] : ['-accel', 'tcg,tb-size=32', '-cpu', 'max']
  const args = [
    '-name', guestName(vm.vmId),
    ...accel,
    '-M', 'microvm,x-option-roms=off,rtc=on',
    '-m', String(vm.memoryMiB),
    '-smp', String(vm.vcpus),
    '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
    '-chardev', `socket,id=ser0,path=${optValue(socketPath(rt.serialSock, 'serial socket'))},server=on,wait=off,logfile=${optValue(rt.serialLog)}`,
    '-serial', 'chardev:ser0',
    '-qmp', `unix:${optValue(socketPath(rt.qmpSock, 'QMP socket'))},server=on,wait=off`,
    '-kernel', vm.boot.kernel,
    ...(vm.boot.initrd != null ? ['-initrd', vm.boot.initrd] : []),
    '-append', kernelParams(host, vm.boot.params)
  ]
  ;(vm.drives ?? []).forEach((d, i) => { args.push(...driveArgs(d, i)) })
  ;(vm.nics ?? []).forEach((n, i) => { args.push(...nicArgs(n, i)) })
  return { binary: host.qemuBinary ?? DEFAULT_QEMU_BINARY, args }
}

/** True when a process's argv (from /proc/PID/cmdline) is the qemu we launched for
 * this VM: a qemu-system binary, our -name, and a QMP socket inside this VM's dir. */
export function isQemuFor (cmdline: string[], vmId: string, qmpSock: string): boolean {
  if (cmdline.length === 0 || !basename(cmdline[0]).startsWith('qemu-system')) return false
  const nameAt = cmdline.indexOf('-name')
  if (nameAt < 0 || cmdline[nameAt + 1] !== guestName(vmId)) return false
  const qmpAt = cmdline.indexOf('-qmp')
  return qmpAt >= 0 && (cmdline[qmpAt + 1] ?? '').startsWith(`unix:${optValue(qmpSock)},`)
}

/** The host TSC frequency in kHz from /proc/cpuinfo text (`cpu MHz` × 1000). */
export function tscKhzFromCpuinfo (cpuinfo: string): number | null {
  const m = /^cpu MHz\s*:\s*([0-9.]+)/m.exec(cpuinfo)
  if (m == null) return null
  const khz = Math.round(Number(m[1]) * 1000)
  return Number.isFinite(khz) && khz > 0 ? khz : null
}
