// Turns a Decision into the lines `blixard vm explain` prints: the outcome, then one line per node.
import type { Decision, NodeVerdict, ScoreComponents } from './types.ts'

const n2 = (x: number): string => (Math.round(x * 1000) / 1000).toString()

export function formatScores (s: ScoreComponents): string {
  return `fit ${n2(s.fit)}, affinity ${n2(s.affinity)}, domain ${n2(s.domain)}, pressure ${n2(s.pressure)}, warm ${n2(s.warm)}, snapshot ${n2(s.snapshot)}`
}

export function formatVerdict (v: NodeVerdict): string {
  return v.feasible ? `${v.nodeId}: score ${n2(v.total)} (${formatScores(v.scores)})` : `${v.nodeId}: rejected by ${v.filter}: ${v.reason}`
}

export function formatDecision (d: Decision): string[] {
  const lines: string[] = []
  if (d.nodeId !== null && d.total !== null && d.scores !== null) lines.push(`vm ${d.vmId} -> node ${d.nodeId}, score ${n2(d.total)} (${formatScores(d.scores)})`)
  else lines.push(`vm ${d.vmId}: no node passes every filter`)
  if (d.rejections !== null && Object.keys(d.rejections).length > 0) {
    lines.push('rejected: ' + Object.entries(d.rejections).map(([f, c]) => `${String(c)} by ${f}`).join(', '))
  }
  if (d.nodes !== null) {
    const ranked = [...d.nodes].sort((a, b) => a.feasible === b.feasible ? (a.feasible && b.feasible ? b.total - a.total : 0) : a.feasible ? -1 : 1)
    for (const v of ranked) lines.push('  ' + formatVerdict(v))
  }
  return lines
}
