/**
 * The userspace TLS 1.3 record layer: AES-128-GCM application_data records exactly
 * as RFC 8446 §5.2-§5.3 define them, so that what we produce is byte-for-byte what
 * the kernel's kTLS (TLS_TX with TLS_1_3_VERSION, TLS_CIPHER_AES_GCM_128) produces
 * from the same key, IV and sequence number, and what we accept is what it sends.
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
 * API (also used by the kTLS interop tests):
 *   new RecordSealer(ts).seal(parts) → one Buffer holding ⌈n/16384⌉ complete records
 *     (.sealv(parts): the same bytes as a list of buffers, for a gathered write)
 *   new RecordOpener(ts, {peer}).push(chunk); .next() → content of the next record,
 *     null when more bytes are needed; throws FerryError(FERRY_E_INTEGRITY)
 *   sealRecord / openRecord: one record at a time, the simple reference the fast
 *     path is cross-tested against.
 *   Both track `seq` and take new keys with `setKeys(ts)` (key update, §4.6.3).
 *
 * Hot path notes: the nonce base is split once into three u32 words and the
 * per-record nonce written in place; the key is a KeyObject built once; a send is
 * sealed into one output buffer so the socket sees one write per batch. GCM needs
 * a fresh cipher per nonce, so there is one createCipheriv per record (measured:
 * bench/channel.ts).
 */
import { createCipheriv, createDecipheriv, createSecretKey, type KeyObject } from 'node:crypto';
import { ErrorCodes, FerryError } from '../core/errors.js';
import { BufferList } from '../wire/frame.js';
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

/** Per-direction key state shared by sealer and opener. */
class KeyState {
  key!: KeyObject;
  ivHi = 0; // iv[0..4]
  ivMid = 0; // iv[4..8]
  ivLo = 0; // iv[8..12]
  seq = 0; // a double: exact up to 2^53, far beyond HARD_RECORD_LIMIT
  readonly nonce = Buffer.alloc(12);

  constructor(ts: TrafficSecret) {
    this.set(ts);
  }

  set(ts: TrafficSecret): void {
    if (ts.key.length !== 16 || ts.iv.length !== 12) {
      throw new FerryError(ErrorCodes.INTERNAL, 'record layer: AES-128-GCM needs a 16-byte key and a 12-byte IV');
    }
    this.key = createSecretKey(ts.key);
    this.ivHi = ts.iv.readUInt32BE(0);
    this.ivMid = ts.iv.readUInt32BE(4);
    this.ivLo = ts.iv.readUInt32BE(8);
    this.seq = Number(ts.seq);
    this.nonce.writeUInt32BE(this.ivHi, 0);
  }

  /** Write iv XOR seq into `nonce` (§5.3) and advance seq. */
  nextNonce(): Buffer {
    const s = this.seq++;
    const hi = Math.floor(s / 0x100000000);
    this.nonce.writeUInt32BE((this.ivMid ^ hi) >>> 0, 4);
    this.nonce.writeUInt32BE((this.ivLo ^ (s >>> 0)) >>> 0, 8);
    return this.nonce;
  }
}

function writeHeader(out: Buffer, off: number, ciphertextLength: number): void {
  out[off] = CONTENT_APPLICATION_DATA;
  out[off + 1] = 0x03;
  out[off + 2] = 0x03;
  out.writeUInt16BE(ciphertextLength, off + 3);
}

/** Encrypts a byte stream into application_data records. */
export class RecordSealer {
  readonly #k: KeyState;

  constructor(ts: TrafficSecret) {
    this.#k = new KeyState(ts);
  }

  /** Sequence number of the next record. */
  get seq(): bigint {
    return BigInt(this.#k.seq);
  }

  setKeys(ts: TrafficSecret): void {
    this.#k.set(ts);
  }

  /** Records that `bytes` of content will take. */
  static recordsFor(bytes: number): number {
    return Math.ceil(bytes / MAX_RECORD_PLAINTEXT);
  }

  /**
   * Seal `parts` (concatenated) as full 16 KiB records and a last partial one, as a
   * list of buffers for one gathered write (writev): the ciphertexts node:crypto
   * returns are not copied again; headers, encrypted type bytes and tags share one
   * small buffer. Empty input gives an empty list (no empty records).
   */
  sealv(parts: readonly Uint8Array[]): Buffer[] {
    let total = 0;
    for (const p of parts) total += p.byteLength;
    const n = RecordSealer.recordsFor(total);
    const k = this.#k;
    if (k.seq + n > HARD_RECORD_LIMIT) {
      throw new FerryError(ErrorCodes.INTERNAL, `record layer: ${HARD_RECORD_LIMIT} records under one key reached without a key update`);
    }
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
      const c = createCipheriv(ALG, k.key, k.nextNonce());
      c.setAAD(glue.subarray(hdr, g));
      let need = len;
      while (need > 0) {
        const p = parts[pi]!;
        const take = Math.min(need, p.byteLength - po);
        out.push(c.update(p.subarray(po, po + take)));
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

  /**
   * Seal `parts` (concatenated) as full 16 KiB records and a last partial one, into
   * one output buffer: `sealv`'s bytes, joined. Empty input gives an empty buffer.
   */
  seal(parts: readonly Uint8Array[]): Buffer {
    return Buffer.concat(this.sealv(parts));
  }
}

export interface RecordOpenerOptions {
  /** Printable peer name for error messages. */
  peer?: string;
}

/** Parses and decrypts application_data records from a byte stream. */
export class RecordOpener {
  readonly #k: KeyState;
  readonly #list = new BufferList();
  readonly #peer: string;

  constructor(ts: TrafficSecret, opts: RecordOpenerOptions = {}) {
    this.#k = new KeyState(ts);
    this.#peer = opts.peer ?? 'peer';
  }

  get seq(): bigint {
    return BigInt(this.#k.seq);
  }

  /** Bytes received but not yet opened (a partial record). */
  get buffered(): number {
    return this.#list.length;
  }

  setKeys(ts: TrafficSecret): void {
    this.#k.set(ts);
  }

  push(chunk: Buffer): void {
    this.#list.push(chunk);
  }

  /** The content of the next complete record, or null if more bytes are needed. */
  next(): Buffer | null {
    const parts = this.nextParts();
    if (parts === null) return null;
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }

  /**
   * The content of the next complete record as one or more buffers (a record that
   * arrived split across reads is decrypted piece by piece instead of being copied
   * together first), or null if more bytes are needed.
   */
  nextParts(): Buffer[] | null {
    const list = this.#list;
    if (list.length < RECORD_HEADER_BYTES) return null;
    if (list.byteAt(0) !== CONTENT_APPLICATION_DATA || list.byteAt(1) !== 0x03 || list.byteAt(2) !== 0x03) {
      throw this.#fail('malformed record header');
    }
    const len = list.readUIntBE(3, 2);
    if (len > MAX_RECORD_CIPHERTEXT || len < 1 + TAG_BYTES) throw this.#fail(`record length ${len} out of range`);
    if (list.length < RECORD_HEADER_BYTES + len) return null;
    const k = this.#k;
    if (k.seq >= HARD_RECORD_LIMIT) throw this.#fail(`more than ${HARD_RECORD_LIMIT} records under one key`);
    const header = list.consume(RECORD_HEADER_BYTES);
    const ct = list.consumeParts(len - TAG_BYTES);
    const tag = list.consume(TAG_BYTES);
    const d = createDecipheriv(ALG, k.key, k.nextNonce());
    d.setAAD(header);
    d.setAuthTag(tag);
    const out: Buffer[] = [];
    try {
      for (const p of ct) out.push(d.update(p));
      d.final();
    } catch {
      throw this.#fail('record failed authentication (corrupted, reordered, replayed or forged)');
    }
    // TLSInnerPlaintext: strip zero padding, the last non-zero byte is the type (§5.4).
    let total = 0;
    for (const o of out) total += o.length;
    for (let p = out.length - 1; p >= 0; p--) {
      const o = out[p]!;
      let i = o.length - 1;
      while (i >= 0 && o[i] === 0) i--;
      if (i < 0) {
        out.pop();
        total -= o.length;
        continue;
      }
      if (o[i] !== CONTENT_APPLICATION_DATA) throw this.#fail(`unexpected record content type ${o[i]}`);
      total -= o.length - i;
      if (total > MAX_RECORD_PLAINTEXT) throw this.#fail('record content exceeds 2^14 bytes');
      if (i === 0) out.pop();
      else out[p] = o.subarray(0, i);
      return out;
    }
    throw this.#fail('record without a content type');
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
