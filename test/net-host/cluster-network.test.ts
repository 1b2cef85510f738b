// Networks end to end through 3 real blixard-node processes: `network create` (a bridge
// network), `vm create --network` → the VM's address is allocated through Raft, the host
// that runs it builds the bridge and the VM's TAP, the guest comes up with that address
// and answers ping from the bridge; deleting the VM removes its TAP and frees the address;
// deleting the network removes the bridge on the host. Runs in the host's own network
// namespace (all nodes share it); the bridge has no uplink, so nothing leaves the machine.
// Ports 17680-17682 (metrics 17780-17782).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { execFileSync } from 'node:child_process'
import { TestCluster, waitFor, runCli } from '../cluster/harness.ts'
import { bridgeName, macFor, tapName } from '../../node/net-host/names.ts'
import { links, show, vmSuite } from '../vm/helpers.ts'

const c = new TestCluster({ nodes: 3, basePort: 17680 }, 'netw')
const NET = `lan${process.pid % 10000}`
const BR = bridgeName(NET)
let vmId = ''

const guard = vmSuite(test, c, {
  vmIds: () => vmId === '' ? [] : [vmId],
  cleanup: () => { for (const l of links()) if (l === BR || (vmId !== '' && l === tapName(vmId, 0))) { try { execFileSync('ip', ['link', 'del', l]) } catch {} } }
})

guard('network create, vm create --network: an address from Raft, TAP on the bridge, the guest answers ping', async () => {
  const r = await runCli(['network', 'create', NET, '--subnet', '10.62.0.0/24', '--gateway', '10.62.0.1', '--json'], c.cliEnv(0), 90_000)
  assert.is(r.code, 0, `exit ${r.code}: ${r.stderr}`)
  assert.equal((r.json as { kind: unknown }).kind, { type: 'bridge' })
  const cl = await c.client(1)
  const created = await cl.call('vm.create', { spec: {
    name: 'netvm', vcpus: 1, memoryMiB: 96, diskGiB: 0, hypervisor: 'qemu', image: { kind: 'tiny' }, volumes: [], networks: [NET],
    kernelParams: [], constraints: [], antiAffinityGroup: null, affinity: [], spreadLabel: null, priority: 0, restartPolicy: 'always', requires: []
  } })
  vmId = created.id
  const t0 = Date.now()
  const vm = await waitFor('netvm running', 150_000, async () => { const v = await show(c, 0, 'netvm'); return v.status.phase === 'running' ? v : v.status.phase === 'failed' ? Promise.reject(new Error(v.status.reason)) : null }, 250)
  console.log(`  create → running with a network: ${Date.now() - t0} ms`)
  assert.is(vm.status.ip, '10.62.0.2', 'the first free address after the gateway, reported by the guest')
  const net = await cl.call('network.show', { network: NET })
  assert.equal(net.allocations, { '10.62.0.2': vmId })
  const tap = tapName(vmId, 0)
  const tapLine = execFileSync('ip', ['-o', 'link', 'show', tap], { encoding: 'utf8' })
  assert.match(tapLine, new RegExp(`master ${BR}`))
  // the guest's NIC has the VM's derived MAC: ask the bridge's forwarding table once it has seen traffic
  execFileSync('ip', ['addr', 'add', '10.62.0.1/24', 'dev', BR])
  const ping = execFileSync('busybox', ['ping', '-c', '3', '-W', '2', '10.62.0.2'], { encoding: 'utf8', timeout: 20_000 })
  console.log(`  ping from the bridge: ${ping.trim().split('\n').slice(-2).join(' | ')}`)
  assert.match(ping, /3 packets transmitted, 3 packets received/)
  assert.match(execFileSync('bridge', ['fdb', 'show', 'br', BR], { encoding: 'utf8' }), new RegExp(macFor(vmId, 0)))
  // in use: the network cannot go
  const busy = await runCli(['network', 'delete', NET], c.cliEnv(2), 90_000)
  assert.is(busy.code, 4, `network delete while in use: exit ${busy.code} ${busy.stderr}`)
})

guard('vm delete removes the TAP and frees the address; network delete removes the bridge', async () => {
  const cl = await c.client(0)
  await cl.call('vm.delete', { vm: 'netvm' })
  await waitFor('TAP removed', 30_000, () => !links().includes(tapName(vmId, 0)), 200)
  assert.equal((await cl.call('network.show', { network: NET })).allocations, {})
  await cl.call('network.delete', { network: NET })
  await waitFor('bridge removed by a node reconcile', 30_000, () => !links().includes(BR), 200)
  assert.equal(links().filter((l) => l === BR || l.startsWith('blxt')), [])
})

test.run()
