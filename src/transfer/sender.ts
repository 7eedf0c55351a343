/**
 * The sending side of a transfer session over FrameChannels: manifest out, decisions
 * in, data out, commits in; the driver of transfer/sender-core.ts, which holds the
 * protocol's rules and the scheduling with no I/O. No sockets here (modes/send.ts
 * connects them), so the same code runs over TCP, ssh pipes and in-memory pairs.
 *
 * Why it is built this way:
 * - No per-file round trip. The manifest is streamed in batches while the walk runs;
 *   the receiver answers with batches of decisions; every decision that asks for
 *   data puts a job on one queue, and the stream workers send as soon as jobs arrive.
 *   Over a 40 ms link a session therefore costs about one round trip of latency plus
 *   its bytes, never a round trip per file (docs/PROTOCOL.md, "Pipelining").
 * - Bounded memory. Jobs are small descriptors; file contents are read only for a
 *   stream that is about to send them (at most PREFETCH_FILES / PREFETCH_BYTES small
 *   files, RANGE_AHEAD chunks of a big one), and each `send` is awaited, so the
 *   channel's backpressure stops the reads. The whole
 *   manifest (metadata only) is kept, for the decisions that refer to it.
 * - `-P N`: one worker per stream, all taking from the same queue; a file of
 *   `splitThreshold` bytes or more is cut into ranges of `rangeSize` that different
 *   streams carry at once. Small files are packed many to a DATA frame.
 * - Trust nothing from the receiver (the core's checks): a decision for an index we
 *   never sent, for a non-file, twice, or a resume offset past the size is
 *   FERRY_E_PROTOCOL, and so is a failure report for an index we never sent or one
 *   already reported; a resume offer is honoured only when the prefix hash matches
 *   our own file's prefix (hashed here, judged there).
 * - A source file is fstat'ed after it is read (large files also before) and compared
 *   with what the walk saw; if its size or mtime (or ctime) changed it is aborted
 *   (FERRY_E_CHANGED) instead of ended, and the receiver discards it: a file is never
 *   published with content that was not a snapshot.
 * - Reading is not done here: reader threads (file-reader.ts) open, read, fstat and
 *   hash small files in batches, and big files a few chunks ahead, with synchronous
 *   calls (libuv's pool cost a context switch per call). This thread frames and seals;
 *   file bytes (a big file's chunk, each small file of a read batch) go out as parts
 *   of their own of the DATA frame, never copied into it: the channel seals them
 *   straight from the read buffers, which return to the reader once `send` resolves.
 * - Sparse files (allocated < size): all-zero chunks are not sent; the receiver leaves
 *   holes. The hash still covers the zeros.
 * - Success means confirmation: the result lists what the receiver committed; the
 *   caller exits 0 only when every file was committed or skipped.
 */
import type { SourceEntry } from '../core/entry.js';
import { ErrorCodes, FerryError, fromSystemError, isFerryError } from '../core/errors.js';
import type { FrameChannel } from '../secure/channel-api.js';
import {
  ByteWriter,
  MsgType,
  SessionFlags,
  SessionPolicy,
  TRANSFER_VERSION,
  decodeCommitted,
  decodeDecisions,
  decodeDeleted,
  decodeError,
  decodeFailed,
  decodeSessionOk,
  decodeSummary,
  encodeCount,
  encodeJoin,
  HASH_BYTES,
  ManifestEncoder,
  encodeSession,
  writeAbort,
  writeBegin,
  writeChunkHeader,
  writeEnd,
  type SummaryMsg,
  type WireFilter,
} from '../wire/messages.js';
import { policyBits, type UpdatePolicy } from './update-policy.js';
import { hashSourcePrefix } from '../fs/source-file.js';
import { allowedXattrs, readXattrs, type XattrPolicy } from '../fs/xattrs.js';
import { MAX_XATTRS_PER_ENTRY } from '../core/limits.js';
import { SenderOwnerNames } from '../fs/owner-names.js';
import { FileReader, type SmallRead } from './file-reader.js';
import { isAllZero } from './hash.js';
import { WorkQueue } from './queue.js';
import { protocol, remoteError, SenderCore, type FileState, type Job } from './sender-core.js';

export interface SenderOptions {
  /** Parallel streams (1 = the control stream only). */
  streams: number;
  /** Bytes per read / per CHUNK record of a large file. */
  chunkSize: number;
  checksum: boolean;
  delete: boolean;
  dryRun: boolean;
  /** Exclude patterns, forwarded so that `--delete` spares excluded entries. */
  excludes: readonly string[];
  preserveSpecial: boolean;
  /** -o/-g: send numeric owners and groups (the receiver applies them only as root, when it allows it). */
  owners?: boolean;
  /** --names (with owners): also send each distinct owner's and group's name, for the receiver to map. */
  ownerNames?: boolean;
  /** -X/-A: send the extended attributes this policy reads (fs/xattrs); the receiver filters them by its own. */
  xattrs?: XattrPolicy;
  /** --include/--exclude in order; when given, sent instead of `excludes`. */
  filters?: readonly WireFilter[];
  /** --size-only, --ignore-existing, -u: applied by the receiver. */
  policy?: UpdatePolicy;
  /** --partial-dir: where the receiver keeps temp files (one directory name). */
  partialDir?: string;
  /** --inplace: ask the receiver to rewrite existing files under their own name. */
  inplace?: boolean;
  /** Opens extra stream i (1..streams-1), already authenticated. */
  openStream?: (i: number) => Promise<FrameChannel>;
  /** Files at least this big are split into ranges (when streams > 1). */
  splitThreshold?: number;
  rangeSize?: number;
  events?: SenderEvents;
}

export interface SenderEvents {
  /** Called as the manifest grows (progress totals); `complete` once the walk is done. */
  onManifest?(files: number, bytes: number, complete: boolean): void;
  /** Payload bytes of file data put on the wire. */
  onBytes?(n: number): void;
  /** A file was confirmed committed or skipped by the receiver. */
  onFileDone?(entry: SourceEntry, how: 'committed' | 'skipped', size: number): void;
  /** The receiver runs another session: this one waits its turn (said once). */
  onQueued?(): void;
  /** The receiver's --delete removed this entry of DST (dry run: would remove it). */
  onDeleted?(path: string, dir: boolean): void;
  /** A per-entry failure (ours or the receiver's). */
  onFailure?(err: FerryError): void;
  /** Warnings (unsupported entry types…). */
  onWarning?(err: FerryError): void;
}

export interface SenderResult {
  /** The receiver's final counters. */
  summary: SummaryMsg;
  /** Every per-entry failure, ours and the receiver's. */
  failures: FerryError[];
  warnings: FerryError[];
  files: number;
  bytesTotal: number;
  /** File payload bytes sent. */
  bytesSent: number;
  /** Bytes not sent because the receiver's verified partial file already had them. */
  resumedBytes: number;
  streams: number;
}

const FRAME_TARGET = 256 * 1024;
/** Small files (read whole, many at once per stream): at most this big… */
const SMALL_FILE_MAX = 256 * 1024;
/** …at most this many and this many bytes read ahead per stream. */
const PREFETCH_FILES = 256;
const PREFETCH_BYTES = 8 * 1024 * 1024;
/** Small files go to a reader thread in batches of at most this many files and bytes. */
const READ_BATCH_FILES = 64;
const READ_BATCH_BYTES = 1024 * 1024;
const MANIFEST_BATCH = 1024;
const MANIFEST_FLUSH_MS = 20;
const DEFAULT_SPLIT = 64 * 1024 * 1024;
const DEFAULT_RANGE = 32 * 1024 * 1024;

/**
 * A DATA frame being built for one stream: records are written into `w`, and file
 * bytes are attached as parts of their own, never copied into it (the channel seals
 * the parts straight from the read buffers). `done` callbacks run once the frame has
 * been sent: the channel no longer reads the parts then, and read buffers go back.
 */
class DataFrame {
  readonly w = new ByteWriter(4096);
  #parts: Buffer[] = [];
  #mark = 0;
  #attached = 0;
  #after: (() => void)[] = [];

  /** Bytes in the frame so far. */
  get length(): number {
    return this.w.length + this.#attached;
  }

  /** Append `data` (after what `w` holds so far), uncopied; `done` runs once the frame is sent. */
  attach(data: Buffer, done?: () => void): void {
    if (this.w.length > this.#mark) this.#parts.push(this.w.view().subarray(this.#mark));
    this.#mark = this.w.length;
    this.#parts.push(data);
    this.#attached += data.length;
    if (done) this.#after.push(done);
  }

  /** Run `done` once the frame is sent (or at once when it is empty). */
  after(done: () => void): void {
    if (this.length === 0) done();
    else this.#after.push(done);
  }

  /** The frame as parts, for one send. */
  parts(): Buffer[] {
    const out = this.#parts;
    if (this.w.length > this.#mark) out.push(this.w.view().subarray(this.#mark));
    return out;
  }

  /** The frame went out: start the next one. */
  sent(): void {
    this.#parts = [];
    this.#mark = 0;
    this.#attached = 0;
    this.w.reset();
    const after = this.#after;
    this.#after = [];
    for (const f of after) f();
  }
}

/**
 * Run one session as the sender. `entries` yields the walk's batches (fs/walk).
 * Resolves when the receiver has confirmed every file; rejects with a fatal
 * FerryError (auth, protocol, connection, the receiver's fatal error).
 */
export async function runSender(
  control: FrameChannel,
  entries: AsyncIterable<readonly SourceEntry[]>,
  opts: SenderOptions,
): Promise<SenderResult> {
  const ev = opts.events ?? {};
  const failures: FerryError[] = [];
  const warnings: FerryError[] = [];
  const queue = new WorkQueue<Job>();
  const channels: FrameChannel[] = [control];
  /** The protocol: every check on the receiver's replies, and the scheduling (transfer/sender-core.ts). */
  const core = new SenderCore({
    streams: opts.streams,
    dryRun: opts.dryRun,
    delete: opts.delete,
    splitThreshold: opts.splitThreshold ?? DEFAULT_SPLIT,
    rangeSize: opts.rangeSize ?? DEFAULT_RANGE,
  });
  let bytesSent = 0;
  let resumedBytes = 0;
  let fatal: FerryError | undefined;
  let resolveSummary!: () => void;
  const summaryArrived = new Promise<void>((r) => (resolveSummary = r));

  let readerToClose: FileReader | undefined;
  const fail = (e: unknown): FerryError => {
    const err = isFerryError(e) ? e : new FerryError(ErrorCodes.INTERNAL, String((e as Error)?.stack ?? e));
    if (!fatal) {
      fatal = err;
      void readerToClose?.close();
      queue.close();
      resolveSummary();
      for (const ch of channels) ch.destroy(err);
    }
    return fatal;
  };

  const addFailure = (err: FerryError): void => {
    failures.push(err);
    ev.onFailure?.(err);
  };

  const maybeCloseQueue = (): void => {
    if (core.queueDone && !queue.closed) queue.close();
  };

  // --- 1. Session start ------------------------------------------------------------
  const flags =
    (opts.checksum ? SessionFlags.CHECKSUM : 0) |
    (opts.delete ? SessionFlags.DELETE : 0) |
    (opts.dryRun ? SessionFlags.DRY_RUN : 0) |
    (opts.preserveSpecial ? SessionFlags.PRESERVE_SPECIAL : 0) |
    (opts.owners ? SessionFlags.OWNERS : 0) |
    (opts.xattrs ? SessionFlags.XATTRS : 0) |
    (opts.owners && opts.ownerNames ? SessionFlags.OWNER_NAMES : 0);
  const fields = { owners: opts.owners === true, xattrs: opts.xattrs !== undefined, ownerNames: opts.owners === true && opts.ownerNames === true };
  const ownerNames = fields.ownerNames ? new SenderOwnerNames() : undefined;
  await control.send(
    MsgType.SESSION,
    encodeSession({
      version: TRANSFER_VERSION,
      flags,
      streams: opts.streams,
      chunkSize: opts.chunkSize,
      excludes: opts.filters ? [] : [...opts.excludes],
      ...(opts.policy || opts.inplace ? { policy: (opts.policy ? policyBits(opts.policy) : 0) | (opts.inplace ? SessionPolicy.INPLACE : 0) } : {}),
      ...(opts.filters ? { filters: [...opts.filters] } : {}),
      ...(opts.partialDir !== undefined ? { partialDir: opts.partialDir } : {}),
    }),
  );
  // --- 2. The manifest, streamed while the walk runs -----------------------------------
  // It follows SESSION at once, without waiting for SESSION_OK: the receiver reads it
  // once it has accepted the session, so the first decisions come back one round trip
  // after SESSION rather than two (docs/PROTOCOL.md, "Pipelining"). A refused session
  // fails the channel, and the walk stops at its next send.
  // Entries are kept as the walk made them (the batch is a list of references) and
  // encoded straight from them when the batch goes out (no WireEntry per entry).
  const sendManifest = async (): Promise<void> => {
    try {
      const enc = new ManifestEncoder(opts.checksum, fields);
      let batch: SourceEntry[] = [];
      let batchXattrs: Array<Array<[string, Buffer]> | undefined> = [];
      let batchFirst = 0;
      let batchStarted = Date.now();
      const flushManifest = async (): Promise<void> => {
        if (batch.length === 0) return;
        const b = batch;
        const xs = batchXattrs;
        batch = [];
        batchXattrs = [];
        const hashes = opts.checksum ? await hashEntries(b) : undefined;
        for (let i = 0; i < b.length; i++) enc.add(b[i]!, hashes?.[i], xs[i]);
        await control.send(MsgType.MANIFEST, enc.finish(batchFirst, ownerNames?.take()));
        ev.onManifest?.(core.fileCount, core.bytesTotal, false);
      };
      for await (const group of entries) {
        if (fatal) break;
        for (const e of group) {
          const index = core.list(e);
          if (batch.length === 0) {
            batchFirst = index;
            batchStarted = Date.now();
          }
          if (ownerNames) ownerNames.note(e.uid ?? 0, e.gid ?? 0);
          if (opts.xattrs && (e.kind === 'file' || e.kind === 'dir')) {
            try {
              batchXattrs[batch.length] = allowedXattrs(readXattrs(e.absPath, false, opts.xattrs), opts.xattrs).slice(0, MAX_XATTRS_PER_ENTRY);
            } catch (x) {
              // The entry still goes; without its attributes, and the user is told.
              const err = fromSystemError(x, 'read', e.path);
              warnings.push(err);
              ev.onWarning?.(err);
            }
          }
          batch.push(e);
          if (batch.length >= MANIFEST_BATCH || Date.now() - batchStarted > MANIFEST_FLUSH_MS) await flushManifest();
        }
      }
      if (fatal) throw fatal;
      await flushManifest();
      await control.send(MsgType.MANIFEST_END, encodeCount(core.endManifest()));
      ev.onManifest?.(core.fileCount, core.bytesTotal, true);
      maybeCloseQueue();
    } catch (e) {
      throw fail(e);
    }
  };
  const manifestSent = sendManifest();
  manifestSent.catch(() => undefined);

  // --- 3. The receiver's answer: SESSION_OK, after QUEUED while it is busy --------------
  const controlFrames = control.frames()[Symbol.asyncIterator]();
  const accept = async (): Promise<Uint8Array> => {
    let first = await controlFrames.next();
    // A busy receiver first says that we are queued (and repeats it while we wait, which
    // also keeps the channel's idle timer from firing): report it once.
    let queued = false;
    while (!first.done && first.value.type === MsgType.QUEUED) {
      if (first.value.payload.length !== 0) throw protocol('QUEUED with a payload');
      if (!queued) ev.onQueued?.();
      queued = true;
      first = await controlFrames.next();
    }
    if (first.done) throw new FerryError(ErrorCodes.CONNECT, 'receiver closed the session before accepting it');
    if (first.value.type === MsgType.ERROR) {
      const m = decodeError(first.value.payload);
      throw remoteError(m.code, m.message);
    }
    if (first.value.type !== MsgType.SESSION_OK) throw protocol(`expected SESSION_OK, got frame type ${first.value.type}`);
    return decodeSessionOk(first.value.payload);
  };
  const token = await accept().catch((e) => {
    throw fail(e);
  });

  // --- 4. The control reader: decisions, commits, failures, summary -----------------
  const onDecisions = (payload: Uint8Array): void => {
    const { jobs, skipped } = core.onDecisions(decodeDecisions(payload));
    for (const f of skipped) ev.onFileDone?.(f.entry, 'skipped', f.entry.size);
    for (const job of jobs) queue.push(job);
    maybeCloseQueue();
  };

  const onCommitted = (payload: Uint8Array): void => {
    for (const f of core.onCommitted(decodeCommitted(payload))) ev.onFileDone?.(f.entry, 'committed', f.entry.size);
  };

  const onFailed = (payload: Uint8Array): void => {
    for (const err of core.onFailed(decodeFailed(payload))) addFailure(err);
    maybeCloseQueue();
  };

  const controlReader = (async () => {
    for (;;) {
      const r = await controlFrames.next();
      if (r.done) {
        if (!core.summary) throw new FerryError(ErrorCodes.CONNECT, `receiver ${control.info.peer} ended the session early`);
        return;
      }
      const { type, payload } = r.value;
      switch (type) {
        case MsgType.DECISIONS:
          onDecisions(payload);
          break;
        case MsgType.COMMITTED:
          onCommitted(payload);
          break;
        case MsgType.FAILED:
          onFailed(payload);
          break;
        case MsgType.DELETED:
          for (const d of core.onDeleted(decodeDeleted(payload))) ev.onDeleted?.(d.path, d.dir);
          break;
        case MsgType.SUMMARY:
          core.onSummary(decodeSummary(payload));
          resolveSummary();
          break;
        case MsgType.ERROR: {
          const m = decodeError(payload);
          throw remoteError(m.code, m.message);
        }
        default:
          throw protocol(`unexpected frame type ${type} on the control stream`);
      }
    }
  })().catch((e) => {
    throw fail(e);
  });
  controlReader.catch(() => undefined);

  // --- 5. Extra streams -------------------------------------------------------------
  const extraReaders: Promise<void>[] = [];
  const drainExtra = async (ch: FrameChannel): Promise<void> => {
    for await (const f of ch.frames()) {
      if (f.type === MsgType.ERROR) {
        const m = decodeError(f.payload);
        throw remoteError(m.code, m.message);
      }
      throw protocol(`unexpected frame type ${f.type} on a data stream`);
    }
  };
  if (opts.streams > 1) {
    if (!opts.openStream) throw new FerryError(ErrorCodes.INTERNAL, 'streams > 1 without openStream');
    const opened = await Promise.all(
      Array.from({ length: opts.streams - 1 }, async (_, k) => {
        const ch = await opts.openStream!(k + 1);
        await ch.send(MsgType.JOIN, encodeJoin({ token, stream: k + 1 }));
        return ch;
      }),
    ).catch((e) => {
      throw fail(e);
    });
    for (const ch of opened) {
      channels.push(ch);
      const p = drainExtra(ch).catch((e) => {
        throw fail(e);
      });
      p.catch(() => undefined);
      extraReaders.push(p);
    }
    if (fatal) throw fatal;
  }

  // --- 6. Stream workers ------------------------------------------------------------
  const reader = new FileReader();
  readerToClose = reader;
  const zeroSparse = (e: SourceEntry): boolean => e.allocated < e.size;

  const sendJob = async (ch: FrameChannel, job: Job, frame: DataFrame, flush: () => Promise<void>): Promise<void> => {
    const { file } = job;
    const entry = file.entry;
    const abort = (err: FerryError): void => {
      writeAbort(frame.w, file.index, err.code, err.message);
      if (core.abort(file)) addFailure(err);
    };
    const finishHead = (): void => {
      if (job.head) {
        core.headDone(job);
        maybeCloseQueue();
      }
    };
    if (file.aborted || file.dropped) return finishHead();
    try {
      if (job.head) {
        // The receiver claims to hold the first `offset` bytes: believe it only if the hashes agree.
        const offer = job.resumeOffer;
        const resumeOk = offer !== undefined && (await hashSourcePrefix(entry, offer.offset)).equals(offer.hash);
        // Where the data starts, and a big file's other ranges for the other streams.
        const { more, resumed } = core.startHead(job, resumeOk);
        resumedBytes += resumed;
        if (more.length > 0) queue.pushFront(more);
        maybeCloseQueue();
      }
      // A worker thread opens the file, checks it against the walk, reads and hashes
      // chunk n+1 while this thread frames and seals chunk n (file-reader.ts).
      const range = reader.readRange(entry, job.start, job.end, { chunk: opts.chunkSize, sparse: zeroSparse(entry) });
      writeBegin(frame.w, file.index, job.from, job.start, job.end);
      for await (const c of range) {
        if (file.aborted || file.dropped) {
          // Another range failed, or the receiver gave up on the file: close our range.
          c.release();
          range.cancel();
          writeAbort(frame.w, file.index, ErrorCodes.CHANGED, `${entry.path}: abandoned`);
          return;
        }
        if (c.data !== null) {
          // (an all-zero chunk of a sparse file is left out: the receiver feeds zeros to its hash)
          // The chunk goes out as its own part of the frame, not copied into it; once
          // send() resolves the channel has sealed it and the buffer goes back.
          writeChunkHeader(frame.w, c.pos, c.len);
          frame.attach(c.data, () => c.release());
          await flush();
          bytesSent += c.len;
          ev.onBytes?.(c.len);
        } else c.release();
      }
      writeEnd(frame.w, range.digest!);
      core.rangeSent(file);
    } catch (e) {
      if (fatal) throw fatal;
      const err = isFerryError(e) ? e : fromSystemError(e, 'read', entry.path);
      if (err.code === ErrorCodes.PROTOCOL || err.code === ErrorCodes.INTEGRITY || err.code === ErrorCodes.CONNECT) throw err;
      abort(err);
    } finally {
      finishHead();
    }
  };

  /**
   * Small files are read ahead, many at once per stream, in batches by the reader
   * threads (open, read, fstat, close and the hash, back to back, one message per
   * batch); `emitSmall` then packs each into the frame in queue order.
   */
  const isSmall = (job: Job): boolean =>
    job.head && job.resumeOffer === undefined && job.file.entry.size <= SMALL_FILE_MAX && job.file.entry.size <= opts.chunkSize;

  const emitSmall = (job: Job, data: SmallRead | FerryError, frame: DataFrame): void => {
    const file = job.file;
    core.headDone(job);
    file.rangesLeft = 1;
    maybeCloseQueue();
    if (file.aborted || file.dropped) return;
    if (data instanceof FerryError) {
      writeAbort(frame.w, file.index, data.code, data.message);
      if (core.abort(file)) addFailure(data);
      return;
    }
    const size = file.entry.size;
    writeBegin(frame.w, file.index, 0, 0, size);
    const sparse = file.entry.allocated < size && isAllZero(data.data);
    if (size > 0 && !sparse) {
      writeChunkHeader(frame.w, 0, size);
      frame.attach(data.data);
      bytesSent += size;
      ev.onBytes?.(size);
    }
    writeEnd(frame.w, data.hash);
    core.rangeSent(file);
  };

  const worker = async (ch: FrameChannel): Promise<void> => {
    // One frame per stream, reused: send() is done with its parts once it resolves.
    const frame = new DataFrame();
    const flush = async (): Promise<void> => {
      if (frame.length === 0) return;
      await ch.send(MsgType.DATA, frame.parts());
      frame.sent();
    };
    const window: { job: Job; data: Promise<SmallRead | FerryError> | null; done?: () => void }[] = [];
    let windowBytes = 0;
    let batch: Job[] = [];
    let batchBytes = 0;
    const submit = (): void => {
      if (batch.length === 0) return;
      const jobs = batch;
      batch = [];
      batchBytes = 0;
      const read = reader.readSmallBatch(jobs.map((j) => j.file.entry));
      // The batch's buffer goes back for reuse once every file of it is in a frame.
      let left = jobs.length;
      const done = (): void => {
        if (--left === 0) void read.then((r) => r.release(), () => undefined);
      };
      jobs.forEach((job, i) => {
        // After a fatal error the window is abandoned unread: its promises must not be unhandled rejections.
        const data = read.then((r) => r.results[i]!);
        data.catch(() => undefined);
        window.push({ job, data, done });
      });
    };
    for (;;) {
      if (fatal) throw fatal;
      // Top up the read-ahead window with small files; a big file ends the top-up.
      let starved = false;
      while (window.length + batch.length < PREFETCH_FILES && windowBytes < PREFETCH_BYTES) {
        if (window.length > 0 && window[window.length - 1]!.data === null) break;
        let job = queue.tryTake();
        if (job === undefined && window.length === 0 && batch.length === 0) {
          await flush();
          job = await queue.take();
        }
        if (job === undefined) {
          starved = true;
          break;
        }
        if (isSmall(job)) {
          batch.push(job);
          batchBytes += job.file.entry.size;
          windowBytes += job.file.entry.size;
          if (batch.length >= READ_BATCH_FILES || batchBytes >= READ_BATCH_BYTES) submit();
        } else {
          submit();
          window.push({ job, data: null });
        }
      }
      // A partial batch waits to fill up while the window holds plenty to send (else
      // the steady state is one file per reader-thread message: each top-up adds one);
      // it goes now when nothing more is queued or the window runs low.
      if (starved || window.length < READ_BATCH_FILES) submit();
      const item = window.shift();
      if (item === undefined) break; // queue closed and drained
      if (item.data === null) {
        await sendJob(ch, item.job, frame, flush);
      } else {
        const data = await item.data;
        windowBytes -= item.job.file.entry.size;
        if (frame.length + item.job.file.entry.size + 128 > FRAME_TARGET && frame.length > 0) await flush();
        emitSmall(item.job, data, frame); // the bytes go into the frame uncopied
        // The batch's buffer goes back once the frame holding these bytes is sent.
        if (item.done) frame.after(item.done);
      }
    }
    await flush();
  };

  const workers = channels.map((ch) =>
    worker(ch).catch((e) => {
      throw fail(e);
    }),
  );
  for (const w of workers) w.catch(() => undefined);

  // --- 7. Wait for the data to go out and the receiver to confirm -----------------------
  await Promise.all([manifestSent, ...workers]).catch((e) => {
    throw fail(e);
  });
  await summaryArrived;
  if (fatal) throw fatal;
  for (const f of core.files) {
    if (!f.resolved) throw fail(protocol(`summary before ${f.entry.path} was confirmed`));
  }
  await Promise.all(channels.map((ch) => ch.close())).catch((e) => {
    throw fail(e);
  });
  await Promise.all([controlReader, ...extraReaders]).catch((e) => {
    throw fail(e);
  });
  await reader.close();
  return {
    summary: core.summary!,
    failures,
    warnings,
    files: core.fileCount,
    bytesTotal: core.bytesTotal,
    bytesSent,
    resumedBytes,
    streams: channels.length,
  };
}

/**
 * --checksum: the content hashes of a manifest batch's files (a few at a time), by
 * position (undefined for the other kinds). An unreadable file gets an all-zero hash:
 * the receiver then asks for it, and the read fails and is reported.
 */
async function hashEntries(batch: readonly SourceEntry[]): Promise<Array<Uint8Array | undefined>> {
  const out: Array<Uint8Array | undefined> = new Array<Uint8Array | undefined>(batch.length);
  let next = 0;
  const one = async (): Promise<void> => {
    while (next < batch.length) {
      const i = next++;
      const e = batch[i]!;
      if (e.kind !== 'file') continue;
      try {
        out[i] = await hashSourcePrefix(e, e.size);
      } catch {
        out[i] = new Uint8Array(HASH_BYTES);
      }
    }
  };
  await Promise.all(Array.from({ length: 8 }, one));
  return out;
}
