/**
 * Direct I/O for big files on both ends of a network transfer: the receiver's writes
 * and the sender's reads of files of at least DIRECT_MIN_BYTES go between our memory
 * and the disk with O_DIRECT (native/net-batch.c), past the page cache.
 *
 * Why: a buffered write copies every byte into page-cache pages the kernel must first
 * find (on a virtual machine, often have the host back with memory again), keeps them
 * dirty and writes them back later; a buffered cold read fills fresh pages and copies
 * out of them. Neither end reads those pages again. For a big file those copies and
 * pages were the largest items of both ends' CPU profiles. A direct transfer is one
 * DMA to or from a buffer whose pages stay faulted in and are reused.
 *
 * Where the filesystem cannot (statx reports no direct-I/O alignment, /proc is not
 * mounted, the open or a transfer is refused with EINVAL), or without the addon
 * (FERRY_NATIVE=0), files are read and written buffered, as before (writes with
 * write-behind, fs/write-behind.ts): the bytes are the same either way. The sender
 * reads direct only a file the page cache does not already hold (cachestat(2), Linux
 * 6.5; without it, buffered): a file just written, or read before, is read from memory.
 *
 * Memory: a direct transfer goes between the disk and memory at an address the
 * filesystem accepts (statx: 512 bytes here), else through a staging copy in C. So the
 * sender's reader thread reads each chunk into its buffer at such an address
 * (`DirectReader.view`), and the receiver's channel places each large DATA payload so
 * that its chunk's bytes begin at a multiple of 4096 (secure/channel.ts). A chunk
 * still unaligned (its frame's first bytes had not arrived when the frame was
 * placed) is staged; the bytes are the same either way.
 *
 * A write's aligned part goes direct; an unaligned tail (the end of a file whose size
 * is not a multiple of the alignment) or a write at an unaligned offset (a resumed
 * file) goes through the ordinary descriptor: both describe the same file, and the
 * kernel keeps the two kinds of I/O coherent.
 */
import { constants as osConstants } from 'node:os';
import { errnoError } from '../core/errors.js';
import { netBatchAddon } from '../native/index.js';

/** Files at least this big are read and written direct (smaller ones are not worth a second descriptor). */
export const DIRECT_MIN_BYTES = 8 * 1024 * 1024;

/** Bytes written through direct descriptors (aligned parts, or whole writes that went buffered after a refusal count 0), for tests. */
export const directWriteCounts = { opened: 0, bytes: 0 };

/** Above this fraction of a file in the page cache, the sender reads it buffered (from memory). */
export const DIRECT_READ_MAX_CACHED = 0.25;

/** A file open for direct writes: the O_DIRECT descriptor and the filesystem's alignments. */
export class DirectFile {
  readonly #dfd: number;
  readonly #fd: number;
  readonly #align: Int32Array;
  #refused = false;
  /** Writes on a pool thread: both descriptors stay open until they are done (a number reused meanwhile would be another file). */
  readonly #inFlight = new Set<Promise<void>>();

  private constructor(dfd: number, fd: number, align: Int32Array) {
    this.#dfd = dfd;
    this.#fd = fd;
    this.#align = align;
  }

  /** A direct descriptor next to `fd` (an open, writable regular file), or null when there is none here. */
  static open(fd: number): DirectFile | null {
    const a = netBatchAddon();
    if (a?.directOpen === undefined || a.directWrite === undefined || a.directClose === undefined) return null;
    const align = new Int32Array(2);
    const dfd = a.directOpen(fd, align);
    if (dfd < 0) return null;
    directWriteCounts.opened++;
    return new DirectFile(dfd, fd, align);
  }

  /** Whether a write at `offset` can go direct (an aligned offset: not so past a resume point that is not). */
  takes(offset: number): boolean {
    return offset % this.#align[1]! === 0;
  }

  /** False once the filesystem refused a direct write: the caller writes buffered from then on. */
  get usable(): boolean {
    return !this.#refused;
  }

  /** Write all of `data` at `offset`; a failure throws an Error with the errno's code (as fs does). */
  async write(data: Uint8Array, offset: number): Promise<void> {
    const res = new Int32Array(2);
    const p = netBatchAddon()!.directWrite!(this.#dfd, this.#fd, data, offset, this.#align, res);
    this.#inFlight.add(p);
    try {
      await p;
    } finally {
      this.#inFlight.delete(p);
    }
    if (res[0] === -1) throw errnoError(res[1]!, 'write');
    if (res[0] === 1) this.#refused = true;
    else if (offset % this.#align[1]! === 0) directWriteCounts.bytes += data.length - (data.length % this.#align[1]!);
  }

  /**
   * Close the direct descriptor once no write is in flight; the ordinary one is the
   * caller's, to close after this resolves. Never throws.
   */
  async close(): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
    netBatchAddon()!.directClose!(this.#dfd);
  }
}

/** What a direct read answers when direct I/O is not to be had (the file is then read buffered). */
const REFUSALS = new Set([osConstants.errno.EINVAL, osConstants.errno.EOPNOTSUPP, osConstants.errno.ENOMEM]);

/** A source file open for direct reads (the sender's reader thread: synchronous). */
export class DirectReader {
  readonly #dfd: number;
  readonly #align: Int32Array;
  #refused = false;

  private constructor(dfd: number, align: Int32Array) {
    this.#dfd = dfd;
    this.#align = align;
  }

  /**
   * A direct descriptor next to `fd` when direct reads pay here: the addon has them,
   * the file is big, and the page cache holds little of it; else null (read buffered).
   */
  static open(fd: number, size: number): DirectReader | null {
    const a = netBatchAddon();
    if (a?.directOpen === undefined || a.directRead === undefined || a.cachedFraction === undefined || a.directClose === undefined || a.alignGap === undefined || size < DIRECT_MIN_BYTES) return null;
    const cached = a.cachedFraction(fd, size);
    if (cached < 0 || cached > DIRECT_READ_MAX_CACHED) return null;
    const align = new Int32Array(2);
    const dfd = a.directOpen(fd, align, false);
    return dfd < 0 ? null : new DirectReader(dfd, align);
  }

  /** Bytes to allocate for buffers of chunks of up to `chunk` bytes, so that `view` can place each one aligned. */
  bufferBytes(chunk: number): number {
    return chunk + this.#align[0]! + this.#align[1]!;
  }

  /**
   * Where to read a chunk of `len` bytes into `buf` (of `bufferBytes(chunk)` bytes, `len`
   * ≤ chunk) so that the read goes from the disk straight into it: the first address that
   * meets the memory alignment, for `len` rounded up to the offset alignment (the file's
   * end then comes back short). A buffer whose memory cannot be aligned gets a plain view
   * of `len` bytes, which `read` fills through a staging buffer.
   */
  view(buf: ArrayBuffer, len: number): Uint8Array {
    const off = netBatchAddon()!.alignGap?.(new Uint8Array(buf), this.#align[0]!) ?? 0;
    const ask = Math.ceil(len / this.#align[1]!) * this.#align[1]!;
    return off + ask <= buf.byteLength ? new Uint8Array(buf, off, ask) : new Uint8Array(buf, 0, len);
  }

  /**
   * Fill `view` from `pos`: the bytes read (fewer at the end of the file), or null when
   * the filesystem refused (then and from then on, the caller reads buffered). A failed
   * read throws an Error with the errno's code, as fs does.
   */
  read(view: Uint8Array, pos: number): number | null {
    if (this.#refused) return null;
    const n = netBatchAddon()!.directRead!(this.#dfd, view, pos, this.#align);
    if (REFUSALS.has(-n)) {
      this.#refused = true;
      return null;
    }
    if (n < 0) throw errnoError(-n, 'read');
    return n;
  }

  /** Close the direct descriptor (the ordinary one is the caller's). Never throws. */
  close(): void {
    netBatchAddon()!.directClose!(this.#dfd);
  }
}
