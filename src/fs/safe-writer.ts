/**
 * The Sink: the only code that writes into DST, for local copy and network receive.
 *
 * It follows SECURITY.md ("Threat model") because the same writer will publish
 * files from an untrusted peer:
 * - Every relative path passes fs/path-safety first; every write lands inside DST.
 * - Symlinks already in DST are never followed, and a directory of DST swapped for a
 *   symlink while ferry runs redirects nothing. Each directory is opened once, through
 *   its parent's descriptor, with O_NOFOLLOW|O_DIRECTORY (fs/dir-handles), starting at
 *   DST's own: a symlink or a non-directory there is refused (FERRY_E_PATH). Every
 *   later operation in it (create the temp file, rename, unlink, rmdir, mkdir,
 *   symlink, lstat, readlink, readdir) names `/proc/self/fd/N/name`, which the kernel
 *   resolves inside that very directory wherever it has been moved, and a
 *   directory's own mode and times are set through `/proc/self/fd/N` (its inode,
 *   never a name). The native copier gets the descriptor itself (openat/renameat).
 *   So a local user (or a concurrent process) who can write inside DST and swaps a
 *   checked directory for a symlink to `/etc` between ferry's check and its write
 *   gets the write in the renamed real directory, inside DST, or a refusal; never
 *   outside DST (issue #11). A directory *entry* whose name is taken by a symlink or
 *   file in DST replaces it (unlink, then mkdir), like rsync -a.
 * - --delete removes a directory by opening it through its parent like any other,
 *   emptying it through its own descriptor, then rmdir; a symlink is unlinked.
 * - Temp files are created with O_CREAT|O_EXCL|O_NOFOLLOW in their directory's
 *   descriptor; the local copy then has the kernel copy into that open file (through
 *   /proc/self/fd) and sets mode and times on its descriptor. The final name is
 *   replaced with rename(2), which replaces a symlink rather than following it.
 * - Symlinks are created last, in finish(), so no link made by this transfer can
 *   redirect a later write; then directory modes and mtimes are set, deepest first.
 * - setuid/setgid/sticky bits are stripped unless `preserveSpecialBits` is set, and
 *   the `umask` option (recv: the process umask) is cleared from every file's and
 *   directory's mode alike.
 * - --inplace rewrites an existing regular file under its own name, opened O_NOFOLLOW
 *   in its verified directory (no atomic publish, rsync's trade-off); --partial-dir
 *   keeps temp files in a directory of that name inside each target directory, opened
 *   through its parent like any other; --link-dest links into the verified directory
 *   under a temp name, checks the inode, then renames.
 * Without /proc there is no way to name a descriptor in a path from Node (it has no
 * openat): open() fails closed with FERRY_E_UNSUPPORTED rather than fall back to
 * racy path checks (SECURITY.md). The owner of a SafeWriter calls close() at the end.
 *
 * Atomic publish: a file is written to `.ferry-<8 hex>.<name>.part` (fs/temp-names)
 * in its target directory and renamed into place only after its data, mode and
 * mtime are set and its size is checked against the entry's (FERRY_E_INTEGRITY
 * otherwise), so a final name never holds a truncated or overlong file, even after
 * kill -9 or over a longer leftover temp file.
 * The temp name is deterministic so a resumed run finds it: `beginFile(e, {resume:
 * true})` keeps it and `existingPrefix()` reports its length; otherwise a leftover
 * is removed and the file is started afresh. finish() also removes ferry temp files
 * left in every directory this session wrote into.
 *
 * Times: set with nanoseconds (futimens on the temp file's descriptor, utimensat
 * without following for symlinks, utimensat through the directory's own descriptor
 * for directories) through fs/meta-native, and the quick check compares them
 * exactly. Without the native addon libuv keeps whole microseconds; the quick check
 * then also accepts what utimes stores for the source's time (fs/meta-native
 * `storedMtimeNs`), so a second run skips everything. atime is set equal to mtime.
 *
 * Sparse files: libuv's copyfile (copy_file_range) fills holes on ext4 (measured: a
 * 50 MiB file with 8 KiB allocated came out fully allocated), so a file whose
 * allocated size is below its size is copied by `copyReadWrite` with `sparse`: only
 * the source's data extents (SEEK_DATA/SEEK_HOLE, fs/sparse) are read and written,
 * or without the native addon only non-zero blocks, then ftruncate to size.
 *
 * Shared API (stable):
 *   const w = await SafeWriter.open(dstRoot, opts)
 *   await w.mkdir(entry);  await w.quickCheck(entry) -> 'same' | 'differs' | 'missing'
 *   const t = await w.beginFile(entry, {resume?}); t.write(buf, offset) / t.copyFrom(src)
 *   await t.existingPrefix(); await t.commit(); await t.abort()
 *   await w.hardlink(entry);  w.symlink(entry) (queued);  await w.remove(relPath)
 *   await w.listDir(relPath);  await w.finish({onEntry}) -> per-entry errors;  w.close()
 *   await w.withEntryPath(rel, (p) => hashFile(p))   // read a DST file (--checksum)
 */
import {
  chmodSync,
  chownSync,
  closeSync,
  constants as C,
  fchmodSync,
  fchownSync,
  fstatSync,
  fsyncSync,
  lchownSync,
  lstatSync,
  mkdirSync,
  openSync,
  promises as fsp,
  read as readCb,
  type BigIntStats,
} from 'node:fs';
import { promisify } from 'node:util';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { constants as osConstants } from 'node:os';
import type { Entry, PeerStat } from '../core/entry.js';
import { ErrorCodes, FerryError, fromSystemError } from '../core/errors.js';
import { baseOf, parentOf, pathDepth, validateHardlinkTarget, validateLinkTarget, validateRelativePath } from './path-safety.js';
import { isFerryTempName, openTempSync, tempNameFor } from './temp-names.js';
import { metaOps, type MetaOps } from './meta-ops.js';
import { fdPath } from './source-file.js';
import { hashHandlePrefix } from './checksum.js';
import { DirHandles, type DirNode } from './dir-handles.js';
import { dataExtents, mtimesEqual, setTimesFd, setTimesPath, storedMtimeNs } from './meta-native.js';
import { dataRuns } from './sparse.js';
import { startWriteback, WRITE_BEHIND_BYTES } from './write-behind.js';
import { DIRECT_MIN_BYTES, DirectFile } from './direct-io.js';
import { ST_ERRNO, ST_GID, ST_MODE, ST_SIZE, ST_UID, STAT_BIGS, STAT_NUMS, statNames } from './stat-batch.js';
import { allowedXattrs, applyXattrs, readXattrs, xattrsEqual, type XattrPolicy, type Xattrs } from './xattrs.js';

/**
 * The quick check's verdict on one entry against DST:
 *   same     nothing to do;
 *   meta     the content is right (same size and mtime; a symlink with the same
 *            target) but mode, owner, attributes or times differ: `fixMetadata`
 *            mends it in place;
 *   touched  a file of the same size whose mtime differs: its content is unknown,
 *            the caller may compare it (--checksum, or reading both sides) and then
 *            fix the metadata in place, or copy it;
 *   differs  copy it;  missing  create it.
 * Callers that only know 'same' treat every other verdict as "copy": always safe.
 */
export type QuickCheck = 'same' | 'meta' | 'touched' | 'differs' | 'missing';

/** Where a batched copy publishes a regular file (see SafeWriter.fileTarget). */
export interface FileTarget {
  /** The parent directory's verified descriptor (fs/dir-handles), pinned open until release(). */
  dirFd: number;
  release: () => void;
  /** The final name; the temp name, if one is needed, is tempNameFor(name) (fs/temp-names). */
  name: string;
  mode: number;
}

const readAsync = promisify(readCb);


export interface SafeWriterOptions {
  /** Keep setuid/setgid/sticky bits (default: strip them). */
  preserveSpecialBits?: boolean;
  /**
   * Bits cleared from every mode the entries carry, files and directories alike
   * (default 0: modes kept exactly, like cp -a). `ferry recv` passes its process
   * umask, so a sender cannot make DST's files or directories world-writable.
   */
  umask?: number;
  /** fsync each file before rename (default false, like cp). */
  fsync?: boolean;
  /**
   * Start the disk writing each large file written through `TempFile.write` every
   * WRITE_BEHIND_BYTES, while the rest arrives (native sync_file_range; nothing
   * without the addon). For the network receiver, whose bytes come slower than the
   * disk takes them: otherwise the whole dataset sits dirty in memory until the
   * flusher threads or the user's `sync` get to it. Not for local copies, where the
   * copy outruns the disk and early writeback only adds seeks.
   */
  writeBehind?: boolean;
  /**
   * Write files of at least DIRECT_MIN_BYTES with O_DIRECT where the filesystem allows
   * it (fs/direct-io.ts; buffered, with write-behind, where it does not). For the
   * network receiver: its big files' bytes are not read again, so the page cache only
   * costs a copy and pages to find and write back.
   */
  directWrites?: boolean;
  /** Do not create DST if it is missing (dry runs). */
  dryRun?: boolean;
  /** Buffer size for the read/write and sparse copy paths (default 128 KiB). */
  chunkSize?: number;
  /** Use read/write instead of copy_file_range for every file (--no-splice). */
  readWrite?: boolean;
  /** Metadata calls on the main thread (default true; see fs/meta-ops). */
  syncMetadata?: boolean;
  /**
   * Keep the entries' numeric owner (uid) and group (gid): `ferry copy` as root by
   * default, like cp -a and rsync -a; as non-root only when asked (-o/-g), and then
   * only where the kernel permits (a group the user belongs to): EPERM is ignored,
   * as rsync does. Entries without uid/gid are left to the process's own.
   */
  owners?: { uid: boolean; gid: boolean };
  /**
   * Manage extended attributes and ACLs under this policy (fs/xattrs): the entries'
   * `xattrs` are written, compared by the quick check, and managed names DST has
   * beyond them removed. Undefined: attributes are left alone.
   */
  xattrs?: XattrPolicy;
  /**
   * `--partial-dir=DIR`: temp files live in DIR inside each target directory (made on
   * demand and opened like every other directory: a real directory, never a symlink),
   * stay there when a run is cut, are resumed from there, and DIR is removed once
   * empty. One plain name (checked by open(): FERRY_E_PATH).
   */
  partialDir?: string;
}

export interface CopyOptions {
  /** Expected size (the source entry's); used to pick the sparse path. */
  size: number;
  /** Allocated bytes of the source; below size means sparse. */
  allocated?: number;
}

interface DirMeta {
  rel: string;
  mode: number;
  mtimeNs: bigint;
  /** Owner to set (-1: leave as it is). */
  uid: number;
  gid: number;
  xattrs: Xattrs | undefined;
  dirty: boolean;
}

// Time helpers live in fs/meta-native (nanoseconds natively, libuv's µs as the fallback).
export { mtimesEqual, nsToSeconds, storedMtimeNs } from './meta-native.js';

/** Linux's O_PATH (x86-64, arm64 and most others); Node does not export it. */
const O_PATH = 0o10000000;
const pathFds = new Set<number>();

/**
 * A descriptor of the regular file at `p`, never of a symlink there (O_NOFOLLOW):
 * opened for reading, or, when the mode denies that (a 0000 file as its owner), as an
 * O_PATH descriptor that /proc/self/fd/N reaches (`fdIsPath`).
 */
function openFileForMetadata(p: string): number {
  try {
    return openSync(p, C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK | C.O_NOCTTY);
  } catch (e) {
    if (errno(e) !== 'EACCES') throw e;
  }
  const fd = openSync(p, O_PATH | C.O_NOFOLLOW);
  pathFds.add(fd);
  return fd;
}

function fdIsPath(fd: number): boolean {
  return pathFds.has(fd);
}

function closeMetaFd(fd: number): void {
  pathFds.delete(fd);
  closeSync(fd);
}

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const ENOENT = osConstants.errno.ENOENT;

/** This process's effective ids, read once (each read is a system call; they do not change). */
const EUID = process.geteuid?.() ?? -1;
const EGID = process.getegid?.() ?? -1;

function isRoot(): boolean {
  return EUID === 0;
}

function errno(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | undefined)?.code;
}

export class SafeWriter {
  readonly root: string;
  readonly #opts: SafeWriterOptions;
  readonly #modeMask: number;
  /** Verified directories of DST, held open (fs/dir-handles); null when DST is missing (dry run). */
  readonly #h: DirHandles | null;
  /** Directories this session created: nothing can be in them but what we wrote. */
  readonly #fresh = new Set<string>();
  readonly #dirs = new Map<string, DirMeta>();
  readonly #touched = new Set<string>();
  readonly #symlinks: Entry[] = [];
  #rootMeta: { mode: number; mtimeNs: bigint; uid: number; gid: number; xattrs: Xattrs | undefined } | null = null;
  /** Metadata calls: synchronous or thread pool (fs/meta-ops). */
  readonly m: MetaOps;

  private constructor(root: string, opts: SafeWriterOptions, handles: DirHandles | null) {
    this.root = root;
    this.m = metaOps(opts.syncMetadata !== false);
    this.#opts = opts;
    this.#modeMask = (opts.preserveSpecialBits ? 0o7777 : 0o777) & ~(opts.umask ?? 0);
    this.#h = handles;
  }

  /**
   * Open DST. A missing DST is created (one level, like cp/rsync) unless dryRun.
   * Fails with FERRY_E_UNSUPPORTED where /proc is not mounted (fs/dir-handles).
   * The owner calls close() when done with it.
   */
  static async open(dstRoot: string, opts: SafeWriterOptions = {}): Promise<SafeWriter> {
    const root = path.resolve(dstRoot);
    let missing = false;
    try {
      const st = await fsp.stat(root); // DST itself may be a symlink to a directory: the user's choice.
      if (!st.isDirectory()) {
        throw new FerryError(ErrorCodes.WRITE, `${dstRoot}: destination exists and is not a directory`, { subject: dstRoot });
      }
    } catch (e) {
      if (e instanceof FerryError) throw e;
      if (errno(e) !== 'ENOENT') throw fromSystemError(e, 'write', dstRoot);
      if (opts.dryRun) missing = true;
      else {
        DirHandles.requireProc(dstRoot); // before creating anything
        try {
          await fsp.mkdir(root, { recursive: true, mode: 0o755 });
        } catch (e2) {
          throw fromSystemError(e2, 'write', dstRoot);
        }
      }
    }
    if (opts.partialDir !== undefined && (validateRelativePath(opts.partialDir).includes('/') || isFerryTempName(opts.partialDir))) {
      throw new FerryError(ErrorCodes.PATH, `--partial-dir ${opts.partialDir}: must be one plain directory name`, { subject: opts.partialDir });
    }
    let handles: DirHandles | null = null;
    if (!missing) {
      try {
        handles = DirHandles.open(root);
      } catch (e) {
        throw e instanceof FerryError ? e : fromSystemError(e, 'write', dstRoot);
      }
    }
    return new SafeWriter(root, opts, handles);
  }

  /** Close the directory descriptors. Nothing may be written afterwards. */
  close(): void {
    this.#h?.close();
  }

  mode(m: number): number {
    return m & this.#modeMask;
  }

  #handles(): DirHandles {
    if (this.#h === null) throw new FerryError(ErrorCodes.INTERNAL, `${this.root}: write into a destination that does not exist (dry run)`);
    return this.#h;
  }

  /**
   * The verified directory `dirRel`: each component below the nearest one already
   * verified is opened through its parent's descriptor, never following a symlink;
   * missing ones are created when `create`. Returns null when something is missing
   * and not created. Throws FERRY_E_PATH for a symlink or non-directory.
   */
  #dir(dirRel: string, create: boolean): DirNode | null {
    const h = this.#h;
    if (h === null) return null;
    const known = h.get(dirRel);
    if (known) return known;
    const parts = dirRel.split('/');
    let node = h.root;
    let k = parts.length - 1;
    for (; k > 0; k--) {
      const a = h.get(parts.slice(0, k).join('/'));
      if (a) {
        node = a;
        break;
      }
    }
    for (; k < parts.length; k++) {
      const name = parts[k]!;
      const rel = node.rel === '' ? name : `${node.rel}/${name}`;
      try {
        node = h.openChild(node, name).node;
        continue;
      } catch (e) {
        if (errno(e) !== 'ENOENT') throw this.#refuse(node, name, rel, e);
      }
      if (!create) return null;
      try {
        mkdirSync(h.at(node, name), 0o755);
      } catch (e) {
        if (errno(e) !== 'EEXIST') throw fromSystemError(e, 'write', rel);
      }
      try {
        node = h.openChild(node, name).node;
      } catch (e) {
        throw this.#refuse(node, name, rel, e);
      }
    }
    return node;
  }

  /** The error for `name` in `parent` that would not open as a directory. */
  #refuse(parent: DirNode, name: string, rel: string, e: unknown): FerryError {
    if (e instanceof FerryError) return e;
    const code = errno(e);
    if (code !== 'ENOTDIR' && code !== 'ELOOP') return fromSystemError(e, 'write', rel);
    let what = 'not a directory';
    try {
      if (lstatSync(this.#handles().at(parent, name)).isSymbolicLink()) what = 'a symlink';
    } catch {
      /* gone meanwhile */
    }
    return new FerryError(ErrorCodes.PATH, `${rel}: is ${what} in the destination; refusing to write through it`, { subject: rel });
  }

  /**
   * @internal Run `f` with the `/proc/self/fd/N` path of a verified directory, its
   * descriptor pinned (kept open) until `f` settles.
   */
  async inDir<T>(node: DirNode, f: (dir: string) => Promise<T> | T): Promise<T> {
    const h = this.#handles();
    h.pin(node);
    try {
      return await f(h.path(node));
    } finally {
      h.unpin(node);
    }
  }

  /** @internal The path of `name` in a verified directory, valid until the next await (fs/dir-handles). */
  pathIn(node: DirNode, name: string): string {
    return this.#handles().at(node, name);
  }

  /** @internal Pin a verified directory's descriptor (for the native copier's *at calls) until release(). */
  holdDir(node: DirNode): { fd: number; release: () => void } {
    const h = this.#handles();
    h.pin(node);
    let held = true;
    return {
      fd: node.fd,
      release: () => {
        if (held) h.unpin(node);
        held = false;
      },
    };
  }

  /**
   * The `/proc/self/fd/N` path of verified directory `rel`, for synchronous calls made
   * before the next await (the receiver's small-file fast path).
   */
  dirPathSync(rel: string): string {
    const d = this.#dir(rel, false);
    if (d === null) throw new FerryError(ErrorCodes.WRITE, `${rel}: directory is missing in the destination`, { subject: rel });
    return this.#handles().path(d);
  }

  /**
   * Run `f` on a path naming the DST entry `rel` inside its verified parent (pinned
   * meanwhile): for reading a file of DST (--checksum). Never creates anything.
   */
  async withEntryPath<T>(relPath: string, f: (p: string) => Promise<T>): Promise<T> {
    const rel = validateRelativePath(relPath);
    const d = this.#dir(parentOf(rel), false);
    if (d === null) throw new FerryError(ErrorCodes.WRITE, `${rel}: its directory is missing in the destination`, { subject: rel });
    return this.inDir(d, (dir) => f(`${dir}/${baseOf(rel)}`));
  }

  #markDirty(rel: string): void {
    const parent = parentOf(rel);
    this.#touched.add(parent);
    const d = this.#dirs.get(parent);
    if (d) d.dirty = true;
    else if (parent === '' && this.#rootMeta) this.#dirs.set('', { rel: '', ...this.#rootMeta, dirty: true });
  }

  /** Remember DST's own mode/mtime (and owner, attributes: see `owners`, `xattrs`) for `SRC/` copies, like rsync -a; applied in finish(). */
  setRootMetadata(mode: number, mtimeNs: bigint, owner: { uid?: number; gid?: number; xattrs?: Xattrs } = {}): void {
    const { uid, gid } = this.owner(owner);
    this.#rootMeta = { mode, mtimeNs, uid, gid, xattrs: owner.xattrs };
    this.#dirs.set('', { rel: '', mode, mtimeNs, uid, gid, xattrs: owner.xattrs, dirty: true });
  }

  /** True when the attributes at `p` are not what `e` carries (only when managing them). */
  #xattrsDiffer(p: string, follow: boolean, e: Entry): boolean {
    const pol = this.#opts.xattrs;
    if (pol === undefined || e.kind === 'symlink') return false;
    return !xattrsEqual(readXattrs(p, follow, pol), allowedXattrs(e.xattrs, pol));
  }

  /**
   * True when publishing `e` takes more than data, mode and times: a chown away from
   * this process's own ids, or extended attributes. Fast paths that do only the
   * former (the native batch copier, the receiver's small-file writer) leave such
   * entries to TempFile.commit.
   */
  needsExtraMeta(e: Entry): boolean {
    if (this.#opts.xattrs !== undefined && ((e.xattrs?.length ?? 0) > 0 || this.#opts.xattrs.acls)) return true;
    const { uid, gid } = this.owner(e);
    return (uid !== -1 && uid !== EUID) || (gid !== -1 && gid !== EGID);
  }

  /** The uid/gid to set for an entry under the `owners` policy (-1: leave it). */
  owner(e: { uid?: number; gid?: number }): { uid: number; gid: number } {
    const o = this.#opts.owners;
    return { uid: o?.uid && e.uid !== undefined ? e.uid : -1, gid: o?.gid && e.gid !== undefined ? e.gid : -1 };
  }

  /** True when `st` has the owner `e` should have under the policy. */
  #ownerMatches(st: BigIntStats, e: { uid?: number; gid?: number }): boolean {
    const { uid, gid } = this.owner(e);
    return (uid === -1 || Number(st.uid) === uid) && (gid === -1 || Number(st.gid) === gid);
  }

  /**
   * chown (by `f`, which does fchown/lchown) when the policy asks; as non-root a
   * refusal (EPERM: not our group) is ignored, like rsync. Returns true when it changed something.
   */
  chownAs(e: { uid?: number; gid?: number }, f: (uid: number, gid: number) => void): boolean {
    const { uid, gid } = this.owner(e);
    if (uid === -1 && gid === -1) return false;
    try {
      f(uid, gid);
      return true;
    } catch (x) {
      if (errno(x) === 'EPERM' && !isRoot()) return false;
      throw x;
    }
  }

  /**
   * Create (or adopt) a directory. An existing non-directory at its name (file or
   * symlink) is removed first, never followed. Mode and mtime are applied in finish().
   */
  async mkdir(entry: Entry): Promise<'created' | 'exists'> {
    const rel = validateRelativePath(entry.path);
    const h = this.#handles();
    const parent = this.#dir(parentOf(rel), true)!;
    const name = baseOf(rel);
    const want = this.mode(entry.mode);
    let node = h.get(rel);
    let st: BigIntStats | null = null;
    // In a directory this session created the name is normally free: mkdir at once
    // (one system call less per directory of a fresh tree); EEXIST takes the long way.
    if (!node && this.#fresh.has(parentOf(rel))) {
      try {
        await this.inDir(parent, (d) => this.m.mkdir(`${d}/${name}`, 0o700));
        return this.#created(parent, name, rel, entry, want);
      } catch (e) {
        if (errno(e) !== 'EEXIST') throw e instanceof FerryError ? e : fromSystemError(e, 'write', rel);
      }
    }
    try {
      if (node) {
        h.pin(node);
        try {
          st = fstatSync(node.fd, { bigint: true });
        } finally {
          h.unpin(node);
        }
      } else {
        ({ node, st } = h.openChild(parent, name));
      }
    } catch (e) {
      if (e instanceof FerryError) throw e;
      const code = errno(e);
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw fromSystemError(e, 'write', rel);
      node = undefined;
      if (code === 'ENOTDIR') {
        // A file or symlink has the name: replaced (unlinked through the parent), never followed.
        try {
          await this.inDir(parent, (d) => this.m.unlink(`${d}/${name}`));
        } catch (e2) {
          if (errno(e2) !== 'ENOENT') throw fromSystemError(e2, 'write', rel);
        }
        this.#markDirty(rel);
      }
    }
    if (node && st) {
      const have = Number(st.mode & 0o7777n);
      // Owner needs rwx while we fill it; the real mode is restored in finish().
      if ((have & 0o700) !== 0o700) {
        try {
          await this.inDir(node, (d) => this.m.chmod(d, have | 0o700));
        } catch (e) {
          throw e instanceof FerryError ? e : fromSystemError(e, 'write', rel);
        }
      }
      const existing = node;
      const xattrsDiffer = this.#opts.xattrs !== undefined && (await this.inDir(existing, async (d) => this.#xattrsDiffer(d, true, entry)));
      const dirty = have !== want || !mtimesEqual(st.mtimeNs, entry.mtimeNs) || (have & 0o700) !== 0o700 || !this.#ownerMatches(st, entry) || xattrsDiffer;
      this.#dirs.set(rel, { rel, mode: want, mtimeNs: entry.mtimeNs, ...this.owner(entry), xattrs: entry.xattrs, dirty });
      return 'exists';
    }
    try {
      await this.inDir(parent, (d) => this.m.mkdir(`${d}/${name}`, 0o700));
    } catch (e) {
      throw this.#refuse(parent, name, rel, e);
    }
    return this.#created(parent, name, rel, entry, want);
  }

  /** Open a directory just made (it must be one: a swap meanwhile is refused) and remember it. */
  #created(parent: DirNode, name: string, rel: string, entry: Entry, want: number): 'created' {
    try {
      this.#handles().openChild(parent, name);
    } catch (e) {
      throw this.#refuse(parent, name, rel, e);
    }
    this.#fresh.add(rel);
    this.#markDirty(rel);
    this.#dirs.set(rel, { rel, mode: want, mtimeNs: entry.mtimeNs, ...this.owner(entry), xattrs: entry.xattrs, dirty: true });
    return 'created';
  }

  /**
   * rsync's quick check against what DST has now, lstat only (no reads).
   * files: same size, mtime (within 1 µs) and permission bits; symlinks: same
   * target; hard links: same inode as their target; directories: exist as one.
   */
  async quickCheck(entry: Entry): Promise<QuickCheck> {
    const rel = validateRelativePath(entry.path);
    // In a directory created by this session only what we wrote can exist (saves an lstat per file).
    if (this.#fresh.has(parentOf(rel))) return 'missing';
    const dir = this.#dir(parentOf(rel), false);
    if (dir === null) return 'missing';
    return this.inDir(dir, async (d): Promise<QuickCheck> => {
      const p = `${d}/${baseOf(rel)}`;
      let st: BigIntStats;
      try {
        st = await this.m.lstat(p);
      } catch (e) {
        if (errno(e) === 'ENOENT') return 'missing';
        throw fromSystemError(e, 'write', rel);
      }
      switch (entry.kind) {
        case 'file':
          return this.#fileVerdict(st, entry, p);
        case 'dir':
          return st.isDirectory() ? 'same' : 'differs';
        case 'symlink': {
          if (!st.isSymbolicLink()) return 'differs';
          const t = await this.m.readlink(p).catch(() => null);
          if (t !== entry.target) return 'differs';
          return mtimesEqual(st.mtimeNs, entry.mtimeNs) && this.#ownerMatches(st, entry) ? 'same' : 'meta';
        }
        case 'hardlink': {
          if (!st.isFile() || entry.target === undefined) return 'differs';
          const target = validateHardlinkTarget(entry.target, rel);
          const tdir = this.#dir(parentOf(target), false);
          if (tdir === null) return 'differs';
          const tst = await this.inDir(tdir, (td) => this.m.lstat(`${td}/${baseOf(target)}`)).catch(() => null);
          return tst !== null && tst.ino === st.ino && tst.dev === st.dev ? 'same' : 'differs';
        }
      }
    });
  }

  /**
   * The quick check for a regular file without a promise, when it can be decided at
   * once (synchronous metadata mode and a parent already verified this session);
   * null otherwise: then use quickCheck(). This is the no-op run's hot path.
   */
  quickCheckSync(entry: Entry): QuickCheck | null {
    if (!this.m.sync || entry.kind !== 'file' || this.#h === null) return null;
    const rel = validateRelativePath(entry.path);
    const parent = parentOf(rel);
    if (this.#fresh.has(parent)) return 'missing';
    const dir = this.#h.get(parent);
    if (dir === undefined) return null;
    let st: BigIntStats | undefined;
    const p = this.#h.at(dir, baseOf(rel));
    try {
      st = lstatSync(p, { bigint: true, throwIfNoEntry: false });
    } catch {
      return null;
    }
    if (st === undefined) return 'missing';
    return this.#fileVerdict(st, entry, p);
  }

  /**
   * For the walk's paired listing (fs/walk `peer`): DST's verified directory `rel`,
   * opened without creating anything and pinned until release(); null when it is not
   * there yet, was created by this session (nothing to look at), or is not a
   * directory (the copy's own path then reports or replaces it).
   */
  peerDir(rel: string): { fd: number; release: () => void } | null {
    if (this.#h === null || this.#fresh.has(rel)) return null;
    let node: DirNode | null;
    try {
      node = this.#dir(rel === '' ? rel : validateRelativePath(rel), false);
    } catch {
      return null;
    }
    return node === null ? null : this.holdDir(node);
  }

  /**
   * quickCheckSync() with the lstat already made (the walk's paired listing, `peer`),
   * when the parent is a verified directory of this session; null otherwise.
   */
  quickCheckPeer(entry: Entry, peer: PeerStat): QuickCheck | null {
    if (entry.kind !== 'file' || this.#h === null) return null;
    const rel = validateRelativePath(entry.path);
    const parent = parentOf(rel);
    if (this.#fresh.has(parent)) return 'missing';
    const dir = this.#h.get(parent);
    if (dir === undefined) return null;
    if (peer.errno !== 0) return peer.errno === ENOENT ? 'missing' : null;
    const h = this.#h;
    return this.#verdictOf((peer.mode & S_IFMT) === S_IFREG, peer.size, peer.mtimeNs, peer.mode & 0o7777, peer.uid, peer.gid, entry, () => h.at(dir, baseOf(rel)));
  }

  #fileVerdict(st: BigIntStats, entry: Entry, p: string): QuickCheck {
    return this.#verdictOf(st.isFile(), Number(st.size), st.mtimeNs, Number(st.mode & 0o7777n), Number(st.uid), Number(st.gid), entry, () => p);
  }

  /** The file verdict from the fields of an lstat (`p()` names the file, for attributes). */
  #verdictOf(isFile: boolean, size: number, mtimeNs: bigint, perm: number, uid: number, gid: number, entry: Entry, p: () => string): QuickCheck {
    if (!isFile || size !== entry.size) return 'differs';
    if (!mtimesEqual(mtimeNs, entry.mtimeNs)) {
      // Exactly what a microsecond writer (ferry without the native addon, or before
      // nanoseconds) stored for this very time: the quick check trusted such a file
      // before, so it still does, and only its time is mended (no re-send after an upgrade).
      return mtimeNs === storedMtimeNs(entry.mtimeNs) ? 'meta' : 'touched';
    }
    if (perm !== this.mode(entry.mode)) return 'meta';
    const o = this.owner(entry);
    if ((o.uid !== -1 && uid !== o.uid) || (o.gid !== -1 && gid !== o.gid)) return 'meta';
    return this.#opts.xattrs !== undefined && this.#xattrsDiffer(p(), false, entry) ? 'meta' : 'same';
  }

  /**
   * The quick check of many regular files at once, the no-op run's hot path: one
   * batched lstat per parent directory (fs/stat-batch: a native call relative to the
   * verified descriptor, or lstat in a loop), each judged as quickCheck() judges it.
   * A file in a directory this session created is 'missing' without a look; a file
   * whose directory has no verified handle yet, or whose lstat failed other than
   * ENOENT, gets null: the caller asks quickCheck(), which reports the error.
   */
  async quickCheckFiles(entries: readonly Entry[], opts: { native?: boolean } = {}): Promise<Array<QuickCheck | null>> {
    const out: Array<QuickCheck | null> = new Array<QuickCheck | null>(entries.length).fill(null);
    const h = this.#h;
    if (h === null) return out;
    // Consecutive entries mostly share a parent: group them by it, in order.
    const groups = new Map<string, number[]>();
    let lastParent: string | undefined;
    let last: number[] = [];
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      if (e.kind !== 'file') continue;
      const parent = parentOf(validateRelativePath(e.path));
      if (parent !== lastParent) {
        lastParent = parent;
        let g = groups.get(parent);
        if (g === undefined) groups.set(parent, (g = []));
        last = g;
      }
      last.push(i);
    }
    const jobs: Promise<void>[] = [];
    for (const [parent, idx] of groups) {
      if (this.#fresh.has(parent)) {
        for (const i of idx) out[i] = 'missing';
        continue;
      }
      const node = h.get(parent);
      if (node === undefined) continue;
      jobs.push(this.#checkIn(node, idx, entries, out, opts.native !== false));
    }
    await Promise.all(jobs);
    return out;
  }

  async #checkIn(node: DirNode, idx: readonly number[], entries: readonly Entry[], out: Array<QuickCheck | null>, native: boolean): Promise<void> {
    const h = this.#handles();
    h.pin(node);
    try {
      const names = idx.map((i) => baseOf(entries[i]!.path));
      const { nums, big } = await statNames(node.fd, h.path(node), names, native);
      for (let k = 0; k < idx.length; k++) {
        const o = k * STAT_NUMS;
        const err = nums[o + ST_ERRNO]!;
        const i = idx[k]!;
        if (err !== 0) {
          if (err === ENOENT) out[i] = 'missing';
          continue;
        }
        const mode = nums[o + ST_MODE]!;
        const name = names[k]!;
        out[i] = this.#verdictOf((mode & S_IFMT) === S_IFREG, nums[o + ST_SIZE]!, big[k * STAT_BIGS]!, mode & 0o7777, nums[o + ST_UID]!, nums[o + ST_GID]!, entries[i]!, () =>
          h.at(node, name),
        );
      }
    } finally {
      h.unpin(node);
    }
  }

  /**
   * Mend the metadata of an entry whose content is already right (quick check 'meta',
   * or 'touched' after the caller compared the content): owner, mode, attributes and
   * times are set in place, like rsync, with no temp file and no data copied. A file
   * is reached through a descriptor opened O_NOFOLLOW in its verified directory and
   * checked to be a regular file of the expected size (never a symlink put in its
   * place); a symlink gets its own owner and times (without following).
   */
  async fixMetadata(entry: Entry): Promise<void> {
    const rel = validateRelativePath(entry.path);
    const dir = this.#dir(parentOf(rel), false);
    if (dir === null) throw new FerryError(ErrorCodes.WRITE, `${rel}: its directory is missing; metadata not fixed`, { subject: rel });
    try {
      await this.inDir(dir, async (d) => {
        const p = `${d}/${baseOf(rel)}`;
        if (entry.kind === 'symlink') {
          this.chownAs(entry, (u, g) => lchownSync(p, u, g));
          setTimesPath(p, entry.mtimeNs, false);
          return;
        }
        if (entry.kind !== 'file') return;
        const fd = openFileForMetadata(p);
        try {
          const st = fstatSync(fd, { bigint: true });
          if (!st.isFile() || Number(st.size) !== entry.size) {
            throw new FerryError(ErrorCodes.CHANGED, `${rel}: changed in the destination while being checked; metadata not fixed`, { subject: rel });
          }
          const mode = this.mode(entry.mode);
          const via = `/proc/self/fd/${fd}`;
          const byPath = fdIsPath(fd);
          // chown first: it clears setuid/setgid, which the chmod below sets again if kept.
          const chowned = !this.#ownerMatches(st, entry) && this.chownAs(entry, (u, g) => (byPath ? chownSync(via, u, g) : fchownSync(fd, u, g)));
          if (chowned || Number(st.mode & 0o7777n) !== mode) {
            if (byPath) chmodSync(via, mode);
            else fchmodSync(fd, mode);
          }
          const pol = this.#opts.xattrs;
          if (pol !== undefined) applyXattrs(via, true, entry.xattrs, pol);
          if (st.mtimeNs !== entry.mtimeNs) {
            if (byPath) setTimesPath(via, entry.mtimeNs, true);
            else setTimesFd(fd, entry.mtimeNs);
          }
        } finally {
          closeMetaFd(fd);
        }
      });
    } catch (e) {
      throw e instanceof FerryError ? e : fromSystemError(e, 'write', rel);
    }
  }

  /**
   * For the batched native copy: where a regular file goes, when its parent is
   * already a verified directory of this session (else null: use beginFile, which
   * verifies it): its descriptor, pinned until the caller's release(), and names.
   * Marks the parent written, like beginFile.
   */
  fileTarget(entry: Entry): FileTarget | null {
    if (entry.kind !== 'file' || this.#h === null) return null;
    const rel = validateRelativePath(entry.path);
    const node = this.#h.get(parentOf(rel));
    if (node === undefined) return null;
    this.#markDirty(rel);
    const name = baseOf(rel);
    const held = this.holdDir(node);
    return { dirFd: held.fd, release: held.release, name, mode: this.mode(entry.mode) };
  }

  /**
   * What DST holds at an entry's path (lstat in its verified directory, never
   * followed), or null when nothing (or its directory is missing): for the update
   * policies (transfer/update-policy).
   */
  async lstatExisting(relPath: string): Promise<BigIntStats | null> {
    const rel = validateRelativePath(relPath);
    if (this.#fresh.has(parentOf(rel))) return null;
    const dir = this.#dir(parentOf(rel), false);
    if (dir === null) return null;
    try {
      return await this.inDir(dir, (d) => this.m.lstat(`${d}/${baseOf(rel)}`));
    } catch (e) {
      if (errno(e) === 'ENOENT') return null;
      throw e instanceof FerryError ? e : fromSystemError(e, 'write', rel);
    }
  }

  /** True when temp files do not sit next to their final name (--partial-dir): the native fast paths are then not used. */
  get tempsElsewhere(): boolean {
    return this.#opts.partialDir !== undefined;
  }

  /**
   * Start a file: returns its temp file (created lazily by write() or copyFrom()).
   * `inplace` (--inplace): an existing regular file is rewritten under its own name
   * (no temp file, no rename; hard links to it see the change); anything else there
   * (a symlink, a directory) is replaced the safe way, through a temp file.
   */
  async beginFile(entry: Entry, opts: { resume?: boolean; inplace?: boolean } = {}): Promise<TempFile> {
    const rel = validateRelativePath(entry.path);
    if (entry.kind !== 'file') throw new FerryError(ErrorCodes.INTERNAL, `${rel}: beginFile on a ${entry.kind}`);
    this.#handles();
    const parent = parentOf(rel);
    const dir = this.#dir(parent, true)!;
    this.#markDirty(rel);
    if (opts.inplace && !this.#fresh.has(parent)) {
      const st = await this.inDir(dir, (d) => this.m.lstat(`${d}/${baseOf(rel)}`)).catch(() => null);
      if (st?.isFile()) return new TempFile(this, entry, rel, dir, dir, true);
    }
    const pd = this.#opts.partialDir;
    const tempDir = pd === undefined ? dir : this.#dir(parent === '' ? pd : `${parent}/${pd}`, true)!;
    const t = new TempFile(this, entry, rel, dir, tempDir);
    // Without resume a leftover temp file is removed when O_EXCL creation meets it.
    if (opts.resume) await t.adoptExisting();
    return t;
  }

  /**
   * `--link-dest`: publish `entry` as a hard link to `fromAbs`, a file outside DST
   * that the caller found identical (size, mtime, mode), atomically (temp name +
   * rename, both inside the entry's verified directory). link(2) does not follow a
   * symlink at `fromAbs`, and the new link must be the very inode that was checked
   * (`ino`/`dev`), or nothing is published.
   */
  async linkFrom(entry: Entry, fromAbs: string, id: { ino: bigint; dev: bigint }): Promise<void> {
    const rel = validateRelativePath(entry.path);
    this.#handles();
    const dir = this.#dir(parentOf(rel), true)!;
    this.#markDirty(rel);
    await this.inDir(dir, (d) =>
      this.#viaTempName(d, rel, async (tmp) => {
        await this.m.link(fromAbs, tmp);
        const st = await this.m.lstat(tmp);
        if (!st.isFile() || st.ino !== id.ino || st.dev !== id.dev) {
          throw new FerryError(ErrorCodes.CHANGED, `${rel}: the --link-dest file changed before it could be linked; not published`, { subject: rel });
        }
      }),
    );
  }

  /** Create a hard link to an already published file of this tree (atomic via temp name + rename). */
  async hardlink(entry: Entry): Promise<void> {
    const rel = validateRelativePath(entry.path);
    if (entry.target === undefined) throw new FerryError(ErrorCodes.PATH, `${rel}: hard link without a target`, { subject: rel });
    const target = validateHardlinkTarget(entry.target, rel);
    this.#handles();
    const tdir = this.#dir(parentOf(target), false);
    if (tdir === null) throw new FerryError(ErrorCodes.WRITE, `${rel}: hard link target ${target} is missing in the destination`, { subject: rel });
    const dir = this.#dir(parentOf(rel), true)!;
    await this.inDir(tdir, (td) =>
      this.inDir(dir, async (d) => {
        const tabs = `${td}/${baseOf(target)}`;
        let tst;
        try {
          tst = await this.m.lstat(tabs);
        } catch (e) {
          throw fromSystemError(e, 'write', rel);
        }
        if (!tst.isFile()) {
          throw new FerryError(ErrorCodes.PATH, `${rel}: hard link target ${target} is not a regular file in the destination`, { subject: rel });
        }
        const fin = `${d}/${baseOf(rel)}`;
        const cur = await this.m.lstat(fin).catch(() => null);
        if (cur && cur.ino === tst.ino && cur.dev === tst.dev) return;
        this.#markDirty(rel);
        await this.#viaTempName(d, rel, (tmp) => this.m.link(tabs, tmp));
      }),
    );
  }

  /** Queue a symlink; it is created in finish(), after every file and directory. */
  symlink(entry: Entry): void {
    const rel = validateRelativePath(entry.path);
    if (entry.target === undefined) throw new FerryError(ErrorCodes.PATH, `${rel}: symlink without a target`, { subject: rel });
    validateLinkTarget(entry.target, rel);
    this.#symlinks.push(entry);
  }

  /** Remove an entry (recursively for directories) without following symlinks. */
  async remove(relPath: string): Promise<void> {
    const rel = validateRelativePath(relPath);
    const dir = this.#dir(parentOf(rel), false);
    if (dir === null) return;
    this.#markDirty(rel);
    try {
      await this.#removeIn(dir, baseOf(rel));
    } catch (e) {
      throw e instanceof FerryError ? e : fromSystemError(e, 'write', rel);
    }
  }

  /**
   * Remove `name` from a verified directory: a non-directory (a symlink too) is
   * unlinked, a directory is opened through its parent like every other, emptied
   * through its own descriptor and then removed. Missing is fine.
   */
  async #removeIn(dir: DirNode, name: string): Promise<void> {
    const h = this.#handles();
    await this.inDir(dir, async (d) => {
      const p = `${d}/${name}`;
      let st: BigIntStats;
      try {
        st = await this.m.lstat(p);
      } catch (e) {
        if (errno(e) === 'ENOENT') return;
        throw e;
      }
      if (!st.isDirectory()) {
        await this.m.unlink(p).catch((e: unknown) => {
          if (errno(e) !== 'ENOENT') throw e;
        });
        return;
      }
      let child: DirNode;
      try {
        child = h.openChild(dir, name).node;
      } catch (e) {
        if (errno(e) === 'ENOENT') return;
        if (errno(e) !== 'ENOTDIR') throw e;
        // Swapped for a non-directory (a symlink) since the lstat: unlinked, never followed.
        await this.m.unlink(p).catch((e2: unknown) => {
          if (errno(e2) !== 'ENOENT') throw e2;
        });
        return;
      }
      try {
        const names = await this.inDir(child, (cd) => this.m.readdir(cd));
        for (const n of names) await this.#removeIn(child, n);
      } finally {
        h.forget(child);
      }
      await this.m.rmdir(p).catch((e: unknown) => {
        if (errno(e) !== 'ENOENT') throw e;
      });
    });
  }

  /** List a directory of DST (for --delete); ferry temp files are left out. */
  async listDir(relPath: string): Promise<Array<{ name: string; isDir: boolean }>> {
    if (relPath !== '') validateRelativePath(relPath);
    const dir = this.#dir(relPath, false);
    if (dir === null) return [];
    let ents;
    try {
      ents = await this.inDir(dir, (d) => fsp.readdir(d, { withFileTypes: true }));
    } catch (e) {
      if (e instanceof FerryError) throw e;
      if (errno(e) === 'ENOENT') return [];
      throw fromSystemError(e, 'write', relPath === '' ? this.root : relPath);
    }
    return ents.filter((d) => !isFerryTempName(d.name)).map((d) => ({ name: d.name, isDir: d.isDirectory() }));
  }

  /**
   * Create the queued symlinks, remove leftover temp files in the directories this
   * session wrote into, then set directory modes and mtimes deepest first, each
   * through the directory's own descriptor. Per-entry failures are returned (and
   * passed to onEntry), never thrown. The writer stays open: the owner calls close().
   */
  async finish(opts: { onEntry?: (e: Entry, err: FerryError | null) => void } = {}): Promise<FerryError[]> {
    const errors: FerryError[] = [];
    for (const e of this.#symlinks) {
      let err: FerryError | null = null;
      try {
        await this.#makeSymlink(e);
      } catch (x) {
        err = x instanceof FerryError ? x : fromSystemError(x, 'write', e.path);
        errors.push(err);
      }
      opts.onEntry?.(e, err);
    }
    this.#symlinks.length = 0;
    const pd = this.#opts.partialDir;
    const h = this.#h;
    for (const rel of this.#touched) {
      try {
        const dir = this.#dir(rel, false);
        if (dir === null) continue;
        await this.inDir(dir, async (d) => {
          const ents = await fsp.readdir(d).catch(() => [] as string[]);
          for (const name of ents) {
            if (isFerryTempName(name)) await fsp.unlink(`${d}/${name}`).catch(() => {});
          }
        });
        // --partial-dir: only a directory opened (verified) this session is cleaned, through its descriptor.
        const pdNode = pd === undefined || h === null ? undefined : h.get(rel === '' ? pd : `${rel}/${pd}`);
        if (pd !== undefined && pdNode !== undefined) {
          await this.inDir(pdNode, async (pdp) => {
            for (const name of await fsp.readdir(pdp).catch(() => [] as string[])) {
              if (isFerryTempName(name)) await fsp.unlink(`${pdp}/${name}`).catch(() => {});
            }
          });
          h!.forget(pdNode);
          await this.inDir(dir, (d) => fsp.rmdir(`${d}/${pd}`)).catch(() => {}); // only when empty
        }
      } catch {
        /* a directory replaced meanwhile: nothing of ours to clean there */
      }
    }
    const dirs = [...this.#dirs.values()].filter((d) => d.dirty);
    const depth = (d: DirMeta): number => (d.rel === '' ? 0 : pathDepth(d.rel));
    // Deepest first (so a parent's mode never blocks a child's), siblings together.
    dirs.sort((a, b) => depth(b) - depth(a) || (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
    for (const d of dirs) {
      try {
        const dir = this.#dir(d.rel, false);
        if (dir === null) throw new FerryError(ErrorCodes.WRITE, `${d.rel}: directory is missing in the destination`, { subject: d.rel });
        // p is /proc/self/fd/N of the directory itself: every call reaches that very directory.
        await this.inDir(dir, async (p) => {
          if (d.uid !== -1 || d.gid !== -1) this.chownAs(d, (u, g) => chownSync(p, u, g));
          await this.m.chmod(p, d.mode);
          const pol = this.#opts.xattrs;
          if (pol !== undefined) applyXattrs(p, true, d.xattrs, pol);
          setTimesPath(p, d.mtimeNs, true);
        });
      } catch (x) {
        errors.push(x instanceof FerryError ? x : fromSystemError(x, 'write', d.rel === '' ? this.root : d.rel));
      }
    }
    return errors;
  }

  async #makeSymlink(e: Entry): Promise<void> {
    const rel = e.path;
    const dir = this.#dir(parentOf(rel), true)!;
    this.#markDirty(rel);
    await this.inDir(dir, (d) =>
      this.#viaTempName(d, rel, async (tmp) => {
        await this.m.symlink(e.target!, tmp);
        this.chownAs(e, (u, g) => lchownSync(tmp, u, g));
        setTimesPath(tmp, e.mtimeNs);
      }),
    );
  }

  /**
   * Publish a link atomically: `make` creates it under a temp name in `d` (the
   * `/proc/self/fd/N` path of `rel`'s verified directory, pinned by the caller), which
   * is then renamed onto `rel`'s final name. A leftover of that temp name goes first;
   * on any failure the temp name is removed again.
   */
  async #viaTempName(d: string, rel: string, make: (tmp: string) => Promise<void>): Promise<void> {
    const tmp = `${d}/${tempNameFor(baseOf(rel))}`;
    try {
      await fsp.unlink(tmp).catch(() => {});
      await make(tmp);
      await this.m.rename(tmp, `${d}/${baseOf(rel)}`);
    } catch (e) {
      await fsp.unlink(tmp).catch(() => {});
      throw fromSystemError(e, 'write', rel);
    }
  }

  get options(): Readonly<SafeWriterOptions> {
    return this.#opts;
  }
}

/**
 * One file being written. Data arrives either by `copyFrom(src)` (local copy: the
 * kernel moves it) or by `write(buf, offset)` calls in any order (network receive).
 * Its temp file is created, renamed and removed inside its verified directory's
 * descriptor; once open, everything else is done on the file's own descriptor.
 */
export class TempFile {
  readonly #w: SafeWriter;
  readonly #dir: DirNode;
  /** Where the temp file lives: `#dir`, or its --partial-dir. */
  readonly #tempDir: DirNode;
  readonly entry: Entry;
  readonly rel: string;
  /** Final name in its directory. */
  readonly name: string;
  /** Temp name in its directory (fs/temp-names). */
  readonly tempName: string;
  #fh: FileHandle | null = null;
  /** Up to where writeback was started (options.writeBehind), and the call in flight. */
  #wbFrom = 0;
  #wbPending: Promise<void> | null = null;
  /** options.directWrites: the file's O_DIRECT side (null: none, or refused; undefined: not yet asked). */
  #direct: DirectFile | null | undefined = undefined;
  /** The temp file's descriptor on the copyFrom path (kernel copy into it). */
  #fd = -1;
  #created = false;
  #done = false;
  /**
   * --inplace: `tempName` is the final name of an existing regular file, opened
   * O_NOFOLLOW in its verified directory and truncated; commit() does not rename and
   * abort() leaves what was written (rsync's trade-off: an interrupted file is visible
   * partly written).
   */
  readonly inplace: boolean;

  constructor(w: SafeWriter, entry: Entry, rel: string, dir: DirNode, tempDir: DirNode = dir, inplace = false) {
    this.#w = w;
    this.#dir = dir;
    this.#tempDir = tempDir;
    this.entry = entry;
    this.rel = rel;
    this.name = baseOf(rel);
    this.inplace = inplace;
    this.tempName = inplace ? this.name : tempNameFor(this.name);
  }

  /** A path to the temp file, valid until the next await (fs/dir-handles); for tests' hooks and messages. */
  get tempPath(): string {
    return this.#w.pathIn(this.#tempDir, this.tempName);
  }

  /**
   * True when the native copier can write this file: temp file next to its final name
   * (openat + renameat in one directory descriptor), not --inplace.
   */
  get nativeOk(): boolean {
    return !this.inplace && this.#tempDir === this.#dir;
  }

  /** @internal Pin the temp file's directory for the native copier: its descriptor, and release(). */
  holdDir(): { fd: number; release: () => void } {
    if (!this.nativeOk) throw new FerryError(ErrorCodes.INTERNAL, `${this.rel}: native copy of an in-place or --partial-dir file`);
    return this.#w.holdDir(this.#dir);
  }

  /** @internal Remove a leftover temp file of an earlier run (it is ours by name). */
  async removeLeftover(): Promise<void> {
    try {
      if (this.inplace) return; // never remove the file itself
      await this.#w.inDir(this.#tempDir, (d) => fsp.unlink(`${d}/${this.tempName}`));
    } catch (e) {
      if (errno(e) !== 'ENOENT') throw fromSystemError(e, 'write', this.rel);
    }
  }

  /**
   * @internal Keep an earlier run's temp file if it is a plain regular file. Opened
   * for reading too: the resume offer hashes its prefix through this descriptor.
   */
  async adoptExisting(): Promise<void> {
    if (this.inplace) return; // nothing to resume: the file is rewritten from the start
    let fh: FileHandle;
    try {
      fh = await this.#w.inDir(this.#tempDir, (d) => fsp.open(`${d}/${this.tempName}`, C.O_RDWR | C.O_NOFOLLOW));
    } catch (e) {
      if (e instanceof FerryError) throw e;
      if (errno(e) === 'ENOENT') return;
      await this.removeLeftover();
      return;
    }
    const st = await fh.stat();
    if (!st.isFile() || st.nlink !== 1) {
      await fh.close();
      await this.removeLeftover();
      return;
    }
    this.#fh = fh;
    this.#created = true;
  }

  /** Bytes an earlier run already wrote to this temp file (0 when there is none). */
  async existingPrefix(): Promise<number> {
    if (!this.#fh) return 0;
    return (await this.#fh.stat()).size;
  }

  /** Content hash of the first `length` bytes of the adopted temp file (a resume offer). */
  async hashPrefix(length: number): Promise<Buffer> {
    if (!this.#fh) throw new FerryError(ErrorCodes.INTERNAL, `${this.rel}: no temp file to hash`);
    return hashHandlePrefix(this.#fh, length);
  }

  async #open(): Promise<FileHandle> {
    if (this.#fh) return this.#fh;
    if (this.inplace) {
      try {
        // O_NOFOLLOW in the verified directory: a symlink swapped in since beginFile() is
        // refused (ELOOP); O_NONBLOCK keeps a FIFO from blocking the open; only a
        // regular file is written.
        const fh = await this.#w.inDir(this.#dir, (d) => fsp.open(`${d}/${this.name}`, C.O_WRONLY | C.O_NOFOLLOW | C.O_NONBLOCK));
        if (!(await fh.stat()).isFile()) {
          await fh.close();
          throw new FerryError(ErrorCodes.CHANGED, `${this.rel}: no longer a regular file; not written in place`, { subject: this.rel });
        }
        await fh.truncate(0);
        this.#fh = fh;
      } catch (e) {
        throw e instanceof FerryError ? e : fromSystemError(e, 'write', this.rel);
      }
      this.#created = true;
      return this.#fh;
    }
    const flags = C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW;
    const open = (): Promise<FileHandle> => this.#w.inDir(this.#tempDir, (d) => fsp.open(`${d}/${this.tempName}`, flags, 0o600));
    try {
      try {
        this.#fh = await open();
      } catch (e) {
        if (errno(e) !== 'EEXIST') throw e;
        await this.removeLeftover(); // an interrupted run's temp file (ours by name)
        this.#fh = await open();
      }
    } catch (e) {
      throw e instanceof FerryError ? e : fromSystemError(e, 'write', this.rel);
    }
    this.#created = true;
    return this.#fh;
  }

  /** Write `buf` at `offset` (any order; holes stay holes). */
  async write(buf: Uint8Array, offset: number): Promise<void> {
    const fh = await this.#open();
    const direct = this.#directFor(fh.fd);
    if (direct !== null && direct.takes(offset)) {
      try {
        await direct.write(buf, offset);
      } catch (e) {
        throw fromSystemError(e, 'write', this.rel);
      }
      return;
    }
    let done = 0;
    try {
      while (done < buf.length) {
        const { bytesWritten } = await fh.write(buf, done, buf.length - done, offset + done);
        done += bytesWritten;
      }
    } catch (e) {
      throw fromSystemError(e, 'write', this.rel);
    }
    this.#writeBehind(fh.fd, offset + buf.length);
  }

  /** The direct side of a large file (options.directWrites), opened on its first write; null when it is written buffered. */
  #directFor(fd: number): DirectFile | null {
    if (this.#direct === undefined) {
      this.#direct = this.#w.options.directWrites === true && this.entry.size >= DIRECT_MIN_BYTES ? DirectFile.open(fd) : null;
    } else if (this.#direct !== null && !this.#direct.usable) {
      void this.#direct.close(); // the filesystem refused: buffered from here on (closed once its writes are done)
      this.#direct = null;
    }
    return this.#direct;
  }

  /** Before the temp file's descriptor is closed: the direct one, after any write in flight. */
  async #closeDirect(): Promise<void> {
    const d = this.#direct;
    this.#direct = null;
    await d?.close();
  }

  /**
   * With options.writeBehind, start writeback of what was written since the last call,
   * once that is WRITE_BEHIND_BYTES, one call in flight at a time (not awaited here: the
   * write chain goes on; #settle() waits before the descriptor is closed).
   */
  #writeBehind(fd: number, end: number): void {
    if (this.#w.options.writeBehind !== true) return;
    if (end < this.#wbFrom + WRITE_BEHIND_BYTES || this.#wbPending !== null) return;
    const start = this.#wbFrom;
    this.#wbFrom = end;
    const p = startWriteback(fd, start, end - start);
    if (p === null) return;
    this.#wbPending = p.finally(() => {
      this.#wbPending = null;
    });
  }

  /** Wait for a writeback call in flight, before its descriptor is closed. */
  async #settle(): Promise<void> {
    if (this.#wbPending !== null) await this.#wbPending.catch(() => {});
  }

  /** Before a committed file is closed: after any write-behind, the file's tail too (length 0: to its end), so that a later sync only waits. */
  async #writeBehindRest(fd: number): Promise<void> {
    await this.#settle();
    if (this.#wbFrom > 0) await startWriteback(fd, this.#wbFrom, 0)?.catch(() => {});
  }

  /** Set the final length (after out-of-order or sparse writes). */
  async truncate(size: number): Promise<void> {
    const fh = await this.#open();
    try {
      await fh.truncate(size);
    } catch (e) {
      throw fromSystemError(e, 'write', this.rel);
    }
  }

  /**
   * Local copy: the kernel copies `srcAbs` into the temp file (FICLONE reflink where
   * the filesystem has it, else copy_file_range), unless the source is sparse or the
   * writer was opened with readWrite, in which case `copyReadWrite` is used.
   * `src` may be the fd of a source file already opened and checked by the caller
   * (fs/source-file; the caller closes it): the kernel's copy then reads that very
   * file, through /proc/self/fd, never a path that could have been swapped since
   * (issue #11). The temp file is created first (O_EXCL|O_NOFOLLOW, in its verified
   * directory) and the copy writes into it through /proc/self/fd too.
   * Returns the number of bytes copied.
   */
  async copyFrom(src: string | number, opts: CopyOptions): Promise<number> {
    const wo = this.#w.options;
    const sparse = opts.allocated !== undefined && opts.allocated < opts.size;
    const srcAbs = typeof src === 'string' ? src : fdPath(src);
    if (sparse || wo.readWrite || srcAbs === null || this.inplace) return this.copyReadWrite(src, opts.size, sparse);
    if (this.#fh || this.#fd >= 0) throw new FerryError(ErrorCodes.INTERNAL, `${this.rel}: copyFrom after write`);
    // On this thread, like the other metadata calls (fs/meta-ops); a leftover temp file is replaced.
    try {
      this.#fd = await this.#w.inDir(this.#tempDir, (d) => openTempSync(`${d}/${this.tempName}`));
    } catch (e) {
      throw e instanceof FerryError ? e : fromSystemError(e, 'write', this.rel);
    }
    this.#created = true;
    try {
      await fsp.copyFile(srcAbs, `/proc/self/fd/${this.#fd}`, C.COPYFILE_FICLONE);
    } catch (e) {
      throw await this.#classify(e, srcAbs);
    }
    return opts.size;
  }

  /**
   * read/write copy. With `sparse`, only the source's data is written and its holes
   * stay holes (fs/sparse: the SEEK_DATA/SEEK_HOLE extents natively, else the
   * chunks' non-zero blocks), then the file is cut to its size.
   */
  async copyReadWrite(from: string | number, size: number, sparse: boolean): Promise<number> {
    const chunk = this.#w.options.chunkSize ?? 128 * 1024;
    let src: FileHandle | null = null;
    try {
      if (typeof from === 'string') src = await fsp.open(from, C.O_RDONLY | C.O_NOFOLLOW);
    } catch (e) {
      throw fromSystemError(e, 'read', this.rel);
    }
    const read = async (buf: Buffer, len: number, pos: number): Promise<number> =>
      src ? (await src.read(buf, 0, len, pos)).bytesRead : (await readAsync(from as number, buf, 0, len, pos)).bytesRead;
    try {
      const fh = await this.#open();
      const buf = Buffer.allocUnsafe(chunk);
      const extents = sparse ? dataExtents(src ? src.fd : (from as number), size) : null;
      // Without SEEK_DATA every chunk is read; with it, only the extents that hold data.
      const spans: Array<[number, number]> = extents ?? [[0, Number.MAX_SAFE_INTEGER]];
      let off = 0;
      let copied = 0;
      outer: for (const [start, stop] of spans) {
        off = start;
        while (off < stop) {
          let n: number;
          try {
            n = await read(buf, Math.min(chunk, stop - off), off);
          } catch (e) {
            throw fromSystemError(e, 'read', this.rel);
          }
          if (n === 0) break outer;
          const data = buf.subarray(0, n);
          if (sparse && extents === null) {
            for (const [a, b] of dataRuns(data, off, null)) await this.write(data.subarray(a, b), off + a);
          } else {
            await this.write(data, off);
          }
          off += n;
          copied = Math.max(copied, off);
        }
      }
      // With extents the size is the source's (a trailing hole reads nothing); else what was read.
      const total = extents !== null ? size : copied;
      if (sparse || total !== size) await fh.truncate(total).catch((e: unknown) => { throw fromSystemError(e, 'write', this.rel); });
      return total;
    } finally {
      await src?.close().catch(() => {});
    }
  }

  async #classify(e: unknown, srcAbs: string): Promise<FerryError> {
    const code = errno(e);
    if (code === 'ENOSPC' || code === 'EDQUOT') return fromSystemError(e, 'write', this.rel);
    try {
      await fsp.access(srcAbs, C.R_OK);
    } catch {
      return fromSystemError(e, 'read', this.rel);
    }
    return fromSystemError(e, 'write', this.rel);
  }

  /** Set mode and mtime, optionally fsync, then rename onto the final name. */
  async commit(): Promise<void> {
    if (this.#done) throw new FerryError(ErrorCodes.INTERNAL, `${this.rel}: committed twice`);
    const w = this.#w;
    const mode = w.mode(this.entry.mode);
    const ns = this.entry.mtimeNs;
    const pol = w.options.xattrs;
    try {
      if (!this.#created) await this.#open();
      if (this.#fh) {
        this.#checkSize(Number((await this.#fh.stat()).size));
        const fd = this.#fh.fd;
        w.chownAs(this.entry, (u, g) => fchownSync(fd, u, g)); // before chmod: chown clears setuid/setgid
        await this.#fh.chmod(mode);
        if (pol !== undefined) applyXattrs(`/proc/self/fd/${fd}`, true, this.entry.xattrs, pol);
        if (w.options.fsync) await this.#fh.sync();
        setTimesFd(fd, ns);
        await this.#writeBehindRest(fd);
        await this.#closeDirect();
        await this.#fh.close();
        this.#fh = null;
        if (this.inplace) {
          this.#done = true;
          return;
        }
      } else {
        // The copyFrom path: synchronous calls on the temp file's descriptor (fs/meta-ops).
        const fd = this.#fd;
        this.#checkSize(Number(fstatSync(fd).size));
        w.chownAs(this.entry, (u, g) => fchownSync(fd, u, g)); // before chmod: chown clears setuid/setgid
        fchmodSync(fd, mode);
        if (pol !== undefined) applyXattrs(`/proc/self/fd/${fd}`, true, this.entry.xattrs, pol);
        if (w.options.fsync) fsyncSync(fd);
        setTimesFd(fd, ns);
        this.#fd = -1;
        closeSync(fd);
      }
      if (this.#tempDir === this.#dir) await w.inDir(this.#dir, (d) => w.m.rename(`${d}/${this.tempName}`, `${d}/${this.name}`));
      else await w.inDir(this.#tempDir, (td) => w.inDir(this.#dir, (d) => w.m.rename(`${td}/${this.tempName}`, `${d}/${this.name}`)));
      this.#done = true;
    } catch (e) {
      await this.abort();
      throw e instanceof FerryError ? e : fromSystemError(e, 'write', this.rel);
    }
  }

  /**
   * What is published under a final name has exactly the declared size, whatever was
   * on disk before (a longer leftover temp file of an interrupted run, a bug in range
   * bookkeeping): checked on the open file just before the rename.
   */
  #checkSize(have: number): void {
    if (have !== this.entry.size) {
      throw new FerryError(ErrorCodes.INTEGRITY, `${this.rel}: temp file holds ${have} bytes, expected ${this.entry.size}; not published`, {
        subject: this.rel,
      });
    }
  }

  /** Close whichever descriptor the temp file is open on. Never throws (already failing, or done). */
  async #closeAll(): Promise<void> {
    if (this.#fd >= 0) {
      try {
        closeSync(this.#fd);
      } catch {
        /* already failing */
      }
      this.#fd = -1;
    }
    if (this.#fh) {
      await this.#settle();
      await this.#closeDirect();
      await this.#fh.close().catch(() => {});
      this.#fh = null;
    }
  }

  /**
   * Close the temp file but keep it on disk, for a later run to resume (a session
   * that broke). Nothing more is done with this TempFile afterwards. Never throws.
   */
  async release(): Promise<void> {
    if (this.#done) return;
    this.#done = true;
    await this.#closeAll();
  }

  /** Drop the temp file (failed or cancelled transfer). Never throws. */
  async abort(): Promise<void> {
    if (this.#done) return;
    this.#done = true;
    await this.#closeAll();
    if (this.#created && !this.inplace) await this.#w.inDir(this.#tempDir, (d) => fsp.unlink(`${d}/${this.tempName}`)).catch(() => {});
  }
}
