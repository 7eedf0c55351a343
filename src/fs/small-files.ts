/**
 * Publishing small files that arrived whole, in a directory this session created: the
 * receiver's fast path, in two forms with the same results.
 *
 * - `NativePublisher` (with the addon): a batch of files per call on a libuv pool
 *   thread (native/net-batch.c): create-exclusive / pwrite / ftruncate / fchmod /
 *   futimens / close / renameat relative to a directory descriptor, unlinking the temp
 *   file on any failure. One hand-off per batch rather than per call. With `direct`
 *   (the network receiver, like its big files' directWrites), a file's whole 4 KiB
 *   blocks (16 KiB to 1 MiB of them) are written with O_DIRECT from pooled aligned
 *   memory, a window of such writes in flight together through Linux AIO, and only its
 *   tail through the page cache: the bytes are not read again, a fresh page-cache page
 *   costs a fault in the host on this kind of virtual machine, and the final sync then
 *   has them written already. (Written one at a time, each direct write waited for the
 *   device and the transfer got slower; see native/net-batch.c.) A filesystem that
 *   refuses O_DIRECT (EINVAL) gets the rest of the batch buffered.
 * - `publishSmallFile` / `writeSmallFileSync` (FERRY_NATIVE=0, or no addon): the same
 *   steps with synchronous system calls on the main thread, like tar does, instead of
 *   six thread-pool round trips.
 *
 * Why synchronous or batched: on cached pages, open/write/fchmod/futimens/close/rename
 * cost a few µs each in the kernel, while each round trip through libuv's thread pool
 * costs far more CPU (queue lock, futex wake-ups, completion), worse when two cores are
 * shared; fs/meta-ops.ts made the same finding for metadata calls. Large files keep the
 * asynchronous TempFile path (fs/safe-writer.ts), where a call is long and overlap pays.
 * A dedicated writer thread was tried and cost more CPU and memory than it saved while
 * both ends share the cores: every hand-off between threads is a wake-up.
 *
 * Everything is decided before this module is called (the receiver verified the content
 * hash; the SafeWriter masked the mode and verified the directory). Safety is the
 * SafeWriter's, step for step: the parent directory was created by this session's
 * SafeWriter.mkdir and is named through its verified descriptor (`/proc/self/fd/N`,
 * fs/dir-handles; the native batch gets a descriptor opened through it), so a
 * directory swapped for a symlink since cannot redirect anything; the synchronous
 * calls keep that descriptor open under them. The temp file is created by
 * `openTempSync` (fs/temp-names: O_CREAT|O_EXCL|O_NOFOLLOW with ferry's deterministic
 * temp name; an interrupted run's leftover is removed and creation retried), the step
 * TempFile uses too; mode and mtime are set on the descriptor (to the nanosecond with
 * the native addon, fs/meta-native), and rename(2) publishes it, replacing rather than
 * following whatever is at the final name. On any failure the temp file is removed.
 *
 *   writeSmallFileSync(sink, entry, [{ offset, data }, ...]);   // throws FerryError naming the file
 *   publishSmallFile({ dir, name, size, mode, mtimeNs }, parts);  // the same, raw system errors
 *   const p = nativePublisher();                                  // undefined without the addon
 *   const outcomes = await p.publish([{ dirFd, name, size, mode, mtimeNs, data }], paths, { direct: true });  // null or a FerryError, per file
 */
import fs from 'node:fs';
import type { Entry } from '../core/entry.js';
import { errnoError, fromSystemError, type FerryError } from '../core/errors.js';
import { NET_BATCH_MAX_ITEMS, netBatchAddon, type NetBatchAddon } from '../native/index.js';
import { baseOf, parentOf } from './path-safety.js';
import type { SafeWriter } from './safe-writer.js';
import { setTimesFd } from './meta-native.js';
import { openTempSync, tempNameFor } from './temp-names.js';

export interface Part {
  offset: number;
  data: Uint8Array;
}

/** Where and how one small file is published. */
export interface SmallFileTarget {
  /**
   * The parent directory, verified: its `/proc/self/fd/N` path from the SafeWriter
   * (fs/dir-handles), used at once by the synchronous calls below.
   */
  dir: string;
  /** Final name inside `dir`. */
  name: string;
  size: number;
  /** Final permission bits (already masked by the SafeWriter's policy). */
  mode: number;
  /** mtime, nanoseconds (set exactly with the native addon, to the µs without). */
  mtimeNs: bigint;
}

/** Write `parts` (increasing offsets; gaps are holes) to a temp file and rename it into place. Throws system errors. */
export function publishSmallFile(t: SmallFileTarget, parts: readonly Part[]): void {
  const temp = `${t.dir}/${tempNameFor(t.name)}`;
  let fd = -1;
  try {
    fd = openTempSync(temp);
    let end = 0;
    for (const p of parts) {
      let done = 0;
      while (done < p.data.length) done += fs.writeSync(fd, p.data, done, p.data.length - done, p.offset + done);
      end = p.offset + p.data.length;
    }
    if (end < t.size) fs.ftruncateSync(fd, t.size); // trailing hole
    fs.fchmodSync(fd, t.mode);
    setTimesFd(fd, t.mtimeNs);
    fs.closeSync(fd);
    fd = -1;
    fs.renameSync(temp, `${t.dir}/${t.name}`);
  } catch (e) {
    if (fd >= 0) {
      try {
        fs.closeSync(fd);
      } catch {
        /* already failing */
      }
    }
    try {
      fs.unlinkSync(temp);
    } catch {
      /* not created */
    }
    throw e;
  }
}

/** The target of `entry` under `sink`. */
export function smallFileTarget(sink: SafeWriter, entry: Entry): SmallFileTarget {
  return {
    dir: sink.dirPathSync(parentOf(entry.path)),
    name: baseOf(entry.path),
    size: entry.size,
    mode: sink.mode(entry.mode),
    mtimeNs: entry.mtimeNs,
  };
}

/** Write and publish `entry` from `parts`; errors as FerryErrors naming the file. */
export function writeSmallFileSync(sink: SafeWriter, entry: Entry, parts: readonly Part[]): void {
  try {
    publishSmallFile(smallFileTarget(sink, entry), parts);
  } catch (e) {
    throw fromSystemError(e, 'write', entry.path);
  }
}

// ------------------------------------------------------------------ native batches

/** One small file to publish: everything already decided by the receiver. */
export interface PublishItem {
  /** A descriptor of the verified parent directory (created by this session), open until publish() settles. */
  dirFd: number;
  /** Final name inside `dir`. */
  name: string;
  /** Declared size: bytes past the data are a trailing hole (ftruncate). */
  size: number;
  /** Final permission bits, already masked. */
  mode: number;
  mtimeNs: bigint;
  /** The file's bytes from offset 0 (at most `size`). */
  data: Uint8Array;
}

/** publishFiles' per-file status for success (native/net-batch.c); otherwise the errno follows. */
const PUB_OK = 0;
const MAX_BATCH = NET_BATCH_MAX_ITEMS;

/** Files whose bytes went to disk past the page cache (publish with `direct`), for tests. */
export const smallDirectWrites = { files: 0 };

export class NativePublisher {
  readonly #n: NetBatchAddon;

  constructor(n: NetBatchAddon) {
    this.#n = n;
  }

  /**
   * Publish each file (see the file header); resolves per file to null (published) or
   * the system error as a FerryError naming `paths[i]` (FERRY_E_WRITE / FERRY_E_NOSPC).
   * Nothing of a failed file remains under its temp or final name.
   */
  async publish(items: readonly PublishItem[], paths: readonly string[], opts: { direct?: boolean } = {}): Promise<(FerryError | null)[]> {
    if (items.length === 0) return [];
    if (items.length > MAX_BATCH) {
      const out: (FerryError | null)[] = [];
      for (let i = 0; i < items.length; i += MAX_BATCH) out.push(...(await this.publish(items.slice(i, i + MAX_BATCH), paths.slice(i, i + MAX_BATCH), opts)));
      return out;
    }
    const strings: string[] = [];
    const nums = new Float64Array(items.length * 5);
    const datas: Uint8Array[] = [];
    items.forEach((it, i) => {
      strings.push(tempNameFor(it.name), it.name);
      let sec = it.mtimeNs / 1_000_000_000n;
      let nsec = it.mtimeNs % 1_000_000_000n;
      if (nsec < 0n) {
        nsec += 1_000_000_000n;
        sec -= 1n;
      }
      nums[5 * i] = it.size;
      nums[5 * i + 1] = Number(sec);
      nums[5 * i + 2] = Number(nsec);
      nums[5 * i + 3] = it.mode;
      nums[5 * i + 4] = it.dirFd;
      datas.push(it.data);
    });
    const res = new Int32Array(items.length * 2);
    const o = new Int32Array([opts.direct === true ? 1 : 0, 0]);
    await this.#n.publishFiles(Buffer.from(strings.join('\0') + '\0'), nums, datas, res, o);
    smallDirectWrites.files += o[1]!;
    return items.map((_, i) => {
      if (res[2 * i] === PUB_OK) return null;
      return fromSystemError(errnoError(res[2 * i + 1]!, 'publish', paths[i]!), 'write', paths[i]!);
    });
  }
}

let publisher: NativePublisher | null | undefined;

/** The batched native publisher, or undefined without the addon (FERRY_NATIVE=0). */
export function nativePublisher(): NativePublisher | undefined {
  if (publisher === undefined) {
    const n = netBatchAddon();
    publisher = n ? new NativePublisher(n) : null;
  }
  return publisher ?? undefined;
}
