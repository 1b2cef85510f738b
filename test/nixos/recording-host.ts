// A host for the microvm.nix Hypervisor that records every command and file write instead of
// running nix and systemd (neither runs here): files go to a temp dir for real, `nix build` writes
// its out-link, and systemd's part is played by a unit table (`systemctl start/stop/reset-failed/show`
// answered as systemd does). Tests set units' states to play crashes and power-offs.
import * as assert from 'uvu/assert'
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import type { HostExecutor } from '../../node/hypervisor/microvm.ts'

export interface Unit { active: string, sub: string, result: string, pid: number }

/** A host that records what it is asked and answers like nix, systemd and iproute2 would. */
export class RecordingHost {
  readonly log: string[] = []
  readonly units = new Map<string, Unit>()
  failBuild: string | null = null
  failStart: string | null = null
  /** how long a `systemctl stop` takes: microvm.nix powers the guest off gracefully, the unit active until it is down */
  stopMs = 0
  /** per unit started: the units that were active when it started */
  readonly activeAtStart = new Map<string, string[]>()
  /** stateDir: microvm.nix's state dir of the Hypervisor under test (a start needs its runner there) */
  constructor (readonly stateDir: string) {}

  private unit (u: string): string {
    const m = /^microvm@([a-z0-9-]+)\.service$/.exec(u)
    if (m == null) throw new Error(`not a microvm unit: ${u}`)
    return m[1]
  }

  readonly exec: HostExecutor = {
    run: async (argv) => {
      const line = argv.join(' ')
      this.log.push(line)
      if (argv[0] === 'mkdir' && argv[1] === '-p') { mkdirSync(argv[2], { recursive: true }); return '' }
      if (argv[0] === 'nix') {
        const i = argv.indexOf('build')
        assert.ok(i > 0 && argv[i + 1] === '--out-link', `nix build with an out-link: ${line}`)
        if (this.failBuild != null) throw new Error(`${line}: ${this.failBuild}`)
        writeFileSync(argv[i + 2], `/nix/store/fake-${argv[i + 3].split('.').pop() ?? ''}\n`)
        return ''
      }
      if (argv[0] === 'chgrp' || argv[0] === 'chmod' || argv[0] === 'ip') return ''
      if (argv[0] === 'rm') { rmSync(argv[argv.length - 1], { recursive: true, force: true }); return '' }
      if (argv[0] === 'systemctl') {
        const name = this.unit(argv[2])
        const u = this.units.get(name)
        switch (argv[1]) {
          case 'start':
            if (this.failStart != null) throw new Error(`${line}: ${this.failStart}`)
            if (!existsSync(join(this.stateDir, name, 'current'))) throw new Error(`${line}: runner not installed`)
            this.activeAtStart.set(name, [...this.units].filter(([, x]) => x.active === 'active').map(([n]) => n))
            this.units.set(name, { active: 'active', sub: 'running', result: 'success', pid: 4242 })
            return ''
          case 'stop':
            if (this.stopMs > 0) await new Promise((resolve) => setTimeout(resolve, this.stopMs))
            this.units.set(name, { active: 'inactive', sub: 'dead', result: u?.result === 'success' || u == null ? 'success' : u.result, pid: 0 }); return ''
          case 'reset-failed':
            if (u == null) throw new Error(`${line}: Unit ${argv[2]} not loaded.`)
            u.result = 'success'
            return ''
          case 'show': {
            const s = u ?? { active: 'inactive', sub: 'dead', result: 'success', pid: 0 }
            assert.equal(argv.slice(3, 4), ['-p'])
            return `LoadState=loaded\nActiveState=${s.active}\nSubState=${s.sub}\nMainPID=${s.pid}\nExecMainStatus=${s.result === 'exit-code' ? 1 : 0}\nResult=${s.result}\nConditionResult=yes\nConditionTimestampMonotonic=0\n`
          }
        }
      }
      throw new Error(`unexpected command: ${line}`)
    },
    write: async (path, content) => {
      this.log.push(`write ${path}`)
      mkdirSync(dirname(path), { recursive: true })
      writeFileSync(path, content)
    },
    read: async (path) => { try { return readFileSync(path, 'utf8') } catch { return null } },
    list: async (dir) => { try { return readdirSync(dir) } catch { return [] } },
    stream: async function * (argv) { yield `console of ${argv.join(' ')}\n` }
  }
}
