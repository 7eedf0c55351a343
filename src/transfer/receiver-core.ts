/**
 * The receiver's protocol core: every rule the receiver holds the sender to, as a
 * state machine that takes decoded messages and facts the driver observed (a quick
 * check's verdict, the length of a leftover temp file, the digest of the bytes it
 * hashed) and returns what to do next. It does no I/O: no fs, no sockets, no timers,
 * no threads, no randomness, so every rule here is tested with no disk and no socket
 * (test/receiver-core.test.ts), the way js-libp2p-noise's protocol.ts stands apart
 * from performHandshake.ts. transfer/receiver.ts is its driver: it reads frames,
 * writes through the SafeWriter and the data plane, runs the timers, and calls this
 * core at each step.
 *
 * The sender is untrusted, before and after authentication (SECURITY.md "Threat
 * model"). What the core checks:
 * - The manifest, one batch as a whole before anything of it is written: entries in
 *   index order, at most `maxEntries` per session, extended attributes within the
 *   session's byte cap; every path lexically safe (fs/path-safety), new in this
 *   session (no duplicates), its parent the root or a directory listed *earlier* in
 *   this manifest, so "a symlink, then a file through it" is refused before anything
 *   is written; symlink targets checked; a hard link only to a file listed before it.
 *   MANIFEST_END must count exactly the entries that arrived.
 * - Decisions: a file is skipped, sent, or resumed at the length of a leftover temp
 *   file that is a possible prefix (no longer than the file now); only a file we asked
 *   for (SEND or RESUME went out) may receive data.
 * - Data: per stream at most one open range (BEGIN … CHUNK* … END); a range lies
 *   inside [from, size) of its file, where `from` is 0 or the offset we offered and is
 *   fixed by the file's first BEGIN; ranges of a file never overlap; every CHUNK lies
 *   inside its range at or after the last one; bytes of holes the sender skipped count
 *   against the session's `maxHoleBytes`. Ranges of a file we gave up on are still
 *   held to its size, then dropped unhashed.
 * - Verdicts: a range whose digest differs from the one the sender sent fails its file
 *   (FERRY_E_INTEGRITY) and nothing of it is published; a file is published only once
 *   every byte of [from, size) ended in a range with a matching digest.
 * - ABORT names the file of the open range (or none open) and a file we asked for; a
 *   file already handed to a publish batch cannot be aborted any more.
 * A broken rule is a FerryError thrown from here (FERRY_E_PROTOCOL, FERRY_E_PATH,
 * FERRY_E_LIMIT): fatal to the session. Per-file failures are the driver's to record.
 *
 * The driver's per-file record extends `CoreFile` (the core keeps the protocol fields,
 * the driver its temp file, queue and buffers beside them), so the core adds no object
 * per file; per CHUNK it returns a number, not an object.
 *
 *   const core = new ReceiverCore<F>({ peer, maxEntries, maxHoleBytes });
 *   core.admit(batch, (e) => newFile(e));     // throws on a bad batch; returns its files
 *   core.decideSkip(f) / core.resumeOffer(f, leftover) / core.decideSend(f, offer, prefixHash)
 *   const s = newStream();                    // per stream: { cur: null }
 *   core.begin(s, index, from, start, end, smallOk, newHash)  -> 'swallow' | 'small' | 'open' | 'more'
 *   core.chunk(s, offset, n)                  -> DROP, or the hole before the chunk (hash that many zeros)
 *   core.end(s) then core.verdict(range, theirs, ours) -> 'mismatch' | 'more' | 'complete'
 *   core.abort(s, index)                      -> the file to fail, or null when it already failed
 */
import { ErrorCodes, FerryError } from '../core/errors.js';
import { MAX_SESSION_XATTR_BYTES } from '../core/limits.js';
import { parentOf, validateHardlinkTarget, validateLinkTarget, validateRelativePath } from '../fs/path-safety.js';
import { Action, type Decision, type WireEntry } from '../wire/messages.js';

export function protocol(msg: string): FerryError {
  return new FerryError(ErrorCodes.PROTOCOL, `sender broke the protocol: ${msg}`);
}

export type FileStatus = 'pending' | 'send' | 'skipped' | 'committed' | 'failed';

/** The protocol state of one regular file of the manifest. */
export interface CoreFile {
  entry: WireEntry;
  status: FileStatus;
  /** RESUME offered at this offset (0: plain SEND). */
  offered: number;
  /** We asked for its data (SEND or RESUME went out): only then may ranges of it arrive. */
  asked: boolean;
  /** The sender's chosen start (0 or `offered`), fixed by the first BEGIN. */
  from: number | undefined;
  ranges: [number, number][];
  /** Bytes of ranges that ended with a good hash. */
  ended: number;
  /** Ended and verified, handed to a publish batch: as good as committed. */
  publishing: boolean;
}

/** The protocol fields of a new file record, for the driver's factory. */
export function coreFileFields(entry: WireEntry): CoreFile {
  return { entry, status: 'pending', offered: 0, asked: false, from: undefined, ranges: [], ended: 0, publishing: false };
}

/** The open range of one stream. `hash` is the driver's running hash; null: swallowed unhashed. */
export interface OpenRange<F extends CoreFile = CoreFile, H = unknown> {
  file: F;
  start: number;
  end: number;
  pos: number;
  hash: H | null;
}

/** One stream's state: its open range, if any. */
export interface StreamState<F extends CoreFile = CoreFile, H = unknown> {
  cur: OpenRange<F, H> | null;
}

export function newStream<F extends CoreFile, H>(): StreamState<F, H> {
  return { cur: null };
}

export interface ReceiverCoreOptions {
  /** The peer, for messages. */
  peer: string;
  /** Manifest entries accepted per session. */
  maxEntries: number;
  /** Bytes of holes hashed per session. */
  maxHoleBytes: number;
  /** Bytes of extended attributes kept from the manifest (default MAX_SESSION_XATTR_BYTES). */
  maxXattrBytes?: number;
}

/**
 * What to do with a BEGIN:
 *   swallow  a file we gave up on after asking: read the range, hash and write nothing;
 *   small    a small file, whole in this range (the driver said it may take that path):
 *            gather its chunks and publish at END;
 *   open     the file's first range: start its temp file at `file.from` (a resume when > 0);
 *   more     a later range of a file already open.
 */
export type BeginAction = 'swallow' | 'small' | 'open' | 'more';

/** chunk(): the chunk belongs to a file that failed meanwhile; drop it. */
export const DROP = -1;

/** What an ended range means for its file: failed (nothing published), wait for more ranges, or publish. */
export type Verdict = 'mismatch' | 'more' | 'complete';

export class ReceiverCore<F extends CoreFile> {
  readonly #peer: string;
  readonly #maxEntries: number;
  readonly #maxHoleBytes: number;
  readonly #maxXattrBytes: number;
  /** Every entry of the manifest by index: the files' records, the other entries as they came. */
  readonly entries: (F | WireEntry)[] = [];
  /** Every path listed, with its entry (a file's record for a file): one map serves the duplicate check and hard-link targets. */
  readonly paths = new Map<string, F | WireEntry>();
  /** The directories listed ('' is the root). */
  readonly dirs = new Set<string>(['']);
  #xattrBytes = 0;
  #holeBytes = 0;
  #ended = false;

  constructor(o: ReceiverCoreOptions) {
    this.#peer = o.peer;
    this.#maxEntries = o.maxEntries;
    this.#maxHoleBytes = o.maxHoleBytes;
    this.#maxXattrBytes = o.maxXattrBytes ?? MAX_SESSION_XATTR_BYTES;
  }

  get manifestEnded(): boolean {
    return this.#ended;
  }

  // --- manifest ---------------------------------------------------------------------

  /**
   * Check one MANIFEST batch (owner ids already mapped by the driver) and record it.
   * Lexical and structural checks for the whole batch come first: a bad entry anywhere
   * stops the session before anything of this batch is written. Returns the batch's
   * files, made by `newFile` (which must include `coreFileFields(e)`).
   */
  admit(batch: readonly WireEntry[], newFile: (e: WireEntry) => F): F[] {
    if (this.#ended) throw protocol('MANIFEST after MANIFEST_END');
    for (const e of batch) {
      const xs = e.xattrs;
      if (xs !== undefined) for (const [n, v] of xs) this.#xattrBytes += n.length + v.length;
    }
    if (this.#xattrBytes > this.#maxXattrBytes) {
      throw new FerryError(
        ErrorCodes.LIMIT,
        `sender ${this.#peer}: extended attributes in the manifest exceed ${this.#maxXattrBytes} bytes, this receiver's limit`,
        { subject: this.#peer },
      );
    }
    if (this.entries.length + batch.length > this.#maxEntries) {
      throw new FerryError(
        ErrorCodes.LIMIT,
        `sender ${this.#peer}: the manifest has more than ${this.#maxEntries} entries, this receiver's limit (ferry recv --max-entries)`,
        { subject: this.#peer },
      );
    }
    if ((batch[0]?.index ?? this.entries.length) !== this.entries.length) throw protocol('manifest indexes out of sequence');
    const files: F[] = [];
    // Entries come directory by directory: the parent found last is compared first.
    let knownParent: string | undefined;
    for (const e of batch) {
      validateRelativePath(e.path);
      if (this.paths.has(e.path)) throw protocol(`${e.path} listed twice`);
      const parent = parentOf(e.path);
      if (parent !== knownParent) {
        if (!this.dirs.has(parent)) {
          throw new FerryError(ErrorCodes.PATH, `unsafe path "${e.path}": its parent is not a directory of this transfer`, { subject: e.path });
        }
        knownParent = parent;
      }

      if (e.kind === 'dir') this.dirs.add(e.path);
      if (e.kind === 'symlink') validateLinkTarget(e.target ?? '', e.path);
      if (e.kind === 'hardlink') {
        const t = validateHardlinkTarget(e.target ?? '', e.path);
        if (this.fileByPath(t) === undefined) throw protocol(`hard link ${e.path} points to ${t}, which is not a file listed before it`);
      }
      if (e.kind === 'file') {
        const f = newFile(e);
        this.entries.push(f);
        this.paths.set(e.path, f);
        files.push(f);
      } else {
        this.entries.push(e);
        this.paths.set(e.path, e);
      }
    }
    return files;
  }

  /** The file listed at `path` (a hard link's target), if a file is. */
  fileByPath(path: string): F | undefined {
    const x = this.paths.get(path);
    return x !== undefined && 'status' in x ? x : undefined;
  }

  /** MANIFEST_END with the sender's count of entries. */
  endManifest(n: number): void {
    if (this.#ended) throw protocol('unexpected MANIFEST_END');
    if (n !== this.entries.length) throw protocol(`MANIFEST_END says ${n} entries, ${this.entries.length} arrived`);
    this.#ended = true;
  }

  /** The file at a manifest index, for DATA. */
  fileAt(index: number): F {
    const f = this.entries[index];
    if (f === undefined || !('status' in f)) throw protocol(`data for entry ${index}, which is not a file`);
    return f;
  }

  // --- decisions --------------------------------------------------------------------

  /** DST's copy stays (same, or kept by an update policy). */
  decideSkip(f: F): Decision {
    f.status = 'skipped';
    return { index: f.entry.index, action: Action.SKIP, offset: 0 };
  }

  /** A dry run: reported as committed, nothing asked for. */
  decideDryRun(f: F): Decision {
    f.status = 'committed';
    return { index: f.entry.index, action: Action.SEND, offset: 0 };
  }

  /**
   * The offset a leftover temp file of `leftover` bytes may be resumed at: its length
   * when it can be a prefix of the file (0 < leftover <= size), else 0 (sent afresh;
   * a longer leftover is truncated when the data starts). The driver hashes that
   * prefix and calls decideSend.
   */
  resumeOffer(f: F, leftover: number): number {
    return leftover > 0 && leftover <= f.entry.size ? leftover : 0;
  }

  /** Ask for the file's data: RESUME at `offer` (with the prefix's hash) or SEND. */
  decideSend(f: F, offer = 0, prefixHash?: Uint8Array): Decision {
    f.status = 'send';
    f.asked = true;
    if (offer > 0) {
      if (prefixHash === undefined || offer > f.entry.size) throw new FerryError(ErrorCodes.INTERNAL, `${f.entry.path}: resume offer without its prefix hash`);
      f.offered = offer;
      return { index: f.entry.index, action: Action.RESUME, offset: offer, prefixHash };
    }
    return { index: f.entry.index, action: Action.SEND, offset: 0 };
  }

  // --- data -------------------------------------------------------------------------

  /**
   * BEGIN of a range [start, end) of file `index`, the sender starting from `from`.
   * `smallOk(f)` is asked only for a file's first range that covers it whole from 0:
   * may the driver take its small-file path? Opens the stream's range (its hash from
   * `newHash`, or none when swallowed).
   */
  begin<H>(s: StreamState<F, H>, index: number, from: number, start: number, end: number, smallOk: (f: F) => boolean, newHash: () => H): BeginAction {
    if (s.cur) throw protocol('BEGIN inside an open range');
    const f = this.fileAt(index);
    const size = f.entry.size;
    if (f.status === 'failed' && f.asked) {
      // We gave up on it after asking: swallow what was already on its way, unhashed,
      // but still only inside the file's declared size.
      if (end > size) throw protocol(`range ${start}-${end} past the size of ${f.entry.path}`);
      s.cur = { file: f, start, end, pos: start, hash: null };
      return 'swallow';
    }
    if (f.status !== 'send') throw protocol(`data for ${f.entry.path}, which we did not ask for`);
    if (end > size) throw protocol(`range ${start}-${end} past the size of ${f.entry.path}`);
    let action: BeginAction;
    if (f.from === undefined && from === 0 && start === 0 && end === size && smallOk(f)) {
      f.from = 0;
      action = 'small';
    } else if (f.from === undefined) {
      if (from !== 0 && from !== f.offered) throw protocol(`resume of ${f.entry.path} at an offset we did not offer`);
      f.from = from;
      action = 'open';
    } else if (from !== f.from) {
      throw protocol(`ranges of ${f.entry.path} disagree on the start`);
    } else {
      action = 'more';
    }
    if (start < f.from) throw protocol(`range before the start of ${f.entry.path}`);
    for (const [a, b] of f.ranges) {
      if (start < b && a < end) throw protocol(`overlapping ranges of ${f.entry.path}`);
    }
    f.ranges.push([start, end]);
    s.cur = { file: f, start, end, pos: start, hash: newHash() };
    return action;
  }

  /**
   * CHUNK of `n` bytes at `offset` in the stream's open range. Returns DROP when its
   * file failed meanwhile (nothing more of the range is hashed), else the length of
   * the hole the sender skipped before it (hash that many zeros, then the chunk).
   */
  chunk<H>(s: StreamState<F, H>, offset: number, n: number): number {
    const cur = s.cur;
    if (!cur) throw protocol('CHUNK outside a range');
    if (offset < cur.pos || offset + n > cur.end) throw protocol(`chunk outside its range in ${cur.file.entry.path}`);
    const hole = offset - cur.pos;
    cur.pos = offset + n;
    if (cur.file.status !== 'send') {
      cur.hash = null;
      return DROP;
    }
    return hole;
  }

  /** END: closes and returns the stream's range; the driver hashes its trailing hole (end - pos) and asks for the verdict. */
  end<H>(s: StreamState<F, H>): OpenRange<F, H> {
    const cur = s.cur;
    if (!cur) throw protocol('END outside a range');
    s.cur = null;
    return cur;
  }

  /** Count `n` hole bytes the driver is about to hash against the session's budget (FERRY_E_LIMIT past it). */
  chargeHole(n: number, f: F): void {
    this.#holeBytes += n;
    if (this.#holeBytes > this.#maxHoleBytes) {
      throw new FerryError(
        ErrorCodes.LIMIT,
        `sender ${this.#peer}: holes in sparse files exceed ${this.#maxHoleBytes} bytes this session, this receiver's limit (ferry recv --max-hole-bytes); at ${f.entry.path}`,
        { subject: this.#peer },
      );
    }
  }

  /**
   * The verdict on an ended range of a file still being received: `theirs` is the
   * digest the sender sent, `ours` the digest of what we received. A mismatch fails
   * the file (the driver publishes nothing of it); 'complete' when every byte of
   * [from, size) has now ended well.
   */
  verdict(r: OpenRange<F, unknown>, theirs: Uint8Array, ours: Uint8Array): Verdict {
    if (!bytesEqual(theirs, ours)) return 'mismatch';
    const f = r.file;
    f.ended += r.end - r.start;
    return f.ended === f.entry.size - f.from! ? 'complete' : 'more';
  }

  /**
   * ABORT of file `index` by the sender: the stream's open range, if any, must be that
   * file's and is closed. Returns the file to fail, or null when it already failed.
   */
  abort<H>(s: StreamState<F, H>, index: number): F | null {
    const f = this.fileAt(index);
    if (s.cur && s.cur.file === f) s.cur = null;
    else if (s.cur) throw protocol('ABORT of a file other than the open range');
    if (f.status === 'failed') return null;
    if (f.status !== 'send' || f.publishing) throw protocol(`ABORT of ${f.entry.path}, which we did not ask for`);
    return f;
  }

  /** The file is published: resolved. */
  committed(f: F): void {
    f.status = 'committed';
  }

  /**
   * The file failed (a write error, a hash mismatch, the sender's ABORT): false when it
   * was resolved already (nothing more to do). Its later ranges are swallowed unhashed
   * and nothing of it is published.
   */
  failed(f: F): boolean {
    if (f.status === 'failed' || f.status === 'committed' || f.status === 'skipped') return false;
    f.status = 'failed';
    return true;
  }

  /** A stream ended: it must not be inside a range. */
  streamEnded<H>(s: StreamState<F, H>): void {
    if (s.cur) throw protocol('stream ended inside a range');
  }
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
