/**
 * The network transfer's small files through the data plane (native/net-batch.c):
 * the sender's reads and the receiver's publishing, each a batch of files per call on
 * a libuv pool thread, into and out of buffers this module owns and reuses.
 *
 * Why: per file, the sender used to post a message to a reader thread and get a fresh
 * transferred ArrayBuffer back for every batch (the garbage collector then spent more
 * time freeing those than the reads took), and the receiver wrote each small file with
 * six synchronous system calls on its main thread, between decrypting records. A batch
 * here costs one hand-off to a pool thread and one completion, its bytes land in (or
 * leave from) one pooled buffer, and the content hash of every file read is computed on
 * the thread that read it.
 *
 * What stays in TypeScript: everything that decides. The sender's caller chose which
 * files, with the walk's size, mtime, device and inode; C only reports per file whether
 * the open file matched them (status codes below), and this module turns each status
 * into the same FerryError the reader thread (file-reader-worker.ts) gives. The
 * receiver's caller (receiver.ts) verified the content hash and chose the directory
 * (created by this session, passed as a descriptor opened through the SafeWriter's
 * verified directory handle, so a directory swapped for a symlink is never followed), the temp name (fs/temp-names), the final name, the masked
 * mode and the times; C executes create-exclusive / pwrite / ftruncate / fchmod /
 * futimens / close / renameat, and unlinks the temp file on any failure.
 *
 * Fallbacks with the same results: file-reader.ts's worker threads, and
 * small-file-writer.ts's synchronous writer (FERRY_NATIVE=0, or no addon).
 *
 *   const r = nativeSmallReader();                 // undefined without the addon
 *   const { results, release } = await r.read(files);   // data views into a pooled buffer
 *   ...; release();                                 // once every data view is consumed
 *   const p = nativePublisher();
 *   const outcomes = await p.publish([{ dir, name, size, mode, mtimeNs, parts }]);  // null or an errno error, per file
 */
import { getSystemErrorName } from 'node:util';
import { ErrorCodes, FerryError, fromSystemError } from '../core/errors.js';
import { CONTENT_HASH_BYTES } from '../fs/checksum.js';
import { tempNameFor } from '../fs/temp-names.js';
import { netBatchAddon, type NetBatchAddon } from '../native/index.js';

export interface NativeReadTarget {
  absPath: string;
  path: string;
  size: number;
  mtimeNs: bigint;
  dev?: bigint;
  ino?: bigint;
}

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

/** Files per native call (native/net-batch.c MAX_ITEMS). */
const MAX_BATCH = 4096;
/** Pooled read buffers: this big (a batch larger than that gets a buffer of its own), at most this many kept. */
const POOL_UNIT = 2 * 1024 * 1024;
const POOL_KEEP = 16;

function errnoError(errno: number, path: string): FerryError {
  let code = 'EIO';
  try {
    code = getSystemErrorName(-errno);
  } catch {
    /* not an errno: keep EIO */
  }
  const e = Object.assign(new Error(`${code}`), { code });
  return fromSystemError(e, 'read', path);
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
      return errnoError(errno, path);
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

export class NativeSmallReader {
  readonly #n: NetBatchAddon;
  readonly #pool: Buffer[] = [];

  constructor(n: NetBatchAddon) {
    this.#n = n;
  }

  /**
   * Read whole files, checked against the walk (see the file header), with their
   * content hashes. Never rejects for a per-file problem: each result is the bytes
   * or the FerryError that file-reader.ts would give.
   */
  async read(files: readonly NativeReadTarget[]): Promise<ReadBatch> {
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
    await this.#n.readFiles(Buffer.from(names.join('\0') + '\0'), want, buf, hashes, res);
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

// ------------------------------------------------------------------ receiver

/** One small file to publish: everything already decided by the receiver. */
export interface PublishItem {
  /** A descriptor of the verified parent directory (created by this session), open until publish() settles. */
  dirFd: number;
  /** Final name inside `dir`. */
  name: string;
  /** Declared size: bytes past the data are a trailing hole (ftruncate). */
  size: number;
  /** Final permission bits, already masked. */
  mode: number;
  mtimeNs: bigint;
  /** The file's bytes from offset 0 (at most `size`). */
  data: Uint8Array;
}

/** Steps of publishFiles (native/net-batch.c) that can fail, by the operation's direction. */
const PUB_OK = 0;

export class NativePublisher {
  readonly #n: NetBatchAddon;

  constructor(n: NetBatchAddon) {
    this.#n = n;
  }

  /**
   * Publish each file (see the file header); resolves per file to null (published) or
   * the system error as a FerryError naming `paths[i]` (FERRY_E_WRITE / FERRY_E_NOSPC).
   * Nothing of a failed file remains under its temp or final name.
   */
  async publish(items: readonly PublishItem[], paths: readonly string[]): Promise<(FerryError | null)[]> {
    if (items.length === 0) return [];
    if (items.length > MAX_BATCH) {
      const out: (FerryError | null)[] = [];
      for (let i = 0; i < items.length; i += MAX_BATCH) out.push(...(await this.publish(items.slice(i, i + MAX_BATCH), paths.slice(i, i + MAX_BATCH))));
      return out;
    }
    const strings: string[] = [];
    const nums = new Float64Array(items.length * 5);
    const datas: Uint8Array[] = [];
    items.forEach((it, i) => {
      strings.push(tempNameFor(it.name), it.name);
      let sec = it.mtimeNs / 1_000_000_000n;
      let nsec = it.mtimeNs % 1_000_000_000n;
      if (nsec < 0n) {
        nsec += 1_000_000_000n;
        sec -= 1n;
      }
      nums[5 * i] = it.size;
      nums[5 * i + 1] = Number(sec);
      nums[5 * i + 2] = Number(nsec);
      nums[5 * i + 3] = it.mode;
      nums[5 * i + 4] = it.dirFd;
      datas.push(it.data);
    });
    const res = new Int32Array(items.length * 2);
    await this.#n.publishFiles(Buffer.from(strings.join('\0') + '\0'), nums, datas, res);
    return items.map((_, i) => {
      if (res[2 * i] === PUB_OK) return null;
      const errno = res[2 * i + 1]!;
      let code = 'EIO';
      try {
        code = getSystemErrorName(-errno);
      } catch {
        /* keep EIO */
      }
      return fromSystemError(Object.assign(new Error(code), { code }), 'write', paths[i]!);
    });
  }
}

let publisher: NativePublisher | null | undefined;

/** The batched native publisher, or undefined without the addon (FERRY_NATIVE=0). */
export function nativePublisher(): NativePublisher | undefined {
  if (publisher === undefined) {
    const n = netBatchAddon();
    publisher = n ? new NativePublisher(n) : null;
  }
  return publisher ?? undefined;
}
