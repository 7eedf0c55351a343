/**
 * Local copy: `ferry copy SRC DST`, the Source (fs/walk) wired straight to the Sink
 * (fs/safe-writer) with the kernel moving the bytes (copy_file_range / FICLONE via
 * libuv's copyfile) instead of frames.
 *
 * Pipeline: the walker streams entries in batches; each entry becomes a task, and at
 * most `jobs × queueDepth` tasks are in flight (a semaphore taken before the next
 * entry is pulled, so a slow destination also slows the walk). Directories are
 * created before anything inside them (each entry awaits its parent's promise); a
 * hard link awaits its target file; symlinks and directory metadata are applied by
 * the writer's finish(), after every file.
 *
 * Incremental runs: each file is first checked with the writer's quick check (lstat
 * of DST only: size, mtime to the nanosecond, mode), so a no-op run is one lstat
 * per entry on each side and no reads. With the native walk both lstats come from
 * one call per directory (fs/walk `peer`: DST's verified directory of the same
 * path, stat'ed beside the source's listing); the writer judges each record. A file whose content is
 * right but whose mode differs, or whose mtime differs while a byte-by-byte
 * comparison (or, with `--checksum`, the content hash of fs/checksum on both sides)
 * finds the same bytes, has its metadata mended in place, like rsync: no temp file,
 * no data written, the inode kept.
 *
 * Source files are opened by fs/source-file's `openSource` and must be, before a
 * byte is copied or hashed, the regular file (device, inode, size, mtime) the walk
 * listed: a parent directory swapped for a symlink, or a FIFO swapped in, is
 * FERRY_E_CHANGED (issue #11). The kernel's copy then reads that open file (see
 * TempFile.copyFrom), not the path again.
 *
 * Change detection: after the data is copied and before the temp file is renamed,
 * the open source is fstat'ed again; a different size or mtime means it changed while being copied (FERRY_E_CHANGED): the temp file is
 * dropped and the file reported. `hooks.afterData` lets tests change the source at
 * exactly that moment, and `hooks.beforeOpen` between the walk and the open.
 *
 * `--delete` runs after the copy, only when the walk had no read errors (an
 * unreadable source directory must not make its DST copy look obsolete, rsync's
 * rule); entries matching an exclude pattern are never deleted.
 *
 * Counters (`CopyCounters`) are updated in place so the CLI can render progress
 * from them at its own pace; the engine itself never prints.
 */
import { closeSync, fstatSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import type { SourceEntry } from '../core/entry.js';
import { ErrorCodes, FerryError, fromSystemError } from '../core/errors.js';
import { BatchCopier, nativeCopyAvailable } from '../fs/batch-copy.js';
import { hashFile, hashHandlePrefix, sameContent } from '../fs/checksum.js';
import { compileExcludes, compileFilters, type FilterRule } from '../fs/exclude.js';
import { walkFilesFrom } from '../fs/files-from.js';
import { removeSource } from '../fs/remove-source.js';
import { NO_POLICY, existingFromStat, hasPolicy, keepExisting, type KeepReason, type UpdatePolicy } from '../transfer/update-policy.js';
import { Budget } from '../transfer/queue.js';
import { parentOf } from '../fs/path-safety.js';
import { SafeWriter, mtimesEqual, type FileTarget, type QuickCheck } from '../fs/safe-writer.js';
import { xattrsAvailable, xattrsUnsupported } from '../fs/meta-native.js';
import { readXattrs, xattrPolicy } from '../fs/xattrs.js';
import { openSource, openSourceSync, sourceError, sourceMismatch } from '../fs/source-file.js';
import { resolveSource, walk, type SourceRoot } from '../fs/walk.js';

export interface CopyOptions {
  src: string;
  dst: string;
  /** Operations in flight per job (uring-sync's -q; default 64). */
  queueDepth?: number;
  /** uring-sync's workers; in ferry, jobs × queueDepth operations in flight (default 1). */
  jobs?: number;
  /** Buffer size for read/write and sparse copies and for hashing (default 128 KiB). */
  chunkSize?: number;
  dryRun?: boolean;
  checksum?: boolean;
  delete?: boolean;
  exclude?: readonly string[];
  /** --include/--exclude in command-line order (first match wins); replaces `exclude` when given. */
  filters?: readonly FilterRule[];
  /** --files-from: only these paths (relative to SRC, already parsed by fs/files-from). */
  filesFrom?: readonly string[];
  /** -r with --files-from: descend into listed directories. */
  recursive?: boolean;
  /** --size-only, --ignore-existing, -u (transfer/update-policy). */
  policy?: UpdatePolicy;
  /** --remove-source-files: delete each source file once its copy is published (or found up to date). */
  removeSourceFiles?: boolean;
  /**
   * --link-dest=DIR (repeatable): a file that DIR/<path> holds identically (size,
   * mtime, mode) is hard-linked from there instead of copied (snapshots). A relative
   * DIR is relative to DST, as in rsync.
   */
  linkDest?: readonly string[];
  /**
   * --inplace: an existing DST file is rewritten under its own name (no temp file,
   * no atomic publish: interrupted, it is visible partly written; never through a
   * symlink: fs/safe-writer).
   */
  inplace?: boolean;
  /** --partial-dir: temp files in this directory (one name) inside each target directory. */
  partialDir?: string;
  /** -x: do not enter directories on other filesystems. */
  oneFileSystem?: boolean;
  /** -L: copy what symlinks point to. */
  followLinks?: boolean;
  preserveSpecialBits?: boolean;
  /**
   * Keep numeric owners / groups (-o/-g). Default (undefined): both when running as
   * root (like cp -a and rsync -a), neither otherwise; false: never (--no-owner,
   * --no-group). As non-root they apply only where the kernel permits.
   */
  owner?: boolean;
  group?: boolean;
  /** -X: extended attributes (user.*; as root also trusted.* and security.*); -A: ACLs. Need the native addon. */
  xattrs?: boolean;
  acls?: boolean;
  /** --no-splice: read/write instead of copy_file_range. */
  readWrite?: boolean;
  fsync?: boolean;
  onEvent?: (ev: CopyEvent) => void;
  hooks?: CopyHooks;
}

export interface CopyHooks {
  /** Called before a source file is opened to be hashed or copied (after the walk listed it). */
  beforeOpen?: (entry: SourceEntry) => Promise<void> | void;
  /** Called after a file's data is in its temp file, before the change check and rename. */
  afterData?: (entry: SourceEntry, tempPath: string) => Promise<void> | void;
}

export type CopyEvent =
  | { type: 'copied' | 'skipped' | 'meta-fixed' | 'deleted' | 'created-dir' | 'removed-source' | 'linked'; path: string; kind: string }
  /** Left as DST has it by --ignore-existing / -u / --size-only. */
  | { type: 'kept'; path: string; kind: string; reason: KeepReason }
  | { type: 'failed' | 'warning'; path: string; error: FerryError };

/** Live counters; the CLI's progress and summary renderers read these. */
export interface CopyCounters {
  /** Non-directory entries seen so far (grows while the walk runs). */
  filesTotal: number;
  /** Non-directory entries finished (copied, skipped or failed). */
  filesDone: number;
  /** Bytes of regular files seen so far / finished (copied or found up to date). */
  bytesTotal: number;
  bytesDone: number;
  /** Bytes actually copied. */
  bytesCopied: number;
  entries: number;
  dirs: number;
  /** Symlinks walked (for --stats). */
  symlinks: number;
  dirsCreated: number;
  copied: number;
  skipped: number;
  /** Entries whose content was right and whose mode or times were mended in place. */
  metaFixed: number;
  failed: number;
  warnings: number;
  deleted: number;
  /** Source files deleted by --remove-source-files. */
  sourcesRemoved: number;
  walkDone: boolean;
  /** performance.now() at the start. */
  startedAt: number;
}

export interface CopyResult {
  counters: CopyCounters;
  errors: FerryError[];
  warnings: FerryError[];
  seconds: number;
  /** The destination root actually written (DST, or DST's parent for a renamed single file). */
  dstRoot: string;
}

export function newCounters(): CopyCounters {
  return {
    filesTotal: 0, filesDone: 0, bytesTotal: 0, bytesDone: 0, bytesCopied: 0,
    entries: 0, dirs: 0, symlinks: 0, dirsCreated: 0, copied: 0, skipped: 0, metaFixed: 0, failed: 0, warnings: 0, deleted: 0, sourcesRemoved: 0,
    walkDone: false, startedAt: performance.now(),
  };
}

/** Entries the walk may run ahead of the copies (metadata only: ~100 MB at most). */
const WALK_AHEAD = 200_000;

async function realpathOrNearest(p: string): Promise<string> {
  // realpath of the deepest existing ancestor, plus the rest: where DST will really be.
  let cur = path.resolve(p);
  const rest: string[] = [];
  for (;;) {
    try {
      return path.join(await fsp.realpath(cur), ...rest.reverse());
    } catch {
      const up = path.dirname(cur);
      if (up === cur) return path.resolve(p);
      rest.push(path.basename(cur));
      cur = up;
    }
  }
}

/** Decide where things go (rsync's rules) and refuse DST inside SRC, before writing anything. */
export async function planCopy(src: string, dst: string, o: { filesFrom?: boolean; followLinks?: boolean } = {}): Promise<{ root: SourceRoot; dstRoot: string }> {
  let root = await resolveSource(src, { followLinks: o.followLinks === true });
  if (o.filesFrom) {
    // rsync: with --files-from, SRC is the directory the listed paths are relative to.
    if (root.kind !== 'dir') throw new FerryError(ErrorCodes.USAGE, `${src}: --files-from needs a directory as SRC`, { subject: src });
    root = { ...root, prefix: '' };
  }
  if (root.kind === 'file') {
    let dstIsDir = dst.endsWith('/');
    try {
      dstIsDir = dstIsDir || (await fsp.stat(dst)).isDirectory();
    } catch {
      /* missing: DST is the new file's name */
    }
    if (dstIsDir) return { root, dstRoot: path.resolve(dst) };
    const abs = path.resolve(dst);
    return { root: { ...root, prefix: path.basename(abs) }, dstRoot: path.dirname(abs) };
  }
  const srcReal = await fsp.realpath(root.absPath);
  const dstReal = await realpathOrNearest(dst);
  const target = root.prefix === '' ? dstReal : path.join(dstReal, root.prefix);
  if (target === srcReal || target.startsWith(srcReal === '/' ? '/' : `${srcReal}/`) || dstReal === srcReal || dstReal.startsWith(`${srcReal}/`)) {
    throw new FerryError(ErrorCodes.DST_IN_SRC, `${dst}: destination is inside the source ${src}`, { subject: dst });
  }
  return { root, dstRoot: path.resolve(dst) };
}

/** Which owners the writer keeps (see CopyOptions.owner/group). */
export function ownerPolicy(o: { owner?: boolean; group?: boolean }): { uid: boolean; gid: boolean } {
  const root = process.geteuid?.() === 0;
  return { uid: o.owner ?? root, gid: o.group ?? root };
}

export async function runCopy(opts: CopyOptions, counters: CopyCounters = newCounters()): Promise<CopyResult> {
  const opened: SafeWriter[] = [];
  try {
    return await copyTree(opts, counters, opened);
  } finally {
    for (const w of opened) w.close(); // its directory descriptors
  }
}

async function copyTree(opts: CopyOptions, counters: CopyCounters, opened: SafeWriter[]): Promise<CopyResult> {
  const started = performance.now();
  counters.startedAt = started;
  const exclude = opts.filters ? compileFilters(opts.filters) : compileExcludes(opts.exclude ?? []);
  const { root, dstRoot } = await planCopy(opts.src, opts.dst, { filesFrom: opts.filesFrom !== undefined, followLinks: opts.followLinks === true });
  const policy = opts.policy ?? NO_POLICY;
  const withPolicy = hasPolicy(policy);
  /** --remove-source-files: entries whose copy is in DST, removed at the end. */
  const removable: SourceEntry[] | null = opts.removeSourceFiles ? [] : null;
  const queuedLinks = new Map<string, SourceEntry>();
  const linkDirs = (opts.linkDest ?? []).map((d) => path.resolve(dstRoot, d));
  const dryRun = opts.dryRun === true;
  const xattrs = xattrPolicy({ xattrs: opts.xattrs === true, acls: opts.acls === true, capabilities: opts.preserveSpecialBits === true });
  if (xattrs !== undefined && !xattrsAvailable()) throw xattrsUnsupported(opts.src);
  const writerOpts = {
    dryRun,
    chunkSize: opts.chunkSize ?? 128 * 1024,
    readWrite: opts.readWrite === true,
    preserveSpecialBits: opts.preserveSpecialBits === true,
    fsync: opts.fsync === true,
    owners: ownerPolicy(opts),
    ...(xattrs ? { xattrs } : {}),
    ...(opts.partialDir !== undefined ? { partialDir: opts.partialDir } : {}),
  };
  const writer = await SafeWriter.open(dstRoot, writerOpts);
  opened.push(writer);
  /** Read the source's attributes into the entry (once; throws the system error). */
  const withXattrs = (e: SourceEntry): void => {
    if (xattrs === undefined || e.xattrs !== undefined) return;
    e.xattrs = e.kind === 'symlink' || e.kind === 'hardlink' ? [] : readXattrs(e.absPath, false, xattrs);
  };
  // Regular, non-sparse files go through the native data plane in batches when it is
  // there (fs/batch-copy.ts); the rest, and everything under FERRY_NATIVE=0, through
  // the TempFile path below. Tests that hook between data and publish use the latter.
  const copier = !dryRun && !writerOpts.readWrite && !opts.inplace && opts.partialDir === undefined && !opts.hooks?.afterData && nativeCopyAvailable() ? new BatchCopier({ fsync: writerOpts.fsync }) : null;
  const errors: FerryError[] = [];
  const warnings: FerryError[] = [];
  const emit = opts.onEvent ?? ((): void => {});
  let readErrors = 0;

  const fail = (p: string, e: unknown, op: 'read' | 'write' = 'write'): void => {
    const err = e instanceof FerryError ? e : fromSystemError(e, op, p);
    errors.push(err);
    counters.failed++;
    emit({ type: 'failed', path: p, error: err });
  };
  const onProblem = (e: FerryError): void => {
    if (e.code === ErrorCodes.UNSUPPORTED) {
      warnings.push(e);
      counters.warnings++;
      emit({ type: 'warning', path: e.subject ?? '', error: e });
    } else {
      readErrors++;
      fail(e.subject ?? '', e);
    }
  };

  if (root.kind === 'dir' && root.prefix === '' && !dryRun) {
    const st = await fsp.stat(root.absPath, { bigint: true });
    const rootXattrs = xattrs ? readXattrs(root.absPath, true, xattrs) : undefined;
    writer.setRootMetadata(Number(st.mode & 0o7777n), st.mtimeNs, { uid: Number(st.uid), gid: Number(st.gid), ...(rootXattrs ? { xattrs: rootXattrs } : {}) });
  }

  const sem = new Budget(Math.max(1, (opts.jobs ?? 1) * (opts.queueDepth ?? 64)));
  /** Resolves true when the directory is ready for children, false when it failed. */
  const dirReady = new Map<string, Promise<boolean>>();
  dirReady.set('', Promise.resolve(true));
  /** Hard-link targets: resolves true once the file is published (or up to date). */
  const linkTargets = new Map<string, Promise<boolean>>();
  const seen = opts.delete ? new Set<string>() : null;
  const sourceDirs: string[] = root.kind === 'dir' && root.prefix === '' ? [''] : [];
  const tasks = new Set<Promise<void>>();

  const parentReady = (p: string): Promise<boolean> => dirReady.get(parentOf(p)) ?? Promise.resolve(true);
  /** Directories known ready (synchronously), for the no-op fast path. */
  const dirOk = new Set<string>(['']);

  const doDir = async (e: SourceEntry): Promise<boolean> => {
    const ok = await doDirInner(e);
    if (ok) dirOk.add(e.path);
    return ok;
  };
  const doDirInner = async (e: SourceEntry): Promise<boolean> => {
    if (!(await parentReady(e.path))) return false;
    try {
      withXattrs(e);
      if (dryRun) {
        const q = await writer.quickCheck(e);
        if (q !== 'same') counters.dirsCreated++;
        return true;
      }
      const r = await writer.mkdir(e);
      if (r === 'created') {
        counters.dirsCreated++;
        emit({ type: 'created-dir', path: e.path, kind: 'dir' });
      }
      return true;
    } catch (x) {
      fail(e.path, x);
      return false;
    }
  };

  /**
   * The quick check, then the content where it is in doubt: with --checksum every
   * file of the same size is hashed on both sides; without it, a file whose size
   * matches but whose mtime differs ('touched') is compared byte for byte. Equal
   * content with other metadata is 'meta': mended in place, no data copied.
   */
  const checkFile = async (e: SourceEntry, known?: QuickCheck): Promise<QuickCheck> => {
    const q = known ?? (await writer.quickCheck(e));
    if (e.kind !== 'file' || !(q === 'touched' || (opts.checksum && (q === 'same' || q === 'meta')))) return q;
    if (opts.hooks?.beforeOpen) await opts.hooks.beforeOpen(e);
    const fh = await openSource(e);
    let equal: boolean;
    try {
      if (opts.checksum) {
        const a = (await hashHandlePrefix(fh)).toString('hex');
        equal = a === (await writer.withEntryPath(e.path, (p) => hashFile(p)).catch(() => ''));
      } else {
        equal = await writer.withEntryPath(e.path, (p) => sameContent(fh, p, e.size, opts.chunkSize ?? 1 << 20)).catch(() => false);
      }
    } catch (x) {
      throw x instanceof FerryError ? x : fromSystemError(x, 'read', e.path);
    } finally {
      await fh.close().catch(() => {});
    }
    if (!equal) return 'differs';
    return q === 'same' ? 'same' : 'meta';
  };

  const policyKeeps = async (e: SourceEntry): Promise<KeepReason | null> => {
    const st = await writer.lstatExisting(e.path);
    return keepExisting(policy, e, st === null ? null : existingFromStat(st));
  };

  /** --link-dest: the first DIR holding this file identically (lstat: a symlink there never counts). */
  const linkSource = async (e: SourceEntry): Promise<{ abs: string; ino: bigint; dev: bigint } | null> => {
    for (const d of linkDirs) {
      const abs = path.join(d, e.path);
      const st = await fsp.lstat(abs, { bigint: true }).catch(() => null);
      if (st && st.isFile() && Number(st.size) === e.size && mtimesEqual(st.mtimeNs, e.mtimeNs) && Number(st.mode & 0o7777n) === writer.mode(e.mode)) {
        return { abs, ino: st.ino, dev: st.dev };
      }
    }
    return null;
  };

  const doFile = async (e: SourceEntry): Promise<boolean> => {
    if (!(await parentReady(e.path))) {
      fail(e.path, new FerryError(ErrorCodes.WRITE, `${e.path}: not copied: its directory could not be created`, { subject: e.path }));
      return false;
    }
    try {
      withXattrs(e);
      // The update policies decide before any content is compared (--size-only never
      // reads a file of the same size); a file whose content is right but whose
      // metadata differs ('meta') is kept untouched only by --ignore-existing.
      const q0 = withPolicy ? await writer.quickCheck(e) : undefined;
      const kept = q0 !== undefined && q0 !== 'same' && q0 !== 'missing' && (q0 !== 'meta' || policy.ignoreExisting) ? await policyKeeps(e) : null;
      const q = kept !== null ? 'same' : await checkFile(e, q0);
      if (q === 'same' || kept !== null) {
        counters.skipped++;
        counters.bytesDone += e.size;
        if (kept === null) emit({ type: 'skipped', path: e.path, kind: e.kind });
        else emit({ type: 'kept', path: e.path, kind: e.kind, reason: kept });
        if (kept === null || kept === 'same-size') removable?.push(e);
        return true;
      }
      if (q === 'meta') {
        // The content is right: mode and times are mended in place (rsync's ".f...p.t").
        if (!dryRun) await writer.fixMetadata(e);
        counters.metaFixed++;
        counters.bytesDone += e.size;
        emit({ type: 'meta-fixed', path: e.path, kind: e.kind });
        removable?.push(e);
        return true;
      }
      const from = linkDirs.length > 0 && e.kind === 'file' ? await linkSource(e) : null;
      if (from !== null) {
        if (!dryRun) await writer.linkFrom(e, from.abs, from);
        counters.skipped++;
        counters.bytesDone += e.size;
        emit({ type: 'linked', path: e.path, kind: e.kind });
        removable?.push(e);
        return true;
      }
      if (dryRun) {
        counters.copied++;
        counters.bytesDone += e.size;
        emit({ type: 'copied', path: e.path, kind: e.kind });
        return true;
      }
      if (e.kind === 'symlink') {
        writer.symlink(e); // created in finish(); counted there
        if (removable) queuedLinks.set(e.path, e);
        return true;
      }
      if (e.kind === 'hardlink') {
        const ok = await (linkTargets.get(e.target ?? '') ?? Promise.resolve(true));
        if (!ok) throw new FerryError(ErrorCodes.WRITE, `${e.path}: not linked: its target ${e.target ?? ''} failed`, { subject: e.path });
        await writer.hardlink(e);
      } else if (copier && e.allocated >= e.size && !writer.needsExtraMeta(e)) {
        if (opts.hooks?.beforeOpen) await opts.hooks.beforeOpen(e);
        const t = await writer.beginFile(e);
        // The native copier works inside the directory's verified descriptor (openat/renameat).
        const dir = t.holdDir();
        try {
          await copier.copy({ entry: e, dirFd: dir.fd, temp: t.tempName, name: t.name, mode: writer.mode(e.mode), fresh: q === 'missing' });
        } finally {
          dir.release();
        }
        counters.bytesCopied += e.size;
      } else {
        if (opts.hooks?.beforeOpen) await opts.hooks.beforeOpen(e);
        // On this thread, like the other metadata calls: open and fstat cost a few
        // µs, a trip through the thread pool each far more (fs/meta-ops).
        let src: number;
        try {
          src = openSourceSync(e);
        } catch (x) {
          throw sourceError(x, e.path);
        }
        try {
          const t = await writer.beginFile(e, { inplace: opts.inplace === true });
          try {
            const n = await t.copyFrom(src, { size: e.size, allocated: e.allocated });
            if (opts.hooks?.afterData) await opts.hooks.afterData(e, t.tempPath);
            let now;
            try {
              now = fstatSync(src, { bigint: true });
            } catch (x) {
              throw fromSystemError(x, 'read', e.path);
            }
            if (sourceMismatch(now, e) !== null || n !== e.size) {
              throw new FerryError(ErrorCodes.CHANGED, `${e.path}: source changed while being copied (size ${e.size} -> ${now.size}); not published`, { subject: e.path });
            }
            await t.commit();
          } catch (x) {
            await t.abort();
            throw x;
          }
        } finally {
          closeSync(src);
        }
        counters.bytesCopied += e.size;
      }
      counters.copied++;
      counters.bytesDone += e.size;
      emit({ type: 'copied', path: e.path, kind: e.kind });
      removable?.push(e);
      return true;
    } catch (x) {
      fail(e.path, x);
      return false;
    } finally {
      counters.filesDone++;
    }
  };

  /** Count a task until it settles, then free its slot. */
  const track = (p: Promise<boolean>): void => {
    const task = p.then(
      () => undefined,
      () => undefined,
    );
    tasks.add(task);
    void task.finally(() => {
      tasks.delete(task);
      sem.release();
    });
  };

  const schedule = async (e: SourceEntry): Promise<void> => {
    await sem.acquire();
    let p: Promise<boolean>;
    if (e.kind === 'dir') {
      p = doDir(e);
      dirReady.set(e.path, p);
      sourceDirs.push(e.path);
    } else {
      p = doFile(e);
      if (e.kind === 'file' && e.nlink > 1) linkTargets.set(e.path, p);
    }
    track(p);
  };

  /**
   * The batched fast path: a regular file whose directory is ready and whose quick
   * check is decided goes straight to the native copier, with the same decisions as
   * doFile (writer.fileTarget names it, the copier publishes it) and no promise
   * chain of its own: on 100k small files that chain cost more CPU than the copy.
   */
  let batchedPending = 0;
  let batchedDrained: (() => void) | null = null;
  const copyBatched = (e: SourceEntry, fresh: boolean, target: FileTarget): void => {
    let linked: ((ok: boolean) => void) | null = null;
    if (e.nlink > 1) linkTargets.set(e.path, new Promise<boolean>((r) => (linked = r)));
    batchedPending++;
    copier!.submit({ entry: e, dirFd: target.dirFd, name: target.name, mode: target.mode, fresh }, (err) => {
      target.release();
      counters.filesDone++;
      if (err === null) {
        counters.bytesCopied += e.size;
        counters.copied++;
        counters.bytesDone += e.size;
        emit({ type: 'copied', path: e.path, kind: e.kind });
        removable?.push(e);
      } else {
        fail(e.path, err);
      }
      (linked as ((ok: boolean) => void) | null)?.(err === null);
      sem.release();
      if (--batchedPending === 0 && batchedDrained !== null) batchedDrained();
    });
  };
  const batchedDone = (): Promise<void> =>
    batchedPending === 0 ? Promise.resolve() : new Promise<void>((r) => (batchedDrained = r));

  // The walk runs ahead of the copies (its entries are metadata only, ~100k is fine)
  // so the totals, and with them the ETA, are known early.
  const queue: SourceEntry[][] = [];
  let walking = true;
  let walkError: unknown = null;
  let wakeCopier: (() => void) | null = null;
  let wakeWalker: (() => void) | null = null;
  let queued = 0;
  const wake = (): void => {
    const w = wakeCopier;
    wakeCopier = null;
    w?.();
  };
  const walker = (async (): Promise<void> => {
    try {
      const walkOpts = {
        exclude,
        onProblem,
        concurrency: Math.min(256, opts.queueDepth ?? 64),
        oneFileSystem: opts.oneFileSystem === true,
        followLinks: opts.followLinks === true,
        // The no-op fast path below: DST's lstat of each file comes with the listing.
        ...(opts.checksum ? {} : { peer: (rel: string) => writer.peerDir(rel) }),
      };
      const source = opts.filesFrom ? walkFilesFrom(root.absPath, opts.filesFrom, { ...walkOpts, recursive: opts.recursive === true }) : walk(root, walkOpts);
      for await (const batch of source) {
        for (const e of batch) {
          counters.entries++;
          if (e.kind === 'dir') counters.dirs++;
          else {
            if (e.kind === 'symlink') counters.symlinks++;
            counters.filesTotal++;
            counters.bytesTotal += e.size;
          }
        }
        queue.push(batch);
        queued += batch.length;
        wake();
        // Bounded look-ahead: past WALK_AHEAD entries the walk waits for the copies.
        while (queued > WALK_AHEAD) await new Promise<void>((r) => (wakeWalker = r));
      }
    } catch (x) {
      walkError = x;
    } finally {
      walking = false;
      counters.walkDone = true;
      wake();
    }
  })();
  async function* entries(): AsyncGenerator<SourceEntry[]> {
    for (;;) {
      const b = queue.shift();
      if (b !== undefined) {
        queued -= b.length;
        if (queued <= WALK_AHEAD) {
          const w = wakeWalker;
          wakeWalker = null;
          w?.();
        }
        yield b;
      }
      else if (!walking) return;
      else await new Promise<void>((r) => (wakeCopier = r));
    }
  }

  try {
    for await (const batch of entries()) {
      for (const e of batch) {
        seen?.add(e.path);
        // No-op fast path: an up-to-date file in a ready directory is settled here,
        // with one synchronous lstat and no task, promise or semaphore.
        if (e.kind === 'file' && !opts.checksum && dirOk.has(parentOf(e.path))) {
          let q: QuickCheck | null = null;
          try {
            withXattrs(e);
            q = (e.peer !== undefined ? writer.quickCheckPeer(e, e.peer) : null) ?? writer.quickCheckSync(e);
          } catch {
            q = null; // let the full path report it
          }
          if (q === 'same') {
            counters.skipped++;
            counters.filesDone++;
            counters.bytesDone += e.size;
            if (e.nlink > 1) linkTargets.set(e.path, Promise.resolve(true));
            emit({ type: 'skipped', path: e.path, kind: e.kind });
            removable?.push(e);
            continue;
          }
          // Only data to copy goes here ('missing', 'differs'): 'meta' and 'touched' take the
          // full path, which mends metadata in place or compares the content first; so do
          // files an update policy may keep ('differs') or --link-dest may link.
          const target =
            (q === 'missing' || (q === 'differs' && !withPolicy)) && linkDirs.length === 0 && copier && !opts.hooks?.beforeOpen && e.allocated >= e.size && !writer.needsExtraMeta(e) ? writer.fileTarget(e) : null;
          if (target !== null) {
            if (!sem.tryAcquire()) await sem.acquire();
            copyBatched(e, q === 'missing', target);
            continue;
          }
        }
        await schedule(e);
      }
    }
  } finally {
    await walker;
    await Promise.all([...tasks]);
    await batchedDone();
    copier?.close();
  }
  if (walkError !== null) throw walkError;

  if (opts.delete) {
    if (readErrors > 0) {
      const w = new FerryError(ErrorCodes.READ, 'not deleting anything in the destination: the source had read errors', { subject: opts.src });
      warnings.push(w);
      counters.warnings++;
      emit({ type: 'warning', path: opts.src, error: w });
    } else {
      await deleteExtraneous(writer, sourceDirs, seen!, exclude, dirReady, dryRun, counters, emit, fail);
    }
  }

  if (!dryRun) {
    const fin = await writer.finish({
      onEntry: (e, err) => {
        if (err) {
          fail(e.path, err);
        } else {
          counters.copied++;
          emit({ type: 'copied', path: e.path, kind: e.kind });
          const src = queuedLinks.get(e.path);
          if (src) removable?.push(src);
        }
      },
    });
    // Symlink failures were reported through onEntry; the rest (directory metadata) here.
    for (const e of fin) if (!errors.includes(e)) fail(e.subject ?? '', e);
    if (removable) {
      for (const e of removable) {
        const err = removeSource(e);
        if (err === null) {
          counters.sourcesRemoved++;
          emit({ type: 'removed-source', path: e.path, kind: e.kind });
        } else {
          warnings.push(err);
          counters.warnings++;
          emit({ type: 'warning', path: e.path, error: err });
        }
      }
    }
  }
  return { counters, errors, warnings, seconds: (performance.now() - started) / 1000, dstRoot };
}

async function deleteExtraneous(
  writer: SafeWriter,
  sourceDirs: string[],
  seen: Set<string>,
  exclude: (p: string, isDir: boolean) => boolean,
  dirReady: Map<string, Promise<boolean>>,
  dryRun: boolean,
  counters: CopyCounters,
  emit: (ev: CopyEvent) => void,
  fail: (p: string, e: unknown) => void,
): Promise<void> {
  for (const dir of sourceDirs) {
    if (!(await (dirReady.get(dir) ?? Promise.resolve(true)))) continue;
    let names;
    try {
      names = await writer.listDir(dir);
    } catch (x) {
      fail(dir, x);
      continue;
    }
    for (const { name, isDir } of names) {
      const rel = dir === '' ? name : `${dir}/${name}`;
      if (seen.has(rel) || exclude(rel, isDir)) continue;
      try {
        if (!dryRun) await writer.remove(rel);
        counters.deleted++;
        emit({ type: 'deleted', path: rel, kind: isDir ? 'dir' : 'file' });
      } catch (x) {
        fail(rel, x);
      }
    }
  }
}
