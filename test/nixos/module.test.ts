// services.blixard evaluated with nix-instantiate against a stub lib (stub-lib.nix, eval-module.nix):
// option names, types and defaults; the config it produces when enabled (unit hardening, user,
// firewall, bridges, ceph.conf, microvm.nix host); config.toml loaded by node/config.ts; the polkit rule run in JS.
// What the stub does not check is listed in stub-lib.nix and eval-module.nix.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { fileURLToPath } from 'node:url'
import { stringify } from 'smol-toml'
import { resolveConfig } from '../../node/config.ts'
import { toNix, raw, type NixValue } from '../../nixos/nix-syntax.ts'
import { nixEvalJson, nixEvalError } from './nix-cli.ts'

const HARNESS = fileURLToPath(new URL('./eval-module.nix', import.meta.url))

interface OptionInfo { type: string, hasDefault: boolean, default?: unknown, options?: Record<string, OptionInfo> }
interface ModuleEval {
  options: Record<string, any>
  cfg: Record<string, any>
  config: Record<string, any>
  failedAssertions: string[]
  tomlSettings: Record<string, unknown> | null
  hostToml: unknown
  qemuOverrideArgs: Record<string, unknown> | null
  warnings: string[]
  cephConfText: string | null
}

function evalModule (settings: Record<string, NixValue>, hostName = 'host-a', hostConfig: Record<string, NixValue> = {}): ModuleEval {
  return nixEvalJson(`import ${HARNESS} { settings = ${toNix(settings)}; hostName = ${JSON.stringify(hostName)}; hostConfig = ${toNix(hostConfig)}; }`) as ModuleEval
}

function evalError (settings: Record<string, NixValue>, attr: string): string {
  const err = nixEvalError(`(import ${HARNESS} { settings = ${toNix(settings)}; }).${attr}`)
  assert.ok(err != null, 'evaluation should fail')
  return err!
}

const KEY = { clusterKeyFile: '/run/keys/blixard.key' }

test('option names, types and defaults of services.blixard', () => {
  const o = evalModule(KEY).options as Record<string, OptionInfo> & { ceph: Record<string, OptionInfo> }
  assert.equal(Object.keys(o).sort(), [
    'bootstrapPeers', 'bridges', 'capacity', 'ceph', 'clusterKeyFile', 'dataDir', 'enable', 'extraPackages',
    'labels', 'listenAddresses', 'mdns', 'name', 'openFirewall', 'package', 'qemuPackage', 'settings'
  ])
  assert.equal(o.enable, { type: 'bool', hasDefault: true, default: false })
  assert.equal(o.package, { type: 'package', hasDefault: false })
  assert.equal(o.clusterKeyFile, { type: 'strMatching /.+', hasDefault: false })
  assert.equal(o.dataDir.default, '/var/lib/blixard')
  assert.equal(o.listenAddresses, { type: 'listOf str', hasDefault: true, default: ['/ip4/0.0.0.0/tcp/7000', '/ip6/::/tcp/7000'] })
  assert.equal(o.bootstrapPeers.default, [])
  assert.equal(o.labels, { type: 'attrsOf str', hasDefault: true, default: {} })
  assert.equal(o.openFirewall.default, false)
  assert.equal(o.mdns.default, true)
  assert.equal(o.name.default, 'host-a') // config.networking.hostName
  assert.equal(o.capacity.type, 'submodule')
  assert.equal(Object.keys(o.capacity.options ?? {}).sort(), ['cpu', 'diskGiB', 'memoryMiB'])
  assert.equal(o.capacity.options?.cpu, { type: 'nullOr positiveInt', hasDefault: true, default: null })
  assert.equal(Object.keys(o.ceph).sort(), ['keyringFile', 'monitors', 'pool', 'user'])
  assert.equal(o.ceph.pool.default, 'rbd')
  assert.equal(o.ceph.monitors.default, [])
  assert.equal(o.ceph.keyringFile.default, null)
  assert.equal(o.settings.default, {})
  assert.equal(o.settings.type, 'submodule')
  assert.equal(o.settings.options, {
    logLevel: { type: 'enum ["debug","info","warn","error"]', hasDefault: true, default: 'info' },
    metricsPort: { type: 'port', hasDefault: true, default: 9630 },
    bootstrapExpect: { type: 'positiveInt', hasDefault: true, default: 3 }
  })
  assert.equal(o.bridges.type, 'attrsOf submodule')
})

test('disabled, the module changes nothing; defaults resolve and pass their types', () => {
  const e = evalModule(KEY)
  assert.equal(e.config, {})
  assert.equal(e.cfg.capacity, { cpu: null, memoryMiB: null, diskGiB: null })
  assert.equal(e.cfg.ceph, { monitors: [], pool: 'rbd', user: 'blixard', keyringFile: null })
})

test('enabled: a hardened unit for a dedicated user in kvm with CAP_NET_ADMIN only', () => {
  const e = evalModule({ ...KEY, enable: true })
  assert.equal(e.failedAssertions, [])
  const svc = e.config.systemd.services.blixard
  const sc = svc.serviceConfig
  assert.match(sc.ExecStart, /^\/nix\/store\/[a-z0-9]{32}-blixard\/bin\/blixard-node --config \/nix\/store\/[a-z0-9]{32}-blixard\.toml$/)
  assert.is(sc.User, 'blixard')
  assert.is(sc.Group, 'blixard')
  assert.is(sc.DynamicUser, false)
  assert.equal(sc.SupplementaryGroups, ['kvm'])
  assert.equal(sc.AmbientCapabilities, ['CAP_NET_ADMIN'])
  assert.equal(sc.CapabilityBoundingSet, ['CAP_NET_ADMIN'])
  assert.is(sc.StateDirectory, 'blixard')
  assert.is(sc.Restart, 'on-failure')
  assert.is(sc.KillMode, 'process') // a daemon restart must not kill the QEMU guests in its cgroup
  assert.is(sc.WatchdogSec, '20s') // a hung daemon is restarted (node/ha/systemd-watchdog.ts pings)
  assert.is(sc.NotifyAccess, 'all') // the pings come from systemd-notify, a child
  assert.is(sc.ProtectSystem, 'strict')
  assert.equal(sc.ReadWritePaths, ['/var/lib/blixard', '-/var/lib/microvms'])
  assert.is(sc.TasksMax, 16384)
  assert.is(svc.startLimitBurst, 5)
  assert.is(svc.startLimitIntervalSec, 300)
  assert.is(sc.PrivateTmp, true)
  assert.is(sc.NoNewPrivileges, true)
  assert.is(sc.ProtectHome, true)
  assert.is(sc.MemoryDenyWriteExecute, false) // V8
  assert.equal(sc.DeviceAllow, ['/dev/kvm rw', '/dev/net/tun rw'])
  assert.equal(svc.wantedBy, ['multi-user.target'])
  assert.equal(e.config.users.users.blixard, { isSystemUser: true, group: 'blixard', extraGroups: ['kvm'], home: '/var/lib/blixard' })
  assert.equal(e.config.users.groups.blixard, {})
  assert.is(e.config.microvm.host.enable, true)
  assert.is(e.config.systemd.services['microvm@'].serviceConfig.Restart, 'no')
  // closed by default
  assert.is(e.config.networking, undefined)
  assert.is(e.config.systemd.network, undefined)
})

test('a data dir outside /var/lib: no StateDirectory, and it is writable', () => {
  const sc = evalModule({ ...KEY, enable: true, dataDir: '/srv/blixard' }).config.systemd.services.blixard.serviceConfig
  assert.is(sc.StateDirectory, undefined)
  assert.equal(sc.ReadWritePaths, ['/srv/blixard', '-/var/lib/microvms'])
  // ReadWritePaths of a missing directory fails the unit: tmpfiles makes it first
  assert.equal(evalModule({ ...KEY, enable: true, dataDir: '/srv/blixard' }).config.systemd.tmpfiles.rules, ['d /srv/blixard 0750 blixard blixard - -'])
  assert.is(evalModule({ ...KEY, enable: true }).config.systemd.tmpfiles, undefined)
})

test('config.toml is loaded by node/config.ts as is, and is the only file', () => {
  const e = evalModule({
    ...KEY, enable: true, name: 'node-7', listenAddresses: ['/ip4/10.0.0.7/tcp/7100', '/ip6/::/tcp/7100'],
    bootstrapPeers: ['/ip4/10.0.0.1/tcp/7000/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN'],
    mdns: false, labels: { zone: 'a' }, capacity: { cpu: 16, memoryMiB: 65536 },
    ceph: { monitors: ['10.0.0.1:6789', '[fd00::1]:6789'], pool: 'vms', keyringFile: '/etc/ceph/ceph.client.blixard.keyring' },
    settings: { labels: { rack: 'r1' }, metricsPort: 9100, raft: { tickMs: 50 } }
  })
  assert.equal(e.failedAssertions, [])
  assert.equal(e.tomlSettings, {
    name: 'node-7',
    dataDir: '/var/lib/blixard',
    listen: ['/ip4/10.0.0.7/tcp/7100', '/ip6/::/tcp/7100'],
    clusterKeyFile: '/run/credentials/blixard.service/cluster-key',
    qemuBinary: '/nix/store/00000000000000000000000000000000-qemu-overridden/bin/qemu-system-x86_64',
    bootstrap: ['/ip4/10.0.0.1/tcp/7000/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN'],
    mdns: false,
    labels: { zone: 'a', rack: 'r1' },
    capacity: { cpu: 16, memoryMiB: 65536 },
    metricsPort: 9100,
    raft: { tickMs: 50 },
    logLevel: 'info',
    bootstrapExpect: 3,
    ceph: { conf: '/etc/blixard/ceph.conf', pool: 'vms', id: 'blixard', keyring: '/run/credentials/blixard.service/ceph-keyring' }
  })
  // TOML cannot hold null: none may be left (smol-toml would silently drop one)
  assert.not.match(JSON.stringify(e.tomlSettings), /null/)
  // the daemon's own loader (unknown keys, multiaddrs, ranges are checked there) accepts it
  const text = stringify(e.tomlSettings as Record<string, unknown>)
  const cfg = resolveConfig({ file: { text, path: '/etc/blixard/config.toml' } })
  assert.is(cfg.name, 'node-7')
  assert.equal(cfg.listen, ['/ip4/10.0.0.7/tcp/7100', '/ip6/::/tcp/7100'])
  assert.is(cfg.clusterKeyFile, '/run/credentials/blixard.service/cluster-key')
  assert.is(cfg.mdns, false)
  assert.equal(cfg.labels, { zone: 'a', rack: 'r1' })
  assert.equal(cfg.capacity, { cpu: 16, memoryMiB: 65536 })
  assert.is(cfg.metricsPort, 9100)
  assert.is(cfg.raft.tickMs, 50)
  // the daemon's Ceph client comes from the same file
  assert.equal(cfg.ceph, { conf: '/etc/blixard/ceph.conf', pool: 'vms', id: 'blixard', keyring: '/run/credentials/blixard.service/ceph-keyring' })
  // the daemon runs the Ceph-enabled QEMU, not whatever qemu-system-x86_64 is on PATH
  assert.is(cfg.qemuBinary, '/nix/store/00000000000000000000000000000000-qemu-overridden/bin/qemu-system-x86_64')
  // defaults load too (capacity left to detection)
  const d = evalModule({ ...KEY, enable: true })
  assert.equal(resolveConfig({ file: { text: stringify(d.tomlSettings as Record<string, unknown>), path: 'c' } }).capacity, {})
  // one file, read by the daemon: no host.toml beside it that nothing reads
  assert.is(e.hostToml, null)
  assert.is(d.hostToml, null)
  // systemd hands the service copies of both secrets
  assert.equal(e.config.systemd.services.blixard.serviceConfig.LoadCredential,
    ['cluster-key:/run/keys/blixard.key', 'ceph-keyring:/etc/ceph/ceph.client.blixard.keyring'])
  assert.is(e.cephConfText, '[global]\nmon_host = 10.0.0.1:6789,[fd00::1]:6789\nkeyring = /etc/ceph/ceph.client.blixard.keyring\n')
  assert.is(e.config.environment.etc['blixard/ceph.conf'].mode, '0644')
  assert.ok(e.config.systemd.services.blixard.path.some((p: string) => p.endsWith('-ceph-client')))
})

test('label names and bootstrap addresses the daemon would refuse fail the rebuild instead', () => {
  const bad = evalModule({ ...KEY, enable: true, labels: { '-x': 'a' }, bootstrapPeers: ['/ip4/10.0.0.1/tcp/7000'] })
  assert.equal(bad.failedAssertions.length, 2)
  assert.match(bad.failedAssertions[0], /labels/)
  assert.match(bad.failedAssertions[1], /p2p/)
})

test('openFirewall opens the listen ports, VXLAN and mDNS; on a networkd host bridges become networkd netdevs', () => {
  const e = evalModule({
    ...KEY, enable: true, openFirewall: true,
    listenAddresses: ['/ip4/0.0.0.0/tcp/7000', '/ip6/::/tcp/7000', '/ip4/0.0.0.0/tcp/7001/ws', '/ip4/0.0.0.0/udp/9/quic'],
    bridges: { br0: { interfaces: ['enp1s0', 'enp2s0'] }, brvx: {} }
  }, 'host-a', { networking: { useNetworkd: true } })
  assert.equal(e.config.networking.firewall, { allowedTCPPorts: [7000, 7001], allowedTCPPortRanges: [{ from: 7400, to: 7499 }], allowedUDPPorts: [4789, 5353] })
  // the live-migration range follows the daemon's settings (node/config.ts migration.portLow/High)
  const moved = evalModule({ ...KEY, enable: true, openFirewall: true, settings: { migration: { portLow: 9000, portHigh: 9009 } } })
  assert.equal(moved.config.networking.firewall.allowedTCPPortRanges, [{ from: 9000, to: 9009 }])
  assert.equal(e.warnings, [])
  const net = e.config.systemd.network
  assert.is(net.enable, undefined) // the host's choice, not ours
  assert.is(e.config.networking.bridges, undefined)
  assert.equal(net.netdevs['40-blixard-br0'], { netdevConfig: { Kind: 'bridge', Name: 'br0' } })
  assert.equal(net.netdevs['40-blixard-brvx'], { netdevConfig: { Kind: 'bridge', Name: 'brvx' } })
  assert.equal(net.networks['41-blixard-br0-uplinks'], { matchConfig: { Name: 'enp1s0 enp2s0' }, networkConfig: { Bridge: 'br0' } })
  assert.is(net.networks['41-blixard-brvx-uplinks'], undefined)
  assert.equal(evalModule({ ...KEY, enable: true, openFirewall: true, mdns: false }).config.networking.firewall.allowedUDPPorts, [4789])
})

test('the polkit rule lets only the blixard user start/stop microvm@ units (run as JavaScript)', () => {
  const js = evalModule({ ...KEY, enable: true }).config.security.polkit.extraConfig as string
  const rules: Array<(a: unknown, s: unknown) => unknown> = []
  const polkit = { addRule: (f: (a: unknown, s: unknown) => unknown) => rules.push(f), Result: { YES: 'yes' } }
  // eslint-disable-next-line no-new-func
  new Function('polkit', js)(polkit)
  assert.is(rules.length, 1)
  const ask = (user: string, unit: string, verb: string, id = 'org.freedesktop.systemd1.manage-units'): unknown =>
    rules[0]({ id, lookup: (k: string) => ({ unit, verb } as Record<string, string>)[k] }, { user })
  assert.is(ask('blixard', 'microvm@web-1.service', 'start'), 'yes')
  assert.is(ask('blixard', 'microvm@web-1.service', 'stop'), 'yes')
  assert.is(ask('blixard', 'microvm@web-1.service', 'reset-failed'), 'yes')
  assert.is(ask('blixard', 'microvm@web-1.service', 'kill'), 'yes', 'the fence SIGKILLs a guest whose stop outlasts its budget')
  assert.is(ask('blixard', 'sshd.service', 'kill'), undefined)
  assert.is(ask('blixard', 'sshd.service', 'stop'), undefined)
  assert.is(ask('blixard', 'microvm@x.service; rm', 'start'), undefined)
  assert.is(ask('blixard', 'microvm@web-1.service', 'enable'), undefined)
  assert.is(ask('alice', 'microvm@web-1.service', 'start'), undefined)
  assert.is(ask('blixard', 'microvm@web-1.service', 'start', 'org.freedesktop.login1.reboot'), undefined)
})

test('wrong values are refused by the option types; a missing key file is reported', () => {
  assert.match(evalError({ ...KEY, hypervisor: 'qemu' }, 'cfg'), /undeclared option services\.blixard\.hypervisor/) // removed with host.toml
  assert.match(evalError({ ...KEY, capacity: { cpu: 0 } }, 'cfg.capacity'), /services\.blixard\.capacity\.cpu/)
  assert.match(evalError({ ...KEY, ceph: { monitors: ['10.0.0.1:6789\nkeyring = /tmp/evil'] } }, 'cfg.ceph'), /services\.blixard\.ceph\.monitors/)
  assert.match(evalError({ ...KEY, dataDir: 'relative' }, 'cfg.dataDir'), /services\.blixard\.dataDir/)
  assert.match(evalError({ ...KEY, labels: { a: 1 } }, 'cfg.labels'), /services\.blixard\.labels/)
  assert.match(evalError({ ...KEY, clusterKeyFile: 'key' }, 'cfg.clusterKeyFile'), /services\.blixard\.clusterKeyFile/)
  // a Nix path literal (`./key`, copied into the store) is not a string: refused by the type
  assert.match(evalError({ ...KEY, clusterKeyFile: raw('/tmp/blixard.key') }, 'cfg.clusterKeyFile'), /services\.blixard\.clusterKeyFile.*not a valid strMatching/)
  // settings: typed keys are checked, the rest is freeform TOML
  assert.match(evalError({ ...KEY, settings: { logLevel: 'loud' } }, 'cfg.settings'), /services\.blixard\.settings\.logLevel.*not a valid enum/)
  assert.match(evalError({ ...KEY, settings: { metricsPort: 70000 } }, 'cfg.settings'), /services\.blixard\.settings\.metricsPort/)
  assert.match(evalError({ ...KEY, nosuchOption: true }, 'cfg'), /undeclared option services\.blixard\.nosuchOption/)
  assert.match(evalError({ enable: true }, 'config'), /services\.blixard\.clusterKeyFile is used but not defined/)
})

test('the unit carries a Ceph-enabled QEMU, util-linux (setpriv) and extraPackages on its PATH', () => {
  const e = evalModule({ ...KEY, enable: true, extraPackages: [raw('{ type = "derivation"; name = "ch"; outPath = "/nix/store/00000000000000000000000000000000-cloud-hypervisor"; }')] })
  assert.equal(e.qemuOverrideArgs, { cephSupport: true })
  const path = e.config.systemd.services.blixard.path as string[]
  assert.ok(path.some((p) => p.endsWith('-qemu-overridden')), 'qemu on PATH')
  assert.ok(path.some((p) => p.endsWith('-util-linux')), 'util-linux on PATH: the KVM probe runs its guest under setpriv --pdeathsig')
  assert.ok(path.at(-1)!.endsWith('-cloud-hypervisor'), 'extraPackages on PATH')
})

test('secrets: a store path is refused by an assertion that can fail', () => {
  const bad = evalModule({ enable: true, clusterKeyFile: '/nix/store/00000000000000000000000000000000-key', ceph: { monitors: ['10.0.0.1:6789'], keyringFile: '/nix/store/00000000000000000000000000000000-keyring' } })
  assert.equal(bad.failedAssertions.length, 2)
  assert.match(bad.failedAssertions[0], /clusterKeyFile .*Nix store/)
  assert.match(bad.failedAssertions[1], /keyringFile is in the Nix store/)
  assert.equal(evalModule({ ...KEY, enable: true }).failedAssertions, [])
})

test('mDNS on with its port closed warns; opened by openFirewall or by hand, or mDNS off, it does not', () => {
  const closed = evalModule({ ...KEY, enable: true })
  assert.equal(closed.warnings.length, 1)
  assert.match(closed.warnings[0], /mDNS .*UDP 5353/)
  assert.equal(evalModule({ ...KEY, enable: true, openFirewall: true }).warnings, [])
  assert.equal(evalModule({ ...KEY, enable: true, mdns: false }).warnings, [])
  assert.equal(evalModule({ ...KEY, enable: true }, 'host-a', { networking: { firewall: { allowedUDPPorts: [5353] } } }).warnings, [])
  assert.equal(evalModule({ ...KEY, enable: true }, 'host-a', { networking: { firewall: { enable: false } } }).warnings, [])
})

test('name: derived in lower case from a mixed-case hostname; an invalid one fails with a clear message', () => {
  const e = evalModule({ ...KEY, enable: true }, 'Rack1_Node-A')
  assert.is(e.cfg.name, 'rack1-node-a')
  assert.equal(e.failedAssertions, [])
  assert.is(e.tomlSettings?.name, 'rack1-node-a')
  const bad = evalModule({ ...KEY, enable: true, name: 'bad.name' })
  assert.equal(bad.failedAssertions.length, 1)
  assert.match(bad.failedAssertions[0], /services\.blixard\.name = "bad\.name" is not a valid node name/)
  assert.match(evalModule({ ...KEY, enable: true }, '').failedAssertions[0] ?? '', /name = "" is not a valid node name/)
})

test('bridges on a scripted-networking host: networking.bridges, networkd stays off; an addressed uplink warns', () => {
  const e = evalModule({ ...KEY, enable: true, mdns: false, bridges: { br0: { interfaces: ['enp1s0'] } } }, 'host-a',
    { networking: { interfaces: { enp1s0: { useDHCP: true } } } })
  assert.equal(e.config.networking.bridges, { br0: { interfaces: ['enp1s0'] } })
  assert.is(e.config.systemd.network, undefined)
  assert.equal(e.warnings.length, 1)
  assert.match(e.warnings[0], /enp1s0 is enslaved to a bridge but has its own address/)
  assert.equal(evalModule({ ...KEY, enable: true, mdns: false, bridges: { br0: { interfaces: ['enp1s0'] } } }).warnings, [])
})

test.run()
