// The reschedule rules live with the state machine that applies them (MarkNodeDown); the node core
// and its tests name them here too.
export * from '../../storage/reschedule-rules.ts'
