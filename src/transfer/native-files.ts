/**
 * The sender's small files through the data plane (native/net-batch.c): a batch of
 * files read per call on a libuv pool thread, into buffers this module owns and reuses.
 * (The receiver's half, publishing small files, writes into DST and so lives in
 * fs/small-files.ts.)
 *
 * Why: per file, the sender used to post a message to a reader thread and get a fresh
 * transferred ArrayBuffer back for every batch (the garbage collector then spent more
 * time freeing those than the reads took). A batch here costs one hand-off to a pool
 * thread and one completion, its bytes land in one pooled buffer, and the content hash
 * of every file read is computed on the thread that read it.
 *
 * What stays in TypeScript: everything that decides. The sender's caller chose which
 * files, with the walk's size, mtime, device and inode; C only reports per file whether
 * the open file matched them (status codes below), and this module turns each status
 * into the same FerryError the reader thread (file-reader-worker.ts) gives.
 *
 * Cold files are read direct: a file of at most 1 MiB that the page cache holds at most
 * DIRECT_READ_MAX_CACHED of is read with O_DIRECT, the batch's reads in flight together
 * (net-batch.c), as fs/direct-io.ts does for big files and for the same reason: a
 * buffered cold read fills fresh page-cache pages nobody reads again and copies out of
 * them. The bytes and results are the same either way.
 *
 * Fallback with the same results: file-reader.ts's worker threads (FERRY_NATIVE=0, or
 * no addon).
 *
 *   const r = nativeSmallReader();                 // undefined without the addon
 *   const { results, release } = await r.read(files);   // data views into a pooled buffer
 *   ...; release();                                 // once every data view is consumed
 */
import { errnoError, ErrorCodes, FerryError, fromSystemError } from '../core/errors.js';
import { CONTENT_HASH_BYTES } from '../fs/checksum.js';
import { DIRECT_READ_MAX_CACHED } from '../fs/direct-io.js';
import type { SourceIdentity } from '../fs/source-file.js';
import { NET_BATCH_MAX_ITEMS, netBatchAddon, type NetBatchAddon } from '../native/index.js';

export interface NativeRead {
  data: Buffer;
  hash: Buffer;
}

export interface ReadBatch {
  results: (NativeRead | FerryError)[];
  /** Hand the batch's buffer back to the pool: call once every `data` is consumed (or never). */
  release(): void;
}

/** Status codes of readFiles (native/net-batch.c). */
const RD_OK = 0;
const RD_OPEN = 1;
const RD_STAT = 2;
const RD_NOT_REGULAR = 3;
const RD_IDENTITY = 4;
const RD_CHANGED = 5;
const RD_READ = 6;
const RD_CHANGED_AFTER = 7;

const MAX_BATCH = NET_BATCH_MAX_ITEMS;
/** Pooled read buffers: this big (a batch larger than that gets a buffer of its own), at most this many kept. */
const POOL_UNIT = 2 * 1024 * 1024;
const POOL_KEEP = 16;

function readErrno(errno: number, path: string): FerryError {
  return fromSystemError(errnoError(errno, 'read', path), 'read', path);
}

/** The messages of file-reader-worker.ts / fs/source-file.ts, so both paths report alike. */
function changed(path: string, message: string): FerryError {
  return new FerryError(ErrorCodes.CHANGED, `${path}: ${message}`, { subject: path });
}

function readError(status: number, errno: number, path: string): FerryError {
  switch (status) {
    case RD_OPEN:
    case RD_STAT:
    case RD_READ:
      return readErrno(errno, path);
    case RD_NOT_REGULAR:
      return changed(path, 'changed since it was listed (it is no longer a regular file)');
    case RD_IDENTITY:
      return changed(path, 'changed since it was listed (it is no longer the same file (device or inode differ: a directory on its path was replaced?))');
    case RD_CHANGED:
      return changed(path, 'changed since it was listed (its size or modification time changed)');
    case RD_CHANGED_AFTER:
      return changed(path, 'changed since it was listed');
    default:
      return new FerryError(ErrorCodes.INTERNAL, `${path}: native read returned status ${status}`, { subject: path });
  }
}

/** Files read direct (past the page cache) by every reader so far, for tests. */
export const smallDirectReads = { files: 0 };

export class NativeSmallReader {
  readonly #n: NetBatchAddon;
  readonly #pool: Buffer[] = [];
  /** Whether files the page cache does not hold may be read with O_DIRECT (see the file header). */
  direct = true;

  constructor(n: NetBatchAddon) {
    this.#n = n;
  }

  /**
   * Read whole files, checked against the walk (see the file header), with their
   * content hashes. Never rejects for a per-file problem: each result is the bytes
   * or the FerryError that file-reader.ts would give.
   */
  async read(files: readonly SourceIdentity[]): Promise<ReadBatch> {
    if (files.length > MAX_BATCH) throw new RangeError(`NativeSmallReader.read: at most ${MAX_BATCH} files per batch`);
    let total = 0;
    for (const f of files) total += f.size;
    if (files.length === 0) return { results: [], release: () => undefined };
    const pooled = total <= POOL_UNIT;
    const buf = pooled ? (this.#pool.pop() ?? Buffer.allocUnsafeSlow(POOL_UNIT)) : Buffer.allocUnsafeSlow(total);
    const want = new BigInt64Array(files.length * 5);
    const names: string[] = [];
    files.forEach((f, i) => {
      names.push(f.absPath);
      want[5 * i] = BigInt(f.size);
      want[5 * i + 1] = f.mtimeNs;
      const checked = f.dev !== undefined && f.ino !== undefined;
      want[5 * i + 2] = checked ? BigInt.asIntN(64, f.dev!) : 0n;
      want[5 * i + 3] = checked ? BigInt.asIntN(64, f.ino!) : 0n;
      want[5 * i + 4] = checked ? 1n : 0n;
    });
    const hashes = Buffer.allocUnsafe(CONTENT_HASH_BYTES * files.length);
    const res = new Int32Array(files.length * 2);
    const opts = Int32Array.of(this.direct ? 1 : 0, Math.round(DIRECT_READ_MAX_CACHED * 100), 0);
    await this.#n.readFiles(Buffer.from(names.join('\0') + '\0'), want, buf, hashes, res, opts);
    smallDirectReads.files += opts[2]!;
    const results: (NativeRead | FerryError)[] = [];
    let off = 0;
    for (let i = 0; i < files.length; i++) {
      const f = files[i]!;
      const status = res[2 * i]!;
      if (status === RD_OK) {
        results.push({ data: buf.subarray(off, off + f.size), hash: hashes.subarray(i * CONTENT_HASH_BYTES, (i + 1) * CONTENT_HASH_BYTES) });
      } else {
        results.push(readError(status, res[2 * i + 1]!, f.path));
      }
      off += f.size;
    }
    let released = false;
    return {
      results,
      release: () => {
        if (released || !pooled) return;
        released = true;
        if (this.#pool.length < POOL_KEEP) this.#pool.push(buf);
      },
    };
  }
}

let reader: NativeSmallReader | null | undefined;

/** The batched native reader, or undefined without the addon (FERRY_NATIVE=0). */
export function nativeSmallReader(): NativeSmallReader | undefined {
  if (reader === undefined) {
    const n = netBatchAddon();
    reader = n ? new NativeSmallReader(n) : null;
  }
  return reader ?? undefined;
}
