/**
 * Channel frames: the unit the transfer layer speaks in, carried as a plain byte
 * stream inside the secure channel's records.
 *
 *   frame = type (u8) || length (u32, big-endian) || payload (length bytes)
 *
 * Frames and records are deliberately independent: a record (≤ 16 KiB, RFC 8446
 * §5.2) may hold many small frames, and a large frame spans many records. That keeps
 * the record layer byte-identical to what the kernel's kTLS produces (the kernel
 * knows nothing of frames) and lets small frames share a record.
 *
 * The decoder follows undici's ByteParser: incoming chunks go into a `BufferList`,
 * `consume(n)` hands out a `subarray` when the bytes lie in one chunk and copies
 * only when a frame spans chunks. The length field is checked against the cap
 * before anything is allocated, so a peer announcing 2 GiB costs us nothing.
 *
 * Pure: no I/O, no timers. Types 0x00-0x0f are reserved for the channel itself
 * (end of stream, key update); transfer/ uses 0x10 and up.
 */
import { ErrorCodes, FerryError } from '../core/errors.js';

export const FRAME_HEADER_BYTES = 5;
/** Default cap on one frame's payload: 4 MiB (secure/channel-api.ts MAX_FRAME_PAYLOAD). */
export const DEFAULT_MAX_FRAME_PAYLOAD = 4 * 1024 * 1024;

/** Channel-level frame types (0x00-0x0f are reserved for the channel). */
export const FrameTypes = {
  /** The authenticated end of a direction: nothing follows it. Empty payload. */
  END: 0x00,
  /** The sender switches to its next traffic key after this frame's record (RFC 8446 §4.6.3, §7.2). */
  KEY_UPDATE: 0x01,
} as const;
export const LAST_RESERVED_FRAME_TYPE = 0x0f;

export interface WireFrame {
  type: number;
  payload: Buffer;
  /** Present on an assembled frame: call once no view of the payload is held any more (FrameDecoder). */
  release?: () => void;
}

/** The 5-byte header for a frame of `length` payload bytes. */
export function encodeFrameHeader(type: number, length: number): Buffer {
  if (!Number.isInteger(type) || type < 0 || type > 0xff) {
    throw new FerryError(ErrorCodes.INTERNAL, `frame type ${type} is not a byte`);
  }
  if (!Number.isInteger(length) || length < 0 || length > 0xffffffff) {
    throw new FerryError(ErrorCodes.INTERNAL, `frame length ${length} out of range`);
  }
  const h = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  h[0] = type;
  h.writeUInt32BE(length, 1);
  return h;
}

/** A whole frame as a list of buffers (header first), ready for writev or sealing. */
export function encodeFrame(type: number, payload: Uint8Array | readonly Uint8Array[]): Buffer[] {
  const parts: Buffer[] = [];
  let length = 0;
  if (payload instanceof Uint8Array) {
    parts.push(toBuffer(payload));
    length = payload.byteLength;
  } else {
    for (const p of payload) {
      parts.push(toBuffer(p));
      length += p.byteLength;
    }
  }
  return [encodeFrameHeader(type, length), ...parts];
}

function toBuffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

/**
 * A queue of byte chunks read from a stream. `consume(n)` removes and returns the
 * first n bytes: a view when they lie in the first chunk, one copy otherwise.
 */
export class BufferList {
  #chunks: Buffer[] = [];
  #head = 0; // index of the first live chunk in #chunks
  #length = 0;

  get length(): number {
    return this.#length;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#length += chunk.length;
  }

  /** Byte at offset `i` (must be < length). */
  byteAt(i: number): number {
    let k = this.#head;
    for (;;) {
      const c = this.#chunks[k]!;
      if (i < c.length) return c[i]!;
      i -= c.length;
      k++;
    }
  }

  /** Big-endian unsigned integer of `size` (1..4) bytes at offset `at`, without consuming. */
  readUIntBE(at: number, size: number): number {
    const first = this.#chunks[this.#head];
    if (first !== undefined && at + size <= first.length) return first.readUIntBE(at, size);
    let v = 0;
    for (let i = 0; i < size; i++) v = v * 256 + this.byteAt(at + i);
    return v;
  }

  /** Remove and return the first n bytes (n ≤ length). */
  consume(n: number): Buffer {
    if (n > this.#length) throw new FerryError(ErrorCodes.INTERNAL, `consume(${n}) beyond ${this.#length} buffered bytes`);
    if (n === 0) return Buffer.alloc(0);
    this.#length -= n;
    const first = this.#chunks[this.#head]!;
    if (n < first.length) {
      this.#chunks[this.#head] = first.subarray(n);
      return first.subarray(0, n);
    }
    if (n === first.length) {
      this.#shift();
      return first;
    }
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const c = this.#chunks[this.#head]!;
      const take = Math.min(c.length, n - off);
      c.copy(out, off, 0, take);
      off += take;
      if (take === c.length) this.#shift();
      else this.#chunks[this.#head] = c.subarray(take);
    }
    return out;
  }

  /** Remove the first n bytes and return them as views of the chunks they lie in (no copy). */
  consumeParts(n: number): Buffer[] {
    if (n > this.#length) throw new FerryError(ErrorCodes.INTERNAL, `consume(${n}) beyond ${this.#length} buffered bytes`);
    this.#length -= n;
    const out: Buffer[] = [];
    while (n > 0) {
      const c = this.#chunks[this.#head]!;
      if (n < c.length) {
        out.push(c.subarray(0, n));
        this.#chunks[this.#head] = c.subarray(n);
        break;
      }
      out.push(c);
      n -= c.length;
      this.#shift();
    }
    return out;
  }

  /** Remove and return everything buffered, as the list of chunks (no copy). */
  drain(): Buffer[] {
    const out = this.#chunks.slice(this.#head);
    this.#chunks = [];
    this.#head = 0;
    this.#length = 0;
    return out;
  }

  #shift(): void {
    this.#chunks[this.#head] = undefined as unknown as Buffer;
    this.#head++;
    if (this.#head > 64 && this.#head * 2 > this.#chunks.length) {
      this.#chunks = this.#chunks.slice(this.#head);
      this.#head = 0;
    }
  }
}

export interface FrameDecoderOptions {
  /** Largest payload accepted; checked before allocating. Default 4 MiB. */
  maxPayload?: number;
  /** Who sent the bytes, for error messages. */
  peer?: string;
  /**
   * The pushed chunks are only lent: valid until the next `push`, since the caller
   * reuses their memory (the channel's socket read buffer). Every frame returned is
   * then a copy (large ones in a reusable assembly buffer, with `release`), an
   * incomplete frame is assembled in a buffer of its own from its first bytes on, and
   * only a partial header (< 5 bytes) is kept, copied, between pushes.
   */
  borrowed?: boolean;
  /**
   * Where a large payload (ASSEMBLE_MIN or more) starts in its assembly buffer: given
   * its frame type, its first bytes (those that have arrived, up to PLACE_HEAD) and the
   * buffer (PLACE_SLACK bytes longer than the payload), an offset below PLACE_SLACK.
   * Lets a consumer have the bulk of a payload land at an address direct I/O accepts,
   * without a copy (secure/channel.ts, for DATA frames). Default: 0.
   */
  place?: ((type: number, head: Uint8Array, buf: Buffer) => number) | undefined;
}

/** Bytes an assembly buffer has beyond its payload when payloads are placed (FrameDecoderOptions.place). */
export const PLACE_SLACK = 4096;
/** At most this many first bytes of a payload are shown to `place`. */
const PLACE_HEAD = 64;

/**
 * Streaming frame decoder: `push` bytes as they arrive, then call `next()` until it
 * returns null. Throws FerryError(FERRY_E_PROTOCOL) on an oversized length.
 *
 * A frame that lies in one pushed chunk comes out as a view of it. A frame larger
 * than what is buffered gets its payload buffer allocated once its (capped) length
 * is known, and later chunks are copied into it as they are pushed, while they are
 * still hot in the cache, instead of being collected and joined at the end. Such a
 * frame carries `release()`: a consumer that calls it once it no longer holds any view
 * of the payload gives the buffer back for a later frame (a receiver of a 1 GiB
 * transfer otherwise allocates, and the garbage collector frees, 1 GiB of them). A
 * frame never released is simply collected.
 */
export class FrameDecoder {
  readonly #list = new BufferList();
  readonly #max: number;
  readonly #peer: string;
  readonly #borrowed: boolean;
  // frame being assembled
  #type = -1;
  #payload: Buffer | null = null;
  #filled = 0;
  /** Released assembly buffers, for reuse. */
  readonly #pool: Buffer[] = [];
  #pooledBytes = 0;
  /** The whole buffer behind #payload (which is a view of `length` bytes of it from #base). */
  #whole: Buffer = Buffer.alloc(0);
  #base = 0;
  readonly #place: FrameDecoderOptions['place'];

  /**
   * A buffer for a payload of `length` bytes (a released one when one fits), placed where
   * `place` says, given the payload's first bytes that have arrived (`head`).
   */
  #assemblyBuffer(length: number, type: number, head: readonly Buffer[]): Buffer {
    this.#base = 0;
    if (length < ASSEMBLE_MIN) {
      this.#whole = Buffer.allocUnsafe(length);
      return this.#whole;
    }
    const place = this.#place;
    const need = place === undefined ? length : length + PLACE_SLACK;
    const pool = this.#pool;
    let whole: Buffer | undefined;
    for (let i = pool.length - 1; i >= 0; i--) {
      const b = pool[i]!;
      if (b.length >= need) {
        pool[i] = pool[pool.length - 1]!;
        pool.pop();
        this.#pooledBytes -= b.length;
        whole = b;
        break;
      }
    }
    // Whole steps of 256 KiB, so that frames of similar sizes share buffers without the
    // up to 2x of powers of two (a 1 MiB chunk's frame took 2 MiB): every byte of a new
    // buffer costs a page fault when first written, and fewer bytes per buffer keep more
    // of the frames in flight within the pool.
    whole ??= Buffer.allocUnsafeSlow(Math.ceil(need / ASSEMBLE_STEP) * ASSEMBLE_STEP);
    this.#whole = whole;
    if (place !== undefined) {
      let n = 0;
      for (const c of head) n += c.length;
      const first = head.length === 1 ? head[0]!.subarray(0, PLACE_HEAD) : Buffer.concat(head, Math.min(n, PLACE_HEAD));
      const at = place(type, first, whole);
      if (Number.isInteger(at) && at > 0 && at < PLACE_SLACK) this.#base = at;
    }
    return whole.subarray(this.#base, this.#base + length);
  }

  constructor(opts: FrameDecoderOptions = {}) {
    this.#max = opts.maxPayload ?? DEFAULT_MAX_FRAME_PAYLOAD;
    this.#peer = opts.peer ?? 'peer';
    this.#borrowed = opts.borrowed === true;
    this.#place = opts.place;
  }

  /** Bytes received but not yet returned as frames. */
  get buffered(): number {
    return this.#list.length + this.#filled;
  }

  push(chunk: Buffer): void {
    const p = this.#payload;
    if (p !== null && this.#list.length === 0) {
      const take = Math.min(chunk.length, p.length - this.#filled);
      chunk.copy(p, this.#filled, 0, take);
      this.#filled += take;
      if (take < chunk.length) this.#list.push(chunk.subarray(take));
      return;
    }
    this.#list.push(chunk);
  }

  /**
   * Where the next bytes may be written straight into the frame being assembled (a
   * record layer decrypting into it saves a copy): the assembly buffer, the offset of
   * the next payload byte, and where the payload ends (the buffer may go on past it);
   * null when no payload is being assembled or bytes are queued before it. Report what
   * was written with `wrote`.
   */
  room(): { buf: Buffer; off: number; stop: number } | null {
    const p = this.#payload;
    if (p === null || this.#list.length !== 0 || this.#filled >= p.length) return null;
    return { buf: this.#whole, off: this.#base + this.#filled, stop: this.#base + p.length };
  }

  /** `n` bytes were written at `room().off`; those past the payload's end belong to the frames after it. */
  wrote(n: number): void {
    const p = this.#payload!;
    const end = this.#filled + n;
    if (end > p.length) this.#list.push(Buffer.from(this.#whole.subarray(this.#base + p.length, this.#base + end)));
    this.#filled = Math.min(end, p.length);
  }

  next(): WireFrame | null {
    const list = this.#list;
    const p = this.#payload;
    if (p !== null) {
      if (this.#filled < p.length) return null;
      this.#payload = null;
      this.#filled = 0;
      return { type: this.#type, payload: p, ...this.#releaser(p) };
    }
    if (list.length < FRAME_HEADER_BYTES) return this.#keep();
    const length = list.readUIntBE(1, 4);
    if (length > this.#max) {
      throw new FerryError(
        ErrorCodes.PROTOCOL,
        `${this.#peer}: frame of ${length} bytes exceeds the ${this.#max}-byte limit`,
        { subject: this.#peer },
      );
    }
    if (list.length < FRAME_HEADER_BYTES + length) {
      // Large and incomplete (or any incomplete frame of lent chunks): start assembling
      // in place (the length is capped above).
      if (length >= ASSEMBLE_MIN || this.#borrowed) {
        this.#type = list.byteAt(0);
        list.consume(FRAME_HEADER_BYTES);
        const head = list.drain();
        const buf = this.#assemblyBuffer(length, this.#type, head);
        for (const c of head) this.#filled += c.copy(buf, this.#filled);
        this.#payload = buf;
      }
      return null;
    }
    const type = list.byteAt(0);
    list.consume(FRAME_HEADER_BYTES);
    if (!this.#borrowed) return { type, payload: list.consume(length) };
    // Lent bytes: the frame leaves as a copy.
    const parts = list.consumeParts(length);
    const payload = this.#assemblyBuffer(length, type, parts);
    let off = 0;
    for (const c of parts) off += c.copy(payload, off);
    return { type, payload, ...this.#releaser(payload) };
  }

  /** `release` for a payload in an assembly buffer from the pool (a small one has none). */
  #releaser(payload: Buffer): { release?: () => void } {
    const whole = this.#whole;
    if (whole.length < ASSEMBLE_MIN || payload.buffer !== whole.buffer) return {};
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        if (this.#pooledBytes + whole.length <= ASSEMBLE_POOL_BYTES) {
          this.#pool.push(whole);
          this.#pooledBytes += whole.length;
        }
      },
    };
  }

  /** No complete frame: with lent chunks, keep a copy of the partial header. */
  #keep(): null {
    if (this.#borrowed && this.#list.length > 0) {
      const rest = this.#list.consume(this.#list.length);
      this.#list.push(Buffer.from(rest));
    }
    return null;
  }
}

/** Frames at least this large are assembled in place as their bytes arrive. */
const ASSEMBLE_MIN = 64 * 1024;
/** Assembly buffers are sized in steps of this. */
const ASSEMBLE_STEP = 256 * 1024;
/**
 * Bytes of released assembly buffers kept for reuse: more than a receiver holds in
 * flight (the channel's receive queue, 16 MiB, the receiver's pending writes, 32 MiB,
 * and the frames between them and the disk: about 64 MiB seen at the peak of a 1 GiB
 * file), so that a steady transfer allocates none after its first burst. A buffer
 * dropped here is allocated again by the next burst, and new memory is dear: V8 answers
 * the allocation rate with full garbage collections, and the kernel with a page fault
 * for every 4 KiB first written. The pool never holds more than the peak did.
 */
const ASSEMBLE_POOL_BYTES = 128 * 1024 * 1024;
