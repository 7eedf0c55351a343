/**
 * The one loader of ferry's data plane, the optional C addon native/*.c
 * (ferry_native.node, built at install by scripts/build-native.mjs).
 *
 * The addon executes batches and decides nothing; each of its functions has a
 * TypeScript fallback with the same results, so ferry works without it, only slower.
 * This module finds and loads it once, checks its ABI, and hands out each group of
 * functions only where it is usable:
 *
 *   recordsAddon()  batched TLS 1.3 record sealing/opening with Node's own OpenSSL
 *                   (used by secure/record-layer.ts)
 *   ktlsAddon()     the setsockopt calls of kernel TLS (used by secure/ktls.ts)
 *   fsBatchAddon()  batched local file copies on pool threads (used by fs/batch-copy.ts)
 *   netBatchAddon() the network transfer's batches: source reads and small-file
 *                   publishing on pool threads, and the content hash (used by
 *                   transfer/native-files.ts and fs/checksum.ts)
 *   metaAddon()     nanosecond times, SEEK_DATA/SEEK_HOLE extents, extended attributes
 *                   (used by fs/meta-native.ts)
 *   fsWalkAddon()   a directory listed and lstat'ed in one call (used by fs/walk.ts)
 *   statAtAddon()   given names in a directory lstat'ed in one call (used by fs/stat-batch.ts)
 *   pipeAddon()     fcntl(F_SETPIPE_SZ) for the --via-ssh path's pipes (used by modes/server.ts)
 *
 * `FERRY_NATIVE=0` forces every fallback: the addon is then never even loaded (the
 * test suite runs once each way). `FERRY_NATIVE_ADDON=path` loads another build.
 * `nativeStatus()` says which path each group uses and why, for `ferry --version -v`
 * and the JSON summary.
 *
 * This is the lowest layer: it imports nothing of ferry's, so errors are reasons
 * (strings) for the layers above to turn into FerryErrors.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { platform } from 'node:os';
import { fileURLToPath } from 'node:url';

/** The addon's ABI this build of ferry expects (native/ferry.h FERRY_NATIVE_ABI). */
export const NATIVE_ABI = 5;

/** An opaque per-direction AES-128-GCM context (an N-API external). */
export type AeadContext = { readonly __aead: unique symbol };

/**
 * native/records.c; the TypeScript fallback is secure/record-layer.ts's `jsRecords`, and
 * record-layer.ts's `RecordBatcher` (this plus a name) documents the contract. `out`,
 * `outOff` and `outStop` go together: with them, records are decrypted into `out`
 * instead of in place.
 */
export interface RecordsAddon {
  aeadNew(key: Uint8Array, iv: Uint8Array, open: boolean): AeadContext;
  sealRecords(ctx: AeadContext, seq: number, parts: readonly Uint8Array[], out: Uint8Array, outOff: number): number;
  openRecords(
    ctx: AeadContext,
    seq: number,
    buf: Uint8Array,
    off: number,
    end: number,
    maxRecords: number,
    res: Int32Array,
    out?: Uint8Array,
    outOff?: number,
    outStop?: number,
  ): number;
}

/** native/ktls.c; all return 0 or an errno. Its fallback is userspace TLS. */
export interface KtlsAddon {
  setUlp(fd: number): number;
  getUlp(fd: number): string;
  setCrypto(fd: number, dir: number, key: Buffer, salt: Buffer, iv: Buffer, recSeq: Buffer): number;
}

/** native/fs-batch.c; its fallback is the TypeScript copy path (fs/safe-writer.ts). */
export interface FsBatchAddon {
  copyFiles(strings: Buffer, nums: Float64Array, ids: BigUint64Array): Promise<Int32Array>;
}

/** Files per readFiles/publishFiles call (native/net-batch.c MAX_ITEMS). */
export const NET_BATCH_MAX_ITEMS = 4096;

/** native/net-batch.c; fallbacks: transfer/file-reader.ts, fs/small-files.ts, @node-rs/xxhash. */
export interface NetBatchAddon {
  /** Bytes of a content-hash state (hashInit/hashUpdate/hashDigest work on a Uint8Array of this size). */
  hashStateBytes: number;
  hashInit(state: Uint8Array): void;
  hashUpdate(state: Uint8Array, data: Uint8Array): void;
  hashDigest(state: Uint8Array, out: Uint8Array): void;
  hashOf(data: Uint8Array, out: Uint8Array): void;
  /** The hash's stripe loop in use (scalar, sse2, avx2, avx512); with a name, switches to it if the CPU has it (tests). */
  hashKernel(name?: string): string;
  /** opts: [0] 1 = files the page cache does not hold may be read direct, [1] at most this % cached counts as not held, [2] out: files read direct. */
  readFiles(paths: Buffer, want: BigInt64Array, out: Uint8Array, hashes: Uint8Array, res: Int32Array, opts?: Int32Array): Promise<void>;
  /** opts: in [0] 1 = write each body of at least 16 KiB of whole 4 KiB blocks with O_DIRECT; out [1] files written so. */
  publishFiles(strings: Buffer, nums: Float64Array, data: Uint8Array[], res: Int32Array, opts?: Int32Array): Promise<void>;
  /** sync_file_range(SYNC_FILE_RANGE_WRITE) on a pool thread (fs/write-behind.ts). */
  writeBehind?(fd: number, offset: number, length: number): Promise<void>;
  /** A second descriptor on `fd`'s file for O_DIRECT writes, alignments into `align`; or -errno (fs/direct-io.ts). */
  directOpen?(fd: number, align: Int32Array, write?: boolean): number;
  /** Fill `data` from `offset` through an O_DIRECT descriptor: bytes read, or -errno (fs/direct-io.ts). */
  directRead?(dfd: number, data: Uint8Array, offset: number, align: Int32Array): number;
  /** Bytes from the start of `data` to the first address that is a multiple of `align` (fs/direct-io.ts). */
  alignGap?(data: Uint8Array, align: number): number;
  /** Close a descriptor directOpen returned. */
  directClose?(dfd: number): void;
  /** The fraction of a file's first `size` bytes in the page cache (cachestat), or -1 (fs/direct-io.ts). */
  cachedFraction?(fd: number, size: number): number;
  /** Write `data` at `offset`, its aligned part through `dfd` (O_DIRECT), the rest through `fd`; outcome in `res` (fs/direct-io.ts). */
  directWrite?(dfd: number, fd: number, data: Uint8Array, offset: number, align: Int32Array, res: Int32Array): Promise<void>;
}

/**
 * native/meta.c: synchronous metadata calls Node lacks; each returns a negative errno
 * instead of throwing. Its fallbacks (fs/meta-native.ts): libuv's microsecond
 * times, zero-chunk hole detection, and FERRY_E_UNSUPPORTED for xattrs.
 */
export interface MetaAddon {
  utimensFd(fd: number, sec: number, nsec: number): number;
  utimensPath(path: string, sec: number, nsec: number, follow: boolean): number;
  dataExtents(fd: number, size: number, maxPairs: number): Float64Array | number;
  xattrList(path: string, follow: boolean): Buffer | number;
  xattrGet(path: string, name: string, follow: boolean): Buffer | number;
  xattrSet(path: string, name: string, value: Buffer, follow: boolean): number;
  xattrRemove(path: string, name: string, follow: boolean): number;
  /** getpwuid_r/getgrgid_r: the name, or null when there is none (or the lookup failed). */
  ownerName(group: boolean, id: number): string | null | number;
  /** getpwnam_r/getgrnam_r: the id, or -1 when the name is unknown (or the lookup failed). */
  ownerId(group: boolean, name: string): number;
}

/** native/meta.c's fcntl(F_SETPIPE_SZ): the new capacity or -errno. Without it pipes keep their size. */
export interface PipeAddon {
  setPipeSize(fd: number, bytes: number): number;
}

/**
 * native/fs-walk.c; its fallback is fs/walk.ts's readdir + lstat. For entry i:
 * nums[10i..10i+9] = name offset, name length, target length (-1: none; the target's
 * bytes follow the name's), st_mode, size, nlink, blocks, errno (0: ok), uid, gid;
 * big[3i..3i+2] = mtime ns, dev, ino. Names sorted by bytes, without . and ..
 * With `peerFd`, peerNums/peerBig hold each name's lstat in that directory too, in
 * statAt's layout (the local copy's quick check; its fallback is one lstat per file).
 */
export interface FsWalkAddon {
  listDir(fd: number, peerFd?: number): Promise<[names: Buffer, nums: Float64Array, big: BigInt64Array, peerNums?: Float64Array, peerBig?: BigInt64Array]>;
}

/**
 * native/fs-walk.c's statAt: `count` NUL-terminated names lstat'ed relative to a
 * directory fd on a pool thread, in listDir's record layout (name fields 0, target
 * length -1); its fallback is fs/stat-batch.ts's lstat loop.
 */
export interface StatAtAddon {
  statAt(fd: number, names: Buffer, count: number): Promise<[nums: Float64Array, big: BigInt64Array]>;
}

interface Addon
  extends KtlsAddon,
    Partial<RecordsAddon>,
    Partial<FsBatchAddon>,
    Partial<NetBatchAddon>,
    Partial<MetaAddon>,
    Partial<FsWalkAddon>,
    Partial<StatAtAddon>,
    Partial<PipeAddon> {
  abi: number;
  recordsAvailable: true | string;
}

export type NativePath = 'native' | 'js';

export interface NativeStatus {
  /** The addon file loaded, if any. */
  addon: string | undefined;
  /** Why the addon is or is not loaded, one line. */
  reason: string;
  /** Which implementation seals and opens records. */
  records: NativePath;
  recordsReason: string;
  /** Whether the kTLS setsockopt calls are available (the kernel may still lack kTLS: see secure/ktls.ts). */
  ktls: NativePath;
  /** Which implementation copies local files (ferry copy). */
  copy: NativePath;
  /** Which implementation reads and publishes the network transfer's small files, and hashes content. */
  files: NativePath;
  /** Nanosecond times, SEEK_DATA extents and xattrs (native), or µs times and no xattrs (js). */
  meta: NativePath;
  /** Which implementation lists and lstats directories for the walk, and lstats DST's files for the quick check. */
  walk: NativePath;
}

interface Loaded {
  addon: Addon | undefined;
  path: string | undefined;
  reason: string;
}

let loaded: Loaded | undefined;

/** FERRY_NATIVE=0 (or "off", "false"): use no native code at all. */
export function nativeDisabled(): boolean {
  const v = process.env.FERRY_NATIVE;
  return v === '0' || v === 'off' || v === 'false';
}

/** Where the addon is looked for: $FERRY_NATIVE_ADDON, then native/build/Release from dist/src/native/ or src/native/. */
function candidates(): string[] {
  const fromEnv = process.env.FERRY_NATIVE_ADDON;
  if (fromEnv !== undefined && fromEnv !== '') return [fromEnv];
  const rel = 'native/build/Release/ferry_native.node';
  return [fileURLToPath(new URL(`../../../${rel}`, import.meta.url)), fileURLToPath(new URL(`../../${rel}`, import.meta.url))];
}

function load(): Loaded {
  if (loaded) return loaded;
  const none = (reason: string, path?: string): Loaded => ({ addon: undefined, path, reason });
  if (nativeDisabled()) return (loaded = none('native code disabled (FERRY_NATIVE=0)'));
  if (platform() !== 'linux') return (loaded = none(`the native addon is Linux-only (this is ${platform()})`));
  const list = candidates();
  const path = list.find((p) => existsSync(p));
  if (path === undefined) {
    return (loaded = none(`the native addon is not built (${list[0]} not found; run \`node scripts/build-native.mjs\`)`));
  }
  try {
    const addon = createRequire(import.meta.url)(path) as Addon;
    if (addon.abi !== NATIVE_ABI || typeof addon.setCrypto !== 'function') {
      return (loaded = none(`the native addon ${path} is from another ferry version (abi ${String(addon.abi)}, want ${NATIVE_ABI}); rebuild it`, path));
    }
    return (loaded = { addon, path, reason: `addon ${path}` });
  } catch (e) {
    const msg = String((e as Error | undefined)?.message ?? e).split('\n')[0] ?? '';
    return (loaded = none(`the native addon ${path} cannot be loaded: ${msg}`, path));
  }
}

/** The record functions, or undefined (then secure/record-layer.ts uses its TypeScript fallback). */
export function recordsAddon(): RecordsAddon | undefined {
  const a = load().addon;
  if (a?.recordsAvailable !== true || typeof a.sealRecords !== 'function') return undefined;
  return a as RecordsAddon;
}

/** The batched file copy, or undefined (then the TypeScript copy path runs). */
export function fsBatchAddon(): FsBatchAddon | undefined {
  const a = load().addon;
  return typeof a?.copyFiles === 'function' ? (a as FsBatchAddon) : undefined;
}

/** The network transfer's batches and content hash, or undefined (then their TypeScript fallbacks run). */
export function netBatchAddon(): NetBatchAddon | undefined {
  const a = load().addon;
  return typeof a?.readFiles === 'function' && typeof a.publishFiles === 'function' && typeof a.hashOf === 'function'
    ? (a as NetBatchAddon)
    : undefined;
}

/** The metadata calls of native/meta.c, or undefined (then fs/meta-native.ts falls back). */
export function metaAddon(): MetaAddon | undefined {
  const a = load().addon;
  return typeof a?.utimensFd === 'function' && typeof a.xattrSet === 'function' ? (a as MetaAddon) : undefined;
}

/** fcntl(F_SETPIPE_SZ), or undefined (then pipes keep the kernel's default size). */
export function pipeAddon(): PipeAddon | undefined {
  const a = load().addon;
  return typeof a?.setPipeSize === 'function' ? (a as PipeAddon) : undefined;
}

/** The native directory listing, or undefined (then fs/walk.ts lists with readdir + lstat). */
export function fsWalkAddon(): FsWalkAddon | undefined {
  const a = load().addon;
  return typeof a?.listDir === 'function' ? (a as FsWalkAddon) : undefined;
}

/** The batched lstat of names in a directory, or undefined (then fs/stat-batch.ts lstats them one by one). */
export function statAtAddon(): StatAtAddon | undefined {
  const a = load().addon;
  return typeof a?.statAt === 'function' ? (a as StatAtAddon) : undefined;
}

/** The kTLS setsockopt functions and, when absent, why. */
export function ktlsAddon(): { addon: KtlsAddon | undefined; reason: string } {
  const l = load();
  return { addon: l.addon, reason: l.reason };
}

export function nativeStatus(): NativeStatus {
  const l = load();
  const records = recordsAddon() !== undefined;
  const ra = l.addon?.recordsAvailable;
  return {
    addon: l.addon ? l.path : undefined,
    reason: l.reason,
    records: records ? 'native' : 'js',
    recordsReason: records ? "Node's OpenSSL, batched" : l.addon ? String(ra) : l.reason,
    ktls: l.addon ? 'native' : 'js',
    copy: fsBatchAddon() ? 'native' : 'js',
    files: netBatchAddon() ? 'native' : 'js',
    meta: metaAddon() ? 'native' : 'js',
    walk: fsWalkAddon() && statAtAddon() ? 'native' : 'js',
  };
}
