/**
 * The end-to-end content hash as the transfer uses it: fs/checksum.ts's hash (one
 * function for copy, transfer, resume and --checksum), plus holes fed as zeros and
 * the all-zero test the sender uses to find them.
 */
import { newContentHash, type ContentHash } from '../fs/checksum.js';

export type { ContentHash };

export function newHash(): ContentHash {
  return newContentHash();
}

const ZEROS = Buffer.alloc(1 << 20);

/** Feed `n` zero bytes (a hole the sender skipped) into a hash. */
export function updateZeros(h: ContentHash, n: number): void {
  while (n > 0) {
    const k = Math.min(n, ZEROS.length);
    h.update(ZEROS.subarray(0, k));
    n -= k;
  }
}

/** True when every byte of `b` is zero (sparse-file hole detection). */
export function isAllZero(b: Uint8Array): boolean {
  let off = 0;
  while (off < b.length) {
    const k = Math.min(b.length - off, ZEROS.length);
    if (!ZEROS.subarray(0, k).equals(b.subarray(off, off + k))) return false;
    off += k;
  }
  return true;
}
