// The root flake and the package, evaluated with stand-ins for nixpkgs and microvm.nix
// (eval-flake.nix): outputs per system, the module wiring, the buildNpmPackage arguments.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { nixEvalJson } from './nix-cli.ts'

const HARNESS = fileURLToPath(new URL('./eval-flake.nix', import.meta.url))
const root = fileURLToPath(new URL('../../', import.meta.url)).replace(/\/$/, '')

interface FlakeEval {
  description: string
  inputs: Record<string, { url: string, inputs?: { nixpkgs?: { follows: string } } }>
  packageSystems: string[]
  package: { pname: string, version: string, hasNpmDepsHash: boolean, npmDeps: { pname: string, fetched: Array<{ path: string, resolved?: string, integrity?: string }> }, npmConfigHook: string, npmBuildScript: string, installPhase: string, nodejs: string, src: { root: string, fileset: string[] }, defaultIsBlixard: boolean }
  moduleImports: string[]
  modulePackageDefault: { _type: string, priority: number, pname: string }
  defaultModuleImports: string[]
  moduleServiceKeys: string[]
  checkSystems: string[]
  clusterTest: { name: string, testScript: string, nodes: string[] }
}

const e = nixEvalJson(`import ${HARNESS} { }`) as FlakeEval

test('inputs: nixpkgs and microvm.nix following it', () => {
  assert.equal(Object.keys(e.inputs).sort(), ['microvm', 'nixpkgs'])
  assert.is(e.inputs.microvm.inputs?.nixpkgs?.follows, 'nixpkgs')
})

test('packages.<system>.blixard for x86_64 only (the daemon runs qemu-system-x86_64), built with buildNpmPackage from the lockfile', () => {
  assert.equal(e.packageSystems, ['x86_64-linux'])
  const p = e.package
  assert.is(p.pname, 'blixard')
  assert.is(p.version, JSON.parse(readFileSync(`${root}/package.json`, 'utf8')).version)
  assert.ok(p.defaultIsBlixard)
  assert.is(p.npmBuildScript, 'build')
  assert.match(p.nodejs, /nodejs-20$/)
  assert.ok(p.src.fileset.includes(`${root}/package-lock.json`), 'the lockfile is in the source')
  assert.ok(p.src.fileset.includes(`${root}/package.json`))
  assert.not.ok(p.src.fileset.some((f) => f.includes('node_modules')), 'node_modules never enters the source')
  // importNpmLock: every lockfile entry is fetched by its own integrity hash, so no npmDepsHash
  assert.not.ok(p.hasNpmDepsHash, 'npmDepsHash (a hash nobody can compute offline) is gone')
  assert.is(p.npmConfigHook, 'importNpmLock.npmConfigHook')
  assert.is(p.npmDeps.pname, 'blixard')
  const lock = JSON.parse(readFileSync(`${root}/package-lock.json`, 'utf8')) as { packages: Record<string, { link?: boolean }> }
  assert.is(p.npmDeps.fetched.length, Object.entries(lock.packages).filter(([k, v]) => k !== '' && v.link !== true).length)
  for (const f of p.npmDeps.fetched) {
    assert.match(f.resolved ?? '', /^https:\/\/registry\.npmjs\.org\//, `${f.path}: fetched from the registry`)
    assert.match(f.integrity ?? '', /^sha(512|256|1)-/, `${f.path}: has an integrity hash importNpmLock can use`)
  }
  assert.match(p.installPhase, /makeWrapper .*\/bin\/node \$out\/bin\/\$b/)
  assert.match(p.installPhase, /cp -r package.json node_modules dist/)
})

test('nixosModules.blixard imports microvm.nix host and our module, and defaults the package to ours', () => {
  assert.equal(e.moduleImports, ['microvm.nixosModules.host', 'module.nix'])
  assert.equal(e.modulePackageDefault, { _type: 'override', priority: 1000, pname: 'blixard' })
  assert.equal(e.defaultModuleImports, e.moduleImports)
  // it sets only options the module declares (guestFlakeInputs went with host.toml)
  assert.equal(e.moduleServiceKeys, ['package'])
})

test('checks: a three-node runNixOSTest, for users with Nix, KVM and network', () => {
  assert.equal(e.checkSystems, ['x86_64-linux'])
  assert.is(e.clusterTest.name, 'blixard-cluster')
  assert.equal(e.clusterTest.nodes, ['n1', 'n2', 'n3'])
  assert.match(e.clusterTest.testScript, /wait_for_unit\("blixard\.service"\)/)
  assert.match(e.clusterTest.testScript, /exactly one leader/)
})

test.run()
