/**
 * Source file reads for the sender, done by a few worker threads with synchronous
 * system calls, hashed there too.
 *
 * Why: through libuv's thread pool every open, read, fstat and close is one queued
 * request and one wake-up of a pool thread; on two cores that meant a context switch
 * per call, and on 100,000 small files the sender spent 23 CPU seconds, a third of
 * it in futex and the scheduler (perf, `ferry send` of ml_large), the rest around
 * promise bookkeeping. A worker does the same four calls back to back for a batch
 * of files and answers once, so the main thread pays one message per batch. Big
 * files move the same way, a chunk at a time: the worker reads and hashes chunk
 * n+1 while the main thread seals chunk n, and the chunk buffers go back and forth
 * (transferred, never copied) so the same few buffers stay warm in the cache.
 *
 *   const r = new FileReader();
 *   const res = await r.readSmall(files);   // SourceIdentity[] (what the walk saw): data + content hash, or a FerryError, per file
 *   const range = r.readRange(file, start, end, { chunk, sparse });
 *   for await (const c of range) { use(c.data); c.release(); }     // c.data null: an all-zero chunk of a sparse file
 *   range.digest                                                     // content hash of [start, end), after the loop
 *   await r.close();
 *
 * Where the addon is built, small files are read by it instead (transfer/native-files.ts:
 * one batch per call on a pool thread, into reused buffers, hashed there): `readSmallBatch`
 * then hands out views into a pooled buffer and a `release` for the batch.
 *
 * A file that is not what the walk saw (not a regular file, another device or inode,
 * size or mtime; for a range also ctime, before and after) is FERRY_E_CHANGED, and
 * none of its bytes is read; a failed system call is FERRY_E_READ with its errno.
 */
import { CONTENT_HASH_BYTES } from '../fs/checksum.js';
import type { SourceIdentity } from '../fs/source-file.js';
import { Worker } from 'node:worker_threads';
import { ErrorCodes, FerryError, fromSystemError } from '../core/errors.js';
import type { ReaderReply, ReaderRequest, WorkerError } from './file-reader-worker.js';
import { nativeSmallReader, type NativeSmallReader } from './native-files.js';

export interface SmallRead {
  data: Buffer;
  hash: Buffer;
}

export interface RangeChunk {
  pos: number;
  len: number;
  /** The bytes, or null for an all-zero chunk of a sparse file (not to be sent). Of a
   *  sparse file, only the part of the chunk that holds data (pos/len say which). */
  data: Buffer | null;
  /** Hand the buffer back for the next read. Call once the data is consumed. */
  release(): void;
}

export interface RangeRead extends AsyncIterable<RangeChunk> {
  /** Content hash of the range; set when iteration has ended normally. */
  readonly digest: Buffer | null;
  /** Stop early (the file was abandoned): closes it in the worker. */
  cancel(): void;
}

const HASH_BYTES = CONTENT_HASH_BYTES;
/**
 * Reader threads per sender. Measured on ml_small/ml_large (cold cache, 2 cores):
 * 2 threads 2.2 s / 15.3 s, 4 threads 2.6 s / 15.3 s, 8 threads 2.6 s / 18.6 s;
 * every thread is a Node isolate of its own (start-up, heap, scheduling).
 */
const DEFAULT_THREADS = 2;
/** Chunks a range may have read ahead and not yet returned. */
const RANGE_AHEAD = 3;

interface Slot {
  worker: Worker;
  busy: number;
}

type Handler = (msg: ReaderReply) => void;

function toFerryError(e: WorkerError, path: string): FerryError {
  if (e.changed) return new FerryError(ErrorCodes.CHANGED, `${path}: ${e.message}`, { subject: path });
  const err = Object.assign(new Error(e.message), e.errno ? { code: e.errno } : {});
  return fromSystemError(err, 'read', path);
}

export class FileReader {
  readonly #threads: number;
  readonly #slots: Slot[] = [];
  readonly #handlers = new Map<number, { slot: Slot; on: Handler; fail: (e: Error) => void }>();
  #nextId = 1;
  #failure: Error | null = null;
  readonly #native: NativeSmallReader | undefined;

  constructor(threads = DEFAULT_THREADS) {
    this.#threads = threads;
    this.#native = nativeSmallReader();
  }

  /** The least busy worker, started on first use. */
  #slot(): Slot {
    let best: Slot | undefined;
    for (const s of this.#slots) if (!best || s.busy < best.busy) best = s;
    if (best && (best.busy === 0 || this.#slots.length >= this.#threads)) return best;
    // Spelled from the parent so that it resolves the same from this module and from
    // the bundle (dist/src/cli/ferry.bundle.js, scripts/bundle.mjs).
    const worker = new Worker(new URL('../transfer/file-reader-worker.js', import.meta.url));
    const slot: Slot = { worker, busy: 0 };
    worker.on('message', (msg: ReaderReply) => this.#handlers.get(msg.id)?.on(msg));
    const die = (e: Error): void => {
      this.#failure ??= new FerryError(ErrorCodes.INTERNAL, `file reader thread failed: ${e.message}`, { cause: e });
      for (const [id, h] of this.#handlers) {
        if (h.slot === slot) {
          this.#handlers.delete(id);
          h.fail(this.#failure);
        }
      }
    };
    worker.on('error', die);
    worker.on('exit', (code) => die(new Error(`exited with code ${code}`)));
    worker.unref();
    this.#slots.push(slot);
    return slot;
  }

  #register(slot: Slot, on: Handler, fail: (e: Error) => void): number {
    if (this.#failure) throw this.#failure;
    const id = this.#nextId++;
    if (slot.busy++ === 0) slot.worker.ref();
    this.#handlers.set(id, { slot, on, fail });
    return id;
  }

  #done(id: number): void {
    const h = this.#handlers.get(id);
    if (!h) return;
    this.#handlers.delete(id);
    if (--h.slot.busy === 0) h.slot.worker.unref();
  }

  #send(slot: Slot, req: ReaderRequest, transfer: ArrayBuffer[] = []): void {
    slot.worker.postMessage(req, transfer);
  }

  /** Read whole files (each at most a few hundred KiB) in one batch; the data views are the caller's to keep. */
  async readSmall(files: readonly SourceIdentity[]): Promise<(SmallRead | FerryError)[]> {
    if (this.#native) {
      const b = await this.#native.read(files);
      return b.results.map((r) => (r instanceof FerryError ? r : { data: Buffer.from(r.data), hash: Buffer.from(r.hash) }));
    }
    return this.#readSmallThread(files);
  }

  /**
   * The same, for a caller that consumes the bytes soon: `release()` once every data
   * view of the batch is consumed lets the next batch reuse its buffer.
   */
  async readSmallBatch(files: readonly SourceIdentity[]): Promise<{ results: (SmallRead | FerryError)[]; release(): void }> {
    if (this.#native) return this.#native.read(files);
    return { results: await this.#readSmallThread(files), release: () => undefined };
  }

  /** One round trip to a worker thread. */
  #readSmallThread(files: readonly SourceIdentity[]): Promise<(SmallRead | FerryError)[]> {
    return new Promise((resolve, reject) => {
      const slot = this.#slot();
      const id = this.#register(
        slot,
        (msg) => {
          this.#done(id);
          if (msg.kind !== 'small') return reject(new FerryError(ErrorCodes.INTERNAL, `file reader: unexpected ${msg.kind} reply`));
          const out: (SmallRead | FerryError)[] = [];
          let off = 0;
          for (let i = 0; i < files.length; i++) {
            const f = files[i]!;
            const e = msg.errors[i];
            if (e) out.push(toFerryError(e, f.path));
            else out.push({ data: Buffer.from(msg.buf, off, f.size), hash: Buffer.from(msg.hashes, i * HASH_BYTES, HASH_BYTES) });
            off += f.size;
          }
          resolve(out);
        },
        reject,
      );
      this.#send(slot, {
        op: 'small',
        id,
        paths: files.map((f) => f.absPath),
        sizes: files.map((f) => f.size),
        mtimes: files.map((f) => f.mtimeNs),
        devs: files.map((f) => f.dev),
        inos: files.map((f) => f.ino),
      });
    });
  }

  /** Read [start, end) of a file in chunks of `chunk` bytes, hashed on the way. */
  readRange(file: SourceIdentity, start: number, end: number, opts: { chunk: number; sparse: boolean }): RangeRead {
    const queue: ReaderReply[] = [];
    let wake: (() => void) | null = null;
    let failure: Error | null = null;
    let digest: Buffer | null = null;
    let finished = false;
    const slot = this.#slot();
    const id = this.#register(
      slot,
      (msg) => {
        if (msg.kind === 'end' || msg.kind === 'error') this.#done(id);
        queue.push(msg);
        wake?.();
      },
      (e) => {
        failure = e;
        wake?.();
      },
    );
    this.#send(slot, {
      op: 'range',
      id,
      path: file.absPath,
      start,
      end,
      chunk: opts.chunk,
      size: file.size,
      mtimeNs: file.mtimeNs,
      ...(file.dev !== undefined ? { dev: file.dev } : {}),
      ...(file.ino !== undefined ? { ino: file.ino } : {}),
      ahead: RANGE_AHEAD,
      sparse: opts.sparse,
    });
    const credit = (buf: ArrayBuffer): void => {
      if (!finished) this.#send(slot, { op: 'credit', id, buf }, [buf]);
    };
    const self = this;
    return {
      get digest() {
        return digest;
      },
      cancel() {
        if (finished) return;
        finished = true;
        self.#done(id);
        self.#send(slot, { op: 'cancel', id });
      },
      async *[Symbol.asyncIterator]() {
        let head = 0;
        try {
          for (;;) {
            if (head === queue.length) {
              if (failure) throw failure;
              if (finished) return;
              await new Promise<void>((r) => (wake = r));
              wake = null;
              continue;
            }
            const msg = queue[head]!;
            queue[head++] = undefined as unknown as ReaderReply;
            if (head > 64 && head === queue.length) {
              queue.length = 0;
              head = 0;
            }
            if (msg.kind === 'chunk') {
              const buf = msg.buf;
              let released = false;
              // A sparse file's chunk may carry only its data part (off, dlen): the rest are holes.
              const off = msg.off ?? 0;
              const len = msg.dlen ?? msg.len;
              yield {
                pos: msg.pos + off,
                len,
                data: buf ? Buffer.from(buf, (msg.boff ?? 0) + off, len) : null,
                release: () => {
                  if (released || !buf) return;
                  released = true;
                  credit(buf);
                },
              };
            } else if (msg.kind === 'end') {
              finished = true;
              digest = Buffer.from(msg.digest);
              return;
            } else if (msg.kind === 'error') {
              finished = true;
              throw toFerryError(msg.error, file.path);
            }
          }
        } finally {
          // Left early (break, or the consumer threw): close the file in the worker.
          if (!finished) this.cancel();
        }
      },
    };
  }

  /** Stop the threads (pending requests fail). */
  async close(): Promise<void> {
    const slots = this.#slots.splice(0);
    await Promise.all(slots.map((s) => s.worker.terminate()));
  }
}
