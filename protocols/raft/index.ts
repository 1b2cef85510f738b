// The Raft core's public surface.
export * from './types.ts'
export type { RaftStorage, LogStore } from './storage.ts'
export { RawNode, encodeConfChange, decodeConfChange, isConfChangeV2, isJoint, confChangeText } from './rawnode.ts'
export type { RaftBug, RaftConfig, RaftStatus } from './rawnode.ts'
export type { ProgressState } from './progress.ts'
