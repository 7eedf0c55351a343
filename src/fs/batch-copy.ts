/**
 * Local copy of regular files in batches, through the native data plane
 * (native/fs-batch.c): many files per call, each opened, checked, copied and
 * published on a thread-pool thread, with one wake-up of the main thread per batch.
 *
 * Why: on trees of many small files a copy is per-file overhead, not bytes. The
 * TypeScript path (TempFile.copyFrom + commit in safe-writer.ts) makes about ten
 * calls per file, each a promise and most a thread hand-off; this path makes one
 * per batch. It gives the same results: the same temp name in the same directory,
 * the same mode, the same checks (source still the walked inode, unchanged after
 * the copy), rename onto the final name last, the temp file removed on failure —
 * and the same nanosecond mtimes (futimens; the TypeScript path sets them through
 * fs/meta-native). Files that need a chown or extended attributes are left to the
 * TypeScript path (SafeWriter.needsExtraMeta).
 *
 * The decisions stay here and in the SafeWriter: which directory (checked to be a
 * real directory of DST by `beginFile`), which names, which mode; what a failed
 * step means is mapped to a FerryError below. `FERRY_NATIVE=0` or a missing addon
 * makes `available()` false and the caller uses the TypeScript path.
 *
 * Directories: the native side creates files relative to an open directory fd and a
 * name, never a path. The fd is the caller's (`dirFd`) or, given `dir` (a path the
 * SafeWriter checked to be a real directory of DST), opened here once with
 * O_DIRECTORY|O_NOFOLLOW and kept while files of that directory are queued (a few
 * recently used ones stay open for the next batch).
 *
 * Batching: requests are queued; at most IN_FLIGHT batches run at once and each
 * takes what has queued meanwhile, up to BATCH_FILES files or BATCH_BYTES. On a cold
 * cache a batch spends most of its time waiting for its reads, so several batches per
 * core keep both the CPUs and the disk busy where one per core left them waiting
 * (README, local copy). Every file of a running batch holds a source descriptor:
 * the batches together stay within half of the process's limit on open files.
 * A lone file waits for nothing (it goes at the end of the current turn of the
 * event loop); under load batches grow by themselves. Big files (BIG_FILE and
 * more) go one at a time in a slot of their own, like cp: two long sequential
 * copies at once only make the disk alternate between them, while small files
 * keep flowing beside the big one. Inside a batch the native
 * side opens every source first and asks for its readahead, so on a cold cache a
 * batch's reads are in flight together.
 *
 * New files: `fresh` says the caller's quick check found no file under the final
 * name; the native side then creates the file nameless (O_TMPFILE) and links it
 * under its name when complete, which costs the directory half the work of a temp
 * name and a rename (and falls back to them if the name exists after all). Such a
 * file goes without a temp name (naming one costs a hash): when the native side
 * needs one after all, it creates nothing and says so, and the file is queued again
 * with its temp name.
 */
import { closeSync, constants as C, openSync, readFileSync } from 'node:fs';
import type { SourceEntry } from '../core/entry.js';
import { errnoError, ErrorCodes, FerryError, fromSystemError } from '../core/errors.js';
import { tempNameFor } from './temp-names.js';
import { availableParallelism, constants as osConstants } from 'node:os';
import { fsBatchAddon, type FsBatchAddon } from '../native/index.js';

type FsAddon = FsBatchAddon;

/** Steps of native/fs-batch.c, in the order it runs them. */
const Step = {
  OK: 0,
  OPEN_SRC: 1,
  NOT_REGULAR: 2,
  CHANGED: 3,
  OPEN_DIR: 4,
  CREATE: 5,
  READ: 6,
  WRITE: 7,
  META: 8,
  RENAME: 9,
  /** A new file sent without a temp name needs one (see BatchCopyItem.temp): submitted again with it. */
  NEED_TEMP: 10,
} as const;

const FLAG_FSYNC = 1;
const FLAG_NEW = 2;
/** Numbers and 64-bit ids per item (native/fs-batch.c NUMS, IDS). */
const NUMS = 4;
const IDS = 3;
/** Batches running at once. */
const IN_FLIGHT = Math.min(8, 4 * availableParallelism());
/** Most files per native call (each holds an open source fd during the call): 256, or fewer under a low limit on open files. */
const BATCH_FILES = Math.max(16, Math.min(256, Math.floor(openFilesLimit() / 2 / IN_FLIGHT)));
/** Bytes per native call: a batch of big files should not hold one thread for long. */
const BATCH_BYTES = 8 * 1024 * 1024;
/** Files of this size or more are copied one at a time, beside the small-file batches. */
const BIG_FILE = 64 * 1024 * 1024;
/** Directory fds kept open when no file of theirs is queued. */
const SPARE_DIR_FDS = 16;
const DIR_FLAGS = C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW; // libuv adds O_CLOEXEC

/**
 * The process's soft limit on open files, from the text of /proc/self/limits (Node
 * raises it to the hard limit when it starts); 1024, the usual default, when the text
 * says nothing readable; Infinity when unlimited.
 */
export function openFilesLimit(limits?: string): number {
  let text = limits;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/limits', 'utf8');
    } catch {
      return 1024;
    }
  }
  const m = /^Max open files\s+(\S+)/m.exec(text);
  if (m === null) return 1024;
  if (m[1] === 'unlimited') return Infinity;
  const n = Number(m[1]);
  return Number.isSafeInteger(n) && n > 0 ? n : 1024;
}

let addon: FsAddon | null | undefined;

/** The addon's copyFiles (native/index.ts loads ferry_native.node once, honouring FERRY_NATIVE=0). */
function loadAddon(): FsAddon | null {
  if (addon === undefined) addon = fsBatchAddon() ?? null;
  return addon;
}

/** Is the native file copy in use here (addon built, not disabled by FERRY_NATIVE=0)? */
export function nativeCopyAvailable(): boolean {
  return loadAddon() !== null;
}

export interface BatchCopyItem {
  entry: SourceEntry;
  /** Absolute path of the (already checked) target directory; or give `dirFd`. */
  dir?: string;
  /** An open fd of the (already checked) target directory, kept open by the caller until copy() settles. */
  dirFd?: number;
  /**
   * Temp name and final name, relative to the directory. The temp name is
   * tempNameFor(name) (fs/temp-names); omitted, it is computed here, and for a
   * `fresh` file only when the native side needs it (a hash per file saved).
   */
  temp?: string;
  name: string;
  /** Mode to set, already masked by the writer. */
  mode: number;
  /** The final name was found free (quick check 'missing'): the file may be created nameless. */
  fresh?: boolean;
}

/** Called once per item: null when the file is published, else why not (nothing published). */
export type BatchCopyDone = (err: FerryError | null) => void;

interface Pending {
  item: BatchCopyItem;
  dirFd: number;
  /** The cached directory this item holds a reference on, if any. */
  dir: DirFd | null;
  done: BatchCopyDone;
}

interface DirFd {
  fd: number;
  refs: number;
}

/** The FerryError for a failed step, worded like the TypeScript path's. */
function stepError(e: SourceEntry, step: number, errno: number): FerryError {
  if (step === Step.CHANGED) {
    return new FerryError(ErrorCodes.CHANGED, `${e.path}: source changed while being copied; not published`, { subject: e.path });
  }
  if (step === Step.NOT_REGULAR) {
    return new FerryError(ErrorCodes.CHANGED, `${e.path}: source is no longer a regular file; not copied`, { subject: e.path });
  }
  const sys = errnoError(errno, 'copy', e.path);
  const side = step === Step.OPEN_SRC || step === Step.READ ? 'read' : 'write';
  return fromSystemError(sys, side, e.path);
}

/**
 * Queues files for the native copier. Create one per copy session; `copy()`
 * resolves when the file is published under its final name and rejects with a
 * FerryError (nothing published, no temp file left) otherwise.
 */
export class BatchCopier {
  readonly #addon: FsAddon;
  readonly #fsync: boolean;
  #queue: Pending[] = [];
  #big: Pending[] = [];
  #bigRunning = false;
  #running = 0;
  #scheduled = false;
  /** Send fresh files without a temp name (cleared when the native side had to ask for one: no O_TMPFILE). */
  #lazyTemp = true;
  /** Target directories opened here, by path; those with refs 0 are closed beyond SPARE_DIR_FDS. */
  readonly #dirs = new Map<string, DirFd>();

  constructor(opts: { fsync?: boolean } = {}) {
    const a = loadAddon();
    if (a === null) throw new FerryError(ErrorCodes.INTERNAL, 'native file copy is not available');
    this.#addon = a;
    this.#fsync = opts.fsync === true;
  }

  copy(item: BatchCopyItem): Promise<void> {
    return new Promise<void>((resolve, reject) => this.submit(item, (err) => (err === null ? resolve() : reject(err))));
  }

  /** copy() without a promise: `done` is called once, never synchronously. */
  submit(item: BatchCopyItem, done: BatchCopyDone): void {
    let dir: DirFd | null = null;
    let dirFd = item.dirFd;
    if (dirFd === undefined) {
      try {
        dir = this.#openDir(item.dir ?? '');
      } catch (x) {
        const err = fromSystemError(x, 'write', item.entry.path);
        setImmediate(() => done(err));
        return;
      }
      dirFd = dir.fd;
    }
    this.#enqueue({ item, dirFd, dir, done });
  }

  #enqueue(p: Pending): void {
    if (p.item.entry.size >= BIG_FILE) this.#big.push(p);
    else this.#queue.push(p);
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => {
        this.#scheduled = false;
        this.#flush();
      });
    }
  }

  /** Close the directory fds this copier opened (none may be in use: call after every copy settled). */
  close(): void {
    for (const d of this.#dirs.values()) closeSync(d.fd);
    this.#dirs.clear();
  }

  #openDir(dir: string): DirFd {
    let d = this.#dirs.get(dir);
    if (d === undefined) {
      d = { fd: openSync(dir, DIR_FLAGS), refs: 0 };
      this.#dirs.set(dir, d);
    } else {
      // Most recently used last (Map order), so the oldest spare is closed first.
      this.#dirs.delete(dir);
      this.#dirs.set(dir, d);
    }
    d.refs++;
    return d;
  }

  #release(p: Pending): void {
    if (p.dir === null) return;
    p.dir.refs--;
    if (this.#dirs.size <= SPARE_DIR_FDS || p.dir.refs > 0) return;
    let spare = this.#dirs.size;
    for (const [k, d] of this.#dirs) {
      if (spare <= SPARE_DIR_FDS) break;
      if (d.refs > 0) continue;
      closeSync(d.fd);
      this.#dirs.delete(k);
      spare--;
    }
  }

  #flush(): void {
    if (!this.#bigRunning && this.#big.length > 0) {
      this.#bigRunning = true;
      void this.#run([this.#big.shift()!]).finally(() => {
        this.#bigRunning = false;
        this.#flush();
      });
    }
    while (this.#queue.length > 0 && this.#running < IN_FLIGHT) {
      // Spread what is queued over the free slots, so both cores get work.
      const share = Math.ceil(this.#queue.length / (IN_FLIGHT - this.#running));
      const batch: Pending[] = [];
      let bytes = 0;
      while (this.#queue.length > 0 && batch.length < Math.min(share, BATCH_FILES) && (batch.length === 0 || bytes < BATCH_BYTES)) {
        const p = this.#queue.shift()!;
        bytes += p.item.entry.size;
        batch.push(p);
      }
      this.#running++;
      void this.#run(batch).finally(() => {
        this.#running--;
        this.#flush();
      });
    }
  }

  async #run(batch: Pending[]): Promise<void> {
    const n = batch.length;
    const nums = new Float64Array(n * NUMS);
    // dev, ino and the mtime in nanoseconds as they are (a BigUint64Array stores each
    // modulo 2^64; the native side reads the mtime back as a signed number).
    const ids = new BigUint64Array(n * IDS);
    let strings = '';
    const base = this.#fsync ? FLAG_FSYNC : 0;
    for (let i = 0; i < n; i++) {
      const { item, dirFd } = batch[i]!;
      const e = item.entry;
      const fresh = item.fresh === true;
      const temp = item.temp ?? (fresh && this.#lazyTemp ? '' : tempNameFor(item.name));
      strings += `${e.absPath}\0${temp}\0${item.name}\0`;
      const o = NUMS * i;
      nums[o] = e.size;
      nums[o + 1] = item.mode;
      nums[o + 2] = fresh ? base | FLAG_NEW : base;
      nums[o + 3] = dirFd;
      const k = IDS * i;
      ids[k] = e.dev;
      ids[k + 1] = e.ino;
      ids[k + 2] = e.mtimeNs;
    }
    let out: Int32Array;
    try {
      out = await this.#addon.copyFiles(Buffer.from(strings, 'utf8'), nums, ids);
    } catch (x) {
      const err = new FerryError(ErrorCodes.INTERNAL, `native copy failed: ${(x as Error).message}`);
      for (const p of batch) {
        this.#release(p);
        p.done(err);
      }
      return;
    }
    for (let i = 0; i < n; i++) {
      const p = batch[i]!;
      const step = out[2 * i]!;
      if (step === Step.NEED_TEMP && p.item.temp === undefined) {
        // Nothing was created: again, with its temp name (and no more nameless-only
        // items unless the final name was merely taken).
        if (out[2 * i + 1] !== osConstants.errno.EEXIST) this.#lazyTemp = false;
        this.#enqueue({ ...p, item: { ...p.item, temp: tempNameFor(p.item.name) } });
        continue;
      }
      this.#release(p);
      p.done(step === Step.OK ? null : stepError(p.item.entry, step, out[2 * i + 1]!));
    }
  }
}
