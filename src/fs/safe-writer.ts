/**
 * The Sink: the only code that writes into DST, for local copy and network receive.
 *
 * It follows DESIGN.md "Receiver safety" because the same writer will publish
 * files from an untrusted peer:
 * - Every relative path passes fs/path-safety first; every write lands inside DST.
 * - Symlinks already in DST are never followed. Each parent directory that was not
 *   created or checked in this session is lstat'ed component by component from the
 *   root: a symlink or a non-directory there is refused (FERRY_E_PATH). A directory
 *   *entry* whose name is taken by a symlink or file in DST replaces it (unlink, then
 *   mkdir), like rsync -a; nothing is ever written through the old link.
 * - Temp files are created with O_CREAT|O_EXCL|O_NOFOLLOW (or copy_file_range into a
 *   name opened O_EXCL by libuv's copyfile with COPYFILE_EXCL); the final name is
 *   replaced with rename(2), which replaces a symlink rather than following it.
 * - Symlinks are created last, in finish(), so no link made by this transfer can
 *   redirect a later write; then directory modes and mtimes are set, deepest first.
 * - setuid/setgid/sticky bits are stripped unless `preserveSpecialBits` is set, and
 *   the `umask` option (recv: the process umask) is cleared from every file's and
 *   directory's mode alike.
 * Known limit: Node has no openat(), so a local attacker who can write into DST
 * *while* ferry runs could race the lstat checks; against a hostile peer (which
 * controls only the byte stream) the checks are complete.
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
 * Times: Node passes times to utimensat as double seconds and libuv truncates them to
 * whole microseconds (uv__fs_to_timespec), so nanoseconds do not survive (measured on
 * Node 20.20 / ext4: 1700000000.123456789 s is stored as .123456000, and the double's
 * rounding can move it by one more microsecond). `storedMtimeNs` reproduces libuv's
 * arithmetic exactly (checked against utimes+stat on 20,000 random times: 0
 * mismatches), and the quick check accepts an mtime equal to the source's or to what
 * utimes stores for it, so a second run skips everything while any other difference,
 * even of 1 ns against a tool that keeps nanoseconds, is a difference.
 * atime is set equal to mtime.
 *
 * Sparse files: libuv's copyfile (copy_file_range) fills holes on ext4 (measured: a
 * 50 MiB file with 8 KiB allocated came out fully allocated), so a file whose
 * allocated size is below its size is copied by `copySparse`: read in chunks, skip
 * all-zero chunks (leaving holes), ftruncate to size at the end.
 *
 * Shared API (stable):
 *   const w = await SafeWriter.open(dstRoot, opts)
 *   await w.mkdir(entry);  await w.quickCheck(entry) -> 'same' | 'differs' | 'missing'
 *   const t = await w.beginFile(entry, {resume?}); t.write(buf, offset) / t.copyFrom(src)
 *   await t.existingPrefix(); await t.commit(); await t.abort()
 *   await w.hardlink(entry);  w.symlink(entry) (queued);  await w.remove(relPath)
 *   await w.listDir(relPath);  await w.finish({onEntry}) -> per-entry errors
 */
import { constants as C, lstatSync, promises as fsp, read as readCb, type BigIntStats } from 'node:fs';
import { promisify } from 'node:util';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { Entry } from '../core/entry.js';
import { ErrorCodes, FerryError, fromSystemError } from '../core/errors.js';
import { baseOf, parentOf, pathDepth, validateHardlinkTarget, validateLinkTarget, validateRelativePath } from './path-safety.js';
import { isFerryTempName, tempNameFor } from './temp-names.js';
import { metaOps, type MetaOps } from './meta-ops.js';
import { fdPath } from './source-file.js';

export type QuickCheck = 'same' | 'differs' | 'missing';

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
  /** Do not create DST if it is missing (dry runs). */
  dryRun?: boolean;
  /** Buffer size for the read/write and sparse copy paths (default 128 KiB). */
  chunkSize?: number;
  /** Use read/write instead of copy_file_range for every file (--no-splice). */
  readWrite?: boolean;
  /** Metadata calls on the main thread (default true; see fs/meta-ops). */
  syncMetadata?: boolean;
  /**
   * `--partial-dir=DIR`: temp files live in DIR inside each target directory (made on
   * demand, a real directory, never a symlink), stay there when a run is cut, are
   * resumed from there, and DIR is removed once empty. Relative, no '..' (checked by
   * open(): FERRY_E_PATH).
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
  dirty: boolean;
}

export function nsToSeconds(ns: bigint): number {
  // Split first so the integer part is exact; the fraction keeps ~µs precision.
  const sec = ns / 1_000_000_000n;
  const frac = ns % 1_000_000_000n;
  // libuv truncates the double to whole microseconds; aim at the middle of the
  // microsecond so the truncation lands on it rather than on the one before.
  return Number(sec) + (Number(frac / 1000n) + 0.5) / 1e6;
}

/**
 * The mtime utimes() really stores for `ns`: libuv's uv__fs_to_timespec on the double
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
  return BigInt(sec) * 1_000_000_000n + BigInt(nsec);
}

/** Equal, or one is what utimes stores for the other (order does not matter). */
export function mtimesEqual(a: bigint, b: bigint): boolean {
  return a === b || a === storedMtimeNs(b) || b === storedMtimeNs(a);
}

function errno(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | undefined)?.code;
}

export class SafeWriter {
  readonly root: string;
  readonly #opts: SafeWriterOptions;
  readonly #modeMask: number;
  /** Relative directories known to be real directories (created or lstat'ed this session). */
  readonly #trusted = new Set<string>(['']);
  /** Directories this session created: nothing can be in them but what we wrote. */
  readonly #fresh = new Set<string>();
  readonly #dirs = new Map<string, DirMeta>();
  readonly #touched = new Set<string>();
  readonly #symlinks: Entry[] = [];
  #rootMeta: { mode: number; mtimeNs: bigint } | null = null;
  #rootMissing: boolean;
  /** Metadata calls: synchronous or thread pool (fs/meta-ops). */
  readonly m: MetaOps;

  private constructor(root: string, opts: SafeWriterOptions, rootMissing: boolean) {
    this.root = root;
    this.m = metaOps(opts.syncMetadata !== false);
    this.#opts = opts;
    this.#modeMask = (opts.preserveSpecialBits ? 0o7777 : 0o777) & ~(opts.umask ?? 0);
    this.#rootMissing = rootMissing;
  }

  /** Open DST. A missing DST is created (one level, like cp/rsync) unless dryRun. */
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
    return new SafeWriter(root, opts, missing);
  }

  /** Where the temp files of directory `parentRel` go (made on demand). */
  async #tempDir(parentRel: string): Promise<string> {
    const pd = this.options.partialDir;
    if (pd === undefined) return this.abs(parentRel);
    const rel = parentRel === '' ? pd : `${parentRel}/${pd}`;
    await this.#checkDir(rel, true);
    return this.abs(rel);
  }

  abs(rel: string): string {
    return rel === '' ? this.root : `${this.root}/${rel}`;
  }

  mode(m: number): number {
    return m & this.#modeMask;
  }

  /**
   * Make sure every component of `dirRel` is a real directory (not a symlink),
   * creating missing ones when `create`. Returns false when something is missing
   * and not created. Throws FERRY_E_PATH for a symlink or non-directory.
   */
  async #checkDir(dirRel: string, create: boolean): Promise<boolean> {
    if (this.#trusted.has(dirRel)) return true;
    if (this.#rootMissing) return false;
    const parts = dirRel.split('/');
    let cur = '';
    for (const part of parts) {
      cur = cur === '' ? part : `${cur}/${part}`;
      if (this.#trusted.has(cur)) continue;
      let st;
      try {
        st = await this.m.lstat(this.abs(cur));
      } catch (e) {
        if (errno(e) !== 'ENOENT') throw fromSystemError(e, 'write', cur);
        if (!create) return false;
        try {
          await this.m.mkdir(this.abs(cur), 0o755);
        } catch (e2) {
          if (errno(e2) !== 'EEXIST') throw fromSystemError(e2, 'write', cur);
          continue; // raced with ourselves; re-checked on the next call
        }
        this.#trusted.add(cur);
        continue;
      }
      if (!st.isDirectory()) {
        const what = st.isSymbolicLink() ? 'a symlink' : 'not a directory';
        throw new FerryError(ErrorCodes.PATH, `${cur}: is ${what} in the destination; refusing to write through it`, { subject: cur });
      }
      this.#trusted.add(cur);
    }
    return true;
  }

  #markDirty(rel: string): void {
    const parent = parentOf(rel);
    this.#touched.add(parent);
    const d = this.#dirs.get(parent);
    if (d) d.dirty = true;
    else if (parent === '' && this.#rootMeta) this.#dirs.set('', { rel: '', ...this.#rootMeta, dirty: true });
  }

  /** Remember DST's own mode/mtime (for `SRC/` copies, like rsync -a); applied in finish(). */
  setRootMetadata(mode: number, mtimeNs: bigint): void {
    this.#rootMeta = { mode, mtimeNs };
    this.#dirs.set('', { rel: '', mode, mtimeNs, dirty: true });
  }

  /**
   * Create (or adopt) a directory. An existing non-directory at its name (file or
   * symlink) is removed first, never followed. Mode and mtime are applied in finish().
   */
  async mkdir(entry: Entry): Promise<'created' | 'exists'> {
    const rel = validateRelativePath(entry.path);
    await this.#checkDir(parentOf(rel), true);
    const p = this.abs(rel);
    let st: BigIntStats | null = null;
    try {
      st = await this.m.lstat(p);
    } catch (e) {
      if (errno(e) !== 'ENOENT') throw fromSystemError(e, 'write', rel);
    }
    const want = this.mode(entry.mode);
    if (st && st.isDirectory()) {
      const have = Number(st.mode & 0o7777n);
      this.#trusted.add(rel);
      // Owner needs rwx while we fill it; the real mode is restored in finish().
      if ((have & 0o700) !== 0o700) {
        try {
          await this.m.chmod(p, have | 0o700);
        } catch (e) {
          throw fromSystemError(e, 'write', rel);
        }
      }
      const dirty = have !== want || !mtimesEqual(st.mtimeNs, entry.mtimeNs) || (have & 0o700) !== 0o700;
      this.#dirs.set(rel, { rel, mode: want, mtimeNs: entry.mtimeNs, dirty });
      return 'exists';
    }
    try {
      if (st) {
        await this.m.unlink(p);
        this.#markDirty(rel);
      }
      await this.m.mkdir(p, 0o700);
    } catch (e) {
      throw fromSystemError(e, 'write', rel);
    }
    this.#trusted.add(rel);
    this.#fresh.add(rel);
    this.#markDirty(rel);
    this.#dirs.set(rel, { rel, mode: want, mtimeNs: entry.mtimeNs, dirty: true });
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
    if (!(await this.#checkDir(parentOf(rel), false))) return 'missing';
    let st: BigIntStats;
    try {
      st = await this.m.lstat(this.abs(rel));
    } catch (e) {
      if (errno(e) === 'ENOENT') return 'missing';
      throw fromSystemError(e, 'write', rel);
    }
    switch (entry.kind) {
      case 'file':
        return this.#sameFile(st, entry) ? 'same' : 'differs';
      case 'dir':
        return st.isDirectory() ? 'same' : 'differs';
      case 'symlink': {
        if (!st.isSymbolicLink()) return 'differs';
        const t = await this.m.readlink(this.abs(rel)).catch(() => null);
        return t === entry.target ? 'same' : 'differs';
      }
      case 'hardlink': {
        if (!st.isFile() || entry.target === undefined) return 'differs';
        const target = validateHardlinkTarget(entry.target, rel);
        const tst = await this.m.lstat(this.abs(target)).catch(() => null);
        return tst !== null && tst.ino === st.ino && tst.dev === st.dev ? 'same' : 'differs';
      }
    }
  }

  /**
   * What DST holds at an entry's path (lstat, never followed), or null when nothing
   * (or its directory is missing): for the update policies (transfer/update-policy).
   */
  async lstatExisting(relPath: string): Promise<BigIntStats | null> {
    const rel = validateRelativePath(relPath);
    if (this.#fresh.has(parentOf(rel))) return null;
    if (!(await this.#checkDir(parentOf(rel), false))) return null;
    try {
      return await this.m.lstat(this.abs(rel));
    } catch (e) {
      if (errno(e) === 'ENOENT') return null;
      throw fromSystemError(e, 'write', rel);
    }
  }

  /**
   * The quick check for a regular file without a promise, when it can be decided at
   * once (synchronous metadata mode and a parent already checked this session);
   * null otherwise: then use quickCheck(). This is the no-op run's hot path.
   */
  quickCheckSync(entry: Entry): QuickCheck | null {
    if (!this.m.sync || entry.kind !== 'file') return null;
    const rel = validateRelativePath(entry.path);
    const parent = parentOf(rel);
    if (this.#fresh.has(parent)) return 'missing';
    if (!this.#trusted.has(parent)) return null;
    let st: BigIntStats | undefined;
    try {
      st = lstatSync(this.abs(rel), { bigint: true, throwIfNoEntry: false });
    } catch {
      return null;
    }
    if (st === undefined) return 'missing';
    return this.#sameFile(st, entry) ? 'same' : 'differs';
  }

  #sameFile(st: BigIntStats, entry: Entry): boolean {
    return (
      st.isFile() &&
      Number(st.size) === entry.size &&
      mtimesEqual(st.mtimeNs, entry.mtimeNs) &&
      Number(st.mode & 0o7777n) === this.mode(entry.mode)
    );
  }

  /** Start a file: returns its temp file (created lazily by write() or copyFrom()). */
  async beginFile(entry: Entry, opts: { resume?: boolean; inplace?: boolean } = {}): Promise<TempFile> {
    const rel = validateRelativePath(entry.path);
    if (entry.kind !== 'file') throw new FerryError(ErrorCodes.INTERNAL, `${rel}: beginFile on a ${entry.kind}`);
    const parent = parentOf(rel);
    await this.#checkDir(parent, true);
    this.#markDirty(rel);
    if (opts.inplace && !this.#fresh.has(parent)) {
      // --inplace: an existing regular file is rewritten under its own name (no
      // temp file, no rename; hard links to it see the change). Anything else there
      // (a symlink, a directory) is replaced the safe way, through a temp file.
      const st = await this.m.lstat(this.abs(rel)).catch(() => null);
      if (st?.isFile()) return new TempFile(this, entry, rel, this.abs(rel), true);
    }
    const dir = this.options.partialDir === undefined ? this.abs(parent) : await this.#tempDir(parent);
    const tempAbs = `${dir}/${tempNameFor(baseOf(rel))}`;
    const t = new TempFile(this, entry, rel, tempAbs);
    // Without resume a leftover temp file is removed when O_EXCL creation meets it.
    if (opts.resume) await t.adoptExisting();
    return t;
  }

  /**
   * `--link-dest`: publish `entry` as a hard link to `fromAbs`, a file outside DST
   * that the caller found identical (size, mtime, mode), atomically (temp name +
   * rename). link(2) does not follow a symlink at `fromAbs`, and the new link must be
   * the very inode that was checked (`ino`/`dev`), or nothing is published.
   */
  async linkFrom(entry: Entry, fromAbs: string, id: { ino: bigint; dev: bigint }): Promise<void> {
    const rel = validateRelativePath(entry.path);
    await this.#checkDir(parentOf(rel), true);
    this.#markDirty(rel);
    const tmp = `${this.abs(parentOf(rel))}/${tempNameFor(baseOf(rel))}`;
    try {
      await fsp.unlink(tmp).catch(() => {});
      await this.m.link(fromAbs, tmp);
      const st = await this.m.lstat(tmp);
      if (!st.isFile() || st.ino !== id.ino || st.dev !== id.dev) {
        throw new FerryError(ErrorCodes.CHANGED, `${rel}: the --link-dest file changed before it could be linked; not published`, { subject: rel });
      }
      await this.m.rename(tmp, this.abs(rel));
    } catch (e) {
      await fsp.unlink(tmp).catch(() => {});
      throw e instanceof FerryError ? e : fromSystemError(e, 'write', rel);
    }
  }

  /** Create a hard link to an already published file of this tree (atomic via temp name + rename). */
  async hardlink(entry: Entry): Promise<void> {
    const rel = validateRelativePath(entry.path);
    if (entry.target === undefined) throw new FerryError(ErrorCodes.PATH, `${rel}: hard link without a target`, { subject: rel });
    const target = validateHardlinkTarget(entry.target, rel);
    await this.#checkDir(parentOf(target), false);
    await this.#checkDir(parentOf(rel), true);
    const tabs = this.abs(target);
    let tst;
    try {
      tst = await this.m.lstat(tabs);
    } catch (e) {
      throw fromSystemError(e, 'write', rel);
    }
    if (!tst.isFile()) {
      throw new FerryError(ErrorCodes.PATH, `${rel}: hard link target ${target} is not a regular file in the destination`, { subject: rel });
    }
    const fin = this.abs(rel);
    const cur = await this.m.lstat(fin).catch(() => null);
    if (cur && cur.ino === tst.ino && cur.dev === tst.dev) return;
    this.#markDirty(rel);
    const tmp = `${this.abs(parentOf(rel))}/${tempNameFor(baseOf(rel))}`;
    try {
      await fsp.unlink(tmp).catch(() => {});
      await this.m.link(tabs, tmp);
      await this.m.rename(tmp, fin);
    } catch (e) {
      await fsp.unlink(tmp).catch(() => {});
      throw fromSystemError(e, 'write', rel);
    }
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
    if (!(await this.#checkDir(parentOf(rel), false))) return;
    this.#markDirty(rel);
    try {
      await fsp.rm(this.abs(rel), { recursive: true, force: true });
    } catch (e) {
      throw fromSystemError(e, 'write', rel);
    }
  }

  /** List a directory of DST (for --delete); ferry temp files are left out. */
  async listDir(relPath: string): Promise<Array<{ name: string; isDir: boolean }>> {
    if (relPath !== '') validateRelativePath(relPath);
    if (!(await this.#checkDir(relPath, false))) return [];
    let ents;
    try {
      ents = await fsp.readdir(this.abs(relPath), { withFileTypes: true });
    } catch (e) {
      if (errno(e) === 'ENOENT') return [];
      throw fromSystemError(e, 'write', relPath === '' ? this.root : relPath);
    }
    return ents.filter((d) => !isFerryTempName(d.name)).map((d) => ({ name: d.name, isDir: d.isDirectory() }));
  }

  /**
   * Create the queued symlinks, remove leftover temp files in the directories this
   * session wrote into, then set directory modes and mtimes deepest first.
   * Per-entry failures are returned (and passed to onEntry), never thrown.
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
    const pd = this.options.partialDir;
    for (const dir of this.#touched) {
      const ents = await fsp.readdir(this.abs(dir)).catch(() => [] as string[]);
      for (const name of ents) {
        if (isFerryTempName(name)) await fsp.unlink(`${this.abs(dir)}/${name}`).catch(() => {});
      }
      if (pd !== undefined) {
        // Only a real directory (checked as it was made or adopted) is cleaned.
        const pdRel = dir === '' ? pd : `${dir}/${pd}`;
        if (this.#trusted.has(pdRel)) {
          for (const name of await fsp.readdir(this.abs(pdRel)).catch(() => [] as string[])) {
            if (isFerryTempName(name)) await fsp.unlink(`${this.abs(pdRel)}/${name}`).catch(() => {});
          }
          await fsp.rmdir(this.abs(pdRel)).catch(() => {}); // only when empty
        }
      }
    }
    const dirs = [...this.#dirs.values()].filter((d) => d.dirty);
    dirs.sort((a, b) => (b.rel === '' ? 0 : pathDepth(b.rel)) - (a.rel === '' ? 0 : pathDepth(a.rel)));
    for (const d of dirs) {
      const p = this.abs(d.rel);
      try {
        await this.m.chmod(p, d.mode);
        const t = nsToSeconds(d.mtimeNs);
        await this.m.lutimes(p, t, t);
      } catch (x) {
        errors.push(fromSystemError(x, 'write', d.rel === '' ? this.root : d.rel));
      }
    }
    return errors;
  }

  async #makeSymlink(e: Entry): Promise<void> {
    const rel = e.path;
    await this.#checkDir(parentOf(rel), true);
    this.#markDirty(rel);
    const tmp = `${this.abs(parentOf(rel))}/${tempNameFor(baseOf(rel))}`;
    try {
      await fsp.unlink(tmp).catch(() => {});
      await this.m.symlink(e.target!, tmp);
      const t = nsToSeconds(e.mtimeNs);
      await this.m.lutimes(tmp, t, t);
      await this.m.rename(tmp, this.abs(rel));
    } catch (x) {
      await fsp.unlink(tmp).catch(() => {});
      throw fromSystemError(x, 'write', rel);
    }
  }

  get options(): Readonly<SafeWriterOptions> {
    return this.#opts;
  }
}

/**
 * One file being written. Data arrives either by `copyFrom(src)` (local copy: the
 * kernel moves it) or by `write(buf, offset)` calls in any order (network receive).
 */
export class TempFile {
  readonly #w: SafeWriter;
  readonly entry: Entry;
  readonly rel: string;
  readonly tempPath: string;
  #fh: FileHandle | null = null;
  #created = false;
  #done = false;
  /**
   * --inplace: `tempPath` is the final name of an existing regular file, opened
   * O_NOFOLLOW and truncated; commit() does not rename and abort() leaves what was
   * written (rsync's trade-off: an interrupted file is visible partly written).
   */
  readonly inplace: boolean;

  constructor(w: SafeWriter, entry: Entry, rel: string, tempPath: string, inplace = false) {
    this.#w = w;
    this.entry = entry;
    this.rel = rel;
    this.tempPath = tempPath;
    this.inplace = inplace;
  }

  /** @internal Remove a leftover temp file of an earlier run (it is ours by name). */
  async removeLeftover(): Promise<void> {
    try {
      await fsp.unlink(this.tempPath);
    } catch (e) {
      if (errno(e) !== 'ENOENT') throw fromSystemError(e, 'write', this.rel);
    }
  }

  /** @internal Keep an earlier run's temp file if it is a plain regular file. */
  async adoptExisting(): Promise<void> {
    let fh: FileHandle;
    try {
      fh = await fsp.open(this.tempPath, C.O_WRONLY | C.O_NOFOLLOW);
    } catch (e) {
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

  async #open(): Promise<FileHandle> {
    if (this.#fh) return this.#fh;
    if (this.inplace) {
      try {
        // O_NOFOLLOW: a symlink swapped in since beginFile() is refused (ELOOP), and
        // O_NONBLOCK keeps a FIFO from blocking the open; only a regular file is written.
        const fh = await fsp.open(this.tempPath, C.O_WRONLY | C.O_NOFOLLOW | C.O_NONBLOCK);
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
    try {
      try {
        this.#fh = await fsp.open(this.tempPath, flags, 0o600);
      } catch (e) {
        if (errno(e) !== 'EEXIST') throw e;
        await this.removeLeftover(); // an interrupted run's temp file (ours by name)
        this.#fh = await fsp.open(this.tempPath, flags, 0o600);
      }
    } catch (e) {
      throw fromSystemError(e, 'write', this.rel);
    }
    this.#created = true;
    return this.#fh;
  }

  /** Write `buf` at `offset` (any order; holes stay holes). */
  async write(buf: Uint8Array, offset: number): Promise<void> {
    const fh = await this.#open();
    let done = 0;
    try {
      while (done < buf.length) {
        const { bytesWritten } = await fh.write(buf, done, buf.length - done, offset + done);
        done += bytesWritten;
      }
    } catch (e) {
      throw fromSystemError(e, 'write', this.rel);
    }
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
   * (issue #11).
   * Returns the number of bytes copied.
   */
  async copyFrom(src: string | number, opts: CopyOptions): Promise<number> {
    const wo = this.#w.options;
    const sparse = opts.allocated !== undefined && opts.allocated < opts.size;
    const srcAbs = typeof src === 'string' ? src : fdPath(src);
    if (sparse || wo.readWrite || srcAbs === null || this.inplace) return this.copyReadWrite(src, opts.size, sparse);
    if (this.#fh) throw new FerryError(ErrorCodes.INTERNAL, `${this.rel}: copyFrom after write`);
    const flags = C.COPYFILE_EXCL | C.COPYFILE_FICLONE;
    try {
      try {
        await fsp.copyFile(srcAbs, this.tempPath, flags);
      } catch (e) {
        if (errno(e) !== 'EEXIST') throw e;
        await this.removeLeftover(); // an interrupted run's temp file (ours by name)
        await fsp.copyFile(srcAbs, this.tempPath, flags);
      }
      this.#created = true;
    } catch (e) {
      // libuv may have created the temp file before failing; abort() unlinks it.
      this.#created = errno(e) !== 'EEXIST';
      throw await this.#classify(e, srcAbs);
    }
    return opts.size;
  }

  /** read/write copy; with `sparse`, all-zero chunks are skipped and left as holes. */
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
      const zero = sparse ? Buffer.alloc(chunk) : null;
      let off = 0;
      for (;;) {
        let n: number;
        try {
          n = await read(buf, chunk, off);
        } catch (e) {
          throw fromSystemError(e, 'read', this.rel);
        }
        if (n === 0) break;
        const data = buf.subarray(0, n);
        if (!(zero && data.equals(zero.subarray(0, n)))) await this.write(data, off);
        off += n;
      }
      if (sparse || off !== size) await fh.truncate(off).catch((e: unknown) => { throw fromSystemError(e, 'write', this.rel); });
      return off;
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
    const t = nsToSeconds(this.entry.mtimeNs);
    try {
      if (!this.#created) await this.#open();
      if (this.#fh) {
        this.#checkSize(Number((await this.#fh.stat()).size));
        await this.#fh.chmod(mode);
        if (w.options.fsync) await this.#fh.sync();
        await this.#fh.utimes(t, t);
        await this.#fh.close();
        this.#fh = null;
        if (this.inplace) {
          this.#done = true;
          return;
        }
      } else {
        this.#checkSize(Number((await w.m.lstat(this.tempPath)).size));
        // copyFile already gave it the source's mode; fix it only when bits were stripped.
        if (mode !== this.entry.mode) await w.m.chmod(this.tempPath, mode);
        if (w.options.fsync) {
          const fh = await fsp.open(this.tempPath, C.O_RDONLY | C.O_NOFOLLOW);
          await fh.sync().finally(() => fh.close());
        }
        await w.m.lutimes(this.tempPath, t, t);
      }
      await w.m.rename(this.tempPath, w.abs(this.rel));
      this.#done = true;
    } catch (e) {
      await this.abort();
      throw fromSystemError(e, 'write', this.rel);
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

  /**
   * Close the temp file but keep it on disk, for a later run to resume (a session
   * that broke). Nothing more is done with this TempFile afterwards. Never throws.
   */
  async release(): Promise<void> {
    if (this.#done) return;
    this.#done = true;
    if (this.#fh) {
      await this.#fh.close().catch(() => {});
      this.#fh = null;
    }
  }

  /** Drop the temp file (failed or cancelled transfer). Never throws. */
  async abort(): Promise<void> {
    if (this.#done) return;
    this.#done = true;
    if (this.#fh) {
      await this.#fh.close().catch(() => {});
      this.#fh = null;
    }
    if (this.#created && !this.inplace) await fsp.unlink(this.tempPath).catch(() => {});
  }
}
