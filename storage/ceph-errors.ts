// Ceph failures as named errors. The rbd and ceph CLIs exit with the errno of the failed
// operation (or print "(errno) text" / "Error ENAME:"), so the errno decides the kind; the
// CLI's stderr stays in the message for the operator.
import type { ErrorKind } from '../protocols/commands.ts'
import { BlixardError } from '../protocols/errors.ts'

export type RbdErrorKind = Extract<ErrorKind,
  'NotFound' | 'AlreadyExists' | 'InUse' | 'Unavailable' | 'InvalidSpec' | 'Unauthorized' | 'Internal'>

/** A BlixardError (it crosses the wire as its kind) that keeps what Ceph said. */
export class RbdError extends BlixardError {
  declare readonly kind: RbdErrorKind
  /** the errno Ceph reported, when it reported one */
  readonly errno: number | null
  /** the CLI's stderr, as it was ('' when the error came from our own checks) */
  readonly stderr: string

  constructor (kind: RbdErrorKind, message: string, opts: { errno?: number | null, stderr?: string } = {}) {
    super(kind, message)
    this.name = 'RbdError'
    this.errno = opts.errno ?? null
    this.stderr = opts.stderr ?? ''
  }
}

export function isRbdError (e: unknown, kind?: RbdErrorKind): e is RbdError {
  return e instanceof RbdError && (kind == null || e.kind === kind)
}

// Linux errno values the CLIs report.
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  EIO: 5,
  EAGAIN: 11,
  EACCES: 13,
  EBUSY: 16,
  EEXIST: 17,
  EINVAL: 22,
  EFBIG: 27,
  ERANGE: 34,
  ENOTEMPTY: 39,
  EOPNOTSUPP: 95,
  /** what a blocklisted (fenced) client gets: EBLOCKLISTED is ESHUTDOWN */
  ESHUTDOWN: 108,
  ETIMEDOUT: 110,
  ECONNREFUSED: 111
} as const

export function kindOfErrno (errno: number): RbdErrorKind {
  switch (errno) {
    case Errno.ENOENT: return 'NotFound'
    case Errno.EEXIST: return 'AlreadyExists'
    case Errno.EBUSY:
    case Errno.ENOTEMPTY: return 'InUse'
    case Errno.EINVAL:
    case Errno.ERANGE:
    case Errno.EFBIG:
    case Errno.EOPNOTSUPP: return 'InvalidSpec'
    case Errno.EPERM:
    case Errno.EACCES: return 'Unauthorized'
    case Errno.EAGAIN:
    case Errno.ESHUTDOWN:
    case Errno.ETIMEDOUT:
    case Errno.ECONNREFUSED: return 'Unavailable'
    default: return 'Internal'
  }
}

const NAMED_ERRNO: Record<string, number> = {
  EPERM: Errno.EPERM,
  ENOENT: Errno.ENOENT,
  EACCES: Errno.EACCES,
  EBUSY: Errno.EBUSY,
  EEXIST: Errno.EEXIST,
  EINVAL: Errno.EINVAL,
  ERANGE: Errno.ERANGE,
  ENOTEMPTY: Errno.ENOTEMPTY,
  EOPNOTSUPP: Errno.EOPNOTSUPP,
  ETIMEDOUT: Errno.ETIMEDOUT
}

/** The errno a failed CLI run reported: the exit code when it is one (rbd returns -r),
 * else `(N) text` or `Error ENAME:` in stderr. */
export function errnoOf (exitCode: number | null, stderr: string): number | null {
  const named = /Error (E[A-Z]+)\b/.exec(stderr)
  if (named?.[1] != null && NAMED_ERRNO[named[1]] != null) return NAMED_ERRNO[named[1]]
  const paren = /\((\d{1,3})\) [A-Z]/.exec(stderr)
  if (paren?.[1] != null) return Number(paren[1])
  // the ceph CLI exits 1 for most failures; only a code above 1 is an errno for sure
  if (exitCode != null && exitCode > 1 && exitCode < 134) return exitCode
  return null
}

/** Text that means "no monitor answered", whatever the exit code. */
const UNREACHABLE = /timed out|couldn't connect to the cluster|error connecting to the cluster|authenticate timed out|RADOS timed out/i

/** Classify one failed CLI run. */
export function classifyFailure (exitCode: number | null, stderr: string): { kind: RbdErrorKind, errno: number | null } {
  const errno = errnoOf(exitCode, stderr)
  if (UNREACHABLE.test(stderr)) return { kind: 'Unavailable', errno }
  if (errno != null) return { kind: kindOfErrno(errno), errno }
  return { kind: 'Internal', errno: null }
}

/** The line of stderr that says what went wrong (the CLIs print debug lines before it). */
export function summaryLine (stderr: string): string {
  const lines = stderr.split('\n').map((l) => l.trim()).filter((l) => l !== '')
  const tagged = lines.filter((l) => /^(rbd:|Error |error |\[errno)/.test(l))
  return tagged.at(-1) ?? lines.at(-1) ?? ''
}
