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
 * The decisions stay here and in the SafeWriter: which directory (a descriptor the
 * SafeWriter verified and keeps open, fs/dir-handles: the native code creates and
 * renames relative to it, so a directory of DST swapped for a symlink meanwhile
 * cannot redirect the file), which names, which mode; what a failed
 * step means is mapped to a FerryError below. `FERRY_NATIVE=0` or a missing addon
 * makes `available()` false and the caller uses the TypeScript path.
 *
 * Batching: requests are queued and flushed at the end of the current turn of the
 * event loop (setImmediate) or when a batch is full, so a burst of files from one
 * walk batch becomes a few calls, and a lone file waits for nothing.
 */
import type { SourceEntry } from '../core/entry.js';
import { ErrorCodes, FerryError, fromSystemError } from '../core/errors.js';
import { constants as osConstants } from 'node:os';
import { fsBatchAddon, type FsBatchAddon } from '../native/index.js';

type FsAddon = FsBatchAddon;

/** Steps of native/fs-batch.c, in the order it runs them. */
const Step = {
  OK: 0,
  OPEN_SRC: 1,
  NOT_REGULAR: 2,
  CHANGED: 3,
  // 4 was OPEN_DIR: the directory now comes open (fs/dir-handles).
  CREATE: 5,
  READ: 6,
  WRITE: 7,
  META: 8,
  RENAME: 9,
} as const;

const FLAG_FSYNC = 1;
/** Numbers per item: size, mtime seconds, mtime nanoseconds, mode, flags, directory fd. */
const NUMS = 6;
const NS = 1_000_000_000n;
/** Files per native call: enough to amortise the wake-up, small enough to spread over the pool's threads. */
const BATCH_FILES = 32;
/** Bytes per native call: a batch of big files should not hold one thread for long. */
const BATCH_BYTES = 8 * 1024 * 1024;

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
  /**
   * Descriptor of the target directory, verified by the SafeWriter (fs/dir-handles)
   * and pinned open by the caller until copy() settles: the temp file is created,
   * renamed and removed relative to it (openat/renameat/unlinkat), never by a path.
   */
  dirFd: number;
  /** Temp name and final name inside that directory. */
  temp: string;
  name: string;
  /** Mode to set, already masked by the writer. */
  mode: number;
}

interface Pending {
  item: BatchCopyItem;
  resolve: () => void;
  reject: (e: FerryError) => void;
}

const errnoNames = new Map<number, string>(Object.entries(osConstants.errno).map(([k, v]) => [v, k]));

/** The FerryError for a failed step, worded like the TypeScript path's. */
function stepError(e: SourceEntry, step: number, errno: number): FerryError {
  if (step === Step.CHANGED) {
    return new FerryError(ErrorCodes.CHANGED, `${e.path}: source changed while being copied; not published`, { subject: e.path });
  }
  if (step === Step.NOT_REGULAR) {
    return new FerryError(ErrorCodes.CHANGED, `${e.path}: source is no longer a regular file; not copied`, { subject: e.path });
  }
  const code = errnoNames.get(errno) ?? 'EIO';
  const sys = Object.assign(new Error(`${code}: ${e.path}`), { code, errno: -errno, syscall: 'copy' });
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
  #queuedBytes = 0;
  #scheduled = false;

  constructor(opts: { fsync?: boolean } = {}) {
    const a = loadAddon();
    if (a === null) throw new FerryError(ErrorCodes.INTERNAL, 'native file copy is not available');
    this.#addon = a;
    this.#fsync = opts.fsync === true;
  }

  copy(item: BatchCopyItem): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ item, resolve, reject });
      this.#queuedBytes += item.entry.size;
      if (this.#queue.length >= BATCH_FILES || this.#queuedBytes >= BATCH_BYTES) this.#flush();
      else if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(() => {
          this.#scheduled = false;
          this.#flush();
        });
      }
    });
  }

  #flush(): void {
    while (this.#queue.length > 0) {
      const batch: Pending[] = [];
      let bytes = 0;
      while (this.#queue.length > 0 && batch.length < BATCH_FILES && (batch.length === 0 || bytes < BATCH_BYTES)) {
        const p = this.#queue.shift()!;
        bytes += p.item.entry.size;
        batch.push(p);
      }
      this.#queuedBytes -= bytes;
      void this.#run(batch);
    }
  }

  async #run(batch: Pending[]): Promise<void> {
    const n = batch.length;
    const nums = new Float64Array(n * NUMS);
    const ids = new BigUint64Array(n * 2);
    let strings = '';
    const flags = this.#fsync ? FLAG_FSYNC : 0;
    batch.forEach(({ item }, i) => {
      const e = item.entry;
      strings += `${e.absPath}\0${item.temp}\0${item.name}\0`;
      // Floor division: times before 1970 have a negative second and a positive nanosecond.
      let sec = e.mtimeNs / NS;
      if (e.mtimeNs < 0n && sec * NS !== e.mtimeNs) sec -= 1n;
      nums[NUMS * i] = e.size;
      nums[NUMS * i + 1] = Number(sec);
      nums[NUMS * i + 2] = Number(e.mtimeNs - sec * NS);
      nums[NUMS * i + 3] = item.mode;
      nums[NUMS * i + 4] = flags;
      nums[NUMS * i + 5] = item.dirFd;
      ids[2 * i] = BigInt.asUintN(64, e.dev);
      ids[2 * i + 1] = BigInt.asUintN(64, e.ino);
    });
    let out: Int32Array;
    try {
      out = await this.#addon.copyFiles(Buffer.from(strings, 'utf8'), nums, ids);
    } catch (x) {
      const err = new FerryError(ErrorCodes.INTERNAL, `native copy failed: ${(x as Error).message}`);
      for (const p of batch) p.reject(err);
      return;
    }
    batch.forEach((p, i) => {
      const step = out[2 * i]!;
      if (step === Step.OK) p.resolve();
      else p.reject(stepError(p.item.entry, step, out[2 * i + 1]!));
    });
  }
}

