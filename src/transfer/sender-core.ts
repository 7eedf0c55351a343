/**
 * The sender's protocol core: what the sender holds the receiver to, and how it
 * schedules the data, as a state machine with no I/O (no fs, sockets, timers, threads
 * or randomness), tested alone with no disk and no socket (test/sender-core.test.ts).
 * transfer/sender.ts is its driver: it walks, reads and hashes files, frames and sends
 * them, and calls this core at each step, the way js-libp2p-noise's protocol.ts stands
 * apart from performHandshake.ts.
 *
 * What it keeps:
 * - The manifest as listed: every entry gets the next index; a regular file gets a
 *   record (decided, resolved, ranges left, aborted, dropped). MANIFEST_END counts them.
 * - The receiver's replies, none trusted: a decision for an index we never sent, for a
 *   non-file, or a second one, or a resume offset past the size is FERRY_E_PROTOCOL; so
 *   is a commit for a file not decided, already resolved, or (outside a dry run) before
 *   all its data went out; a failure report for an index we never sent or one already
 *   reported; DELETED without --delete, after SUMMARY, or past MAX_ENTRIES; a SUMMARY
 *   twice, before the manifest was complete, before every file was confirmed, or
 *   counting other deletions than were listed.
 * - Scheduling: every decision that asks for data becomes a head job on the one queue
 *   the stream workers share. When a head job starts, the resume offer is honoured only
 *   if the driver found the prefix hashes equal, and what is left of a file of
 *   `splitThreshold` bytes or more (with more than one stream) is cut into ranges of
 *   `rangeSize` that go to the front of the queue, so a big file is finished by all
 *   streams together before new files start. The queue closes once the manifest is
 *   complete, every file is decided and no head job can split any more.
 *
 *   const core = new SenderCore({ streams, dryRun, delete, splitThreshold, rangeSize });
 *   const index = core.list(entry);                 // per walk entry, in order
 *   const { jobs, skipped } = core.onDecisions(ds);  // push jobs onto the queue
 *   core.onCommitted(indices) / core.onFailed(items) / core.onDeleted(items) / core.onSummary(s)
 *   const more = core.startHead(job, resumeOk);      // ranges for the front of the queue
 *   if (core.queueDone) queue.close();
 */
import type { SourceEntry } from '../core/entry.js';
import { ErrorCodes, FerryError, peerErrorCode } from '../core/errors.js';
import { Action, MAX_ENTRIES, type Decision, type DeletedItem, type FailedItem, type SummaryMsg } from '../wire/messages.js';

export function protocol(msg: string): FerryError {
  return new FerryError(ErrorCodes.PROTOCOL, `receiver broke the protocol: ${msg}`);
}

/** The receiver's fatal error (its ERROR frame), under its code when we know it. */
export function remoteError(code: string, message: string): FerryError {
  return new FerryError(peerErrorCode(code), `receiver: ${message}`);
}

export interface FileState {
  entry: SourceEntry;
  index: number;
  decided: boolean;
  resolved: boolean;
  /** Ranges still to be sent, for split files. */
  rangesLeft: number;
  /** We aborted it (read error, changed source) and counted the failure. */
  aborted: boolean;
  /** The receiver reported it failed: stop sending it. */
  dropped: boolean;
}

export interface Job {
  file: FileState;
  /** The first job of a file: decides resume and splitting. */
  head: boolean;
  /** RESUME offer to verify before sending (head job only). */
  resumeOffer?: { offset: number; hash: Uint8Array };
  from: number;
  start: number;
  end: number;
}

export interface SenderCoreOptions {
  streams: number;
  dryRun: boolean;
  /** The session asked for --delete (only then may DELETED arrive). */
  delete: boolean;
  /** Files at least this big are split into ranges (when streams > 1). */
  splitThreshold: number;
  rangeSize: number;
}

export class SenderCore {
  readonly #o: SenderCoreOptions;
  /** The regular files, in manifest order. */
  readonly files: FileState[] = [];
  /** Every entry by index: a file's state, or the entry itself. */
  readonly byIndex: (FileState | SourceEntry)[] = [];
  #listed = 0;
  #manifestDone = false;
  #decided = 0;
  /** Head jobs not yet started: they may still split into more jobs. */
  #headsPending = 0;
  #deleted = 0;
  /** Entries reported failed: each at most once (a hostile receiver could repeat one forever). */
  readonly #reported = new Set<number>();
  #summary: SummaryMsg | undefined;
  fileCount = 0;
  bytesTotal = 0;

  constructor(o: SenderCoreOptions) {
    this.#o = o;
  }

  get manifestDone(): boolean {
    return this.#manifestDone;
  }

  get summary(): SummaryMsg | undefined {
    return this.#summary;
  }

  /** The queue may close: the manifest is complete, every file decided, no head job left to split. */
  get queueDone(): boolean {
    return this.#manifestDone && this.#decided === this.fileCount && this.#headsPending === 0;
  }

  // --- manifest ---------------------------------------------------------------------

  /** The next entry of the walk: its manifest index. */
  list(e: SourceEntry): number {
    const index = this.#listed++;
    if (e.kind === 'file') {
      const f: FileState = { entry: e, index, decided: false, resolved: false, rangesLeft: 1, aborted: false, dropped: false };
      this.files.push(f);
      this.byIndex[index] = f;
      this.fileCount++;
      this.bytesTotal += e.size;
    } else {
      this.byIndex[index] = e;
    }
    return index;
  }

  /** The manifest is complete: the count MANIFEST_END carries. */
  endManifest(): number {
    this.#manifestDone = true;
    return this.#listed;
  }

  // --- the receiver's replies ---------------------------------------------------------

  /**
   * DECISIONS: the head jobs to queue (files the receiver asks for; none in a dry
   * run) and the files it skips.
   */
  onDecisions(ds: readonly Decision[]): { jobs: Job[]; skipped: FileState[] } {
    const jobs: Job[] = [];
    const skipped: FileState[] = [];
    for (const d of ds) {
      const f = this.byIndex[d.index];
      if (f === undefined || !('decided' in f)) throw protocol(`decision for entry ${d.index}, which is not a file we sent`);
      if (f.decided) throw protocol(`second decision for entry ${d.index}`);
      f.decided = true;
      this.#decided++;
      const size = f.entry.size;
      if (d.action === Action.SKIP) {
        f.resolved = true;
        skipped.push(f);
      } else if (this.#o.dryRun) {
        // Dry run: the receiver only reports what it would ask for.
        if (d.offset > size) throw protocol(`resume offset ${d.offset} past the size of ${f.entry.path}`);
      } else {
        if (d.offset > size) throw protocol(`resume offset ${d.offset} past the size of ${f.entry.path}`);
        const job: Job = { file: f, head: true, from: 0, start: 0, end: size };
        if (d.action === Action.RESUME) job.resumeOffer = { offset: d.offset, hash: d.prefixHash! };
        this.#headsPending++;
        jobs.push(job);
      }
    }
    return { jobs, skipped };
  }

  /** COMMITTED: the files now confirmed. */
  onCommitted(indices: readonly number[]): FileState[] {
    const out: FileState[] = [];
    for (const i of indices) {
      const f = this.byIndex[i];
      if (f === undefined || !('decided' in f)) throw protocol(`commit for entry ${i}, which is not a file we sent`);
      if (!f.decided || f.resolved) throw protocol(`unexpected commit for ${f.entry.path}`);
      if (!this.#o.dryRun && (f.rangesLeft > 0 || f.aborted)) throw protocol(`commit for ${f.entry.path} before its data was sent`);
      f.resolved = true;
      out.push(f);
    }
    return out;
  }

  /** FAILED: the failures to record (a file we aborted ourselves is counted already). */
  onFailed(items: readonly FailedItem[]): FerryError[] {
    const out: FerryError[] = [];
    for (const item of items) {
      const f = this.byIndex[item.index];
      if (f === undefined) throw protocol(`failure report for unknown entry ${item.index}`);
      const path = 'decided' in f ? f.entry.path : f.path;
      if (this.#reported.has(item.index)) throw protocol(`second failure report for ${path}`);
      this.#reported.add(item.index);
      if ('decided' in f) {
        if (f.aborted) continue; // we aborted it ourselves and counted it already
        if (f.resolved) throw protocol(`failure report for ${path}, already resolved`);
        f.resolved = true;
        f.dropped = true;
        if (!f.decided) {
          f.decided = true;
          this.#decided++;
        }
      }
      out.push(new FerryError(peerErrorCode(item.code), `receiver: ${item.message}`, { subject: path }));
    }
    return out;
  }

  /** DELETED: the entries the receiver's --delete removed, to report. */
  onDeleted(items: readonly DeletedItem[]): readonly DeletedItem[] {
    if (this.#summary) throw protocol('DELETED after SUMMARY');
    if (!this.#o.delete) throw protocol('DELETED in a session without --delete');
    this.#deleted += items.length;
    if (this.#deleted > MAX_ENTRIES) throw protocol('too many deletions reported');
    return items;
  }

  /** SUMMARY: the receiver's final counters, once every file is confirmed. */
  onSummary(s: SummaryMsg): void {
    if (this.#summary) throw protocol('second SUMMARY');
    this.#summary = s;
    if (s.deleted !== this.#deleted) throw protocol(`SUMMARY counts ${s.deleted} deletions, DELETED listed ${this.#deleted}`);
    if (!this.#manifestDone) throw protocol('SUMMARY before the manifest was complete');
    this.checkConfirmed();
  }

  /** Every file confirmed (committed, skipped or failed): else the receiver ended too early. */
  checkConfirmed(): void {
    for (const f of this.files) if (!f.resolved) throw protocol(`SUMMARY before ${f.entry.path} was confirmed`);
  }

  // --- scheduling ---------------------------------------------------------------------

  /**
   * A head job starts: `resumeOk` says whether the receiver's prefix hash matched ours
   * (only asked when the job carries a resume offer). Sets where the file's data
   * starts and, for a big file over several streams, cuts what is left into ranges:
   * returns the ranges after the first, for the front of the queue. Returns the
   * resumed length too (0 when sent whole).
   */
  startHead(job: Job, resumeOk: boolean): { more: Job[]; resumed: number } {
    const file = job.file;
    const size = file.entry.size;
    job.head = false;
    let from = 0;
    if (job.resumeOffer) {
      if (resumeOk) from = job.resumeOffer.offset;
      delete job.resumeOffer;
    }
    job.from = from;
    job.start = from;
    let more: Job[] = [];
    // Split what is left into ranges that the other streams carry at once.
    if (this.#o.streams > 1 && size - from >= this.#o.splitThreshold) {
      const ranges: Job[] = [];
      for (let s = from; s < size; s += this.#o.rangeSize) {
        ranges.push({ file, head: false, from, start: s, end: Math.min(size, s + this.#o.rangeSize) });
      }
      file.rangesLeft = ranges.length;
      job.end = ranges[0]!.end;
      more = ranges.slice(1);
    } else {
      file.rangesLeft = 1;
    }
    this.#headsPending--;
    return { more, resumed: from };
  }

  /** A head job ends without starting (its file aborted or dropped, or sent whole as a small file). */
  headDone(job: Job): void {
    if (job.head) {
      job.head = false;
      this.#headsPending--;
    }
  }

  /** One range of a file went out whole (its END is written). */
  rangeSent(file: FileState): void {
    file.rangesLeft--;
  }

  /** We abort a file (read error, changed source): true when this failure is to be counted (the first, and not resolved already). */
  abort(file: FileState): boolean {
    if (file.aborted) return false;
    file.aborted = true;
    if (file.resolved) return false;
    file.resolved = true;
    return true;
  }
}
