/**
 * One error class for the whole tool, with stable string codes.
 *
 * Every failure ferry reports carries a code from the table below. Codes are part of
 * the public interface (README "Exit codes and error codes"): scripts may match on
 * them, so a code is never renamed or reused for another meaning. The message is one
 * line, names the file or peer it is about, and never contains raw peer bytes (see
 * `cleanForDisplay`).
 *
 * Per-entry problems (one unreadable file) are collected and counted and make the run
 * exit 1; fatal problems (authentication, protocol violation, usage) stop the run
 * and map to their own exit code through `exitCodeFor`.
 */
import { constants as osConstants } from 'node:os';

export const ErrorCodes = {
  /** Bad command line: unknown option, missing operand, bad value. */
  USAGE: 'FERRY_E_USAGE',
  /** The source operand does not exist. */
  SRC_MISSING: 'FERRY_E_SRC_MISSING',
  /** The destination lies inside the source (copying would recurse forever). */
  DST_IN_SRC: 'FERRY_E_DST_IN_SRC',
  /** A source file could not be read (permissions, I/O error). */
  READ: 'FERRY_E_READ',
  /** A destination entry could not be written (permissions, read-only fs, I/O error). */
  WRITE: 'FERRY_E_WRITE',
  /** The destination filesystem is full (ENOSPC) or over quota (EDQUOT). */
  NOSPC: 'FERRY_E_NOSPC',
  /** A source file changed (size or mtime) while it was being copied. */
  CHANGED: 'FERRY_E_CHANGED',
  /** An entry type ferry does not copy (FIFO, socket, device): skipped with a warning; or no /proc to write into DST safely (fatal). */
  UNSUPPORTED: 'FERRY_E_UNSUPPORTED',
  /** A path is unsafe: absolute, `..`, NUL, too long, too deep, or through a symlink; or a DST directory was replaced mid-run. */
  PATH: 'FERRY_E_PATH',
  /** The peer could not prove knowledge of the shared secret (or we could not). */
  AUTH: 'FERRY_E_AUTH',
  /** A record failed authentication, arrived out of order, or the stream was cut. */
  INTEGRITY: 'FERRY_E_INTEGRITY',
  /** The peer broke the protocol: bad frame, oversized length, unexpected message. */
  PROTOCOL: 'FERRY_E_PROTOCOL',
  /** The peer speaks another protocol version, or is not ferry at all. */
  VERSION: 'FERRY_E_VERSION',
  /** Could not connect, or the connection was lost. */
  CONNECT: 'FERRY_E_CONNECT',
  /** The peer was idle or too slow for longer than the timeout. */
  TIMEOUT: 'FERRY_E_TIMEOUT',
  /** The peer asked for more than a session may use (entries, hole bytes; core/limits.ts). */
  LIMIT: 'FERRY_E_LIMIT',
  /** The receiver's policy refuses what the sender asked for (`ferry recv --refuse-delete`). */
  REFUSED: 'FERRY_E_REFUSED',
  /** kTLS was required (`--ktls=on`) but is not available. */
  KTLS: 'FERRY_E_KTLS',
  /** The remote side reported a failure for a file (network modes). */
  REMOTE: 'FERRY_E_REMOTE',
  /** ssh could not start or reach the remote ferry. */
  SSH: 'FERRY_E_SSH',
  /** Interrupted by a signal. */
  INTERRUPTED: 'FERRY_E_INTERRUPTED',
  /** A bug in ferry. */
  INTERNAL: 'FERRY_E_INTERNAL',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/** Process exit codes; documented in the README and in `ferry --help`. */
export const ExitCodes = {
  OK: 0,
  /** Some entries failed; the rest were delivered. Each failure was listed. */
  PARTIAL: 1,
  /** Usage error or an operand that cannot work (missing SRC, DST inside SRC). */
  USAGE: 2,
  /** Authentication failed: the shared secrets differ. */
  AUTH: 3,
  /** Connection, protocol or integrity failure. */
  NETWORK: 4,
  /** Interrupted by SIGINT/SIGTERM. */
  INTERRUPTED: 130,
} as const;

export interface FerryErrorOptions {
  /** The file (relative or absolute path) or peer the error is about. */
  subject?: string;
  cause?: unknown;
}

export class FerryError extends Error {
  override readonly name = 'FerryError';
  readonly code: ErrorCode;
  readonly subject: string | undefined;

  constructor(code: ErrorCode, message: string, options: FerryErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.subject = options.subject;
  }

  /** The one-line form printed to the user: `ferry: CODE: message`. */
  toLine(): string {
    return `${this.code}: ${cleanForDisplay(this.message)}`;
  }
}

export function isFerryError(e: unknown, code?: ErrorCode): e is FerryError {
  return e instanceof FerryError && (code === undefined || e.code === code);
}

const KNOWN_CODES: ReadonlySet<string> = new Set(Object.values(ErrorCodes));

/**
 * The code a peer sent (ERROR frames, FAILED items, ABORT records, the ssh remote's
 * reply): one of ours, or FERRY_E_REMOTE when the peer names one we do not know.
 * The one place a peer's string becomes an ErrorCode.
 */
export function peerErrorCode(code: unknown): ErrorCode {
  return typeof code === 'string' && KNOWN_CODES.has(code) ? (code as ErrorCode) : ErrorCodes.REMOTE;
}

export function exitCodeFor(code: ErrorCode): number {
  switch (code) {
    case ErrorCodes.USAGE:
    case ErrorCodes.SRC_MISSING:
    case ErrorCodes.DST_IN_SRC:
    case ErrorCodes.KTLS:
      return ExitCodes.USAGE;
    case ErrorCodes.AUTH:
      return ExitCodes.AUTH;
    case ErrorCodes.INTEGRITY:
    case ErrorCodes.PROTOCOL:
    case ErrorCodes.VERSION:
    case ErrorCodes.CONNECT:
    case ErrorCodes.TIMEOUT:
    case ErrorCodes.LIMIT:
    case ErrorCodes.REFUSED:
    case ErrorCodes.SSH:
      return ExitCodes.NETWORK;
    case ErrorCodes.INTERRUPTED:
      return ExitCodes.INTERRUPTED;
    default:
      return ExitCodes.PARTIAL;
  }
}

const ERRNO_NAMES = new Map<number, string>(Object.entries(osConstants.errno).map(([k, v]) => [v, k]));

/** The name of a system error number, of either sign (`ENOENT`), or undefined when it is none. */
export function errnoName(errno: number): string | undefined {
  return ERRNO_NAMES.get(Math.abs(errno));
}

/**
 * A native call's errno (of either sign) as a Node-style system error (code, errno,
 * syscall, path; EIO when the number is unknown), so that `fromSystemError` maps it to
 * the same FerryError as the TypeScript path's. The one errno table of the tool.
 */
export function errnoError(errno: number, syscall: string, path?: string): NodeJS.ErrnoException {
  const n = Math.abs(errno);
  const code = ERRNO_NAMES.get(n) ?? 'EIO';
  const e = new Error(`${code}: ${syscall}${path !== undefined ? ` '${path}'` : ''}`) as NodeJS.ErrnoException;
  e.code = code;
  e.errno = -n;
  e.syscall = syscall;
  if (path !== undefined) e.path = path;
  return e;
}

/**
 * Map a Node.js system error on a file to a FerryError with a stable code.
 * `op` says what we were doing ("read", "write"), `path` is the file to name.
 */
export function fromSystemError(e: unknown, op: 'read' | 'write', path: string): FerryError {
  if (e instanceof FerryError) return e;
  const errno = (e as NodeJS.ErrnoException | undefined)?.code;
  const detail = (e as Error | undefined)?.message ?? String(e);
  if (errno === 'ENOSPC' || errno === 'EDQUOT') {
    return new FerryError(ErrorCodes.NOSPC, `${path}: no space left on the destination device`, { subject: path, cause: e });
  }
  const code = op === 'read' ? ErrorCodes.READ : ErrorCodes.WRITE;
  const reason = errno ? `${errno} (${describeErrno(errno)})` : detail;
  return new FerryError(code, `${path}: cannot ${op}: ${reason}`, { subject: path, cause: e });
}

function describeErrno(errno: string): string {
  switch (errno) {
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'ENOENT':
      return 'no such file or directory';
    case 'EROFS':
      return 'read-only file system';
    case 'EISDIR':
      return 'is a directory';
    case 'ENOTDIR':
      return 'not a directory';
    case 'ELOOP':
      return 'refusing to follow a symbolic link';
    case 'EIO':
      return 'input/output error';
    case 'EMFILE':
    case 'ENFILE':
      return 'too many open files';
    default:
      return 'system error';
  }
}

/**
 * Characters escaped by `cleanForDisplay`:
 * - C0 controls, DEL and C1 controls: cursor movement, colours, forged lines;
 * - U+2028/U+2029 (line and paragraph separators);
 * - bidi controls U+061C, U+200E/U+200F, U+202A-U+202E, U+2066-U+2069: they reorder
 *   what follows on the line, so `evil\u202Etxt.exe` would print as `evilexe.txt`
 *   (the "Trojan Source" trick, CVE-2021-42574);
 * - zero-width characters U+200B-U+200D, U+2060, U+FEFF: they make two different
 *   names print identically;
 * - lone surrogates (half of a UTF-16 pair): not characters at all.
 */
const UNSAFE_FOR_DISPLAY =
  // eslint-disable-next-line no-control-regex
  /[\u0000-\u001f\u007f-\u009f\u061c\u200b-\u200f\u2028-\u202e\u2060\u2066-\u2069\ufeff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/**
 * Make a string safe to print on a terminal: control characters, bidi controls,
 * zero-width characters and lone surrogates become escapes (`\x1b`, `\u202e`), so a
 * hostile file name or peer message cannot move the cursor, change colours, forge
 * lines, reorder the text around it or pass for another name.
 */
export function cleanForDisplay(s: string): string {
  return s.replace(UNSAFE_FOR_DISPLAY, (c) => {
    const n = c.charCodeAt(0);
    return n < 0x100 ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u${n.toString(16).padStart(4, '0')}`;
  });
}
