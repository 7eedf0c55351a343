/**
 * The receiving side of a transfer session: the driver of transfer/receiver-core.ts.
 * Manifest in, decisions out, data in, commits out, over FrameChannels. No sockets
 * here (modes/recv.ts accepts them and routes each stream to its session by token).
 *
 * The sender is untrusted, before and after authentication (SECURITY.md "Threat
 * model"). Every rule it is held to lives in the protocol core, which does no I/O
 * and is tested alone (test/receiver-core.test.ts): the manifest's paths (lexically
 * safe, no duplicates, the parent a directory listed *earlier*, so "a symlink, then a
 * file through it" is refused before anything is written), its limits, the decisions,
 * the ranges (a file we asked for, inside [from, size), no overlap, one open range
 * per stream) and the verdict on each range's content hash. This driver executes what
 * the core decides: the quick checks and the temp files through the SafeWriter (whose
 * own checks, no symlink in DST ever followed, O_EXCL|O_NOFOLLOW temp files, symlinks
 * created last, stand behind the core's), small files through fs/small-files, the
 * hashing, the timers and the reports.
 *
 * A file is published (rename onto its final name) only after the core's verdict says
 * every range of it ended with a content hash that matches what we hashed while
 * writing, so a cut connection or a lying sender never leaves a truncated or wrong
 * file under a final name. Its temp file stays for the next run to resume (after the
 * sender verified the prefix hash we offer); a leftover that is no prefix (longer than
 * the file, or refused by the sender) is truncated, and the writer checks the size
 * before the rename, so what is published has exactly the declared size.
 *
 * Work is bounded as well as memory (issue #11): manifest entries and hole bytes per
 * session (counted by the core; holes hashed here in slices that yield to the event
 * loop), ranges of a file we gave up on (still inside its size, no longer hashed), and
 * time: a progress deadline (`idleTimeoutMs`) fails a session whose sender holds every
 * file slot with ranges it never ends. Past a cap the session fails with
 * FERRY_E_LIMIT / FERRY_E_TIMEOUT.
 *
 * Throughput: a manifest batch's files are quick-checked at once, one batched lstat
 * per directory of DST (SafeWriter.quickCheckFiles), and what that settles (up to
 * date; new in a directory this session made) is decided without a promise per file;
 * the batch's decisions are made while the next batches are read (a few batches at
 * once), and data for a file whose decision is still pending waits for it. File
 * writes run through the thread pool with many files in flight, bounded by
 * `maxOpenFiles` and a byte budget — awaiting that budget is what stops us reading
 * frames and so pushes back on the sender.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, constants as fsConstants, openSync } from 'node:fs';
import type { Entry } from '../core/entry.js';
import { ErrorCodes, FerryError, fromSystemError, isFerryError, peerErrorCode } from '../core/errors.js';
import { MAX_SESSION_ENTRIES, MAX_SESSION_HOLE_BYTES, SESSION_IDLE_TIMEOUT_MS } from '../core/limits.js';
import { compileExcludes, compileFilters } from '../fs/exclude.js';
import { existingFromStat, hasPolicy, keepExisting, policyFromBits, type UpdatePolicy } from './update-policy.js';
import { hashFilePrefix } from '../fs/checksum.js';
import { baseOf, parentOf } from '../fs/path-safety.js';
import { PeerOwnerNames, type NameLookup } from '../fs/owner-names.js';
import type { QuickCheck, SafeWriter, TempFile } from '../fs/safe-writer.js';
import type { Frame, FrameChannel } from '../secure/channel-api.js';
import {
  Action,
  MsgType,
  Rec,
  SessionFlags,
  SessionPolicy,
  TOKEN_BYTES,
  TRANSFER_VERSION,
  decodeCount,
  decodeData,
  decodeError,
  decodeJoin,
  decodeManifestBatch,
  decodeSession,
  manifestFields,
  type ManifestFields,
  encodeCommitted,
  encodeDecisions,
  encodeDeleted,
  encodeError,
  encodeFailed,
  encodeSessionOk,
  encodeSummary,
  type Decision,
  type DeletedItem,
  type FailedItem,
  type JoinMsg,
  type SessionMsg,
  type SummaryMsg,
  type WireEntry,
  type WireFilter,
} from '../wire/messages.js';
import { newHash, updateZeros } from './hash.js';
import { DROP, newStream, protocol, ReceiverCore, type CoreFile, type StreamState } from './receiver-core.js';
import { Budget } from './queue.js';
import { nativePublisher, writeSmallFileSync, type NativePublisher, type Part, type PublishItem } from '../fs/small-files.js';

/** Files up to this size that arrive whole are published by fs/small-files.ts (in native batches, or synchronously). */
const SMALL_SYNC_MAX = 256 * 1024;
/** A native publish batch goes out at this many files or bytes, or at the end of the event-loop turn. */
const PUBLISH_BATCH_FILES = 256;
const PUBLISH_BATCH_BYTES = 4 * 1024 * 1024;

export interface ReceiverEvents {
  /** The manifest grew (per batch); `complete` once MANIFEST_END arrived. */
  onManifest?(files: number, bytes: number, complete: boolean): void;
  onBytes?(n: number): void;
  onFileDone?(path: string, how: 'committed' | 'skipped', size: number): void;
  onFailure?(err: FerryError): void;
  /** --delete removed this entry (dry run: would remove it). */
  onDeleted?(path: string, dir: boolean): void;
}

export interface ReceiverOptions {
  /** Files written at once (open temp files). */
  maxOpenFiles?: number;
  /** Bytes of received data waiting for the disk. */
  maxPendingBytes?: number;
  /** Decisions (lstat/quick checks) in flight. */
  checkConcurrency?: number;
  /** Refuse a session that asks for --delete (FERRY_E_REFUSED); `ferry recv --refuse-delete`. */
  refuseDelete?: boolean;
  /** Manifest entries accepted (default MAX_SESSION_ENTRIES, core/limits.ts). */
  maxEntries?: number;
  /** Bytes of holes hashed per session (default MAX_SESSION_HOLE_BYTES). */
  maxHoleBytes?: number;
  /** No progress for this long while files are outstanding: FERRY_E_TIMEOUT (default SESSION_IDLE_TIMEOUT_MS). */
  idleTimeoutMs?: number;
  /**
   * --names: map the sender's owner and group names (OWNER_NAMES) to our ids with this
   * lookup; without it the names are checked and the numbers kept.
   */
  ownerNames?: NameLookup;
  events?: ReceiverEvents;
}

/** Manifest batches decided at once while the control stream reads on. */
const DECIDING_BATCHES = 4;

/** The start of every file's operation chain (a promise is immutable: one serves all). */
const RESOLVED: Promise<void> = Promise.resolve();

/** Holes are hashed in slices of this many zero bytes, yielding to the event loop between them. */
const HOLE_SLICE = 16 * 1024 * 1024;
/** How long a session that announced extra streams waits, after the sender's END, for one that never joined. */
const JOIN_GRACE_MS = 10_000;

/** `p`, or nothing once `ms` have passed (the timer does not keep the process alive). */
function graceful(p: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((r) => {
    timer = setTimeout(r, ms);
    timer.unref();
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

export interface ReceiverResult {
  summary: SummaryMsg;
  failures: FerryError[];
  files: number;
  bytesTotal: number;
  flags: number;
  streams: number;
}

/** A file: its protocol state (the core's) and what the driver holds for it. */
interface RFile extends CoreFile {
  /** Length of an earlier run's temp file adopted at decision time (0: none). */
  leftover: number;
  temp: TempFile | null;
  /** End of the furthest byte written (less than size: a trailing hole). */
  maxEnd: number;
  chain: Promise<void>;
  holdsSlot: boolean;
  /** Fast path (fs/small-files.ts): the parts, written at END. */
  parts: Part[] | null;
  /** The frames whose payloads `parts` are views of (see #onData). */
  holds: Hold[] | null;
}

/** Counts the uses of one frame's payload; the last drop hands it back to the channel. */
class Hold {
  #refs = 1;
  readonly #release: () => void;
  constructor(release: () => void) {
    this.#release = release;
  }
  take(): void {
    this.#refs++;
  }
  drop(): void {
    if (--this.#refs === 0) this.#release();
  }
}

type Hash = ReturnType<typeof newHash>;
/** One stream's open range (receiver-core.ts); a null hash: the file failed, the rest of the range is swallowed unhashed. */
type Stream = StreamState<RFile, Hash>;

/**
 * One session. modes/recv.ts reads the first frame (SESSION or JOIN), creates the
 * session from SESSION, calls `start()` and routes JOINs to `addStream`.
 */
export class ReceiverSession {
  readonly token: Uint8Array = randomBytes(TOKEN_BYTES);
  readonly session: SessionMsg;
  readonly #control: FrameChannel;
  readonly #controlFrames: AsyncIterator<Frame>;
  readonly #sink: SafeWriter;
  readonly #ev: ReceiverEvents;
  readonly #fileSlots: Budget;
  readonly #bytes: Budget;
  readonly #checkConcurrency: number;
  /** The protocol: every check on what the sender sends (transfer/receiver-core.ts). */
  readonly #core: ReceiverCore<RFile>;
  readonly #idleMs: number;
  #lastProgress = performance.now();
  #idleTimer: NodeJS.Timeout | null = null;
  #ownBusy = 0;
  readonly #dryRun: boolean;
  readonly #checksum: boolean;
  readonly #fields: ManifestFields;
  /** OWNER_NAMES: the session's owner names (checked), mapping them when asked. */
  readonly #ownerNames: PeerOwnerNames | undefined;
  readonly #policy: UpdatePolicy;
  readonly #withPolicy: boolean;
  /** --inplace: existing files are rewritten under their own name (fs/safe-writer TempFile.inplace). */
  readonly #inplace: boolean;
  readonly #createdDirs = new Set<string>();
  readonly #hardlinks: WireEntry[] = [];
  readonly #failures: FerryError[] = [];
  readonly #extra = new Map<number, Promise<void>>();
  readonly #channels: FrameChannel[] = [];
  #unresolved = 0;
  #files = 0;
  #bytesTotal = 0;
  #fatal: FerryError | undefined;
  #summarySent = false;
  #allResolved!: () => void;
  readonly #allResolvedP = new Promise<void>((r) => (this.#allResolved = r));
  /** Every extra stream the SESSION announced has joined. */
  #allJoined!: () => void;
  readonly #allJoinedP = new Promise<void>((r) => (this.#allJoined = r));
  #pendingCommits: number[] = [];
  #pendingFailed: FailedItem[] = [];
  #pendingDeleted: DeletedItem[] = [];
  #flushScheduled = false;
  #controlSendChain: Promise<void> = Promise.resolve();
  /** Native small-file publishing (undefined: the synchronous writer), and the batch being gathered. */
  readonly #publisher: NativePublisher | undefined = nativePublisher();
  #pubFiles: RFile[] = [];
  #pubItems: PublishItem[] = [];
  #pubHolds: Hold[][] = [];
  #pubDirFds = new Map<string, number>();
  #pubBytes = 0;
  #pubScheduled = false;
  #pubInFlight = 0;
  /** Manifest batches whose decisions are being made (at most DECIDING_BATCHES). */
  readonly #deciding: Promise<void>[] = [];
  readonly #counts: SummaryMsg = {
    committed: 0,
    skipped: 0,
    failed: 0,
    dirs: 0,
    symlinks: 0,
    hardlinks: 0,
    deleted: 0,
    bytesWritten: 0,
    resumedBytes: 0,
  };

  constructor(
    control: FrameChannel,
    controlFrames: AsyncIterator<Frame>,
    session: SessionMsg,
    sink: SafeWriter,
    opts: ReceiverOptions = {},
  ) {
    if (session.version !== TRANSFER_VERSION) {
      throw new FerryError(ErrorCodes.VERSION, `sender speaks transfer protocol ${session.version}, we speak ${TRANSFER_VERSION}`);
    }
    checkSessionPolicy(session, opts, control.info.peer);
    this.session = session;
    this.#control = control;
    this.#controlFrames = controlFrames;
    this.#channels.push(control);
    this.#sink = sink;
    this.#ev = opts.events ?? {};
    this.#fileSlots = new Budget(opts.maxOpenFiles ?? 128);
    this.#bytes = new Budget(opts.maxPendingBytes ?? 32 * 1024 * 1024);
    this.#checkConcurrency = opts.checkConcurrency ?? 64;
    this.#core = new ReceiverCore<RFile>({
      peer: control.info.peer,
      maxEntries: opts.maxEntries ?? MAX_SESSION_ENTRIES,
      maxHoleBytes: opts.maxHoleBytes ?? MAX_SESSION_HOLE_BYTES,
    });
    this.#idleMs = opts.idleTimeoutMs ?? SESSION_IDLE_TIMEOUT_MS;
    this.#dryRun = (session.flags & SessionFlags.DRY_RUN) !== 0;
    this.#checksum = (session.flags & SessionFlags.CHECKSUM) !== 0;
    this.#fields = manifestFields(session.flags);
    if (this.#fields.ownerNames) this.#ownerNames = new PeerOwnerNames(control.info.peer, opts.ownerNames);
    this.#policy = policyFromBits(session.policy ?? 0);
    this.#inplace = ((session.policy ?? 0) & SessionPolicy.INPLACE) !== 0;
    this.#withPolicy = hasPolicy(this.#policy);
  }

  /**
   * Accept an extra stream of this session (after its JOIN). One may join after the
   * summary went out (a no-op re-run is decided from the manifest alone, before the
   * sender's extra handshakes end): it is welcome all the same and gets our END at
   * once, so that the sender sees every stream it opened end cleanly. A cut instead
   * fails a sender that did nothing wrong.
   */
  addStream(ch: FrameChannel, frames: AsyncIterator<Frame>, index: number): void {
    if (this.#fatal) {
      ch.destroy();
      return;
    }
    if (index < 1 || index >= this.session.streams || this.#extra.has(index)) {
      ch.destroy();
      this.#fail(protocol(`unexpected stream ${index}`));
      return;
    }
    this.#channels.push(ch);
    const p = this.#streamLoop(frames, false).catch((e) => {
      throw this.#fail(e);
    });
    p.catch(() => undefined);
    this.#extra.set(index, p);
    if (this.#summarySent) void ch.close().catch(() => undefined);
    if (this.#extra.size === this.session.streams - 1) this.#allJoined();
  }

  #fail(e: unknown): FerryError {
    const err = isFerryError(e) ? e : new FerryError(ErrorCodes.INTERNAL, String((e as Error)?.stack ?? e));
    if (!this.#fatal) {
      this.#fatal = err;
      this.#stopIdleTimer();
      this.#allResolved();
      // Close every open temp file once its queued operations are done (they stay on
      // disk for the next run to resume): a receiver that serves session after session
      // must not keep descriptors of broken ones.
      for (const f of this.#core.entries) {
        if (!('status' in f)) continue;
        const t = f.temp;
        if (t) f.chain = f.chain.then(() => t.release());
      }
      // Tell the sender why (best effort), then tear everything down.
      const ch = this.#control;
      const teardown = (): void => {
        for (const c of this.#channels) c.destroy();
      };
      // A peer that stopped reading must not keep us waiting: give the message 2 s.
      const timer = setTimeout(teardown, 2000);
      timer.unref();
      void (async () => {
        try {
          await ch.send(MsgType.ERROR, encodeError({ code: err.code, message: err.message }));
          await ch.close();
        } catch {
          /* gone */
        }
        clearTimeout(timer);
        teardown();
      })();
      for (const c of this.#channels) if (c !== ch) c.destroy();
    }
    return this.#fatal;
  }

  /** Run the session to its end. */
  async run(): Promise<ReceiverResult> {
    this.#startIdleTimer();
    try {
      return await this.#run();
    } finally {
      this.#stopIdleTimer();
    }
  }

  /**
   * The progress deadline. Until every file is resolved, some frame must arrive, or
   * some write, commit or hash slice complete, every `idleMs` (our own long hashing
   * does not count as the sender's idleness);
   * otherwise the session fails with FERRY_E_TIMEOUT. The channel's own idle timer
   * does not see a receiver that stopped reading because every file slot is held by a
   * range the sender never ends; this one does.
   */
  #startIdleTimer(): void {
    const every = Math.max(5, Math.min(1000, Math.floor(this.#idleMs / 4)));
    const check = (): void => {
      this.#idleTimer = null;
      if (this.#fatal || this.#summarySent) return;
      const idle = performance.now() - this.#lastProgress;
      if (idle >= this.#idleMs && this.#ownBusy === 0) {
        const left = this.#core.manifestEnded ? `${this.#unresolved} file(s) outstanding` : 'the manifest incomplete';
        this.#fail(new FerryError(ErrorCodes.TIMEOUT, `sender ${this.#control.info.peer}: no progress for ${(idle / 1000).toFixed(1)} s with ${left}`, { subject: this.#control.info.peer }));
        return;
      }
      this.#idleTimer = setTimeout(check, every);
    };
    this.#lastProgress = performance.now();
    this.#idleTimer = setTimeout(check, every);
  }

  #stopIdleTimer(): void {
    if (this.#idleTimer !== null) clearTimeout(this.#idleTimer);
    this.#idleTimer = null;
  }

  #progress(): void {
    this.#lastProgress = performance.now();
  }

  /** Long work of our own (hashing DST's file for --checksum, a resume prefix): not the sender's idleness. */
  async #ownWork<T>(p: Promise<T>): Promise<T> {
    this.#ownBusy++;
    try {
      return await p;
    } finally {
      this.#ownBusy--;
      this.#progress();
    }
  }

  async #run(): Promise<ReceiverResult> {
    await this.#control.send(MsgType.SESSION_OK, encodeSessionOk(this.token));
    const controlLoop = this.#streamLoop(this.#controlFrames, true).catch((e) => {
      throw this.#fail(e);
    });
    controlLoop.catch(() => undefined);
    try {
      await this.#allResolvedP;
      this.#stopIdleTimer(); // what is left (links, --delete, metadata) is our own work
      if (this.#fatal) throw this.#fatal;
      await this.#finishTree();
      if (this.#fatal) throw this.#fatal;
      await this.#flushReports();
      this.#summarySent = true;
      await this.#sendControl(MsgType.SUMMARY, encodeSummary(this.#counts));
      // Nothing more to say: our END goes with the summary, so the sender can finish as
      // soon as it reads them rather than a round trip later. It closes every stream
      // once it has the summary.
      const closed = Promise.all(this.#channels.map((c) => c.close().catch(() => undefined)));
      await controlLoop;
      // The sender opens every stream it announced before it closes the control stream,
      // but a JOIN travels on its own connection and may still be on its way: wait for
      // it (a sender that announced more than it opened gets JOIN_GRACE_MS), so that no
      // stream of this session is cut when we stop.
      if (this.session.streams > 1) await graceful(this.#allJoinedP, JOIN_GRACE_MS);
      await Promise.all(this.#extra.values());
      if (this.#fatal) throw this.#fatal;
      await closed;
    } catch (e) {
      throw this.#fail(e);
    }
    return {
      summary: { ...this.#counts },
      failures: this.#failures,
      files: this.#files,
      bytesTotal: this.#bytesTotal,
      flags: this.session.flags,
      streams: 1 + this.#extra.size,
    };
  }

  /** Serialise sends on the control channel (decisions, reports, summary). */
  #sendControl(type: number, payload: Uint8Array): Promise<void> {
    const p = this.#controlSendChain.then(() => this.#control.send(type, payload));
    this.#controlSendChain = p.catch(() => undefined);
    return p;
  }

  // --- frames -----------------------------------------------------------------------

  async #streamLoop(frames: AsyncIterator<Frame>, isControl: boolean): Promise<void> {
    const state: Stream = newStream();
    for (;;) {
      const r = await frames.next();
      if (r.done) {
        if (!this.#summarySent) throw new FerryError(ErrorCodes.CONNECT, `sender ${this.#control.info.peer} ended the session early`);
        this.#core.streamEnded(state);
        return;
      }
      if (this.#fatal) throw this.#fatal;
      this.#progress();
      const { type, payload } = r.value;
      switch (type) {
        case MsgType.DATA:
          await this.#onData(payload, state, r.value.release);
          break;
        case MsgType.MANIFEST:
          if (!isControl) throw protocol('MANIFEST on a data stream');
          await this.#onManifest(payload);
          break;
        case MsgType.MANIFEST_END: {
          if (!isControl) throw protocol('unexpected MANIFEST_END');
          this.#core.endManifest(decodeCount(payload, 'MANIFEST_END'));
          this.#ev.onManifest?.(this.#files, this.#bytesTotal, true);
          this.#checkAllResolved();
          break;
        }
        case MsgType.ERROR: {
          const m = decodeError(payload);
          const code = peerErrorCode(m.code);
          throw new FerryError(code, `sender: ${m.message}`);
        }
        default:
          throw protocol(`unexpected frame type ${type}`);
      }
    }
  }

  // --- manifest and decisions ---------------------------------------------------------

  async #onManifest(payload: Uint8Array): Promise<void> {
    if (this.#core.manifestEnded) throw protocol('MANIFEST after MANIFEST_END');
    const { entries: batch, names } = decodeManifestBatch(payload, this.#checksum, this.#fields);
    const owners = this.#ownerNames;
    if (owners) {
      owners.add(names);
      for (const e of batch) {
        if (e.uid !== undefined) e.uid = owners.uid(e.uid);
        if (e.gid !== undefined) e.gid = owners.gid(e.gid);
      }
    }
    // The whole batch is checked before anything of it is written (receiver-core.ts).
    const files = this.#core.admit(batch, (e) => ({
      // the core's fields (receiver-core.ts coreFileFields), then the driver's
      entry: e,
      status: 'pending',
      offered: 0,
      asked: false,
      from: undefined,
      ranges: [],
      ended: 0,
      publishing: false,
      leftover: 0,
      temp: null,
      maxEnd: 0,
      chain: RESOLVED,
      holdsSlot: false,
      parts: null,
      holds: null,
    }));
    for (const f of files) {
      this.#files++;
      this.#unresolved++;
      this.#bytesTotal += f.entry.size;
    }
    // Directories in order (parents first), then the files' decisions concurrently.
    // A session that failed meanwhile writes nothing more (its SafeWriter is closed).
    for (const e of batch) {
      if (this.#fatal) return;
      try {
        if (e.kind === 'dir') {
          if (!this.#dryRun && (await this.#sink.mkdir(e)) === 'created') this.#createdDirs.add(e.path);
          this.#counts.dirs++;
        } else if (this.#policy.ignoreExisting && (await this.#sink.lstatExisting(e.path)) !== null) {
          // --ignore-existing: a symlink or hard link already in DST stays as it is.
        } else if (e.kind === 'symlink') {
          if (!this.#dryRun) this.#sink.symlink(e);
        } else if (e.kind === 'hardlink') {
          this.#hardlinks.push(e);
        }
      } catch (x) {
        if (isFerryError(x) && x.code === ErrorCodes.PATH) throw x;
        this.#entryFailed(e, x);
      }
    }
    // The files' decisions run while the next batches are read (a few at a time): their
    // lstats wait on pool threads (the disk, with a cold cache), and nothing of a later
    // batch depends on them. Their failures are the session's.
    const p = this.#decideBatch(files).catch((e) => {
      throw this.#fail(e);
    });
    p.catch(() => undefined);
    this.#deciding.push(p);
    if (this.#deciding.length >= DECIDING_BATCHES) await this.#deciding.shift();
  }

  /**
   * The quick check of a batch's files at once (one batched lstat per directory of
   * DST, fs/stat-batch); what it settles (up to date, or new in a directory we
   * created) is decided without a promise per file, the rest one by one; then the
   * batch's decisions go out in one message.
   */
  async #decideBatch(files: readonly RFile[]): Promise<void> {
    const decisions: Decision[] = [];
    const verdicts = this.#fatal || files.length === 0 ? [] : await this.#sink.quickCheckFiles(files.map((f) => f.entry));
    const slow: Array<[RFile, QuickCheck | null]> = [];
    for (let i = 0; i < files.length; i++) {
      const f = files[i]!;
      const q = verdicts[i] ?? null;
      const d = this.#decideAtOnce(f, q);
      if (d) decisions.push(d);
      else slow.push([f, q]);
    }
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < slow.length && !this.#fatal) {
        const [f, q] = slow[next++]!;
        const d = await this.#decide(f, q);
        if (d) decisions.push(d);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.#checkConcurrency, slow.length) }, worker));
    if (decisions.length > 0) await this.#sendControl(MsgType.DECISIONS, encodeDecisions(decisions));
    if (this.#dryRun) {
      for (const d of decisions) {
        if (d.action === Action.SKIP) continue;
        this.#queueCommit(d.index);
        const f = this.#core.fileAt(d.index);
        this.#ev.onFileDone?.(f.entry.path, 'committed', f.entry.size);
        this.#resolve();
      }
    }
    this.#ev.onManifest?.(this.#files, this.#bytesTotal, false);
    this.#checkAllResolved();
  }

  /**
   * The two verdicts that need nothing more, decided synchronously: up to date
   * ('same', without --checksum: skipped) and new in a directory this session created
   * (sent; nothing there can be partial). Returns null for everything else (#decide).
   */
  #decideAtOnce(f: RFile, q: QuickCheck | null): Decision | null {
    const e = f.entry;
    if (q === 'same' && !this.#checksum) {
      const d = this.#core.decideSkip(f);
      this.#counts.skipped++;
      this.#resolve();
      this.#ev.onFileDone?.(e.path, 'skipped', e.size);
      return d;
    }
    if (q === 'missing' && !this.#dryRun && this.#createdDirs.has(parentOf(e.path))) return this.#core.decideSend(f);
    return null;
  }

  async #decide(f: RFile, known: QuickCheck | null = null): Promise<Decision | null> {
    const e = f.entry;
    try {
      // In a directory this session created nothing can be up to date or partial: no lstat.
      const fresh = this.#createdDirs.has(parentOf(e.path));
      // The batch's verdict when it had one (quickCheckFiles), else one lstat now.
      const qc = fresh ? 'missing' : (known ?? this.#sink.quickCheckSync(e) ?? (await this.#sink.quickCheck(e)));
      // Content right, metadata not: 'meta' (mode differs), or 'touched' (mtime
      // differs) once --checksum's hashes agree. Mended in place, no data asked for.
      let same = qc === 'same' || qc === 'meta';
      // --size-only, --ignore-existing, -u: DST's copy may stay as it is, decided before
      // any hashing; metadata-only differences ('meta') are left alone only by --ignore-existing.
      let kept = false;
      if (this.#withPolicy && qc !== 'same' && qc !== 'missing' && (qc !== 'meta' || this.#policy.ignoreExisting)) {
        const st = await this.#sink.lstatExisting(e.path);
        kept = keepExisting(this.#policy, e, st === null ? null : existingFromStat(st)) !== null;
      }
      if (kept) same = true;
      else {
        if ((same && this.#checksum) || (qc === 'touched' && this.#checksum)) {
          const h = await this.#ownWork(this.#sink.withEntryPath(e.path, (p) => hashFilePrefix(p, e.size)));
          same = e.hash !== undefined && Buffer.from(e.hash).equals(h);
        }
        if (same && qc !== 'same' && !this.#dryRun) await this.#sink.fixMetadata(e);
      }
      if (same) {
        const d = this.#core.decideSkip(f);
        this.#counts.skipped++;
        this.#resolve();
        this.#ev.onFileDone?.(e.path, 'skipped', e.size);
        return d;
      }
      if (this.#dryRun) {
        // Reported as "would be committed" once the decision is on the wire (see #onManifest),
        // with the bytes a real run would write (holes and a resumable prefix included).
        this.#counts.committed++;
        this.#counts.bytesWritten += e.size;
        return this.#core.decideDryRun(f);
      }
      // A previous run's temp file can only exist in a directory we did not create.
      if (!fresh) {
        const t = await this.#sink.beginFile(e, { resume: true, inplace: this.#inplace });
        f.temp = t;
        const have = await t.existingPrefix();
        f.leftover = have;
        // A leftover longer than the file now is no prefix of it: sent afresh, truncated at BEGIN.
        const offer = this.#core.resumeOffer(f, have);
        if (offer > 0) return this.#core.decideSend(f, offer, await this.#ownWork(t.hashPrefix(offer)));
      }
      return this.#core.decideSend(f);
    } catch (x) {
      if (isFerryError(x) && x.code === ErrorCodes.PATH) throw x;
      this.#fileFailed(f, x);
      return null;
    }
  }

  // --- data ---------------------------------------------------------------------------

  /**
   * `release` (the channel's, when the frame was assembled in a buffer it can reuse) is
   * called once no view of the payload is held any more: after the frame is processed,
   * every write from it is done and every small file holding a part of it is published.
   * A path that drops such views without consuming them just never releases (the buffer
   * is then garbage-collected), so the buffer is never reused while still referenced.
   */
  async #onData(payload: Uint8Array, state: Stream, release?: () => void): Promise<void> {
    const hold = release ? new Hold(release) : null;
    try {
      await this.#onDataRecords(payload, state, hold);
    } finally {
      hold?.drop();
    }
  }

  /**
   * May this file, whole in its first range, take the small-file path (fs/small-files)?
   * Small, no temp file adopted, in a directory this session created, nothing the fast
   * path does not set (owners, xattrs), temp files beside their final names.
   */
  readonly #smallOk = (f: RFile): boolean =>
    f.entry.size <= SMALL_SYNC_MAX && f.temp === null && this.#createdDirs.has(parentOf(f.entry.path)) && !this.#sink.needsExtraMeta(f.entry) && !this.#sink.tempsElsewhere;

  async #onDataRecords(payload: Uint8Array, state: Stream, hold: Hold | null): Promise<void> {
    for (const rec of decodeData(payload)) {
      switch (rec.rec) {
        case Rec.BEGIN: {
          // Data for a file whose batch is still being decided (from a sender that did not
          // wait for its decisions): judged once those decisions are made.
          if (!state.cur && this.#deciding.length > 0 && this.#core.fileAt(rec.index).status === 'pending') await Promise.all(this.#deciding);
          const a = this.#core.begin(state, rec.index, rec.from, rec.start, rec.end, this.#smallOk, newHash);
          if (a === 'small') {
            // A small file, whole in this range, in a directory we created: published at END (fs/small-files).
            state.cur!.file.parts = [];
          } else if (a === 'open') {
            const f = state.cur!.file;
            const from = f.from!;
            if (from > 0) this.#counts.resumedBytes += from;
            await this.#fileSlots.acquire(1);
            f.holdsSlot = true;
            this.#enqueue(f, async () => {
              if (!f.temp) f.temp = await this.#sink.beginFile(f.entry, { resume: false, inplace: this.#inplace });
              else if (from === 0 && f.leftover > 0) await f.temp.truncate(0); // no resume (refused, or the leftover is longer): start over
            });
          }
          break;
        }
        case Rec.CHUNK: {
          const n = rec.data.length;
          const hole = this.#core.chunk(state, rec.offset, n);
          if (hole === DROP) break; // its file failed meanwhile: nothing of it is hashed or written any more
          const cur = state.cur!;
          const f = cur.file;
          const hash = cur.hash!;
          if (hole > 0) await this.#hashZeros(hash, hole, f); // a hole the sender skipped
          hash.update(rec.data);
          if (f.status !== 'send') break;
          if (f.parts) {
            f.parts.push({ offset: rec.offset, data: rec.data });
            if (hold) {
              hold.take();
              (f.holds ??= []).push(hold);
            }
            f.maxEnd = rec.offset + n;
            break;
          }
          await this.#bytes.acquire(n);
          const data = rec.data;
          const off = rec.offset;
          f.maxEnd = Math.max(f.maxEnd, off + n);
          hold?.take();
          this.#enqueue(
            f,
            async () => {
              await f.temp!.write(data, off);
              this.#progress();
              this.#counts.bytesWritten += n;
              this.#ev.onBytes?.(n);
            },
            () => {
              this.#bytes.release(n);
              hold?.drop();
            },
          );
          break;
        }
        case Rec.END: {
          const cur = this.#core.end(state);
          const f = cur.file;
          if (f.status !== 'send' || cur.hash === null) break;
          const hash = cur.hash;
          if (cur.pos < cur.end) await this.#hashZeros(hash, cur.end - cur.pos, f); // a trailing hole
          if (f.status !== 'send') break;
          const verdict = this.#core.verdict(cur, rec.hash, hash.digest());
          if (verdict === 'mismatch') {
            this.#fileFailed(f, new FerryError(ErrorCodes.INTEGRITY, `${f.entry.path}: content hash mismatch; not published`, { subject: f.entry.path }));
            break;
          }
          if (f.parts) {
            const parts = f.parts;
            const holds = f.holds ?? [];
            f.parts = null;
            f.holds = null;
            if (this.#publisher) {
              await this.#queuePublish(f, parts, holds);
              break;
            }
            try {
              writeSmallFileSync(this.#sink, f.entry, parts);
            } catch (x) {
              this.#fileFailed(f, x);
              break;
            } finally {
              for (const h of holds) h.drop();
            }
            const n = parts.reduce((a, p) => a + p.data.length, 0);
            this.#counts.bytesWritten += n;
            this.#ev.onBytes?.(n);
            this.#committed(f);
            break;
          }
          if (verdict === 'complete') this.#commit(f);
          break;
        }
        case Rec.ABORT: {
          // (a file being published has ended: as good as committed, and cannot be aborted)
          const f = this.#core.abort(state, rec.index);
          if (f === null) break; // failed already
          const code = peerErrorCode(rec.code);
          // The sender counted this failure itself; we record it, but do not report it back.
          this.#fileFailed(f, new FerryError(code, `sender: ${rec.message}`, { subject: f.entry.path }), false);
          break;
        }
      }
    }
  }

  /**
   * Feed `n` zeros (a hole the sender skipped) into a range's hash. A hole costs the
   * sender a few bytes and us real work, so the bytes count against the session's
   * budget (FERRY_E_LIMIT past it), and they are hashed in slices of HOLE_SLICE that
   * yield to the event loop, so other streams, reports and timers keep running.
   */
  async #hashZeros(hash: Hash, n: number, f: RFile): Promise<void> {
    this.#core.chargeHole(n, f);
    while (n > 0) {
      const k = Math.min(n, HOLE_SLICE);
      updateZeros(hash, k);
      n -= k;
      this.#progress();
      if (n > 0) {
        await new Promise<void>((r) => setImmediate(r));
        if (this.#fatal) throw this.#fatal;
      }
    }
  }

  /** Run `op` after the file's earlier operations; a failure fails the file. */
  #enqueue(f: RFile, op: () => Promise<void>, after?: () => void): void {
    f.chain = f.chain
      .then(async () => {
        if (f.status !== 'send' || this.#fatal) return;
        try {
          await op();
        } catch (e) {
          this.#fileFailed(f, e);
        }
      })
      .finally(() => after?.());
  }

  /**
   * A small file that ended with a good hash, in a directory this session created:
   * gathered into a batch that the data plane publishes on a pool thread
   * (fs/small-files.ts), so the system calls leave this thread. Its bytes count
   * against the pending-bytes budget until the batch is done, which is what stops us
   * reading frames when the disk falls behind.
   */
  async #queuePublish(f: RFile, parts: Part[], holds: Hold[]): Promise<void> {
    let data: Uint8Array;
    if (parts.length === 1 && parts[0]!.offset === 0) data = parts[0]!.data;
    else {
      // Holes inside the file: zeros (a trailing hole stays one: the size says where the file ends).
      const end = parts.length > 0 ? parts[parts.length - 1]!.offset + parts[parts.length - 1]!.data.length : 0;
      const buf = Buffer.alloc(end);
      for (const p of parts) buf.set(p.data, p.offset);
      data = buf;
      for (const h of holds) h.drop(); // copied: the frames' buffers are free
      holds = [];
    }
    const n = data.length;
    f.publishing = true;
    // Waiting for the budget can only end if what is gathered goes out.
    if (this.#bytes.used + n > this.#bytes.limit) this.#flushPublish();
    await this.#bytes.acquire(n);
    // The batch runs later on a pool thread: it gets a descriptor of its own on the
    // verified directory (through the SafeWriter's handle), shared by the batch's files
    // in that directory and closed when the batch is done.
    const rel = parentOf(f.entry.path);
    let dirFd = this.#pubDirFds.get(rel);
    if (dirFd === undefined) {
      try {
        dirFd = openSync(this.#sink.dirPathSync(rel), fsConstants.O_RDONLY | fsConstants.O_DIRECTORY);
      } catch (x) {
        this.#bytes.release(n);
        for (const h of holds) h.drop();
        f.publishing = false;
        this.#fileFailed(f, x);
        return;
      }
      this.#pubDirFds.set(rel, dirFd);
    }
    this.#pubFiles.push(f);
    this.#pubHolds.push(holds);
    this.#pubItems.push({ dirFd, name: baseOf(f.entry.path), size: f.entry.size, mode: this.#sink.mode(f.entry.mode), mtimeNs: f.entry.mtimeNs, data });
    this.#pubBytes += n;
    // One batch at a time keeps a pool thread busy while this one gathers the next
    // (every batch is a cross-thread wake-up: few large ones are cheaper than many
    // small ones); another goes out at once when a batch is full (the pending-bytes
    // budget bounds how many).
    const full = this.#pubFiles.length >= PUBLISH_BATCH_FILES || this.#pubBytes >= PUBLISH_BATCH_BYTES;
    if (full) this.#flushPublish();
    else if (this.#pubInFlight === 0 && !this.#pubScheduled) {
      this.#pubScheduled = true;
      setImmediate(() => {
        this.#pubScheduled = false;
        if (this.#pubInFlight === 0) this.#flushPublish();
      });
    }
  }

  #flushPublish(): void {
    if (this.#pubFiles.length === 0) return;
    const files = this.#pubFiles;
    const items = this.#pubItems;
    const holds = this.#pubHolds;
    const bytes = this.#pubBytes;
    const dirFds = [...this.#pubDirFds.values()];
    this.#pubFiles = [];
    this.#pubItems = [];
    this.#pubHolds = [];
    this.#pubDirFds = new Map();
    this.#pubBytes = 0;
    this.#pubInFlight++;
    const done = (): void => {
      this.#pubInFlight--;
      for (const fd of dirFds) closeSync(fd);
      this.#bytes.release(bytes);
      for (const hs of holds) for (const h of hs) h.drop();
      this.#flushPublish(); // what gathered meanwhile
    };
    void this.#publisher!.publish(items, files.map((f) => f.entry.path), { direct: this.#sink.options.directWrites === true }).then(
      (outcomes) => {
        done();
        outcomes.forEach((err, i) => {
          const f = files[i]!;
          f.publishing = false;
          if (err) return this.#fileFailed(f, err);
          const n = items[i]!.data.length;
          this.#counts.bytesWritten += n;
          this.#ev.onBytes?.(n);
          this.#committed(f);
        });
      },
      (e) => {
        done();
        this.#fail(e);
      },
    );
  }

  #commit(f: RFile): void {
    this.#enqueue(f, async () => {
      const t = f.temp!;
      if (Math.max(f.maxEnd, f.from ?? 0) < f.entry.size) await t.truncate(f.entry.size); // trailing hole
      await t.commit();
      this.#committed(f);
    });
  }

  #committed(f: RFile): void {
    this.#progress();
    this.#core.committed(f);
    this.#counts.committed++;
    this.#releaseSlot(f);
    this.#queueCommit(f.entry.index);
    this.#ev.onFileDone?.(f.entry.path, 'committed', f.entry.size);
    this.#resolve();
  }

  #releaseSlot(f: RFile): void {
    if (f.holdsSlot) {
      f.holdsSlot = false;
      this.#fileSlots.release(1);
    }
  }

  // --- resolution and reports -----------------------------------------------------------

  #resolve(): void {
    this.#unresolved--;
    this.#checkAllResolved();
  }

  #checkAllResolved(): void {
    if (this.#core.manifestEnded && this.#unresolved === 0) this.#allResolved();
  }

  #fileFailed(f: RFile, e: unknown, report = true): void {
    if (!this.#core.failed(f)) return; // resolved already
    const err = isFerryError(e) ? e : fromSystemError(e, 'write', f.entry.path);
    this.#counts.failed++;
    this.#failures.push(err);
    this.#ev.onFailure?.(err);
    const t = f.temp;
    // Keep the temp file when the sender abandoned it? No: its content is not trusted
    // to be a prefix of anything; drop it. (A cut connection never reaches here.)
    f.chain = f.chain.then(() => t?.abort());
    void f.chain.then(() => this.#releaseSlot(f));
    if (report) this.#queueFailed({ index: f.entry.index, code: err.code, message: err.message });
    this.#resolve();
  }

  #entryFailed(e: WireEntry, x: unknown): void {
    const err = isFerryError(x) ? x : fromSystemError(x, 'write', e.path);
    this.#counts.failed++;
    this.#failures.push(err);
    this.#ev.onFailure?.(err);
    this.#queueFailed({ index: e.index, code: err.code, message: err.message });
  }

  #queueCommit(index: number): void {
    this.#pendingCommits.push(index);
    this.#scheduleFlush();
  }

  #queueFailed(item: FailedItem): void {
    this.#pendingFailed.push(item);
    this.#scheduleFlush();
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    setTimeout(() => {
      this.#flushScheduled = false;
      this.#flushReports().catch((e) => this.#fail(e));
    }, 5);
  }

  async #flushReports(): Promise<void> {
    while (this.#pendingCommits.length > 0) {
      const batch = this.#pendingCommits.splice(0, 16384);
      await this.#sendControl(MsgType.COMMITTED, encodeCommitted(batch));
    }
    while (this.#pendingFailed.length > 0) {
      const batch = this.#pendingFailed.splice(0, 256);
      await this.#sendControl(MsgType.FAILED, encodeFailed(batch));
    }
    while (this.#pendingDeleted.length > 0) {
      const batch = this.#pendingDeleted.splice(0, 1024);
      await this.#sendControl(MsgType.DELETED, encodeDeleted(batch));
    }
  }

  // --- the end: links, deletions, directory metadata ---------------------------------------

  /**
   * A dry run counts what the real run's #finishTree would do, from the same state:
   * hard links whose target would be delivered, every symlink, and --delete's list
   * (read from DST, nothing removed), so that `-n` reports exactly what follows.
   */
  async #finishDryRun(): Promise<void> {
    for (const e of this.#hardlinks) {
      const target = this.#core.fileByPath(e.target!);
      if (target && (target.status === 'committed' || target.status === 'skipped')) this.#counts.hardlinks++;
      else this.#entryFailed(e, new FerryError(ErrorCodes.WRITE, `${e.path}: hard link target ${e.target} would not be delivered`, { subject: e.path }));
    }
    if ((this.session.flags & SessionFlags.DELETE) !== 0) await this.#deleteExtraneous();
    for (const x of this.#core.entries) if (!('status' in x) && x.kind === 'symlink') this.#counts.symlinks++;
  }

  async #finishTree(): Promise<void> {
    if (this.#dryRun) return this.#finishDryRun();
    for (const e of this.#hardlinks) {
      const target = this.#core.fileByPath(e.target!);
      if (!target || (target.status !== 'committed' && target.status !== 'skipped')) {
        this.#entryFailed(e, new FerryError(ErrorCodes.WRITE, `${e.path}: hard link target ${e.target} was not delivered`, { subject: e.path }));
        continue;
      }
      try {
        await this.#sink.hardlink(e);
        this.#counts.hardlinks++;
      } catch (x) {
        this.#entryFailed(e, x);
      }
    }
    if ((this.session.flags & SessionFlags.DELETE) !== 0) await this.#deleteExtraneous();
    const symlinkIndex = new Map<string, WireEntry>();
    for (const x of this.#core.entries) if (!('status' in x) && x.kind === 'symlink') symlinkIndex.set(x.path, x);
    const errors = await this.#sink.finish({
      onEntry: (e: Entry, err: FerryError | null) => {
        if (e.kind !== 'symlink') return;
        if (err) {
          const w = symlinkIndex.get(e.path);
          if (w) this.#queueFailed({ index: w.index, code: err.code, message: err.message });
        } else this.#counts.symlinks++;
      },
    });
    for (const err of errors) {
      this.#counts.failed++;
      this.#failures.push(err);
      this.#ev.onFailure?.(err);
    }
  }

  /**
   * --delete: remove what DST has and the manifest has not, sparing excluded entries
   * (a dry run only lists them). Each removal is reported to the sender (DELETED), so
   * both ends can list them (`-v`: "deleting PATH").
   */
  async #deleteExtraneous(): Promise<void> {
    const excluded = compilePeerExcludes(this.session.excludes, this.session.filters);
    const walkDir = async (rel: string): Promise<void> => {
      for (const { name, isDir } of await this.#sink.listDir(rel)) {
        const p = rel === '' ? name : `${rel}/${name}`;
        if (excluded(p, isDir)) continue;
        if (!this.#core.paths.has(p)) {
          try {
            if (!this.#dryRun) await this.#sink.remove(p);
            this.#counts.deleted++;
            this.#pendingDeleted.push({ path: p, dir: isDir });
            this.#ev.onDeleted?.(p, isDir);
          } catch (x) {
            const err = isFerryError(x) ? x : fromSystemError(x, 'write', p);
            this.#counts.failed++;
            this.#failures.push(err);
            this.#ev.onFailure?.(err);
          }
        } else if (isDir && this.#core.dirs.has(p)) {
          await walkDir(p);
        }
      }
    };
    await walkDir('');
  }
}

/** Wildcards allowed in one exclude pattern from the peer (bounds regex backtracking). */
const MAX_PATTERN_WILDCARDS = 16;

/**
 * The sender's --exclude patterns, used only to spare excluded entries from
 * --delete. They come from the peer: a bad pattern is a protocol error, and the
 * number of wildcards is capped so a crafted pattern cannot make matching slow.
 */
function compilePeerExcludes(patterns: readonly string[], filters: readonly WireFilter[] | undefined): (rel: string, isDir: boolean) => boolean {
  for (const p of [...patterns, ...(filters ?? []).map((f) => f.pattern)]) {
    if ((p.match(/[*?[]/g)?.length ?? 0) > MAX_PATTERN_WILDCARDS) throw protocol(`exclude pattern with more than ${MAX_PATTERN_WILDCARDS} wildcards`);
  }
  try {
    return filters !== undefined ? compileFilters(filters) : compileExcludes(patterns);
  } catch (e) {
    throw protocol(`bad exclude pattern: ${(e as Error).message}`);
  }
}

/**
 * The receiver's own policy on what the sender asks for: with `refuseDelete`, a
 * session with the DELETE flag is refused (FERRY_E_REFUSED) before anything is
 * written. The constructor checks it; modes/recv.ts calls it before opening DST.
 */
export function checkSessionPolicy(session: SessionMsg, opts: Pick<ReceiverOptions, 'refuseDelete'>, peer: string): void {
  if (opts.refuseDelete && (session.flags & SessionFlags.DELETE) !== 0) {
    throw new FerryError(ErrorCodes.REFUSED, `sender ${peer} asked for --delete, which this receiver refuses (--refuse-delete)`, { subject: peer });
  }
}

/** Refuse a session before it starts (e.g. a second sender while one runs). */
export async function refuseSession(ch: FrameChannel, err: FerryError): Promise<void> {
  try {
    await ch.send(MsgType.ERROR, encodeError({ code: err.code, message: err.message }));
    await ch.close();
  } catch {
    ch.destroy();
  }
}

export type Opening =
  | { kind: 'session'; session: SessionMsg; frames: AsyncIterator<Frame> }
  | { kind: 'join'; join: JoinMsg; frames: AsyncIterator<Frame> };

/**
 * Read the first frame of a new connection: SESSION starts a session, JOIN adds a
 * stream to a running one. Anything else is FERRY_E_PROTOCOL.
 */
export async function readOpening(ch: FrameChannel): Promise<Opening> {
  const frames = ch.frames()[Symbol.asyncIterator]();
  const r = await frames.next();
  if (r.done) throw new FerryError(ErrorCodes.CONNECT, `${ch.info.peer} closed the connection before starting a session`);
  const { type, payload } = r.value;
  if (type === MsgType.SESSION) return { kind: 'session', session: decodeSession(payload), frames };
  if (type === MsgType.JOIN) return { kind: 'join', join: decodeJoin(payload), frames };
  throw protocol(`expected SESSION or JOIN, got frame type ${type}`);
}
