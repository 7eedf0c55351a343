/**
 * The thread behind transfer/file-reader.ts: reads source files with synchronous
 * system calls and hashes them, so that the sender's main thread only frames and
 * seals. See file-reader.ts for why; this file is the protocol's other half.
 *
 * Requests (all carry an `id`):
 *   small  {paths, sizes, mtimes}  → one reply: every file read whole into one
 *          ArrayBuffer (transferred), its content hash, or an error, per file
 *   range  {path, start, end, chunk, size, mtimeNs, ahead, sparse} → `chunk`
 *          replies (at most `ahead` unreturned), then `end` with the digest; a
 *          chunk's bytes start at `boff` of its buffer (aligned for a direct read)
 *   credit {buf?}  a chunk's buffer comes back: reuse it, read the next chunk
 *   cancel         stop a range, close its file
 *
 * Every file is opened by fs/source-file's `openSourceSync` (O_NOFOLLOW, O_NONBLOCK
 * so a FIFO swapped in cannot block the thread) and must be, before a byte is
 * read, a regular file with the device, inode, size and mtime the walk saw: a
 * parent directory swapped for a symlink leads to another inode and is refused
 * (issue #11). It is fstat'ed again after it is read and must still have that size
 * and mtime (a range also the same ctime throughout): otherwise the reply is
 * `changed`, never data.
 */
import { CONTENT_HASH_BYTES, contentHashOf } from '../fs/checksum.js';
import { closeSync, fstatSync, readSync, type BigIntStats } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { openSourceSync, SourceChanged } from '../fs/source-file.js';
import { newHash } from './hash.js';
import { dataExtents } from '../fs/meta-native.js';
import { dataSpan } from '../fs/sparse.js';
import { DirectReader } from '../fs/direct-io.js';

export interface WorkerError {
  /** errno code of a failed system call, when there was one. */
  errno?: string;
  message: string;
  /** The file is not what the walk saw (size/mtime/ctime, or shorter than listed). */
  changed?: boolean;
}

export type ReaderRequest =
  | {
      op: 'small';
      id: number;
      paths: string[];
      sizes: number[];
      mtimes: bigint[];
      /** The walk's device and inode of each file (undefined: not checked). */
      devs: (bigint | undefined)[];
      inos: (bigint | undefined)[];
    }
  | {
      op: 'range';
      id: number;
      path: string;
      start: number;
      end: number;
      chunk: number;
      size: number;
      mtimeNs: bigint;
      dev?: bigint;
      ino?: bigint;
      ahead: number;
      sparse: boolean;
    }
  | { op: 'credit'; id: number; buf?: ArrayBuffer }
  | { op: 'cancel'; id: number };

export type ReaderReply =
  | { kind: 'small'; id: number; buf: ArrayBuffer; hashes: ArrayBuffer; errors: (WorkerError | null)[] }
  | { kind: 'chunk'; id: number; pos: number; len: number; buf: ArrayBuffer | null; boff?: number; off?: number; dlen?: number }
  | { kind: 'end'; id: number; digest: ArrayBuffer }
  | { kind: 'error'; id: number; error: WorkerError };

const HASH_BYTES = CONTENT_HASH_BYTES;

function toWorkerError(e: unknown): WorkerError {
  if (e instanceof SourceChanged) return { changed: true, message: e.message };
  const err = e as NodeJS.ErrnoException;
  return err?.code ? { errno: err.code, message: err.message } : { message: String(err?.message ?? e) };
}

/** `want` plus the walk's device and inode where it sent them. */
function withIdentity<T extends object>(want: T, dev: bigint | undefined, ino: bigint | undefined): T & { dev?: bigint; ino?: bigint } {
  const out: T & { dev?: bigint; ino?: bigint } = { ...want };
  if (dev !== undefined) out.dev = dev;
  if (ino !== undefined) out.ino = ino;
  return out;
}

function readFully(fd: number, view: Uint8Array, position: number): number {
  let got = 0;
  while (got < view.length) {
    const n = readSync(fd, view, got, view.length - got, position + got);
    if (n === 0) break;
    got += n;
  }
  return got;
}

function readSmall(req: Extract<ReaderRequest, { op: 'small' }>): void {
  let total = 0;
  for (const s of req.sizes) total += s;
  const buf = new ArrayBuffer(total);
  const hashes = new ArrayBuffer(HASH_BYTES * req.paths.length);
  const errors: (WorkerError | null)[] = [];
  let off = 0;
  for (let i = 0; i < req.paths.length; i++) {
    const size = req.sizes[i]!;
    const view = new Uint8Array(buf, off, size);
    off += size;
    let fd = -1;
    try {
      const want = { absPath: req.paths[i]!, size, mtimeNs: req.mtimes[i]! };
      fd = openSourceSync(withIdentity(want, req.devs[i], req.inos[i]));
      const got = readFully(fd, view, 0);
      const st = fstatSync(fd, { bigint: true });
      if (got !== size || Number(st.size) !== size || st.mtimeNs !== req.mtimes[i]) {
        errors.push({ changed: true, message: 'changed since it was listed' });
        continue;
      }
      contentHashOf(view).copy(new Uint8Array(hashes, i * HASH_BYTES, HASH_BYTES));
      errors.push(null);
    } catch (e) {
      errors.push(toWorkerError(e));
    } finally {
      if (fd >= 0) closeSync(fd);
    }
  }
  post({ kind: 'small', id: req.id, buf, hashes, errors }, [buf, hashes]);
}

interface Range {
  id: number;
  fd: number;
  st0: BigIntStats;
  hash: ReturnType<typeof newHash>;
  pos: number;
  end: number;
  chunk: number;
  ahead: number;
  sparse: boolean;
  /** Data extents of a sparse file (SEEK_DATA/SEEK_HOLE), or null: trim zero blocks instead. */
  extents: Array<[number, number]> | null;
  out: number;
  free: ArrayBuffer[];
  /** Direct reads (fs/direct-io.ts) of a big file the page cache does not hold, or null. */
  direct: DirectReader | null;
  /** Size of this range's chunk buffers: `chunk`, plus room to align them for direct reads. */
  bufBytes: number;
}

const ranges = new Map<number, Range>();

function startRange(req: Extract<ReaderRequest, { op: 'range' }>): void {
  let fd = -1;
  try {
    // Checked against the walk (type, device, inode, size, mtime) before any read.
    fd = openSourceSync(withIdentity({ absPath: req.path, size: req.size, mtimeNs: req.mtimeNs }, req.dev, req.ino));
    const st0 = fstatSync(fd, { bigint: true });
    const r: Range = {
      id: req.id,
      fd,
      st0,
      hash: newHash(),
      pos: req.start,
      end: req.end,
      chunk: req.chunk,
      ahead: Math.max(1, req.ahead),
      sparse: req.sparse,
      extents: req.sparse ? dataExtents(fd, req.size) : null,
      out: 0,
      free: [],
      direct: req.sparse ? null : DirectReader.open(fd, req.size),
      bufBytes: req.chunk,
    };
    if (r.direct !== null) r.bufBytes = r.direct.bufferBytes(req.chunk);
    ranges.set(req.id, r);
    pump(r);
  } catch (e) {
    if (fd >= 0) closeSync(fd);
    post({ kind: 'error', id: req.id, error: toWorkerError(e) });
  }
}

function finishRange(r: Range, error?: WorkerError): void {
  ranges.delete(r.id);
  try {
    if (!error) {
      const st1 = fstatSync(r.fd, { bigint: true });
      if (st1.size !== r.st0.size || st1.mtimeNs !== r.st0.mtimeNs || st1.ctimeNs !== r.st0.ctimeNs) {
        error = { changed: true, message: 'changed while being sent' };
      }
    }
  } catch (e) {
    error = toWorkerError(e);
  } finally {
    r.direct?.close();
    closeSync(r.fd);
  }
  if (error) post({ kind: 'error', id: r.id, error });
  else {
    const d = r.hash.digest();
    const digest = new Uint8Array(d).buffer; // a copy of its own, to transfer
    post({ kind: 'end', id: r.id, digest }, [digest]);
  }
}

function pump(r: Range): void {
  try {
    while (r.out < r.ahead && r.pos < r.end) {
      const len = Math.min(r.chunk, r.end - r.pos);
      const buf = r.free.pop() ?? new ArrayBuffer(r.bufBytes);
      // A direct read goes into an aligned view (its length rounded up); else `len` bytes at 0.
      let view = r.direct?.view(buf, len) ?? new Uint8Array(buf, 0, len);
      let got = r.direct?.read(view, r.pos) ?? null;
      if (got === null) {
        view = new Uint8Array(buf, view.byteOffset, len);
        got = readFully(r.fd, view, r.pos);
      }
      if (got < len) {
        finishRange(r, { changed: true, message: 'shrank while being sent' });
        return;
      }
      if (view.length !== len) view = view.subarray(0, len);
      const boff = view.byteOffset;
      r.hash.update(view);
      const pos = r.pos;
      r.pos += len;
      // Of a sparse file only the part with data is sent (the receiver leaves holes
      // and feeds their zeros to its own hash): the span of the data extents inside
      // this chunk, or without SEEK_DATA the chunk less its leading and trailing zero blocks.
      const span = r.sparse ? dataSpan(view, pos, r.extents) : null;
      if (span !== null && span.len === 0) {
        r.free.push(buf);
        post({ kind: 'chunk', id: r.id, pos, len, buf: null });
      } else {
        r.out++;
        if (span === null || (span.off === 0 && span.len === len)) post({ kind: 'chunk', id: r.id, pos, len, buf, boff }, [buf]);
        else post({ kind: 'chunk', id: r.id, pos, len, buf, boff, off: span.off, dlen: span.len }, [buf]);
      }
    }
    if (r.pos >= r.end) finishRange(r);
  } catch (e) {
    finishRange(r, toWorkerError(e));
  }
}

function post(msg: ReaderReply, transfer: ArrayBuffer[] = []): void {
  parentPort!.postMessage(msg, transfer);
}

parentPort!.on('message', (req: ReaderRequest) => {
  switch (req.op) {
    case 'small':
      readSmall(req);
      break;
    case 'range':
      startRange(req);
      break;
    case 'credit': {
      const r = ranges.get(req.id);
      if (!r) break; // the range already ended: its last buffers just come home
      r.out--;
      if (req.buf && req.buf.byteLength === r.bufBytes) r.free.push(req.buf);
      pump(r);
      break;
    }
    case 'cancel': {
      const r = ranges.get(req.id);
      if (r) {
        ranges.delete(r.id);
        r.direct?.close();
        closeSync(r.fd);
      }
      break;
    }
  }
});
