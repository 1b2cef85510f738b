// Interface names and MAC addresses, derived deterministically so every host
// computes the same ones and a restarted agent finds what it made before.
// Linux interface names are at most 15 bytes (IFNAMSIZ 16 with the NUL).
import { createHash } from 'node:crypto'
import { NetError } from './errors.ts'

export const IFNAME_MAX = 15
/** Every interface Blixard creates starts with this: cleanup and leak checks look for it. */
export const OUR_PREFIX = 'blx'
export const VXLAN_PORT = 4789
export const MAX_VNI = 16_777_215
export const MAX_VLAN = 4094
/** NICs per VM: the TAP name holds one digit of index */
export const MAX_NICS = 10

const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/

function hex (s: string, chars: number): string {
  return createHash('sha256').update(s).digest('hex').slice(0, chars)
}

export function checkIfName (name: string): string {
  if (!IFNAME.test(name)) throw new NetError('InvalidSpec', `interface name must be 1-${IFNAME_MAX} of A-Z a-z 0-9 _ . -: ${JSON.stringify(name)}`)
  return name
}

/** The bridge of a network: from its name (any length), the same on every host. */
export function bridgeName (network: string): string {
  if (network === '') throw new NetError('InvalidSpec', 'network name is empty')
  return `${OUR_PREFIX}b-${hex(`net:${network}`, 8)}`
}

export function vxlanName (vni: number): string {
  checkVni(vni)
  return `${OUR_PREFIX}x-${vni}`
}

/** `UPLINK.VID` as administrators expect; a hashed name when that exceeds 15 bytes. */
export function vlanIfName (uplink: string, vid: number): string {
  checkIfName(uplink)
  checkVlan(vid)
  const plain = `${uplink}.${vid}`
  return plain.length <= IFNAME_MAX ? plain : `${OUR_PREFIX}v${hex(uplink, 6)}.${vid}`
}

/** The TAP of a VM's index-th interface: `blxt` + 8 hex of the VM id + `n` + index (14 bytes). */
export function tapName (vmId: string, index = 0): string {
  checkNicIndex(index)
  if (vmId === '') throw new NetError('InvalidSpec', 'vm id is empty')
  return `${OUR_PREFIX}t${hex(`vm:${vmId}`, 8)}n${index}`
}

/** A locally administered unicast MAC from the VM id and interface index. */
export function macFor (vmId: string, index = 0): string {
  checkNicIndex(index)
  const b = createHash('sha256').update(`mac:${vmId}/${index}`).digest().subarray(0, 6)
  b[0] = (b[0] & 0xfc) | 0x02 // bit 0 clear: unicast; bit 1 set: locally administered
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':')
}

export function checkVni (vni: number): number {
  if (!Number.isInteger(vni) || vni < 1 || vni > MAX_VNI) throw new NetError('InvalidSpec', `VXLAN id must be an integer in 1..${MAX_VNI}: ${vni}`)
  return vni
}

export function checkVlan (vid: number): number {
  if (!Number.isInteger(vid) || vid < 1 || vid > MAX_VLAN) throw new NetError('InvalidSpec', `VLAN id must be an integer in 1..${MAX_VLAN}: ${vid}`)
  return vid
}

function checkNicIndex (i: number): void {
  if (!Number.isInteger(i) || i < 0 || i >= MAX_NICS) throw new NetError('InvalidSpec', `NIC index must be an integer in 0..${MAX_NICS - 1}: ${i}`)
}
