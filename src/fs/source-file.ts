/**
 * Opening a source file for reading: the file the walk listed, or nothing.
 *
 * Between the walk (fs/walk) and the read, whoever can write inside SRC can swap
 * things. O_NOFOLLOW only covers the last component of the path: a parent
 * directory swapped for a symlink (`SRC/d` → `/etc`) turned `SRC/d/shadow` into
 * `/etc/shadow`, and a planted file of the same size and mtime made the old size
 * and mtime checks pass, so a ferry run as root read and sent a file from outside
 * SRC (the CVE-2024-12747 class, issue #11). A FIFO swapped in made the reader
 * block in open() for good.
 *
 * So every read of a source file goes through `openSourceSync`/`openSource`:
 * - open with O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY: a symlink at the last
 *   component fails (ELOOP), a FIFO opens at once instead of waiting for a writer,
 *   a terminal never becomes ours;
 * - fstat the descriptor, and require a regular file with the device and inode the
 *   walk recorded (and its size and mtime). A swapped parent leads to some other
 *   file, and another file has another inode: refused, whatever its size and
 *   mtime. The walk itself lists every directory through a descriptor checked the
 *   same way (fs/walk), so the identities it records are those of files in SRC.
 * Anything else is FERRY_E_CHANGED naming the file ("changed during the
 * transfer"), before a byte of it is read; a failed open (ELOOP for a symlink) is
 * FERRY_E_READ with its errno. O_NONBLOCK stays set: it has no effect
 * on regular files.
 *
 * Where the kernel has openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) a native
 * path could refuse the swapped parent before opening anything; Node has no
 * openat, and the identity check is sound without it (what remains is that a
 * swapped parent can make ferry open, never read, a file outside SRC).
 *
 * Copying by path: fs.copyFile (copy_file_range, FICLONE) takes paths and follows
 * symlinks. `fdPath(fd)` names an open descriptor through /proc/self/fd: opening
 * it reaches the very file the descriptor holds, so the kernel's copy reads the
 * checked file. Where /proc is not mounted it returns null and callers read the
 * descriptor themselves.
 */
import { closeSync, constants as C, fstatSync, openSync, promises as fsp, statSync, type BigIntStats } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { ErrorCodes, FerryError, fromSystemError } from '../core/errors.js';
import { hashHandlePrefix } from './checksum.js';

/** What the walk saw of a file: enough to recognise it again. */
export interface SourceIdentity {
  /** Where it is on disk. */
  absPath: string;
  /** The path used in messages (relative to the transfer root). */
  path: string;
  size: number;
  mtimeNs: bigint;
  /**
   * Device and inode from the walk's lstat (a SourceEntry has them); checked when
   * present, so that a parent directory swapped for a symlink is refused (issue #11).
   */
  dev?: bigint;
  ino?: bigint;
}

export const SOURCE_OPEN_FLAGS = C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK | C.O_NOCTTY;

/**
 * Why an opened file is not the one the walk saw, or null when it is. `st` is the
 * fstat of the descriptor.
 */
export function sourceMismatch(st: BigIntStats, want: Omit<SourceIdentity, 'absPath' | 'path'>): string | null {
  if (!st.isFile()) return 'it is no longer a regular file';
  if ((want.dev !== undefined && st.dev !== want.dev) || (want.ino !== undefined && st.ino !== want.ino)) {
    return 'it is no longer the same file (device or inode differ: a directory on its path was replaced?)';
  }
  if (Number(st.size) !== want.size || st.mtimeNs !== want.mtimeNs) return 'its size or modification time changed';
  return null;
}

/** The FERRY_E_CHANGED for `path`, with the reason. */
export function changedError(path: string, reason: string): FerryError {
  return new FerryError(ErrorCodes.CHANGED, `${path}: changed during the transfer (${reason}); not read`, { subject: path });
}

/** Thrown by `openSourceSync` when the opened file is not the walk's; `reason` says how. */
export class SourceChanged extends Error {
  readonly reason: string;
  constructor(reason: string) {
    super(`changed since it was listed (${reason})`);
    this.reason = reason;
  }
}

/**
 * Open and check, synchronously (reader threads). Returns the fd. Throws the
 * system error of a failed open/fstat as it is (ELOOP: a symlink at the last
 * component), or SourceChanged.
 */
export function openSourceSync(want: Omit<SourceIdentity, 'path'>): number {
  const fd = openSync(want.absPath, SOURCE_OPEN_FLAGS);
  try {
    const why = sourceMismatch(fstatSync(fd, { bigint: true }), want);
    if (why !== null) throw new SourceChanged(why);
    return fd;
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}

/** A failure of `openSourceSync` as a FerryError for `path`. */
export function sourceError(e: unknown, path: string): FerryError {
  if (e instanceof FerryError) return e;
  if (e instanceof SourceChanged) return changedError(path, e.reason);
  return fromSystemError(e, 'read', path);
}

/**
 * Open and check, in the thread pool. Returns the handle; throws FERRY_E_CHANGED
 * (not the walk's file) or FERRY_E_READ (a failed system call, ELOOP for a symlink).
 */
export async function openSource(want: SourceIdentity): Promise<FileHandle> {
  let fh: FileHandle;
  try {
    fh = await fsp.open(want.absPath, SOURCE_OPEN_FLAGS);
  } catch (e) {
    throw fromSystemError(e, 'read', want.path);
  }
  try {
    const why = sourceMismatch(await fh.stat({ bigint: true }), want);
    if (why !== null) throw changedError(want.path, why);
    return fh;
  } catch (e) {
    await fh.close().catch(() => {});
    throw e instanceof FerryError ? e : fromSystemError(e, 'read', want.path);
  }
}

let procFd: boolean | null = null;

/** A path that opens the file held by `fd` (through /proc/self/fd), or null without /proc. */
export function fdPath(fd: number): string | null {
  if (procFd === null) {
    try {
      procFd = statSync('/proc/self/fd').isDirectory();
    } catch {
      procFd = false;
    }
  }
  return procFd ? `/proc/self/fd/${fd}` : null;
}

/** SHA-256 of bytes [0, length) of a source file, opened and checked as above. */
export async function hashSourcePrefix(want: SourceIdentity, length = Number.POSITIVE_INFINITY): Promise<Buffer> {
  const fh = await openSource(want);
  try {
    return await hashHandlePrefix(fh, length);
  } catch (e) {
    throw fromSystemError(e, 'read', want.path);
  } finally {
    await fh.close().catch(() => {});
  }
}
