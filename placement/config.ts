// Scoring weights and thresholds, with defaults. Weights scale components of fixed range, so the bounds the
// index uses for early exit (see placer.ts) stay valid for any non-negative weights.
import type { PlacementConfig } from './types.ts'
import { BlixardError } from '../protocols/errors.ts'

export const DEFAULT_CONFIG: PlacementConfig = {
  strategy: 'binpack',
  // warm 1: a paused pool guest saves a whole boot (seconds under TCG), worth as much as packing:
  // an idle node holding one (fit 0 + 1) ties the fullest busy node (0.5 + 0.5 × fill <= 1)
  // snapshot 0.5: the state on hand saves a read of it from Ceph (hundreds of ms), less than a
  // boot: it wins among busy nodes, but an empty node holding it (0 + 0.5) only ties a busy one,
  // which the fit tie-break then takes, so it opens no host
  weights: { fit: 1, affinity: 0.5, domain: 0.5, pressure: 0.5, warm: 1, snapshot: 0.5 },
  hotPct: 80,
  staleMs: 10_000
}

export type PlacementConfigInput = Partial<Omit<PlacementConfig, 'weights'>> & { weights?: Partial<PlacementConfig['weights']> }

export function resolveConfig (input: PlacementConfigInput = {}): PlacementConfig {
  const weights = { ...DEFAULT_CONFIG.weights, ...(input.weights ?? {}) }
  for (const [k, w] of Object.entries(weights)) {
    if (!(w >= 0) || !Number.isFinite(w)) throw new BlixardError('InvalidSpec', `placement weight ${k} must be a finite number >= 0, got ${w}`)
  }
  const cfg = { ...DEFAULT_CONFIG, ...input, weights }
  if (cfg.strategy !== 'binpack' && cfg.strategy !== 'spread') throw new BlixardError('InvalidSpec', `placement strategy must be binpack or spread, got ${String(cfg.strategy)}`)
  return cfg
}
