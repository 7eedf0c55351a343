/**
 * Where the data of a sparse file is, chunk by chunk: used by the local copy
 * (TempFile.copyReadWrite) and the network sender's reader threads, so that holes in
 * the source stay holes in the copy.
 *
 * With the native addon the data extents come from lseek(SEEK_DATA/SEEK_HOLE)
 * (fs/meta-native `dataExtents`), exact whatever the alignment. Without it (Node has
 * no SEEK_DATA) a chunk's all-zero blocks of BLOCK bytes are taken for holes: exact
 * for block-aligned data, never wrong (zeros read back as zeros either way).
 */

/** The filesystem block the zero-detection fallback works in. */
export const BLOCK = 4096;

const ZERO = Buffer.alloc(BLOCK);

function zeroBlock(b: Uint8Array, from: number, to: number): boolean {
  return Buffer.from(b.buffer, b.byteOffset + from, to - from).equals(ZERO.subarray(0, to - from));
}

/**
 * The part of a chunk (`data`, read at file offset `pos`) that holds data, as an
 * offset into the chunk and a length (length 0: all hole). With `extents` (sorted
 * [start, end) pairs of the whole file) it is the span from the first to the last
 * data byte inside the chunk; without, the chunk less its leading and trailing
 * all-zero blocks.
 */
export function dataSpan(data: Uint8Array, pos: number, extents: ReadonlyArray<readonly [number, number]> | null): { off: number; len: number } {
  const end = pos + data.length;
  if (extents !== null) {
    let lo = -1;
    let hi = -1;
    for (const [s, e] of extents) {
      if (e <= pos) continue;
      if (s >= end) break;
      const a = Math.max(s, pos);
      const b = Math.min(e, end);
      if (lo < 0) lo = a;
      hi = b;
    }
    return lo < 0 ? { off: 0, len: 0 } : { off: lo - pos, len: hi - lo };
  }
  let a = 0;
  while (a < data.length && zeroBlock(data, a, Math.min(a + BLOCK, data.length))) a += BLOCK;
  if (a >= data.length) return { off: 0, len: 0 };
  let b = Math.ceil(data.length / BLOCK) * BLOCK;
  while (b - BLOCK > a && zeroBlock(data, b - BLOCK, Math.min(b, data.length))) b -= BLOCK;
  return { off: a, len: Math.min(b, data.length) - a };
}

/**
 * The runs of a chunk to write so that holes stay holes: every data extent inside
 * it, or without extents every run of blocks that are not all zero. Offsets are
 * into the chunk.
 */
export function dataRuns(data: Uint8Array, pos: number, extents: ReadonlyArray<readonly [number, number]> | null): Array<[number, number]> {
  const end = pos + data.length;
  const out: Array<[number, number]> = [];
  if (extents !== null) {
    for (const [s, e] of extents) {
      if (e <= pos) continue;
      if (s >= end) break;
      out.push([Math.max(s, pos) - pos, Math.min(e, end) - pos]);
    }
    return out;
  }
  let runStart = -1;
  for (let a = 0; a < data.length; a += BLOCK) {
    const b = Math.min(a + BLOCK, data.length);
    if (zeroBlock(data, a, b)) {
      if (runStart >= 0) out.push([runStart, a]);
      runStart = -1;
    } else if (runStart < 0) runStart = a;
  }
  if (runStart >= 0) out.push([runStart, data.length]);
  return out;
}
