/**
 * The tree walker: turns SRC into a stream of SourceEntry (core/entry.ts), the
 * Source half of every ferry pipeline (local copy and `send`).
 *
 * Why it is built this way:
 * - Cheap per entry: on 100k small files the walk is lstat-bound. With a warm cache
 *   a synchronous lstat costs a few µs of CPU and a thread-pool lstat 10-30 µs
 *   (fs/meta-ops has the numbers), so by default ('auto') the walker calls lstat on
 *   the main thread, in chunks, yielding between chunks so copies keep flowing; if
 *   the thread turns out to block in lstat (> SLOW_STAT_US per entry, measured with
 *   /proc/thread-self/schedstat so that waiting for a busy CPU does not count: cold
 *   cache, network filesystem)
 *   it switches to the parallel form: several directories listed at once and each
 *   chunk's lstats in flight together in the thread pool.
 * - Streaming: entries come out in batches, one batch per directory chunk, as soon as
 *   they are known, so a sender can start before the walk ends. A bounded output
 *   buffer (HIGH_WATER entries) pauses the walk when the consumer is slower.
 * - Parents before children: a directory's entry is emitted (with its parent's
 *   listing) before the directory itself is listed, so every consumer sees a parent
 *   before anything inside it and can create it first.
 * - Hard links: a file with nlink > 1 is a 'file' the first time its (dev, ino) is
 *   emitted and a 'hardlink' (target = that first path) afterwards. Only emitted
 *   entries count, so an excluded first link does not leave a dangling target.
 * - Within a batch, regular files are sorted by inode number (uring-sync's
 *   "process files in disk order"); directories and links keep readdir order.
 * - Nothing follows symlinks: every stat is an lstat, symlink targets are read
 *   verbatim with readlink.
 * - A directory swapped for a symlink during the walk is not followed (issue #11,
 *   the CVE-2024-12747 class): each directory is opened (O_DIRECTORY, O_NOFOLLOW)
 *   and its fstat must show the device and inode that its lstat showed when it was
 *   listed in its parent; it is then listed, and its children lstat'ed and read,
 *   through /proc/self/fd/N/name, which resolves inside that very directory
 *   whatever happens to the path meanwhile. So the (dev, ino) recorded in every
 *   entry is that of a file inside SRC, and the readers (fs/source-file) refuse
 *   any file that is not that inode. A directory that fails the check is reported
 *   FERRY_E_CHANGED and not descended. Without /proc the names are resolved by
 *   path after the same check (a narrower window, not none).
 * - FIFOs, sockets and devices are reported through `onProblem` as
 *   FERRY_E_UNSUPPORTED (a warning) and skipped; an unreadable directory or a path
 *   over the limits is reported as FERRY_E_READ / FERRY_E_PATH (a failure) and skipped.
 * - ferry's own temp files (`.ferry-XXXXXXXX.name.part`) are skipped: they are
 *   partial data from an interrupted run.
 * - Native listing (native/fs-walk.c, when the addon is there): the checked
 *   directory fd is listed with getdents64 and every entry lstat'ed (fstatat) and
 *   its link read (readlinkat) relative to that fd, in one call per directory on a
 *   pool thread; it returns packed arrays and TypeScript applies the same rules as
 *   to its own listing (temp names, exclusion, validation, unsupported kinds, the
 *   not-UTF-8 report), in the same order (names sorted by bytes, as libuv's
 *   scandir sorts them), so both give the same entries. `native: false` (or
 *   FERRY_NATIVE=0) selects the readdir + lstat path.
 * - Paired listing (`peer`, the local copy): the same native call also lstats every
 *   listed name in the destination directory of the same path (relative to the
 *   writer's verified descriptor), and a regular file's entry carries that record.
 *   A no-op re-run's quick check then costs no call of its own; the copy still
 *   judges each record (fs/safe-writer quickCheckPeer).
 *
 * The trailing-slash rule (rsync's) is applied by `resolveSource`: `SRC/` (and `SRC/.`
 * and `.`) yields the contents of SRC (prefix ''), `SRC` yields SRC itself under its own name (prefix =
 * basename(SRC)), and a single file yields one entry.
 *
 * Shared API (stable):
 *   resolveSource(operand): Promise<SourceRoot>
 *   walk(root: SourceRoot, opts): AsyncGenerator<SourceEntry[]>   (batches)
 *   entryFromStat(path, absPath, st, target?): SourceEntry
 */
import {
  closeSync,
  constants as C,
  fstat as fstatCb,
  fstatSync,
  lstatSync,
  open as openCb,
  openSync,
  promises as fsp,
  readFileSync,
  readlinkSync,
  realpathSync,
  statSync,
  type BigIntStats,
} from 'node:fs';
import { promisify } from 'node:util';
import { constants as osConstants } from 'node:os';
import path from 'node:path';
import type { SourceEntry } from '../core/entry.js';
import { errnoError, ErrorCodes, FerryError, fromSystemError } from '../core/errors.js';
import type { ExcludeFn } from './exclude.js';
import { pathDepth, validateLinkTarget, validateRelativePath } from './path-safety.js';
import { MAX_NAME_BYTES, MAX_PATH_BYTES, MAX_PATH_DEPTH } from '../core/limits.js';
import { isFerryTempName } from './temp-names.js';
import { metaOps } from './meta-ops.js';
import { fdPath } from './source-file.js';
import { fsWalkAddon, type FsWalkAddon } from '../native/index.js';

export interface SourceRoot {
  /** Absolute path of SRC as given (trailing slash removed). */
  absPath: string;
  /** 'dir' or 'file' (a symlink operand counts as a file: it is copied as a link). */
  kind: 'dir' | 'file';
  /**
   * Prefix of every relative path: '' for `SRC/` (contents only), basename(SRC) for
   * `SRC` without a trailing slash and for single files.
   */
  prefix: string;
}

export interface WalkOptions {
  exclude?: ExcludeFn;
  /** lstat calls in flight per directory (default 64). */
  concurrency?: number;
  /** Directories listed at once (default 4). */
  dirConcurrency?: number;
  /** Per-entry problems: FERRY_E_UNSUPPORTED is a warning, anything else a failure. */
  onProblem?: (e: FerryError) => void;
  /**
   * How lstat/readdir/readlink run (fs/meta-ops): 'sync' on the main thread, 'async'
   * in the thread pool, 'auto' (default) synchronous until a chunk averages more than
   * SLOW_STAT_US per entry (cold cache, network filesystem), then async for the rest.
   */
  statMode?: 'auto' | 'sync' | 'async';
  /**
   * `-x/--one-file-system`: a directory on another device than SRC is emitted (an
   * empty mount point in DST, rsync's rule) but not entered.
   */
  oneFileSystem?: boolean;
  /**
   * `-L/--copy-links`: a symlink is replaced by what it points to (stat, not lstat):
   * a file's content, a directory's tree. A dangling link is a FERRY_E_READ failure
   * naming it; a link back to a directory above it (a loop) likewise.
   */
  followLinks?: boolean;
  /** List directories with the native addon when it is there (default true). */
  native?: boolean;
  /**
   * The local copy's paired listing: the destination directory matching source
   * directory `rel` (pinned until release()), or null. Where the native listing runs,
   * each listed name is lstat'ed there too, in the same call, and a regular file's
   * entry carries that record as `peer` (its quick check, decided by the caller).
   */
  peer?: (rel: string) => { fd: number; release: () => void } | null;
  /** Entries listed ahead of the consumer before the walk pauses (default HIGH_WATER). */
  highWater?: number;
  /** Tests: called before each directory below the root is opened to be listed. */
  beforeListDir?: (rel: string, absPath: string) => Promise<void> | void;
}

/** Above this average time blocked per lstat (µs) the 'auto' walker goes parallel. */
export const SLOW_STAT_US = 50;
const STAT_WINDOW = 1024;

/**
 * Nanoseconds the calling thread spent blocked (not running, not waiting for a CPU):
 * wall time minus /proc/thread-self/schedstat's on-CPU and run-queue times. On a busy
 * machine wall time alone would mistake waiting for a CPU for slow I/O. Returns a
 * function that measures from now; null where schedstat is unavailable.
 */
function blockedTimer(): (() => number) | null {
  const read = (): [number, number] | null => {
    try {
      const [run, wait] = readFileSync('/proc/thread-self/schedstat', 'latin1').split(' ');
      return [Number(run), Number(wait)];
    } catch {
      return null;
    }
  };
  const a = read();
  if (a === null) return null;
  const t0 = process.hrtime.bigint();
  return () => {
    const b = read();
    const wall = Number(process.hrtime.bigint() - t0);
    return b === null ? wall : wall - (b[0] - a[0]) - (b[1] - a[1]);
  };
}

const HIGH_WATER = 16384;

const DIR_FLAGS = C.O_RDONLY | C.O_DIRECTORY | C.O_NONBLOCK;
const openAsync = promisify(openCb);
const fstatAsync = promisify(fstatCb) as (fd: number, o: { bigint: true }) => Promise<BigIntStats>;

/** Device and inode of a directory as its parent's listing saw it. */
interface DirId {
  dev: bigint;
  ino: bigint;
}

/** The directories above one being listed (only kept with followLinks: loop detection). */
interface Ancestry {
  id: DirId;
  up: Ancestry | null;
}

function inAncestry(a: Ancestry | null, id: DirId): boolean {
  for (let x = a; x !== null; x = x.up) if (x.id.dev === id.dev && x.id.ino === id.ino) return true;
  return false;
}

/**
 * Open a directory to list it, and check that it is the one `id` names. Returns
 * the fd, or a FerryError (not thrown) when it is not or cannot be opened. The
 * root may be reached through a symlink (`SRC/`, rsync's rule); no other may.
 */
async function openDir(abs: string, rel: string, id: DirId, isRoot: boolean, sync: boolean): Promise<number | FerryError> {
  const flags = isRoot ? DIR_FLAGS : DIR_FLAGS | C.O_NOFOLLOW;
  let fd: number;
  try {
    fd = sync ? openSync(abs, flags) : await openAsync(abs, flags);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ELOOP' || code === 'ENOTDIR') {
      return new FerryError(ErrorCodes.CHANGED, `${rel}: changed during the transfer (no longer a directory: ${code}); not copied`, { subject: rel });
    }
    return fromSystemError(e, 'read', rel);
  }
  try {
    const st = sync ? fstatSync(fd, { bigint: true }) : await fstatAsync(fd, { bigint: true });
    if (st.dev === id.dev && st.ino === id.ino) return fd;
    const msg = `${rel}: changed during the transfer (another directory than the one listed: was it replaced?); not copied`;
    closeSync(fd);
    return new FerryError(ErrorCodes.CHANGED, msg, { subject: rel });
  } catch (e) {
    closeSync(fd);
    return fromSystemError(e, 'read', rel);
  }
}

/**
 * Apply rsync's trailing-slash rule to the SRC operand. Throws FERRY_E_SRC_MISSING
 * when SRC does not exist.
 */
export async function resolveSource(operand: string, opts: { followLinks?: boolean } = {}): Promise<SourceRoot> {
  // rsync: `SRC/`, `SRC/.` and `.` all mean "the contents of".
  const trailing = (operand.length > 1 && operand.endsWith('/')) || operand === '.' || operand.endsWith('/.');
  const absPath = path.resolve(operand);
  let st;
  try {
    st = await fsp.lstat(absPath);
  } catch (e) {
    const errno = (e as NodeJS.ErrnoException).code;
    if (errno === 'ENOENT' || errno === 'ENOTDIR') {
      throw new FerryError(ErrorCodes.SRC_MISSING, `${operand}: source does not exist`, { subject: operand, cause: e });
    }
    throw fromSystemError(e, 'read', operand);
  }
  // `SRC/` where SRC is a symlink to a directory: like rsync, follow that one link.
  if (st.isSymbolicLink() && (trailing || opts.followLinks === true)) {
    try {
      st = await fsp.stat(absPath);
    } catch (e) {
      throw new FerryError(ErrorCodes.SRC_MISSING, `${operand}: source does not exist`, { subject: operand, cause: e });
    }
  }
  if (st.isDirectory()) {
    if (trailing || absPath === '/') return { absPath, kind: 'dir', prefix: '' };
    return { absPath, kind: 'dir', prefix: path.basename(absPath) };
  }
  return { absPath, kind: 'file', prefix: path.basename(absPath) };
}

export function entryFromStat(relPath: string, absPath: string, st: BigIntStats, target?: string): SourceEntry {
  const kind = st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'file';
  const e: SourceEntry = {
    path: relPath,
    kind,
    size: kind === 'file' ? Number(st.size) : 0,
    mode: Number(st.mode & 0o7777n),
    mtimeNs: st.mtimeNs,
    absPath,
    ino: st.ino,
    dev: st.dev,
    nlink: Number(st.nlink),
    allocated: Number(st.blocks) * 512,
    uid: Number(st.uid),
    gid: Number(st.gid),
  };
  if (target !== undefined) e.target = target;
  return e;
}

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;
/** Per entry in listDir's arrays (native/fs-walk.c). */
const NUMS = 10;
const BIGS = 3;


function isSupported(st: BigIntStats): boolean {
  return st.isFile() || st.isDirectory() || st.isSymbolicLink();
}

async function makeEntry(rel: string, abs: string, st: BigIntStats, readlink: (p: string) => Promise<string>): Promise<SourceEntry> {
  validateRelativePath(rel);
  if (st.isSymbolicLink()) {
    let target: string;
    try {
      target = await readlink(abs);
    } catch (e) {
      throw fromSystemError(e, 'read', rel);
    }
    return entryFromStat(rel, abs, st, validateLinkTarget(target, rel));
  }
  return entryFromStat(rel, abs, st);
}

/**
 * `-L`: what a symlink points to, and its real path (the readers open that with
 * O_NOFOLLOW and check it is this very inode). A dangling link is a failure naming it
 * (thrown, reported by the caller).
 */
function followLink(rel: string, via: string): [BigIntStats, string] {
  try {
    return [statSync(via, { bigint: true }), realpathSync(via)];
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'error';
    throw new FerryError(ErrorCodes.READ, `${rel}: symlink points to nothing (${code}); -L/--copy-links cannot copy it`, { subject: rel, cause: e });
  }
}

function unsupported(rel: string): FerryError {
  return new FerryError(ErrorCodes.UNSUPPORTED, `${rel}: skipped (FIFO, socket or device file)`, { subject: rel });
}

/**
 * Walk a resolved source. Yields batches of entries; parents always come before
 * their children. Per-entry problems go to `opts.onProblem`, never thrown.
 */
export async function* walk(root: SourceRoot, opts: WalkOptions = {}): AsyncGenerator<SourceEntry[]> {
  const exclude = opts.exclude ?? ((): boolean => false);
  const chunk = Math.max(1, opts.concurrency ?? 64);
  const dirConcurrency = Math.max(1, opts.dirConcurrency ?? 4);
  const highWater = Math.max(1, opts.highWater ?? HIGH_WATER);
  const report = opts.onProblem ?? ((): void => {});
  const seenInodes = new Map<string, string>();
  const statMode = opts.statMode ?? 'auto';
  const follow = opts.followLinks === true;
  let ops = metaOps(statMode !== 'async');
  const nativeWalk: FsWalkAddon | undefined = opts.native === false || follow ? undefined : fsWalkAddon();
  let windowBlockedNs = 0;
  let windowEntries = 0;

  // Hard-link detection happens on the consumer side, in emission order.
  function linkify(batch: SourceEntry[]): SourceEntry[] {
    for (const e of batch) {
      if (e.kind !== 'file' || e.nlink < 2) continue;
      const key = `${e.dev}:${e.ino}`;
      const first = seenInodes.get(key);
      if (first === undefined) seenInodes.set(key, e.path);
      else {
        e.kind = 'hardlink';
        e.target = first;
        e.size = 0;
      }
    }
    return batch;
  }

  // The root itself.
  let rootSt: BigIntStats;
  try {
    rootSt = await fsp.lstat(root.absPath, { bigint: true });
    if ((root.kind === 'dir' || follow) && rootSt.isSymbolicLink()) rootSt = await fsp.stat(root.absPath, { bigint: true });
  } catch (e) {
    throw new FerryError(ErrorCodes.SRC_MISSING, `${root.absPath}: source does not exist`, { subject: root.absPath, cause: e });
  }
  if (root.kind === 'file') {
    if (!isSupported(rootSt)) {
      report(unsupported(root.prefix));
      return;
    }
    try {
      yield [await makeEntry(root.prefix, root.absPath, rootSt, (p) => fsp.readlink(p))];
    } catch (e) {
      report(e instanceof FerryError ? e : fromSystemError(e, 'read', root.prefix));
    }
    return;
  }
  if (root.prefix !== '') {
    yield [entryFromStat(validateRelativePath(root.prefix), root.absPath, rootSt)];
  }

  // Parallel breadth-first listing with a bounded output buffer.
  const rootDev = rootSt.dev;
  const dirQueue: Array<{ rel: string; abs: string; id: DirId; isRoot: boolean; up: Ancestry | null }> = [
    { rel: root.prefix, abs: root.absPath, id: { dev: rootSt.dev, ino: rootSt.ino }, isRoot: true, up: null },
  ];
  const out: SourceEntry[][] = [];
  let buffered = 0;
  let active = 0;
  let wakeConsumer: (() => void) | null = null;
  let wakeProducers: Array<() => void> = [];
  let fatal: unknown = null;
  // The consumer stopped early (return() or an error in its loop): parked producers
  // wake and leave, closing their directories; no new directory is opened.
  let stopped = false;

  const notify = (): void => {
    const w = wakeConsumer;
    wakeConsumer = null;
    w?.();
  };
  const emit = async (batch: SourceEntry[]): Promise<void> => {
    if (batch.length === 0) return;
    out.push(batch);
    buffered += batch.length;
    notify();
    while (buffered > highWater && !stopped) await new Promise<void>((r) => wakeProducers.push(r));
    if (stopped) throw WALK_STOPPED;
  };

  // One child: null when skipped (excluded, vanished, unsupported, failed).
  const classify = (childRel: string, st: BigIntStats): boolean => {
    if (!isSupported(st)) {
      if (!exclude(childRel, false)) report(unsupported(childRel));
      return false;
    }
    return !exclude(childRel, st.isDirectory());
  };
  const childFailed = (childRel: string, e: unknown): null => {
    // A name that vanished between readdir and lstat is not an error (rsync's "vanished"),
    // except when the name is not valid UTF-8: Node decodes it lossily (U+FFFD), so it
    // can never be found again. Reported, never skipped in silence.
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && childRel.includes('\ufffd')) {
      report(new FerryError(ErrorCodes.READ, `${childRel}: file name is not valid UTF-8; not copied`, { subject: childRel }));
    } else if (code !== 'ENOENT') {
      report(e instanceof FerryError ? e : fromSystemError(e, 'read', childRel));
    }
    return null;
  };

  // The synchronous form runs start to end without yielding, so the time it spends
  // blocked is its own: measured for 'auto', which goes async when it is high.
  // `via` names the directory for system calls (/proc/self/fd/N, see the essay);
  // `abs` is its path, recorded in the entries for messages and for the readers.
  const statChunkSync = (rel: string, abs: string, via: string, slice: string[]): Array<SourceEntry | null> => {
    const blocked = statMode === 'auto' ? blockedTimer() : null;
    const out: Array<SourceEntry | null> = [];
    for (const name of slice) {
      if (isFerryTempName(name)) continue;
      const childRel = rel === '' ? name : `${rel}/${name}`;
      const childAbs = `${abs}/${name}`;
      const childVia = `${via}/${name}`;
      try {
        let st = lstatSync(childVia, { bigint: true });
        let at = childAbs;
        if (follow && st.isSymbolicLink()) [st, at] = followLink(childRel, childVia);
        if (!classify(childRel, st)) continue;
        validateRelativePath(childRel);
        const target = st.isSymbolicLink() ? validateLinkTarget(readlinkSync(childVia), childRel) : undefined;
        out.push(entryFromStat(childRel, at, st, target));
      } catch (e) {
        out.push(childFailed(childRel, e));
      }
    }
    if (blocked) {
      // Judge over windows of STAT_WINDOW entries: one slow chunk (a page fault, a
      // journal commit) must not turn the whole walk async.
      windowBlockedNs += blocked();
      windowEntries += slice.length;
      if (windowEntries >= STAT_WINDOW) {
        if (windowBlockedNs / 1000 / windowEntries > SLOW_STAT_US) ops = metaOps(false);
        windowBlockedNs = 0;
        windowEntries = 0;
      }
    }
    return out;
  };

  const statChunkAsync = (rel: string, abs: string, via: string, slice: string[]): Promise<Array<SourceEntry | null>> =>
    Promise.all(
      slice.map(async (name): Promise<SourceEntry | null> => {
        if (isFerryTempName(name)) return null;
        const childRel = rel === '' ? name : `${rel}/${name}`;
        const childAbs = `${abs}/${name}`;
        const childVia = `${via}/${name}`;
        try {
          let st = await fsp.lstat(childVia, { bigint: true });
          let at = childAbs;
          if (follow && st.isSymbolicLink()) [st, at] = followLink(childRel, childVia);
          if (!classify(childRel, st)) return null;
          return await makeEntry(childRel, at, st, () => fsp.readlink(childVia));
        } catch (e) {
          return childFailed(childRel, e);
        }
      }),
    );

  const listDir = async (rel: string, abs: string, id: DirId, isRoot: boolean, up: Ancestry | null): Promise<void> => {
    if (!isRoot && opts.beforeListDir) await opts.beforeListDir(rel, abs);
    if (follow && inAncestry(up, id)) {
      report(new FerryError(ErrorCodes.READ, `${rel}: symlink loop (-L/--copy-links): it leads back to a directory above it; not copied`, { subject: rel }));
      return;
    }
    // With -L a directory may be reached through a symlink: the identity check still holds.
    const fd = await openDir(abs, rel === '' ? abs : rel, id, isRoot || follow, ops.sync);
    if (fd instanceof FerryError) {
      report(fd);
      return;
    }
    try {
      if (nativeWalk) await listOpenDirNative(rel, abs, fd, nativeWalk, opts.peer?.(rel) ?? null);
      else await listOpenDir(rel, abs, fdPath(fd) ?? abs, follow ? { id, up } : null);
    } finally {
      closeSync(fd);
    }
  };
  // Emit one chunk's entries (files in inode order) and queue its directories.
  // -x: a directory on another device is emitted (an empty mount point) but not entered;
  // -L: each queued directory remembers its ancestry (loop detection).
  const emitChunk = async (results: Array<SourceEntry | null>, self: Ancestry | null): Promise<void> => {
    const batch: SourceEntry[] = [];
    const files: SourceEntry[] = [];
    for (const e of results) {
      if (e === null) continue;
      if (e.kind === 'file') files.push(e);
      else batch.push(e);
      if (e.kind === 'dir' && !(opts.oneFileSystem === true && e.dev !== rootDev)) {
        dirQueue.push({ rel: e.path, abs: e.absPath, id: { dev: e.dev, ino: e.ino }, isRoot: false, up: self });
      }
    }
    files.sort((a, b) => (a.ino < b.ino ? -1 : a.ino > b.ino ? 1 : 0));
    // The batch is queued synchronously by emit(), before any child directory
    // can be listed: parents stay ahead of their children.
    const queued = emit(batch.concat(files));
    pump();
    await queued;
  };
  // The same rules as statChunkSync, on the native listing of the checked fd (lstat
  // only: not used with -L, whose symlinks are stat()ed through statChunk*).
  const listOpenDirNative = async (rel: string, abs: string, fd: number, addon: FsWalkAddon, peer: { fd: number; release: () => void } | null): Promise<void> => {
    let names: Buffer, nums: Float64Array, big: BigInt64Array, peerNums: Float64Array | undefined, peerBig: BigInt64Array | undefined;
    try {
      [names, nums, big, peerNums, peerBig] = await (peer === null ? addon.listDir(fd) : addon.listDir(fd, peer.fd));
    } catch (e) {
      const errno = (e as { errno?: number }).errno ?? 5;
      report(fromSystemError(errnoError(errno, 'scandir', abs), 'read', rel === '' ? abs : rel));
      return;
    } finally {
      peer?.release();
    }
    const n = nums.length / NUMS;
    // A listed name has no '/' or NUL and is neither '.' nor '..', a temp name is skipped
    // below, and the directory's own path passed validateRelativePath: a child path needs
    // the whole check only when it could break a length or depth limit.
    const relBytes = rel === '' ? 0 : Buffer.byteLength(rel, 'utf8') + 1;
    const depthOk = (rel === '' ? 1 : pathDepth(rel) + 1) <= MAX_PATH_DEPTH;
    for (let i = 0; i < n; i += chunk) {
      const out: Array<SourceEntry | null> = [];
      for (let j = i; j < n && j < i + chunk; j++) {
        const o = NUMS * j;
        const start = nums[o]!;
        const len = nums[o + 1]!;
        const name = names.toString('utf8', start, start + len);
        if (isFerryTempName(name)) continue;
        const childRel = rel === '' ? name : `${rel}/${name}`;
        const childAbs = `${abs}/${name}`;
        // A name that is not valid UTF-8 cannot be written back under the same bytes:
        // reported as the readdir path reports it (it meets ENOENT there).
        if (name.includes('\ufffd') && !names.subarray(start, start + len).equals(Buffer.from(name, 'utf8'))) {
          out.push(childFailed(childRel, errnoError(osConstants.errno.ENOENT, 'lstat', childAbs)));
          continue;
        }
        const err = nums[o + 7]!;
        if (err !== 0) {
          out.push(childFailed(childRel, errnoError(err, 'lstat', childAbs)));
          continue;
        }
        const mode = nums[o + 3]!;
        const type = mode & S_IFMT;
        const isDir = type === S_IFDIR;
        if (type !== S_IFREG && !isDir && type !== S_IFLNK) {
          if (!exclude(childRel, false)) report(unsupported(childRel));
          continue;
        }
        if (exclude(childRel, isDir)) continue;
        try {
          if (len > MAX_NAME_BYTES || relBytes + len > MAX_PATH_BYTES || !depthOk) validateRelativePath(childRel);
          const kind = isDir ? 'dir' : type === S_IFLNK ? 'symlink' : 'file';
          const b = BIGS * j;
          const ino = big[b + 2]!;
          const dev = big[b + 1]!;
          const e: SourceEntry = {
            path: childRel,
            kind,
            size: kind === 'file' ? nums[o + 4]! : 0,
            mode: mode & 0o7777,
            mtimeNs: big[b]!,
            absPath: childAbs,
            ino: ino < 0n ? BigInt.asUintN(64, ino) : ino,
            dev: dev < 0n ? BigInt.asUintN(64, dev) : dev,
            nlink: nums[o + 5]!,
            allocated: nums[o + 6]! * 512,
            uid: nums[o + 8]!,
            gid: nums[o + 9]!,
          };
          if (kind === 'symlink') {
            const t0 = start + len;
            e.target = validateLinkTarget(names.toString('utf8', t0, t0 + Math.max(0, nums[o + 2]!)), childRel);
          } else if (kind === 'file' && peerNums !== undefined && peerBig !== undefined) {
            const errno = peerNums[o + 7]!;
            e.peer =
              errno === 0
                ? { errno, mode: peerNums[o + 3]!, size: peerNums[o + 4]!, mtimeNs: peerBig[b]!, uid: peerNums[o + 8]!, gid: peerNums[o + 9]! }
                : { errno, mode: 0, size: 0, mtimeNs: 0n, uid: 0, gid: 0 };
          }
          out.push(e);
        } catch (x) {
          out.push(childFailed(childRel, x));
        }
      }
      await emitChunk(out, null);
    }
  };
  const listOpenDir = async (rel: string, abs: string, via: string, self: Ancestry | null): Promise<void> => {
    let names: string[];
    try {
      names = await ops.readdir(via);
    } catch (e) {
      report(fromSystemError(e, 'read', rel === '' ? abs : rel));
      return;
    }
    for (let i = 0; i < names.length; i += chunk) {
      const slice = names.slice(i, i + chunk);
      await emitChunk(ops.sync ? statChunkSync(rel, abs, via, slice) : await statChunkAsync(rel, abs, via, slice), self);
    }
  };

  function pump(): void {
    while (!stopped && active < dirConcurrency && dirQueue.length > 0) {
      const d = dirQueue.shift()!;
      active++;
      listDir(d.rel, d.abs, d.id, d.isRoot, d.up)
        .catch((e: unknown) => {
          if (e !== WALK_STOPPED) fatal = e;
        })
        .finally(() => {
          active--;
          pump();
          notify();
        });
    }
  }
  const wakeAll = (): void => {
    const ws = wakeProducers;
    wakeProducers = [];
    for (const w of ws) w();
  };
  pump();

  try {
    while (true) {
      if (fatal !== null) throw fatal;
      const batch = out.shift();
      if (batch !== undefined) {
        buffered -= batch.length;
        if (buffered <= highWater) wakeAll();
        yield linkify(batch);
        continue;
      }
      if (active === 0 && dirQueue.length === 0) return;
      await new Promise<void>((r) => {
        wakeConsumer = r;
      });
    }
  } finally {
    stopped = true;
    wakeAll();
  }
}

/** Thrown inside a producer parked in emit() when the consumer has stopped. */
const WALK_STOPPED = new Error('walk stopped');

/** Convenience: all entries, flattened (tests, small trees). */
export async function walkAll(root: SourceRoot, opts: WalkOptions = {}): Promise<SourceEntry[]> {
  const all: SourceEntry[] = [];
  for await (const b of walk(root, opts)) all.push(...b);
  return all;
}
