/**
 * The record protection of a channel carried inside ssh: none of its own. When both
 * ends of the handshake said that their channel runs over the ssh connection's own
 * stdin/stdout (secure/handshake.ts, flag bit 1), the frames after the handshake are
 * laid end to end on the stream as they are, without TLS records: ssh encrypts and
 * authenticates every byte between the two hosts already, and the key our records
 * would use came over that same ssh connection, so AES-GCM inside it would protect
 * against nobody that ssh does not already stop (SECURITY.md, "Plaintext records
 * inside ssh"; docs/PROTOCOL.md, "Records inside ssh").
 *
 * `PlainSealer` and `PlainOpener` stand in for RecordSealer and RecordOpener
 * (record-layer.ts) in the channel, with the parts of their API it uses: "sealing" is
 * one copy of the pending frames into the output buffer (the channel's contract lets
 * the caller reuse a payload once `send` returns, so the bytes must be ours before the
 * write), and "opening" hands each received chunk on whole. There are no keys, so no
 * sequence numbers and no key updates: the channel refuses a KEY_UPDATE frame here.
 */
import { ErrorCodes, FerryError } from '../core/errors.js';

const EMPTY = Buffer.alloc(0);

export class PlainSealer {
  /** Never advances: without keys there is nothing to rekey. */
  readonly seq = 0n;
  readonly implementation = 'none' as const;

  setKeys(): void {
    throw new FerryError(ErrorCodes.INTERNAL, 'plaintext records have no keys to update');
  }

  /** Copy `parts` (concatenated) into `out` at `off`; returns the bytes written. */
  sealInto(parts: readonly Uint8Array[], out: Uint8Array, off: number): number {
    let o = off;
    for (const p of parts) {
      out.set(p, o);
      o += p.byteLength;
    }
    return o - off;
  }

  /** `parts` concatenated into a new buffer. */
  seal(parts: readonly Uint8Array[]): Buffer {
    if (parts.length === 1) return Buffer.from(parts[0]!);
    return Buffer.concat(parts as Uint8Array[]);
  }
}

export class PlainOpener {
  readonly implementation = 'none' as const;
  readonly #chunks: Buffer[] = [];
  #head = 0;
  #bytes = 0;

  /** Bytes received and not yet handed out. */
  get buffered(): number {
    return this.#bytes;
  }

  setKeys(): void {
    throw new FerryError(ErrorCodes.INTERNAL, 'plaintext records have no keys to update');
  }

  /** Takes the chunk over; `next()` hands it out as it is. */
  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#bytes += chunk.length;
  }

  /** The next received chunk, or null when there is none. */
  next(): Buffer | null {
    if (this.#head === this.#chunks.length) {
      if (this.#head > 0) {
        this.#chunks.length = 0;
        this.#head = 0;
      }
      return null;
    }
    const c = this.#chunks[this.#head]!;
    this.#chunks[this.#head++] = EMPTY;
    this.#bytes -= c.length;
    return c;
  }
}
