/**
 * Metadata with the precision `cp -a` and `rsync -a` keep: nanosecond times, the
 * exact data extents of sparse files, and extended attributes. The system calls are
 * in the native addon (native/meta.c); this module picks them or the fallback and
 * turns a negative errno into the usual Node system error, so callers have one
 * error path.
 *
 * Times. With the addon, futimens/utimensat set all nine digits and the quick check
 * compares mtimes exactly (`mtimesEqual`). Without it (FERRY_NATIVE=0, no compiler)
 * times go through libuv, which keeps whole microseconds: `nsToSeconds` aims at the
 * middle of the microsecond and `storedMtimeNs` reproduces libuv's arithmetic, and
 * the quick check then also accepts "what utimes stores for the source's time", so a
 * second run still skips everything. atime is set equal to mtime, like ferry always did.
 *
 * Sparse files. `dataExtents(fd, size)` lists the [start, end) ranges that hold data
 * (lseek SEEK_DATA/SEEK_HOLE): holes are skipped exactly, whatever their alignment.
 * Node has no SEEK_DATA, so the fallback returns null and callers keep detecting
 * all-zero chunks (which leaves a file less sparse, never wrong).
 *
 * Extended attributes. Node has no xattr API at all: without the addon, asking for
 * them (-X/-A) is FERRY_E_UNSUPPORTED "xattrs need the native data plane".
 */
import fs from 'node:fs';
import { constants as osConstants } from 'node:os';
import { errnoError, ErrorCodes, FerryError } from '../core/errors.js';
import { metaAddon, type MetaAddon } from '../native/index.js';

let addon: MetaAddon | null | undefined;

function native(): MetaAddon | null {
  if (addon === undefined) addon = metaAddon() ?? null;
  return addon;
}

/** True when times are set and compared to the nanosecond (the native addon is in use). */
export function nanosecondTimes(): boolean {
  return native() !== null;
}

/** A negative errno from the addon as a Node-style system error (core/errors errnoError). */
const sysError = errnoError;

const NS = 1_000_000_000n;

/** Seconds (floored) and nanoseconds (0..1e9-1) of a time in ns; times before 1970 included. */
export function splitNs(ns: bigint): { sec: number; nsec: number } {
  let sec = ns / NS;
  if (ns < 0n && sec * NS !== ns) sec -= 1n;
  return { sec: Number(sec), nsec: Number(ns - sec * NS) };
}

/** Seconds as a double for libuv (the fallback): the middle of the microsecond, so its truncation lands on it. */
export function nsToSeconds(ns: bigint): number {
  const sec = ns / NS;
  const frac = ns % NS;
  return Number(sec) + (Number(frac / 1000n) + 0.5) / 1e6;
}

/**
 * The mtime libuv's utimes really stores for `ns`: uv__fs_to_timespec on the double
 * we pass (tv_sec = trunc(t); tv_nsec = trunc((t - tv_sec) * 1e9) rounded down to µs).
 */
export function storedMtimeNs(ns: bigint): bigint {
  const t = nsToSeconds(ns);
  let sec = Math.trunc(t);
  let nsec = Math.trunc((t - sec) * 1e9);
  nsec -= nsec % 1000;
  if (nsec < 0) {
    nsec += 1e9;
    sec -= 1;
  }
  return BigInt(sec) * NS + BigInt(nsec);
}

/**
 * The quick check's mtime comparison: exact with the addon (ferry sets nanoseconds);
 * without it, also equal when one is what utimes stores for the other.
 */
export function mtimesEqual(a: bigint, b: bigint): boolean {
  if (a === b) return true;
  if (nanosecondTimes()) return false;
  return a === storedMtimeNs(b) || b === storedMtimeNs(a);
}

/** Set atime = mtime = `ns` on an open descriptor (futimens; fallback futimes, µs). Throws a system error. */
export function setTimesFd(fd: number, ns: bigint): void {
  const a = native();
  if (a === null) {
    const t = nsToSeconds(ns);
    fs.futimesSync(fd, t, t);
    return;
  }
  const { sec, nsec } = splitNs(ns);
  const r = a.utimensFd(fd, sec, nsec);
  if (r !== 0) throw sysError(r, 'futimens');
}

/**
 * Set atime = mtime = `ns` on a path; the last component is not followed unless
 * `follow` (a symlink gets its own times). Fallback: lutimes/utimes (µs).
 */
export function setTimesPath(p: string, ns: bigint, follow = false): void {
  const a = native();
  if (a === null) {
    const t = nsToSeconds(ns);
    if (follow) fs.utimesSync(p, t, t);
    else fs.lutimesSync(p, t, t);
    return;
  }
  const { sec, nsec } = splitNs(ns);
  const r = a.utimensPath(p, sec, nsec, follow);
  if (r !== 0) throw sysError(r, 'utimensat', p);
}

/** Extents listed at most; past that the rest of the file counts as data. */
const MAX_EXTENTS = 65536;

/**
 * The data extents of an open file, as [start, end) pairs in increasing order
 * (a file with no data gives []), or null when they cannot be known here (no addon,
 * or a filesystem without SEEK_DATA): then read everything and skip zero chunks.
 */
export function dataExtents(fd: number, size: number): Array<[number, number]> | null {
  const a = native();
  if (a === null) return null;
  const r = a.dataExtents(fd, size, MAX_EXTENTS);
  if (typeof r === 'number') return null;
  const out: Array<[number, number]> = [];
  for (let i = 0; i + 1 < r.length; i += 2) out.push([r[i]!, r[i + 1]!]);
  return out;
}

/** The FERRY_E_UNSUPPORTED for -X/-A without the addon. */
export function xattrsUnsupported(subject?: string): FerryError {
  return new FerryError(
    ErrorCodes.UNSUPPORTED,
    'xattrs need the native data plane (the native addon is not in use: FERRY_NATIVE=0 or not built); -X/--xattrs and -A/--acls are unavailable',
    subject !== undefined ? { subject } : {},
  );
}

/** True when -X/-A can work here. */
export function xattrsAvailable(): boolean {
  return native() !== null;
}

function need(): MetaAddon {
  const a = native();
  if (a === null) throw xattrsUnsupported();
  return a;
}

/** Names of the extended attributes of `p` (not following a last symlink unless `follow`). */
export function listXattrs(p: string, follow: boolean): string[] {
  const r = need().xattrList(p, follow);
  if (typeof r === 'number') {
    if (r === -(osConstants.errno.ENOTSUP ?? 95)) return [];
    throw sysError(r, 'listxattr', p);
  }
  return r.toString('utf8').split('\0').filter((n) => n !== '');
}

/** The value of one attribute, or null when it is gone. */
export function getXattr(p: string, name: string, follow: boolean): Buffer | null {
  const r = need().xattrGet(p, name, follow);
  if (typeof r === 'number') {
    if (r === -(osConstants.errno.ENODATA ?? 61)) return null;
    throw sysError(r, 'getxattr', p);
  }
  return r;
}

export function setXattr(p: string, name: string, value: Buffer, follow: boolean): void {
  const r = need().xattrSet(p, name, value, follow);
  if (r !== 0) throw sysError(r, 'setxattr', p);
}

export function removeXattr(p: string, name: string, follow: boolean): void {
  const r = need().xattrRemove(p, name, follow);
  if (r !== 0 && r !== -(osConstants.errno.ENODATA ?? 61)) throw sysError(r, 'removexattr', p);
}
