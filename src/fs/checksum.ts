/**
 * ferry's content hash: end-to-end per-range hashes, resume prefix checks and
 * `--checksum`, in local copy and over the network, all one function.
 *
 * What it protects: the path disk → sender → receiver → disk (a source that
 * changed under the reader, a bug in range bookkeeping, a disk returning other
 * bytes). It does not protect against an attacker: on the wire every byte is
 * already authenticated by the channel's AEAD, and the peer chooses the content
 * it sends anyway. So it need not be a cryptographic hash, and it must cost next
 * to nothing beside the disk — it runs over every byte, on both ends.
 *
 * The choice: XXH3 (the family rsync ≥ 3.2 uses for whole-file checksums), 128 bits as
 * two XXH3-64 with different seeds: XXH3-64 with seed 0, then with seed
 * 0x9e3779b97f4a7c15, each big-endian, 16 bytes. Why XXH3 and not XXH64 (the previous
 * choice, two XXH64): the addon (native/content-hash.c) runs XXH3 with vector
 * instructions chosen at run time, several times faster than XXH64 on the same bytes,
 * and the hash runs over every byte on both ends, where it cost about half as much as
 * the AES-GCM of the channel. Why two XXH3-64 and not XXH3-128: the fallback,
 * @node-rs/xxhash (prebuilt binaries, maintained), streams XXH3-64 only, and both
 * paths must give the same digest. SHA-256 through node:crypto, the first choice, is
 * several times slower again; `npm run bench -- --suite hash` measures them.
 *
 * Where the addon is built the digest is computed there, and the sender's batched reads
 * hash each file on the pool thread that read it; @node-rs/xxhash is the fallback
 * (FERRY_NATIVE=0), and the two are cross-tested (test/native-files.test.ts).
 */
import { constants as C, promises as fsp } from 'node:fs';
import { createRequire } from 'node:module';
import type { FileHandle } from 'node:fs/promises';
import { netBatchAddon, type NetBatchAddon } from '../native/index.js';

type XxhashModule = typeof import('@node-rs/xxhash');
let xxhashModule: XxhashModule | undefined;
/**
 * @node-rs/xxhash, loaded the first time the fallback hashes: where the addon is built
 * it is never needed, and loading it (a CommonJS package that probes the C library)
 * is a noticeable part of a short run's start-up.
 */
function xxhash(): XxhashModule {
  return (xxhashModule ??= createRequire(import.meta.url)('@node-rs/xxhash') as XxhashModule);
}

/** Bytes of a content digest (wire/messages.ts carries it at this size). */
export const CONTENT_HASH_BYTES = 16;
/** Named in `--version -v` and the JSON summary. */
export const CONTENT_HASH_NAME = 'xxh3x2';

const SEED_A = 0n;
const SEED_B = 0x9e3779b97f4a7c15n;

/** A streaming content hash: update() any number of times, digest() once. */
export interface ContentHash {
  update(data: Uint8Array): ContentHash;
  digest(): Buffer;
}

class Xxh3Pair implements ContentHash {
  readonly #a = xxhash().xxh3.Xxh3.withSeed(SEED_A);
  readonly #b = xxhash().xxh3.Xxh3.withSeed(SEED_B);
  update(data: Uint8Array): ContentHash {
    this.#a.update(data);
    this.#b.update(data);
    return this;
  }
  digest(): Buffer {
    return pack(this.#a.digest(), this.#b.digest());
  }
}

function pack(a: bigint, b: bigint): Buffer {
  const out = Buffer.allocUnsafe(CONTENT_HASH_BYTES);
  out.writeBigUInt64BE(BigInt.asUintN(64, a), 0);
  out.writeBigUInt64BE(BigInt.asUintN(64, b), 8);
  return out;
}

/**
 * The same hash in the addon: its whole state is a slot of a shared off-heap slab (a
 * small typed array of its own would be moved off the V8 heap by the first native call
 * that sees it, an allocation per file). The slot goes back at digest(); a hash never
 * digested (an abandoned range) just keeps its slot until the slab is collected.
 */
const SLAB_SLOTS = 1024;
class StateSlab {
  readonly #bytes: number;
  #slab: Buffer | null = null;
  #next = 0;
  readonly #free: Buffer[] = [];
  constructor(bytes: number) {
    this.#bytes = bytes;
  }
  take(): Buffer {
    const f = this.#free.pop();
    if (f) return f;
    if (this.#slab === null || this.#next === SLAB_SLOTS) {
      this.#slab = Buffer.allocUnsafeSlow(this.#bytes * SLAB_SLOTS);
      this.#next = 0;
    }
    const i = this.#next++;
    return this.#slab.subarray(i * this.#bytes, (i + 1) * this.#bytes);
  }
  give(b: Buffer): void {
    if (this.#free.length < SLAB_SLOTS) this.#free.push(b);
  }
}

class NativePair implements ContentHash {
  readonly #n: NetBatchAddon;
  readonly #slab: StateSlab;
  #state: Buffer | null;
  #digest: Buffer | null = null;
  constructor(n: NetBatchAddon, slab: StateSlab) {
    this.#n = n;
    this.#slab = slab;
    this.#state = slab.take();
    n.hashInit(this.#state);
  }
  update(data: Uint8Array): ContentHash {
    if (this.#state === null) throw new Error('content hash updated after digest()');
    this.#n.hashUpdate(this.#state, data);
    return this;
  }
  digest(): Buffer {
    if (this.#digest !== null) return this.#digest;
    const state = this.#state!;
    const out = Buffer.allocUnsafe(CONTENT_HASH_BYTES);
    this.#n.hashDigest(state, out);
    this.#slab.give(state);
    this.#state = null;
    this.#digest = out;
    return out;
  }
}

const native = netBatchAddon();
const slab = native ? new StateSlab(native.hashStateBytes) : null;

export function newContentHash(): ContentHash {
  return native ? new NativePair(native, slab!) : new Xxh3Pair();
}

/** The digest of one buffer: the same value as a stream fed the same bytes. */
export function contentHashOf(data: Uint8Array): Buffer {
  if (native) {
    const out = Buffer.allocUnsafe(CONTENT_HASH_BYTES);
    native.hashOf(data, out);
    return out;
  }
  const { xxh3 } = xxhash();
  return pack(xxh3.xxh64(data, SEED_A), xxh3.xxh64(data, SEED_B));
}

/** The fallback's digest of one buffer, whatever the addon (for cross-tests). */
export function contentHashOfJs(data: Uint8Array): Buffer {
  const { xxh3 } = xxhash();
  return pack(xxh3.xxh64(data, SEED_A), xxh3.xxh64(data, SEED_B));
}

/** The fallback's streaming hash, whatever the addon (for cross-tests). */
export function newContentHashJs(): ContentHash {
  return new Xxh3Pair();
}

/**
 * Content hash of bytes [0, length) of a file (the whole file by default), never
 * through a symlink at its last component. A file shorter than `length` is not an
 * error: the hash then covers what exists, and the comparison with the other side
 * fails.
 */
export async function hashFilePrefix(absPath: string, length = Number.POSITIVE_INFINITY, chunkSize = 1 << 20): Promise<Buffer> {
  const fh = await fsp.open(absPath, C.O_RDONLY | C.O_NOFOLLOW);
  try {
    return await hashHandlePrefix(fh, length, chunkSize);
  } finally {
    await fh.close();
  }
}

/** The same for a file already open (and checked: fs/source-file); the handle stays open. */
export async function hashHandlePrefix(fh: FileHandle, length = Number.POSITIVE_INFINITY, chunkSize = 1 << 20): Promise<Buffer> {
  const h = newContentHash();
  const buf = Buffer.allocUnsafe(Math.min(chunkSize, Math.max(length, 1)));
  let pos = 0;
  while (pos < length) {
    const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, length - pos), pos);
    if (bytesRead === 0) break;
    h.update(buf.subarray(0, bytesRead));
    pos += bytesRead;
  }
  return h.digest();
}

/** Hex content hash of a whole file (`--checksum` in local copy). */
export async function hashFile(absPath: string, chunkSize = 1 << 20): Promise<string> {
  return (await hashFilePrefix(absPath, Number.POSITIVE_INFINITY, chunkSize)).toString('hex');
}

/**
 * Whether the file at `otherPath` (opened O_NOFOLLOW) holds exactly the `size` bytes
 * of the open `fh`: read side by side in chunks, stopping at the first difference.
 * The local copy's answer to "same size, other mtime: is the content the same?",
 * before it mends only the metadata.
 */
export async function sameContent(fh: FileHandle, otherPath: string, size: number, chunkSize = 1 << 20): Promise<boolean> {
  // An unreadable or vanished other side is simply not the same (the caller copies).
  const other = await fsp.open(otherPath, C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK).catch(() => null);
  if (other === null) return false;
  try {
    const st = await other.stat();
    if (!st.isFile() || st.size !== size) return false;
    const a = Buffer.allocUnsafe(Math.min(chunkSize, Math.max(size, 1)));
    const b = Buffer.allocUnsafe(a.length);
    let off = 0;
    while (off < size) {
      const want = Math.min(a.length, size - off);
      const [ra, rb] = await Promise.all([fh.read(a, 0, want, off), other.read(b, 0, want, off)]);
      if (ra.bytesRead !== want || rb.bytesRead !== want) return false;
      if (!a.subarray(0, want).equals(b.subarray(0, want))) return false;
      off += want;
    }
    return true;
  } finally {
    await other.close().catch(() => {});
  }
}
