/**
 * The transfer protocol's messages: how `ferry send` and `ferry recv` talk once the
 * secure channel (secure/channel.ts) is up. Pure encode/decode, no I/O.
 *
 * Every message is one channel frame (type ≥ 0x10, channel-api.ts) whose payload is
 * built from a few primitives: unsigned LEB128 varints (capped at 2^53 - 1), fixed
 * bytes, and length-prefixed UTF-8 strings. The decoder trusts nothing: every count
 * and length is checked against a cap from this file or core/limits.ts *before*
 * anything is allocated, a frame must be consumed exactly (trailing bytes are a
 * protocol error), and every failure is FerryError(FERRY_E_PROTOCOL) naming what was
 * wrong. Paths are *not* validated here (fs/path-safety does that in the receiver,
 * where the rule lives); they are only capped in length.
 *
 * The flow (docs/PROTOCOL.md has the full picture):
 *
 *   sender                                   receiver
 *   SESSION (options) ───────────────────────▶
 *                     ◀─────────────────────── [QUEUED …] (another session runs; repeated while waiting)
 *                     ◀─────────────────────── SESSION_OK (stream token)
 *   [streams 1..N-1: JOIN(token, i)] ────────▶
 *   MANIFEST batches … MANIFEST_END ─────────▶  (streamed while the walk runs)
 *                     ◀─────────────────────── DECISIONS batches (skip/send/resume)
 *   DATA (records: BEGIN/CHUNK/END/ABORT) ───▶  (any stream, as decisions arrive)
 *                     ◀─────────────────────── COMMITTED / FAILED batches
 *                     ◀─────────────────────── DELETED batches (--delete; dry run: would be)
 *                     ◀─────────────────────── SUMMARY (after everything is resolved)
 *   close ───────────────────────────────────▶
 *
 * DATA frames pack many small files: a frame is a sequence of records, and within
 * one stream at most one range is open at a time (BEGIN … CHUNK* … END), so CHUNK
 * and END need not repeat the file index. Ranges of one big file may travel on
 * different streams.
 */
import { ErrorCodes, FerryError } from '../core/errors.js';
import type { Entry, EntryKind } from '../core/entry.js';
import {
  MAX_FILE_SIZE,
  MAX_LINK_TARGET_BYTES,
  MAX_OWNER_NAME_BYTES,
  MAX_OWNER_NAMES,
  MAX_PATH_BYTES,
  MAX_XATTR_BYTES_PER_ENTRY,
  MAX_XATTR_NAME_BYTES,
  MAX_XATTR_VALUE_BYTES,
  MAX_XATTRS_PER_ENTRY,
  validOwnerName,
} from '../core/limits.js';

export const MsgType = {
  SESSION: 0x10,
  JOIN: 0x11,
  SESSION_OK: 0x12,
  MANIFEST: 0x13,
  MANIFEST_END: 0x14,
  DATA: 0x15,
  ERROR: 0x16,
  QUEUED: 0x17,
  DECISIONS: 0x20,
  COMMITTED: 0x21,
  FAILED: 0x22,
  SUMMARY: 0x23,
  DELETED: 0x24,
} as const;

/**
 * Transfer protocol revision, carried in SESSION (the channel's hello has its own).
 * 3: QUEUED and DELETED (issue #14: a queued sender is told so; a dry run reports
 * its deletions); a revision-2 peer would take either for a protocol violation.
 * 4: the OWNERS and XATTRS session flags and their manifest fields (issue #14).
 * 5: the content hash is two XXH3-64 (fs/checksum.ts), no longer two XXH64 (issue #12).
 */
export const TRANSFER_VERSION = 5;
/** A content digest on the wire (fs/checksum.ts's CONTENT_HASH_BYTES, checked by a test). */
export const HASH_BYTES = 16;
/** Size of the random token that binds the extra streams of `-P N` to a session. */
export const TOKEN_BYTES = 16;

/** Caps on what a peer controls (checked before allocating). */
export const MAX_STREAMS = 64;
export const MAX_ENTRIES_PER_BATCH = 4096;
export const MAX_ITEMS_PER_BATCH = 65536;
export const MAX_ENTRIES = 50_000_000;
export const MAX_EXCLUDES = 1024;
export const MAX_PATTERN_BYTES = 4096;
export const MAX_MESSAGE_BYTES = 1024;
export const MAX_CODE_BYTES = 64;
export const MAX_SUMMARY_BYTES = 64 * 1024;
export const MAX_CHUNK_SIZE = 4 * 1024 * 1024 - 4096;
export const MIN_CHUNK_SIZE = 4096;

export const SessionFlags = {
  CHECKSUM: 1,
  DELETE: 2,
  DRY_RUN: 4,
  PRESERVE_SPECIAL: 8,
  /** Manifest entries carry numeric uid and gid (send -o/-g). */
  OWNERS: 16,
  /** Manifest entries (files and directories) carry extended attributes (send -X/-A). */
  XATTRS: 32,
  /** With OWNERS (send --names): manifest batches begin with the names of ids not named before. */
  OWNER_NAMES: 64,
} as const;

const KNOWN_SESSION_FLAGS = Object.values(SessionFlags).reduce((a, b) => a | b, 0);

/** Optional manifest fields, switched on by session flags (so a plain manifest stays small). */
export interface ManifestFields {
  owners?: boolean;
  xattrs?: boolean;
  /** OWNER_NAMES (only with owners): each batch begins with an owner name table. */
  ownerNames?: boolean;
}

/** The manifest fields a session's flags announce. */
export function manifestFields(flags: number): ManifestFields {
  const owners = (flags & SessionFlags.OWNERS) !== 0;
  return { owners, xattrs: (flags & SessionFlags.XATTRS) !== 0, ownerNames: owners && (flags & SessionFlags.OWNER_NAMES) !== 0 };
}

/** OWNER_NAMES: the new id → name pairs of one manifest batch. */
export interface OwnerNameTable {
  users: Array<[number, string]>;
  groups: Array<[number, string]>;
}

/**
 * The SESSION extension's flags: rsync's update policies, applied by the receiver
 * (transfer/update-policy.ts). Sent only when one is set or an --include is given, so
 * a session without them is byte-for-byte what older receivers expect.
 */
export const SessionPolicy = {
  SIZE_ONLY: 1,
  IGNORE_EXISTING: 2,
  UPDATE: 4,
  /** --inplace: rewrite existing files under their own name. */
  INPLACE: 8,
} as const;

const KNOWN_SESSION_POLICY = Object.values(SessionPolicy).reduce((a, b) => a | b, 0);

/** One --include/--exclude rule, in order (first match wins). */
export interface WireFilter {
  include: boolean;
  pattern: string;
}

export interface SessionMsg {
  version: number;
  flags: number;
  streams: number;
  chunkSize: number;
  excludes: string[];
  /** SessionPolicy bits (extension; 0 when absent). */
  policy?: number;
  /** Ordered include/exclude rules (extension): when present they replace `excludes`. */
  filters?: WireFilter[];
  /** --partial-dir (extension): one directory name; checked by the receiver's writer. */
  partialDir?: string;
}

export interface JoinMsg {
  token: Uint8Array;
  stream: number;
}

export interface WireEntry {
  index: number;
  kind: EntryKind;
  path: string;
  size: number;
  mode: number;
  mtimeNs: bigint;
  /** symlink target / hard-link first path. */
  target?: string;
  /** --checksum: the sender's content hash. */
  hash?: Uint8Array;
  /** OWNERS: numeric owner and group. */
  uid?: number;
  gid?: number;
  /** XATTRS: extended attributes of files and directories, sorted by name. */
  xattrs?: Array<[string, Buffer]>;
}

export const Action = { SKIP: 0, SEND: 1, RESUME: 2 } as const;
export type ActionCode = (typeof Action)[keyof typeof Action];

export interface Decision {
  index: number;
  action: ActionCode;
  /** RESUME: length of the receiver's verified-to-be partial temp file. */
  offset: number;
  /** RESUME: content hash of those `offset` bytes. */
  prefixHash?: Uint8Array;
}

export const Rec = { BEGIN: 1, CHUNK: 2, END: 3, ABORT: 4 } as const;

export type DataRecord =
  | { rec: 1; index: number; from: number; start: number; end: number }
  | { rec: 2; offset: number; data: Uint8Array }
  | { rec: 3; hash: Uint8Array }
  | { rec: 4; index: number; code: string; message: string };

export interface FailedItem {
  index: number;
  code: string;
  message: string;
}

export interface ErrorMsg {
  code: string;
  message: string;
}

const KIND_CODES: Record<EntryKind, number> = { file: 0, dir: 1, symlink: 2, hardlink: 3 };
const KINDS: readonly EntryKind[] = ['file', 'dir', 'symlink', 'hardlink'];

function protocolError(what: string): FerryError {
  return new FerryError(ErrorCodes.PROTOCOL, `peer sent a malformed message: ${what}`);
}

// ---------------------------------------------------------------------------------
// Primitive writer/reader

const utf8Decoder = new TextDecoder('utf-8', { fatal: true });

/**
 * Growable byte builder; one instance may be reused (`reset`) on hot paths. Strings
 * are written straight into the buffer (Buffer#write), 64-bit integers through a
 * DataView: per manifest entry, TextEncoder's fresh array and writeBigInt64BE cost
 * more than everything else the encoder does.
 */
export class ByteWriter {
  #buf: Buffer;
  #dv: DataView;
  #len = 0;

  constructor(initial = 256) {
    this.#buf = Buffer.allocUnsafe(initial);
    this.#dv = new DataView(this.#buf.buffer, this.#buf.byteOffset, this.#buf.length);
  }

  get length(): number {
    return this.#len;
  }

  /** Bytes that fit before the buffer has to grow. */
  get capacity(): number {
    return this.#buf.length;
  }

  reset(): void {
    this.#len = 0;
  }

  #ensure(n: number): void {
    if (this.#len + n <= this.#buf.length) return;
    let size = this.#buf.length * 2;
    while (size < this.#len + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.#buf.copy(next, 0, 0, this.#len);
    this.#buf = next;
    this.#dv = new DataView(next.buffer, next.byteOffset, next.length);
  }

  u8(v: number): this {
    this.#ensure(1);
    this.#buf[this.#len++] = v & 0xff;
    return this;
  }

  varint(v: number): this {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`varint out of range: ${v}`);
    this.#ensure(8);
    while (v >= 0x80) {
      this.#buf[this.#len++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    this.#buf[this.#len++] = v;
    return this;
  }

  i64(v: bigint): this {
    this.#ensure(8);
    this.#dv.setBigInt64(this.#len, v);
    this.#len += 8;
    return this;
  }

  bytes(b: Uint8Array): this {
    this.#ensure(b.length);
    this.#buf.set(b, this.#len);
    this.#len += b.length;
    return this;
  }

  /** A varint byte length, then the UTF-8 bytes (a lone surrogate becomes U+FFFD, as with TextEncoder). */
  str(s: string): this {
    // A UTF-16 unit is at most 3 bytes of UTF-8: a string of under 43 units fits a
    // one-byte length, written after the bytes are in place.
    if (s.length <= 42) {
      this.#ensure(1 + s.length * 3);
      const buf = this.#buf;
      const at = this.#len;
      // ASCII (most names) byte by byte: cheaper than a call into the encoder for short strings.
      let i = 0;
      for (; i < s.length; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        buf[at + 1 + i] = c;
      }
      const n = i === s.length ? i : buf.write(s, at + 1, 'utf8');
      buf[at] = n;
      this.#len = at + 1 + n;
      return this;
    }
    const n = Buffer.byteLength(s, 'utf8');
    this.varint(n);
    this.#ensure(n);
    this.#len += this.#buf.write(s, this.#len, 'utf8');
    return this;
  }

  /**
   * Room for `n` bytes written in place (e.g. a file read straight into the frame):
   * returns a view; call `advance(k)` with how many were actually filled.
   */
  reserve(n: number): Buffer {
    this.#ensure(n);
    return this.#buf.subarray(this.#len, this.#len + n);
  }

  advance(k: number): void {
    this.#len += k;
  }

  /** Forget everything written after `mark` (a length returned earlier). */
  rewind(mark: number): void {
    this.#len = mark;
  }

  /** A view of the bytes written so far (valid until the next write or reset). */
  view(): Buffer {
    return this.#buf.subarray(0, this.#len);
  }

  /** A copy of the bytes written so far. */
  take(): Buffer {
    return Buffer.from(this.#buf.subarray(0, this.#len));
  }
}

export class ByteReader {
  readonly #b: Uint8Array;
  #dv: DataView | null = null;
  #pos = 0;
  readonly #what: string;

  constructor(b: Uint8Array, what: string) {
    this.#b = b;
    this.#what = what;
  }

  get remaining(): number {
    return this.#b.length - this.#pos;
  }

  u8(): number {
    if (this.#pos >= this.#b.length) throw protocolError(`${this.#what} is truncated`);
    return this.#b[this.#pos++]!;
  }

  varint(max = Number.MAX_SAFE_INTEGER): number {
    let v = 0;
    let mul = 1;
    for (let i = 0; i < 8; i++) {
      const byte = this.u8();
      v += (byte & 0x7f) * mul;
      if ((byte & 0x80) === 0) {
        if (v > max) throw protocolError(`${this.#what}: value ${v} exceeds ${max}`);
        return v;
      }
      mul *= 0x80;
    }
    throw protocolError(`${this.#what}: varint too long`);
  }

  i64(): bigint {
    if (this.remaining < 8) throw protocolError(`${this.#what} is truncated`);
    this.#dv ??= new DataView(this.#b.buffer, this.#b.byteOffset, this.#b.length);
    const v = this.#dv.getBigInt64(this.#pos);
    this.#pos += 8;
    return v;
  }

  /** A view (no copy) of the next n bytes; n is capped by the caller. */
  bytes(n: number): Uint8Array {
    if (n > this.remaining) throw protocolError(`${this.#what} is truncated`);
    const v = this.#b.subarray(this.#pos, this.#pos + n);
    this.#pos += n;
    return v;
  }

  str(maxBytes: number): string {
    const n = this.varint(maxBytes);
    try {
      return utf8Decoder.decode(this.bytes(n));
    } catch (e) {
      if (e instanceof FerryError) throw e;
      throw protocolError(`${this.#what}: invalid UTF-8`);
    }
  }

  end(): void {
    if (this.remaining !== 0) throw protocolError(`${this.#what} has ${this.remaining} trailing bytes`);
  }
}

// ---------------------------------------------------------------------------------
// Control messages

export function encodeSession(m: SessionMsg): Buffer {
  const w = new ByteWriter().varint(m.version).varint(m.flags).varint(m.streams).varint(m.chunkSize);
  w.varint(m.excludes.length);
  for (const p of m.excludes) w.str(p);
  // The extension: only when used, so older receivers keep working without it.
  const policy = m.policy ?? 0;
  const filters = m.filters ?? [];
  if (policy !== 0 || filters.length > 0 || m.partialDir !== undefined) {
    w.varint(policy).varint(filters.length);
    for (const f of filters) w.u8(f.include ? 1 : 0).str(f.pattern);
    w.str(m.partialDir ?? '');
  }
  return w.take();
}

export function decodeSession(b: Uint8Array): SessionMsg {
  const r = new ByteReader(b, 'SESSION');
  const version = r.varint(0xffff);
  const flags = r.varint(0xff);
  // A bit this side does not know would be a request silently not honoured: refuse it.
  if ((flags & ~KNOWN_SESSION_FLAGS) !== 0) throw protocolError(`SESSION: unknown flag bits 0x${(flags & ~KNOWN_SESSION_FLAGS).toString(16)}`);
  const streams = r.varint(MAX_STREAMS);
  if (streams < 1) throw protocolError('SESSION: zero streams');
  const chunkSize = r.varint(MAX_CHUNK_SIZE);
  if (chunkSize < MIN_CHUNK_SIZE) throw protocolError(`SESSION: chunk size ${chunkSize} too small`);
  const n = r.varint(MAX_EXCLUDES);
  const excludes: string[] = [];
  for (let i = 0; i < n; i++) excludes.push(r.str(MAX_PATTERN_BYTES));
  const m: SessionMsg = { version, flags, streams, chunkSize, excludes };
  if (r.remaining > 0) {
    m.policy = r.varint(0xff);
    if ((m.policy & ~KNOWN_SESSION_POLICY) !== 0) throw protocolError(`SESSION: unknown policy bits 0x${(m.policy & ~KNOWN_SESSION_POLICY).toString(16)}`);
    const nf = r.varint(MAX_EXCLUDES);
    m.filters = [];
    for (let i = 0; i < nf; i++) {
      const kind = r.u8();
      if (kind > 1) throw protocolError(`SESSION: filter kind ${kind}`);
      m.filters.push({ include: kind === 1, pattern: r.str(MAX_PATTERN_BYTES) });
    }
    const pd = r.str(MAX_PATH_BYTES);
    if (pd !== '') m.partialDir = pd;
  }
  r.end();
  return m;
}

export function encodeJoin(m: JoinMsg): Buffer {
  return new ByteWriter().bytes(m.token).varint(m.stream).take();
}

export function decodeJoin(b: Uint8Array): JoinMsg {
  const r = new ByteReader(b, 'JOIN');
  const token = Uint8Array.from(r.bytes(TOKEN_BYTES));
  const stream = r.varint(MAX_STREAMS - 1);
  r.end();
  return { token, stream };
}

export function encodeSessionOk(token: Uint8Array): Buffer {
  return Buffer.from(token);
}

export function decodeSessionOk(b: Uint8Array): Uint8Array {
  const r = new ByteReader(b, 'SESSION_OK');
  const t = Uint8Array.from(r.bytes(TOKEN_BYTES));
  r.end();
  return t;
}

export function encodeError(m: ErrorMsg): Buffer {
  return new ByteWriter().str(m.code.slice(0, MAX_CODE_BYTES)).str(truncateUtf8(m.message, MAX_MESSAGE_BYTES)).take();
}

export function decodeError(b: Uint8Array): ErrorMsg {
  const r = new ByteReader(b, 'ERROR');
  const code = r.str(MAX_CODE_BYTES);
  const message = r.str(MAX_MESSAGE_BYTES);
  r.end();
  return { code, message };
}

/** Cut a string so that its UTF-8 form fits in `max` bytes. */
export function truncateUtf8(s: string, max: number): string {
  if (Buffer.byteLength(s) <= max) return s;
  let out = s.slice(0, max);
  while (Buffer.byteLength(out) > max - 3) out = out.slice(0, -1);
  return `${out}...`;
}

// ---------------------------------------------------------------------------------
// Manifest

/** Largest uid/gid on the wire (Linux ids are 32-bit; (uid_t)-1 is never an owner). */
const MAX_ID = 0xfffffffe;

const carriesXattrs = (kind: EntryKind): boolean => kind === 'file' || kind === 'dir';

/**
 * An owner name table (OWNER_NAMES): a count and (id, name) pairs for users, then for
 * groups. Names are checked here (fs/owner-names.ts rules); the session-wide rules (each
 * id named once, at most MAX_OWNER_NAMES) are the receiver's (PeerOwnerNames).
 */
function encodeOwnerNames(w: ByteWriter, t: OwnerNameTable): void {
  for (const pairs of [t.users, t.groups]) {
    w.varint(pairs.length);
    for (const [id, name] of pairs) w.varint(id).str(name);
  }
}

function decodeOwnerNames(r: ByteReader): OwnerNameTable {
  const out: OwnerNameTable = { users: [], groups: [] };
  let total = 0;
  for (const pairs of [out.users, out.groups]) {
    const n = r.varint(MAX_OWNER_NAMES);
    total += n;
    if (total > MAX_OWNER_NAMES) throw protocolError(`MANIFEST: more than ${MAX_OWNER_NAMES} owner names`);
    for (let i = 0; i < n; i++) {
      const id = r.varint(MAX_ID);
      const name = r.str(MAX_OWNER_NAME_BYTES);
      if (!validOwnerName(name)) throw protocolError('MANIFEST: bad owner name');
      pairs.push([id, name]);
    }
  }
  return out;
}

/**
 * Encode a batch of entries with consecutive indexes starting at entries[0].index.
 * With `fields.ownerNames` the batch's owner name table (`names`) comes first.
 * Per entry: kind, path, size, mode, mtime (i64 ns); with `fields.owners` uid and gid;
 * with `fields.xattrs` (files and directories) a count and that many (name, value)
 * pairs; the symlink/hard-link target; with `withHash` a file's content hash.
 */
export function encodeManifest(
  entries: readonly WireEntry[],
  withHash: boolean,
  fields: ManifestFields = {},
  names: OwnerNameTable = { users: [], groups: [] },
): Buffer {
  const first = entries[0]?.index ?? 0;
  const enc = new ManifestEncoder(withHash, fields);
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    if (e.index !== first + i) throw new RangeError('manifest indexes must be consecutive');
    enc.add(e, e.hash);
  }
  return enc.finish(first, names);
}

/**
 * A MANIFEST batch built entry by entry, straight from the caller's entries (the
 * sender encodes the walk's entries as they come: no WireEntry per entry). `finish`
 * returns the payload (encodeManifest's format) and starts the next batch.
 */
export class ManifestEncoder {
  readonly #body = new ByteWriter(64 * 1024);
  readonly #withHash: boolean;
  readonly #fields: ManifestFields;
  #count = 0;

  constructor(withHash: boolean, fields: ManifestFields = {}) {
    this.#withHash = withHash;
    this.#fields = fields;
  }

  /** Entries added since the last finish(). */
  get count(): number {
    return this.#count;
  }

  /** One entry; `hash` with --checksum (files), `xattrs` instead of the entry's own. */
  add(e: Entry, hash?: Uint8Array, xattrs?: Array<[string, Buffer]>): void {
    const w = this.#body;
    w.u8(KIND_CODES[e.kind]).str(e.path).varint(e.size).varint(e.mode).i64(e.mtimeNs);
    if (this.#fields.owners) w.varint(e.uid ?? 0).varint(e.gid ?? 0);
    if (this.#fields.xattrs && carriesXattrs(e.kind)) {
      const xs = xattrs ?? e.xattrs ?? [];
      w.varint(xs.length);
      for (const [name, value] of xs) w.str(name).varint(value.length).bytes(value);
    }
    if (e.kind === 'symlink' || e.kind === 'hardlink') w.str(e.target ?? '');
    if (this.#withHash && e.kind === 'file') {
      if (!hash || hash.length !== HASH_BYTES) throw new RangeError('checksum manifest needs a hash per file');
      w.bytes(hash);
    }
    this.#count++;
  }

  /** The batch's payload: first index, count, the owner name table (with `ownerNames`), the entries. */
  finish(first: number, names: OwnerNameTable = { users: [], groups: [] }): Buffer {
    const head = new ByteWriter(32).varint(first).varint(this.#count);
    if (this.#fields.ownerNames) encodeOwnerNames(head, names);
    const body = this.#body.view();
    const out = Buffer.allocUnsafe(head.length + body.length);
    out.set(head.view(), 0);
    out.set(body, head.length);
    this.#body.reset();
    this.#count = 0;
    return out;
  }
}

/**
 * One entry's extended attributes, every length capped before it is read (core/limits):
 * count, name bytes, value bytes and the entry's total; names must be non-empty,
 * namespaced ("ns.name"), without NUL, and strictly increasing (sorted, no duplicates).
 */
function decodeXattrs(r: ByteReader, path: string): Array<[string, Buffer]> {
  const n = r.varint(MAX_XATTRS_PER_ENTRY);
  const out: Array<[string, Buffer]> = [];
  let total = 0;
  let prev = '';
  for (let i = 0; i < n; i++) {
    const name = r.str(MAX_XATTR_NAME_BYTES);
    if (name === '' || !name.includes('.') || name.includes('\0') || (i > 0 && name <= prev)) {
      throw protocolError(`MANIFEST: bad extended attribute name on ${path}`);
    }
    prev = name;
    const len = r.varint(MAX_XATTR_VALUE_BYTES);
    total += Buffer.byteLength(name) + len;
    if (total > MAX_XATTR_BYTES_PER_ENTRY) throw protocolError(`MANIFEST: extended attributes of ${path} exceed ${MAX_XATTR_BYTES_PER_ENTRY} bytes`);
    out.push([name, Buffer.from(r.bytes(len))]);
  }
  return out;
}

export function decodeManifest(b: Uint8Array, withHash: boolean, fields: ManifestFields = {}): WireEntry[] {
  return decodeManifestBatch(b, withHash, fields).entries;
}

/** A manifest batch with its owner name table (empty unless `fields.ownerNames`). */
export function decodeManifestBatch(
  b: Uint8Array,
  withHash: boolean,
  fields: ManifestFields = {},
): { entries: WireEntry[]; names: OwnerNameTable } {
  const r = new ByteReader(b, 'MANIFEST');
  const first = r.varint(MAX_ENTRIES);
  const n = r.varint(MAX_ENTRIES_PER_BATCH);
  if (first + n > MAX_ENTRIES) throw protocolError('MANIFEST: too many entries');
  const names = fields.ownerNames ? decodeOwnerNames(r) : { users: [], groups: [] };
  const out: WireEntry[] = [];
  for (let i = 0; i < n; i++) {
    const kindCode = r.u8();
    const kind = KINDS[kindCode];
    if (kind === undefined) throw protocolError(`MANIFEST: unknown entry kind ${kindCode}`);
    const path = r.str(MAX_PATH_BYTES);
    const size = r.varint(MAX_FILE_SIZE);
    if (kind !== 'file' && size !== 0) throw protocolError(`MANIFEST: ${kind} with a size`);
    const mode = r.varint(0o7777);
    const mtimeNs = r.i64();
    const e: WireEntry = { index: first + i, kind, path, size, mode, mtimeNs };
    if (fields.owners) {
      e.uid = r.varint(MAX_ID);
      e.gid = r.varint(MAX_ID);
    }
    if (fields.xattrs && carriesXattrs(kind)) e.xattrs = decodeXattrs(r, path);
    if (kind === 'symlink' || kind === 'hardlink') e.target = r.str(Math.max(MAX_LINK_TARGET_BYTES, MAX_PATH_BYTES));
    if (withHash && kind === 'file') e.hash = Uint8Array.from(r.bytes(HASH_BYTES));
    out.push(e);
  }
  r.end();
  return { entries: out, names };
}

export function encodeCount(n: number): Buffer {
  return new ByteWriter(8).varint(n).take();
}

export function decodeCount(b: Uint8Array, what: string, max = MAX_ENTRIES): number {
  const r = new ByteReader(b, what);
  const n = r.varint(max);
  r.end();
  return n;
}

// ---------------------------------------------------------------------------------
// Decisions, commits, failures (receiver → sender)

export function encodeDecisions(ds: readonly Decision[]): Buffer {
  const w = new ByteWriter(16 + ds.length * 6).varint(ds.length);
  for (const d of ds) {
    w.varint(d.index).u8(d.action);
    if (d.action === Action.RESUME) {
      if (!d.prefixHash || d.prefixHash.length !== HASH_BYTES) throw new RangeError('resume needs a prefix hash');
      w.varint(d.offset).bytes(d.prefixHash);
    }
  }
  return w.take();
}

export function decodeDecisions(b: Uint8Array): Decision[] {
  const r = new ByteReader(b, 'DECISIONS');
  const n = r.varint(MAX_ITEMS_PER_BATCH);
  const out: Decision[] = [];
  for (let i = 0; i < n; i++) {
    const index = r.varint(MAX_ENTRIES);
    const action = r.u8();
    if (action === Action.SKIP || action === Action.SEND) {
      out.push({ index, action, offset: 0 });
    } else if (action === Action.RESUME) {
      const offset = r.varint(MAX_FILE_SIZE);
      out.push({ index, action, offset, prefixHash: Uint8Array.from(r.bytes(HASH_BYTES)) });
    } else {
      throw protocolError(`DECISIONS: unknown action ${action}`);
    }
  }
  r.end();
  return out;
}

export function encodeCommitted(indexes: readonly number[]): Buffer {
  const w = new ByteWriter(8 + indexes.length * 3).varint(indexes.length);
  for (const i of indexes) w.varint(i);
  return w.take();
}

export function decodeCommitted(b: Uint8Array): number[] {
  const r = new ByteReader(b, 'COMMITTED');
  const n = r.varint(MAX_ITEMS_PER_BATCH);
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(r.varint(MAX_ENTRIES));
  r.end();
  return out;
}

export function encodeFailed(items: readonly FailedItem[]): Buffer {
  const w = new ByteWriter().varint(items.length);
  for (const f of items) w.varint(f.index).str(f.code.slice(0, MAX_CODE_BYTES)).str(truncateUtf8(f.message, MAX_MESSAGE_BYTES));
  return w.take();
}

export function decodeFailed(b: Uint8Array): FailedItem[] {
  const r = new ByteReader(b, 'FAILED');
  const n = r.varint(MAX_ENTRIES_PER_BATCH);
  const out: FailedItem[] = [];
  for (let i = 0; i < n; i++) {
    out.push({ index: r.varint(MAX_ENTRIES), code: r.str(MAX_CODE_BYTES), message: r.str(MAX_MESSAGE_BYTES) });
  }
  r.end();
  return out;
}

/** One entry --delete removed (or, in a dry run, would remove). */
export interface DeletedItem {
  path: string;
  dir: boolean;
}

export function encodeDeleted(items: readonly DeletedItem[]): Buffer {
  const w = new ByteWriter().varint(items.length);
  for (const d of items) w.u8(d.dir ? 1 : 0).str(d.path);
  return w.take();
}

export function decodeDeleted(b: Uint8Array): DeletedItem[] {
  const r = new ByteReader(b, 'DELETED');
  const n = r.varint(MAX_ENTRIES_PER_BATCH);
  const out: DeletedItem[] = [];
  for (let i = 0; i < n; i++) {
    const kind = r.u8();
    if (kind > 1) throw protocolError(`DELETED: unknown kind ${kind}`);
    out.push({ dir: kind === 1, path: r.str(MAX_PATH_BYTES) });
  }
  r.end();
  return out;
}

/** The receiver's final counters; both sides print the summary built from them. */
export interface SummaryMsg {
  committed: number;
  skipped: number;
  failed: number;
  dirs: number;
  symlinks: number;
  hardlinks: number;
  deleted: number;
  bytesWritten: number;
  resumedBytes: number;
}

const SUMMARY_KEYS: readonly (keyof SummaryMsg)[] = [
  'committed',
  'skipped',
  'failed',
  'dirs',
  'symlinks',
  'hardlinks',
  'deleted',
  'bytesWritten',
  'resumedBytes',
];

export function encodeSummary(s: SummaryMsg): Buffer {
  const w = new ByteWriter(64).varint(SUMMARY_KEYS.length);
  for (const k of SUMMARY_KEYS) w.varint(s[k]);
  return w.take();
}

export function decodeSummary(b: Uint8Array): SummaryMsg {
  const r = new ByteReader(b, 'SUMMARY');
  const n = r.varint(64);
  if (n < SUMMARY_KEYS.length) throw protocolError('SUMMARY: too few counters');
  const s = {} as SummaryMsg;
  for (let i = 0; i < n; i++) {
    const v = r.varint();
    const k = SUMMARY_KEYS[i];
    if (k !== undefined) s[k] = v; // later revisions may append counters
  }
  r.end();
  return s;
}

// ---------------------------------------------------------------------------------
// Data records

/** Record header bytes at most (type + 4 varints), for frame-size planning. */
export const RECORD_OVERHEAD = 1 + 4 * 8;

export function writeBegin(w: ByteWriter, index: number, from: number, start: number, end: number): void {
  w.u8(Rec.BEGIN).varint(index).varint(from).varint(start).varint(end);
}

/** Writes a CHUNK header; the caller appends `len` bytes of data right after. */
export function writeChunkHeader(w: ByteWriter, offset: number, len: number): void {
  w.u8(Rec.CHUNK).varint(offset).varint(len);
}

export function writeEnd(w: ByteWriter, hash: Uint8Array): void {
  w.u8(Rec.END).bytes(hash);
}

export function writeAbort(w: ByteWriter, index: number, code: string, message: string): void {
  w.u8(Rec.ABORT).varint(index).str(code.slice(0, MAX_CODE_BYTES)).str(truncateUtf8(message, MAX_MESSAGE_BYTES));
}

/**
 * Where the bytes of the first CHUNK of a DATA payload begin, read from the payload's
 * first bytes (`head`, as many as have arrived): a leading BEGIN is stepped over. Null
 * when `head` ends before that, or the payload does not start that way. A hint for
 * placing the payload in memory (secure/channel.ts), never a decision: decodeData
 * checks the payload in full.
 */
export function dataLead(head: Uint8Array): number | null {
  let pos = 0;
  const varint = (): boolean => {
    for (let i = 0; i < 8 && pos < head.length; i++) if ((head[pos++]! & 0x80) === 0) return true;
    return false;
  };
  if (head[pos] === Rec.BEGIN) {
    pos++;
    if (!varint() || !varint() || !varint() || !varint()) return null;
  }
  if (pos >= head.length || head[pos] !== Rec.CHUNK) return null;
  pos++;
  return varint() && varint() ? pos : null;
}

/**
 * Decode a DATA frame into records. CHUNK data are views into `b` (no copy): the
 * caller owns the frame payload and keeps it alive as long as it needs the data.
 */
export function decodeData(b: Uint8Array): DataRecord[] {
  const r = new ByteReader(b, 'DATA');
  const out: DataRecord[] = [];
  while (r.remaining > 0) {
    const t = r.u8();
    switch (t) {
      case Rec.BEGIN: {
        const index = r.varint(MAX_ENTRIES);
        const from = r.varint(MAX_FILE_SIZE);
        const start = r.varint(MAX_FILE_SIZE);
        const end = r.varint(MAX_FILE_SIZE);
        if (start < from || end < start) throw protocolError(`DATA: bad range ${start}-${end} from ${from}`);
        out.push({ rec: 1, index, from, start, end });
        break;
      }
      case Rec.CHUNK: {
        const offset = r.varint(MAX_FILE_SIZE);
        const len = r.varint(MAX_CHUNK_SIZE);
        out.push({ rec: 2, offset, data: r.bytes(len) });
        break;
      }
      case Rec.END:
        out.push({ rec: 3, hash: Uint8Array.from(r.bytes(HASH_BYTES)) });
        break;
      case Rec.ABORT:
        out.push({ rec: 4, index: r.varint(MAX_ENTRIES), code: r.str(MAX_CODE_BYTES), message: r.str(MAX_MESSAGE_BYTES) });
        break;
      default:
        throw protocolError(`DATA: unknown record type ${t}`);
    }
  }
  return out;
}
