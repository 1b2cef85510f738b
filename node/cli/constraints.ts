// Parses placement constraints as users type them:
//   arch==x86_64   zone!=c   zone in [a, b]   zone not in [c]   gpu exists   gpu not exists
import type { Constraint } from '../../protocols/model.ts'
import { UsageError } from './args.ts'

const LABEL = '([A-Za-z0-9_.\\/-]+)'

export function parseConstraint (s: string): Constraint {
  const t = s.trim()
  let m = new RegExp(`^${LABEL}\\s*(==|!=)\\s*(\\S+)$`).exec(t)
  if (m != null) return m[2] === '==' ? { label: m[1], op: '==', value: m[3] } : { label: m[1], op: '!=', value: m[3] }
  m = new RegExp(`^${LABEL}\\s+(in|not in)\\s*\\[([^\\]]*)\\]$`).exec(t)
  if (m != null) {
    const values = m[3].split(',').map((x) => x.trim()).filter((x) => x !== '')
    if (values.length === 0) throw new UsageError(`constraint "${s}": the list is empty`)
    return m[2] === 'in' ? { label: m[1], op: 'in', values } : { label: m[1], op: 'not in', values }
  }
  m = new RegExp(`^${LABEL}\\s+(exists|not exists)$`).exec(t)
  if (m != null) return m[2] === 'exists' ? { label: m[1], op: 'exists' } : { label: m[1], op: 'not exists' }
  throw new UsageError(`constraint "${s}" not understood: use LABEL==V, LABEL!=V, LABEL in [A, B], LABEL not in [A], LABEL exists, LABEL not exists`)
}
