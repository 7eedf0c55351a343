/**
 * The TLS 1.3 record layer: AES-128-GCM application_data records exactly as RFC 8446
 * §5.2-§5.3 define them, so that what we produce is byte-for-byte what the kernel's kTLS
 * (TLS_TX with TLS_1_3_VERSION, TLS_CIPHER_AES_GCM_128) produces from the same key, IV
 * and sequence number, and what we accept is what it sends.
 *
 *   record           = 0x17 || 0x03 0x03 || length (u16) || AEAD ciphertext
 *   AEAD plaintext   = content || 0x17 (inner type) || zero padding   (TLSInnerPlaintext)
 *   nonce            = iv XOR (0^32 || seq as u64 big-endian)           (§5.3)
 *   additional data  = the 5-byte record header                         (§5.2)
 *   content          ≤ 2^14 bytes; ciphertext ≤ 2^14 + 256 bytes          (§5.2, §5.4)
 *
 * Why AES-128-GCM and not AES-256: 10 rounds instead of 14 (about 30% cheaper per
 * byte on AES-NI), it is the cipher kTLS and NIC offloads support most widely, and
 * 128-bit keys are ample when every session gets a fresh key from an ephemeral
 * exchange (there is no long-lived key to attack for years). Records per key stay
 * far below §5.5's 2^24.5 limit: the channel rekeys at 2^23 (see channel.ts); this
 * layer refuses to seal or open past 2^24 under one key as a last line of defence.
 *
 * Two implementations of one batch interface (`RecordBatcher`) do the AEAD work:
 * the data plane's (native/records.c, Node's own OpenSSL: one EVP context per
 * direction, only the nonce reset per record) and `jsRecords` here (node:crypto, one
 * cipher object per record, since a GCM Cipher cannot take a new nonce). They give the
 * same bytes and the same verdicts, and are cross-tested; `FERRY_NATIVE=0` forces the
 * TypeScript one. A batch seals many records into one caller-owned buffer, or opens
 * every complete record of a received chunk in place, reporting the first failure;
 * everything that decides (limits, key updates, what a failure means) stays here.
 *
 * API (also used by the kTLS interop tests):
 *   new RecordSealer(ts).sealInto(parts, out, off) → bytes written: ⌈n/16384⌉ records
 *     .seal(parts): the same into a new Buffer; .sealv(parts): as a list of buffers
 *     for a gathered write (one buffer natively; node:crypto's outputs, uncopied, in JS)
 *   new RecordOpener(ts, {peer}).push(chunk); .next() → content of the next record,
 *     null when more bytes are needed; throws FerryError(FERRY_E_INTEGRITY).
 *     push() takes the chunk over: its records are decrypted in place, and the contents
 *     returned are views of it (a record split across chunks is copied together first).
 *   sealRecord / openRecord: one record at a time, the simple reference the fast
 *     path is cross-tested against.
 *   Both track `seq` and take new keys with `setKeys(ts)` (key update, §4.6.3).
 */
import { createCipheriv, createDecipheriv, createSecretKey, type KeyObject } from 'node:crypto';
import { ErrorCodes, FerryError } from '../core/errors.js';
import { recordsAddon, type AeadContext, type RecordsAddon } from '../native/index.js';
import type { TrafficSecret } from './traffic-secret.js';

export const CONTENT_APPLICATION_DATA = 0x17;
export const RECORD_HEADER_BYTES = 5;
export const MAX_RECORD_PLAINTEXT = 16384; // 2^14, §5.1
export const TAG_BYTES = 16;
/** Largest ciphertext length accepted from a peer: 2^14 + 256 (§5.2). */
export const MAX_RECORD_CIPHERTEXT = 16384 + 256;
/** Overhead per full record: header + inner type byte + tag. */
export const RECORD_OVERHEAD = RECORD_HEADER_BYTES + 1 + TAG_BYTES;
/** Hard cap on records under one key (RFC 8446 §5.5 allows 2^24.5 for AES-GCM). */
export const HARD_RECORD_LIMIT = 2 ** 24;

const ALG = 'aes-128-gcm';
const TYPE_BYTE = Buffer.from([CONTENT_APPLICATION_DATA]);

/** The verdicts of `openRecords` (res[1]); native/records.c uses the same numbers. */
export const OpenStatus = {
  OK: 0,
  MALFORMED_HEADER: 1,
  BAD_LENGTH: 2,
  AUTH_FAILED: 3,
  BAD_TYPE: 4,
  NO_TYPE: 5,
  TOO_LONG: 6,
} as const;

/**
 * Batched AEAD over records. `openRecords` fills `res`: res[0] = offset after the last
 * record opened, res[1] = an OpenStatus, res[2] = its detail (the length or type), res[3]
 * = 1 when it stopped at a record that would not fit in `out`, then res[4+2i], res[5+2i] =
 * offset and length of record i's content. A record that fails authentication is left as
 * it arrived. With `out`, records are decrypted into it, contents laid end to end from
 * `outOff` while they end before `outStop`, and `buf` is not written. See
 * native/records.c for the full contract.
 */
export interface RecordBatcher extends RecordsAddon {
  readonly name: 'native' | 'js';
}

/** Bytes that `bytes` of content take once sealed. */
export function sealedLength(bytes: number): number {
  return bytes + Math.ceil(bytes / MAX_RECORD_PLAINTEXT) * RECORD_OVERHEAD;
}

function writeHeader(out: Uint8Array, off: number, ciphertextLength: number): void {
  out[off] = CONTENT_APPLICATION_DATA;
  out[off + 1] = 0x03;
  out[off + 2] = 0x03;
  out[off + 3] = ciphertextLength >>> 8;
  out[off + 4] = ciphertextLength & 0xff;
}

/** node:crypto's context: the key object and the nonce base split into words (§5.3). */
interface JsAead {
  key: KeyObject;
  ivHi: number;
  ivMid: number;
  ivLo: number;
  open: boolean;
  nonce: Buffer;
}

function jsNonce(a: JsAead, s: number): Buffer {
  const hi = Math.floor(s / 0x100000000);
  a.nonce.writeUInt32BE((a.ivMid ^ hi) >>> 0, 4);
  a.nonce.writeUInt32BE((a.ivLo ^ (s >>> 0)) >>> 0, 8);
  return a.nonce;
}

function asView(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

/** The TypeScript fallback of native/records.c, with the same results. */
export const jsRecords: RecordBatcher = {
  name: 'js',

  aeadNew(key, iv, open) {
    if (key.byteLength !== 16 || iv.byteLength !== 12) throw new TypeError('aeadNew(key[16], iv[12], open): bad arguments');
    const ivb = asView(iv);
    const a: JsAead = {
      key: createSecretKey(asView(key)),
      ivHi: ivb.readUInt32BE(0),
      ivMid: ivb.readUInt32BE(4),
      ivLo: ivb.readUInt32BE(8),
      open,
      nonce: Buffer.alloc(12),
    };
    a.nonce.writeUInt32BE(a.ivHi, 0);
    return a as unknown as AeadContext;
  },

  sealRecords(ctx, seq, parts, outU, outOff) {
    const a = ctx as unknown as JsAead;
    if (a.open) throw new TypeError('sealRecords(sealCtx, seq, parts[], out, outOff): bad arguments');
    let total = 0;
    for (const p of parts) total += p.byteLength;
    const out = asView(outU);
    if (sealedLength(total) > out.length - outOff) throw new RangeError('sealRecords: the output buffer is too small');
    let o = outOff;
    let pi = 0;
    let po = 0;
    for (let left = total, s = seq; left > 0; s++) {
      const len = Math.min(left, MAX_RECORD_PLAINTEXT);
      left -= len;
      const hdr = o;
      writeHeader(out, hdr, len + 1 + TAG_BYTES);
      o += RECORD_HEADER_BYTES;
      const c = createCipheriv(ALG, a.key, jsNonce(a, s));
      c.setAAD(out.subarray(hdr, o));
      for (let need = len; need > 0; ) {
        const p = parts[pi]!;
        const take = Math.min(need, p.byteLength - po);
        if (take > 0) o += c.update(p.subarray(po, po + take)).copy(out, o);
        need -= take;
        po += take;
        if (po === p.byteLength) {
          pi++;
          po = 0;
        }
      }
      o += c.update(TYPE_BYTE).copy(out, o);
      o += c.final().copy(out, o);
      o += c.getAuthTag().copy(out, o);
    }
    return o - outOff;
  },

  openRecords(ctx, seq, bufU, off, end, maxRecords, res, outU, outOff = 0, outStop = 0) {
    const a = ctx as unknown as JsAead;
    if (!a.open) throw new TypeError('openRecords(openCtx, seq, buf, off, end, maxRecords, res: Int32Array[, out, outOff, outStop]): bad arguments');
    const buf = asView(bufU);
    const into = outU !== undefined ? asView(outU) : null;
    const cap = Math.min(maxRecords, (res.length - 4) >> 1);
    let n = 0;
    let p = off;
    let q = outOff;
    let status: number = OpenStatus.OK;
    let detail = 0;
    let noRoom = 0;
    while (n < cap && end - p >= RECORD_HEADER_BYTES) {
      if (into !== null && q >= outStop) break;
      if (buf[p] !== CONTENT_APPLICATION_DATA || buf[p + 1] !== 0x03 || buf[p + 2] !== 0x03) {
        status = OpenStatus.MALFORMED_HEADER;
        break;
      }
      const len = (buf[p + 3]! << 8) | buf[p + 4]!;
      if (len > MAX_RECORD_CIPHERTEXT || len < 1 + TAG_BYTES) {
        status = OpenStatus.BAD_LENGTH;
        detail = len;
        break;
      }
      if (end - p < RECORD_HEADER_BYTES + len) break;
      const ct = p + RECORD_HEADER_BYTES;
      const ctEnd = ct + len - TAG_BYTES;
      if (into !== null && ctEnd - ct > into.length - q) {
        noRoom = 1;
        break;
      }
      const d = createDecipheriv(ALG, a.key, jsNonce(a, seq + n));
      d.setAAD(buf.subarray(p, ct));
      d.setAuthTag(buf.subarray(ctEnd, ctEnd + TAG_BYTES));
      let plain: Buffer;
      try {
        plain = d.update(buf.subarray(ct, ctEnd));
        d.final();
      } catch {
        status = OpenStatus.AUTH_FAILED; // nothing was written: the record is as it arrived
        break;
      }
      // In place, or into `out` at q (the same checks on the plaintext wherever it is).
      const dst = into ?? buf;
      const pt = into !== null ? q : ct;
      plain.copy(dst, pt);
      const ptEnd = pt + (ctEnd - ct);
      let i = ptEnd;
      while (i > pt && dst[i - 1] === 0) i--;
      if (i === pt) {
        status = OpenStatus.NO_TYPE;
        break;
      }
      if (dst[i - 1] !== CONTENT_APPLICATION_DATA) {
        status = OpenStatus.BAD_TYPE;
        detail = dst[i - 1]!;
        break;
      }
      if (i - 1 - pt > MAX_RECORD_PLAINTEXT) {
        status = OpenStatus.TOO_LONG;
        break;
      }
      res[4 + 2 * n] = pt;
      res[5 + 2 * n] = i - 1 - pt;
      n++;
      p += RECORD_HEADER_BYTES + len;
      q += i - 1 - pt;
    }
    res[0] = p;
    res[1] = status;
    res[2] = detail;
    res[3] = noRoom;
    return n;
  },
};

let nativeBatcher: RecordBatcher | null | undefined;

/** The data plane's batcher, or undefined when the addon (or its OpenSSL) is not there or FERRY_NATIVE=0. */
export function nativeRecords(): RecordBatcher | undefined {
  if (nativeBatcher === undefined) {
    const a = recordsAddon();
    nativeBatcher = a
      ? {
          name: 'native',
          aeadNew: (key, iv, open) => a.aeadNew(key, iv, open),
          sealRecords: (ctx, seq, parts, out, outOff) => a.sealRecords(ctx, seq, parts, out, outOff),
          // The addon counts its arguments: without `out`, pass none of the three.
          openRecords: (ctx, seq, buf, off, end, max, res, out, outOff, outStop) =>
            out === undefined ? a.openRecords(ctx, seq, buf, off, end, max, res) : a.openRecords(ctx, seq, buf, off, end, max, res, out, outOff ?? 0, outStop ?? 0),
        }
      : null;
  }
  return nativeBatcher ?? undefined;
}

/** The batcher in use: native where available, else node:crypto. */
export function recordBatcher(): RecordBatcher {
  return nativeRecords() ?? jsRecords;
}

/** Per-direction key state shared by sealer and opener. */
class KeyState {
  ctx!: AeadContext;
  js!: JsAead; // node:crypto context, for the no-copy gathered seal
  seq = 0; // a double: exact up to 2^53, far beyond HARD_RECORD_LIMIT
  gen = 0; // bumped by every set(): a key update

  constructor(
    readonly batcher: RecordBatcher,
    readonly open: boolean,
    ts: TrafficSecret,
  ) {
    this.set(ts);
  }

  set(ts: TrafficSecret): void {
    if (ts.key.length !== 16 || ts.iv.length !== 12) {
      throw new FerryError(ErrorCodes.INTERNAL, 'record layer: AES-128-GCM needs a 16-byte key and a 12-byte IV');
    }
    this.ctx = this.batcher.aeadNew(ts.key, ts.iv, this.open);
    if (this.batcher === jsRecords) this.js = this.ctx as unknown as JsAead;
    this.seq = Number(ts.seq);
    this.gen++;
  }
}

export interface RecordLayerOptions {
  /** Which implementation does the AEAD work; default `recordBatcher()`. Tests pass one to cross-check. */
  batcher?: RecordBatcher;
}

/** Encrypts a byte stream into application_data records. */
export class RecordSealer {
  readonly #k: KeyState;

  constructor(ts: TrafficSecret, opts: RecordLayerOptions = {}) {
    this.#k = new KeyState(opts.batcher ?? recordBatcher(), false, ts);
  }

  /** Sequence number of the next record. */
  get seq(): bigint {
    return BigInt(this.#k.seq);
  }

  /** 'native' or 'js'. */
  get implementation(): 'native' | 'js' {
    return this.#k.batcher.name;
  }

  setKeys(ts: TrafficSecret): void {
    this.#k.set(ts);
  }

  /** Records that `bytes` of content will take. */
  static recordsFor(bytes: number): number {
    return Math.ceil(bytes / MAX_RECORD_PLAINTEXT);
  }

  #reserve(total: number): void {
    if (this.#k.seq + RecordSealer.recordsFor(total) > HARD_RECORD_LIMIT) {
      throw new FerryError(ErrorCodes.INTERNAL, `record layer: ${HARD_RECORD_LIMIT} records under one key reached without a key update`);
    }
  }

  /**
   * Seal `parts` (concatenated) as full 16 KiB records and a last partial one into
   * `out` at `off` (which must have `sealedLength(total)` bytes of room); returns the
   * bytes written. Empty input writes nothing (no empty records).
   */
  sealInto(parts: readonly Uint8Array[], out: Uint8Array, off: number): number {
    let total = 0;
    for (const p of parts) total += p.byteLength;
    this.#reserve(total);
    const k = this.#k;
    const n = k.batcher.sealRecords(k.ctx, k.seq, parts, out, off);
    k.seq += RecordSealer.recordsFor(total);
    return n;
  }

  /** `sealInto` a new buffer of exactly the sealed length. */
  seal(parts: readonly Uint8Array[]): Buffer {
    let total = 0;
    for (const p of parts) total += p.byteLength;
    const out = Buffer.allocUnsafe(sealedLength(total));
    this.sealInto(parts, out, 0);
    return out;
  }

  /**
   * The sealed bytes as a list of buffers for one gathered write: one buffer from the
   * native batch; with node:crypto, the ciphertexts it returns, not copied again
   * (headers, encrypted type bytes and tags share one small buffer).
   */
  sealv(parts: readonly Uint8Array[]): Buffer[] {
    const k = this.#k;
    if (k.batcher !== jsRecords) {
      const out = this.seal(parts);
      return out.length === 0 ? [] : [out];
    }
    let total = 0;
    for (const p of parts) total += p.byteLength;
    this.#reserve(total);
    const n = RecordSealer.recordsFor(total);
    const a = k.js;
    const out: Buffer[] = [];
    // glue = hdr0 | type0 tag0 hdr1 | type1 tag1 hdr2 | ... | typeN tagN
    const glue = Buffer.allocUnsafe(n * RECORD_OVERHEAD);
    let g = 0;
    let pi = 0;
    let po = 0;
    let left = total;
    let pendingGlue = 0; // start of glue bytes not yet emitted
    while (left > 0) {
      const len = Math.min(left, MAX_RECORD_PLAINTEXT);
      left -= len;
      const hdr = g;
      writeHeader(glue, hdr, len + 1 + TAG_BYTES);
      g += RECORD_HEADER_BYTES;
      out.push(glue.subarray(pendingGlue, g));
      const c = createCipheriv(ALG, a.key, jsNonce(a, k.seq++));
      c.setAAD(glue.subarray(hdr, g));
      let need = len;
      while (need > 0) {
        const p = parts[pi]!;
        const take = Math.min(need, p.byteLength - po);
        if (take > 0) out.push(c.update(p.subarray(po, po + take)));
        need -= take;
        po += take;
        if (po === p.byteLength) {
          pi++;
          po = 0;
        }
      }
      g += c.update(TYPE_BYTE).copy(glue, g);
      c.final();
      g += c.getAuthTag().copy(glue, g);
      pendingGlue = g - 1 - TAG_BYTES;
    }
    if (n > 0) out.push(glue.subarray(pendingGlue, g));
    return out;
  }
}

export interface RecordOpenerOptions extends RecordLayerOptions {
  /** Printable peer name for error messages. */
  peer?: string;
  /**
   * The caller holds no view of a content `next()` returned once it calls `next()` or
   * `push()` again (it copies what it keeps): a record split across chunks is then
   * gathered in one buffer reused for every such record, instead of a new one each.
   */
  borrowed?: boolean;
}

/** Records opened per batch call (the size of the result array). */
const OPEN_BATCH = 256;
const EMPTY = Buffer.alloc(0);

/** A received chunk not yet opened: buf[pos..]. */
interface Segment {
  buf: Buffer;
  pos: number;
}

/**
 * Parses and decrypts application_data records from a byte stream. Every complete
 * record of a pushed chunk is opened in one batch, in place; a record split across
 * chunks is first gathered into a buffer of its own (one copy of at most one record
 * per chunk boundary).
 */
export class RecordOpener {
  readonly #k: KeyState;
  readonly #peer: string;
  readonly #segs: Segment[] = [];
  #segBytes = 0;
  // A record arriving in pieces: its header, then the whole record once its length is known.
  readonly #hdr = Buffer.alloc(RECORD_HEADER_BYTES);
  #hdrHave = 0;
  #carry: Buffer | null = null;
  #carryHave = 0;
  /** With `borrowed`: the one buffer split records are gathered in. */
  #carrySpare: Buffer | null = null;
  // The last batch: opened contents not yet handed out, and how it stopped.
  readonly #res = new Int32Array(4 + 2 * OPEN_BATCH);
  #readyBuf: Buffer = EMPTY;
  #readyNext = 0;
  #readyCount = 0;
  #readyBytes = 0;
  #status: number = OpenStatus.OK;
  #statusDetail = 0;
  #statusGen = 0;

  constructor(ts: TrafficSecret, opts: RecordOpenerOptions = {}) {
    this.#k = new KeyState(opts.batcher ?? recordBatcher(), true, ts);
    this.#peer = opts.peer ?? 'peer';
    if (opts.borrowed === true) this.#carrySpare = Buffer.allocUnsafeSlow(RECORD_HEADER_BYTES + MAX_RECORD_CIPHERTEXT);
  }

  /** A buffer for a split record of `bytes` (header included; at most header + MAX_RECORD_CIPHERTEXT). */
  #carryBuffer(bytes: number): Buffer {
    return this.#carrySpare !== null ? this.#carrySpare.subarray(0, bytes) : Buffer.allocUnsafe(bytes);
  }

  /** Sequence number of the next record to open. */
  get seq(): bigint {
    return BigInt(this.#k.seq - (this.#readyCount - this.#readyNext));
  }

  /** 'native' or 'js'. */
  get implementation(): 'native' | 'js' {
    return this.#k.batcher.name;
  }

  /** Bytes received and not yet handed out (a partial record, or records opened ahead). */
  get buffered(): number {
    return this.#segBytes + this.#hdrHave + this.#carryHave + this.#readyBytes;
  }

  /**
   * New keys for the records after the current one (a key update). Records already
   * opened ahead under the old keys may not follow a key update: they fail as the
   * peer's forgery would under the new keys.
   */
  setKeys(ts: TrafficSecret): void {
    if (this.#readyNext < this.#readyCount) {
      this.#readyCount = this.#readyNext;
      this.#readyBytes = 1; // still undelivered bytes: an END after this must not pass
      this.#status = OpenStatus.AUTH_FAILED;
      this.#k.set(ts);
      this.#statusGen = this.#k.gen;
      return;
    }
    this.#k.set(ts);
  }

  /** Takes the chunk over: its records are decrypted in place. */
  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.#segs.push({ buf: chunk, pos: 0 });
    this.#segBytes += chunk.length;
  }

  /**
   * The content of the next complete record (a view of a pushed chunk), or null if more
   * bytes are needed. A batch opens at most `limit` records ahead in place: a caller
   * that may soon take records through `nextInto` keeps it small.
   */
  next(limit = OPEN_BATCH): Buffer | null {
    for (;;) {
      if (this.#readyNext < this.#readyCount) {
        const r = this.#res;
        const i = 4 + 2 * this.#readyNext++;
        const off = r[i]!;
        const len = r[i + 1]!;
        this.#readyBytes -= len + RECORD_OVERHEAD;
        if (this.#readyNext === this.#readyCount) this.#readyBytes = 0;
        return this.#readyBuf.subarray(off, off + len);
      }
      if (this.#status !== OpenStatus.OK) {
        // A record that failed under keys replaced since (a key update in the record
        // before it) is tried again under the new ones; anything else is fatal.
        if (this.#status !== OpenStatus.AUTH_FAILED || this.#statusGen === this.#k.gen) throw this.#statusError();
        this.#status = OpenStatus.OK;
      }
      if (!this.#step(limit)) return null;
    }
  }

  /**
   * Open the next complete records straight into `out` (a frame being assembled), their
   * contents laid end to end from `off` while they end before `stop`; each record needs
   * room in `out` for its whole plaintext. Returns the content bytes written, or 0 when
   * none can go there now — records already opened in place, a failure to report, a
   * record that does not fit (then `next()` hands them out as usual), or too few bytes
   * (then `next()` returns null too). Saves the copy from the read buffer to the frame.
   */
  nextInto(out: Buffer, off: number, stop: number): number {
    for (;;) {
      if (this.#readyNext < this.#readyCount || this.#status !== OpenStatus.OK) return 0;
      const seg = this.#segs[0];
      if (seg === undefined) return 0;
      if (this.#hdrHave > 0 || this.#carry !== null) {
        this.#gather(seg);
        continue;
      }
      const k = this.#k;
      const max = HARD_RECORD_LIMIT - k.seq;
      if (max <= 0) return 0;
      const r = this.#res;
      const end = seg.buf.length;
      const n = k.batcher.openRecords(k.ctx, k.seq, seg.buf, seg.pos, end, Math.min(max, OPEN_BATCH), r, out, off, stop);
      const at = r[0]!;
      k.seq += n;
      this.#segBytes -= at - seg.pos;
      seg.pos = at;
      let bytes = 0;
      for (let i = 0; i < n; i++) bytes += r[5 + 2 * i]!;
      if (r[1] !== OpenStatus.OK) {
        // Reported by the next call of next(), after the contents opened before it.
        this.#readyCount = this.#readyNext = 0;
        this.#readyBytes = 0;
        this.#status = r[1]!;
        this.#statusDetail = r[2]!;
        this.#statusGen = k.gen;
        return bytes;
      }
      if (seg.pos === end) this.#segs.shift();
      if (n > 0 || r[3] === 1 || seg.pos === end) return bytes;
      // Stopped at an incomplete record: gather it from the following chunks (as #step does).
      this.#startGather(seg);
    }
  }

  /** `next()` as a list (kept for callers of the former piecewise API). */
  nextParts(): Buffer[] | null {
    const c = this.next();
    return c === null ? null : [c];
  }

  /** Opens the next batch (at most `limit` records) or gathers a split record; false when more bytes are needed. */
  #step(limit: number): boolean {
    const seg = this.#segs[0];
    if (seg === undefined) return false;
    if (this.#hdrHave > 0 || this.#carry !== null) return this.#gather(seg);
    const k = this.#k;
    const max = HARD_RECORD_LIMIT - k.seq;
    if (max <= 0) throw this.#fail(`more than ${HARD_RECORD_LIMIT} records under one key`);
    const end = seg.buf.length;
    const r = this.#res;
    const batch = Math.min(max, limit);
    const n = k.batcher.openRecords(k.ctx, k.seq, seg.buf, seg.pos, end, batch, r);
    const stop = r[0]!;
    k.seq += n;
    this.#segBytes -= stop - seg.pos;
    seg.pos = stop;
    this.#readyBuf = seg.buf;
    this.#readyNext = 0;
    this.#readyCount = n;
    let bytes = 0;
    for (let i = 0; i < n; i++) bytes += r[5 + 2 * i]! + RECORD_OVERHEAD;
    this.#readyBytes = bytes;
    this.#status = r[1]!;
    this.#statusDetail = r[2]!;
    this.#statusGen = k.gen;
    if (this.#status !== OpenStatus.OK || n === batch) return true;
    // Stopped at an incomplete record: gather it from the following chunks.
    this.#startGather(seg);
    return true;
  }

  /** `seg` ends with the first bytes of a record: keep them (header, or header and more) and drop the segment. */
  #startGather(seg: Segment): void {
    const at = seg.pos;
    const end = seg.buf.length;
    const left = end - at;
    if (left > 0) {
      if (left < RECORD_HEADER_BYTES) {
        seg.buf.copy(this.#hdr, 0, at, end);
        this.#hdrHave = left;
      } else {
        // Its header was checked by the batch (it checks headers before completeness).
        this.#carry = this.#carryBuffer(RECORD_HEADER_BYTES + seg.buf.readUInt16BE(at + 3));
        this.#carryHave = seg.buf.copy(this.#carry, 0, at, end);
      }
      this.#segBytes -= left;
    }
    seg.pos = end;
    this.#segs.shift();
  }

  /** Moves bytes of `seg` into the split record being gathered; once whole, it becomes the next segment. */
  #gather(seg: Segment): boolean {
    const src = seg.buf;
    if (this.#carry === null) {
      const take = Math.min(RECORD_HEADER_BYTES - this.#hdrHave, src.length - seg.pos);
      src.copy(this.#hdr, this.#hdrHave, seg.pos, seg.pos + take);
      this.#hdrHave += take;
      this.#consumed(seg, take);
      if (this.#hdrHave < RECORD_HEADER_BYTES) return true;
      const h = this.#hdr;
      if (h[0] !== CONTENT_APPLICATION_DATA || h[1] !== 0x03 || h[2] !== 0x03) throw this.#fail('malformed record header');
      const len = h.readUInt16BE(3);
      if (len > MAX_RECORD_CIPHERTEXT || len < 1 + TAG_BYTES) throw this.#fail(`record length ${len} out of range`);
      this.#carry = this.#carryBuffer(RECORD_HEADER_BYTES + len);
      this.#carryHave = h.copy(this.#carry, 0);
      this.#hdrHave = 0;
      return true;
    }
    const carry = this.#carry;
    const take = Math.min(carry.length - this.#carryHave, src.length - seg.pos);
    src.copy(carry, this.#carryHave, seg.pos, seg.pos + take);
    this.#carryHave += take;
    this.#consumed(seg, take);
    if (this.#carryHave === carry.length) {
      this.#carry = null;
      this.#carryHave = 0;
      this.#segs.unshift({ buf: carry, pos: 0 });
      this.#segBytes += carry.length;
    }
    return true;
  }

  #consumed(seg: Segment, n: number): void {
    seg.pos += n;
    this.#segBytes -= n;
    if (seg.pos === seg.buf.length) this.#segs.shift();
  }

  #statusError(): FerryError {
    switch (this.#status) {
      case OpenStatus.MALFORMED_HEADER:
        return this.#fail('malformed record header');
      case OpenStatus.BAD_LENGTH:
        return this.#fail(`record length ${this.#statusDetail} out of range`);
      case OpenStatus.AUTH_FAILED:
        return this.#fail('record failed authentication (corrupted, reordered, replayed or forged)');
      case OpenStatus.BAD_TYPE:
        return this.#fail(`unexpected record content type ${this.#statusDetail}`);
      case OpenStatus.NO_TYPE:
        return this.#fail('record without a content type');
      case OpenStatus.TOO_LONG:
        return this.#fail('record content exceeds 2^14 bytes');
      default:
        return new FerryError(ErrorCodes.INTERNAL, `record layer: unknown open status ${this.#status}`);
    }
  }

  #fail(what: string): FerryError {
    return new FerryError(ErrorCodes.INTEGRITY, `${this.#peer}: ${what}`, { subject: this.#peer });
  }
}

/** Seal one record (reference implementation; `ts.seq` is the record's sequence number). */
export function sealRecord(ts: TrafficSecret, content: Uint8Array, contentType: number = CONTENT_APPLICATION_DATA): Buffer {
  if (content.byteLength > MAX_RECORD_PLAINTEXT) throw new RangeError('record content over 2^14 bytes');
  const nonce = Buffer.from(ts.iv);
  const seqBytes = Buffer.alloc(8);
  seqBytes.writeBigUInt64BE(ts.seq);
  for (let i = 0; i < 8; i++) nonce[4 + i] = nonce[4 + i]! ^ seqBytes[i]!;
  const inner = Buffer.concat([content, Buffer.from([contentType])]);
  const header = Buffer.alloc(RECORD_HEADER_BYTES);
  writeHeader(header, 0, inner.length + TAG_BYTES);
  const c = createCipheriv(ALG, ts.key, nonce);
  c.setAAD(header);
  const ct = Buffer.concat([c.update(inner), c.final()]);
  return Buffer.concat([header, ct, c.getAuthTag()]);
}

/** Open one complete record (reference implementation). Throws on any failure. */
export function openRecord(ts: TrafficSecret, record: Uint8Array): { contentType: number; content: Buffer } {
  const rec = Buffer.from(record);
  const nonce = Buffer.from(ts.iv);
  const seqBytes = Buffer.alloc(8);
  seqBytes.writeBigUInt64BE(ts.seq);
  for (let i = 0; i < 8; i++) nonce[4 + i] = nonce[4 + i]! ^ seqBytes[i]!;
  if (rec.length < RECORD_HEADER_BYTES + TAG_BYTES + 1 || rec.readUInt16BE(3) !== rec.length - RECORD_HEADER_BYTES) {
    throw new FerryError(ErrorCodes.INTEGRITY, 'record length does not match its header');
  }
  const d = createDecipheriv(ALG, ts.key, nonce);
  d.setAAD(rec.subarray(0, RECORD_HEADER_BYTES));
  d.setAuthTag(rec.subarray(rec.length - TAG_BYTES));
  let inner: Buffer;
  try {
    inner = Buffer.concat([d.update(rec.subarray(RECORD_HEADER_BYTES, rec.length - TAG_BYTES)), d.final()]);
  } catch {
    throw new FerryError(ErrorCodes.INTEGRITY, 'record failed authentication');
  }
  let i = inner.length - 1;
  while (i >= 0 && inner[i] === 0) i--;
  if (i < 0) throw new FerryError(ErrorCodes.INTEGRITY, 'record without a content type');
  return { contentType: inner[i]!, content: inner.subarray(0, i) };
}
