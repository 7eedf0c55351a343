/**
 * The receiver's fast path for a small file that arrived whole in one range, in a
 * directory this session created: written with synchronous system calls on the main
 * thread, like tar does, instead of six thread-pool round trips. Where the native data
 * plane is built, receiver.ts publishes such files in batches on a pool thread instead
 * (transfer/native-files.ts: the same steps, one hand-off per batch rather than per
 * call); this file is its fallback.
 *
 * Why: on cached pages, open/write/fchmod/futimens/close/rename cost a few µs each in
 * the kernel, while each round trip through libuv's thread pool costs 10-30 µs of CPU
 * (queue lock, futex wake-ups, completion) and far more when two cores are shared
 * (measured on ml_small, 10,000 files of 1-7 KB: the receiver spent most of its CPU in
 * thread-pool hand-offs). fs/meta-ops.ts made the same finding for metadata calls.
 * Large files keep the asynchronous TempFile path, where a call is long and overlap pays.
 *
 * Not on a writer thread: tried (a thread publishing batches of files, their bytes
 * transferred in one buffer per event-loop turn). On ml_small over loopback, cold
 * cache, interleaved, against this thread: 4.42 / 4.71 / 4.50 s vs 4.93 / 3.86 /
 * 4.44 s, and again after the sender's batching fix 4.25 / 4.49 / 4.59 s vs 4.23 /
 * 4.06 / 3.97 s, with 30-60 MB more RSS and more receiver CPU: both ends share two
 * cores and are CPU-bound together, and every hand-off between threads is a wake-up
 * that costs CPU too. Worth measuring again with each end on its own machine.
 *
 * Safety is the SafeWriter's, step for step (fs/safe-writer.ts): the parent directory
 * was created by this session's SafeWriter.mkdir and is named through its verified
 * descriptor (`/proc/self/fd/N`, fs/dir-handles), so a directory swapped for a symlink
 * since cannot redirect anything; every call below is synchronous, so that descriptor
 * stays open under them. The temp file is opened
 * O_CREAT|O_EXCL|O_NOFOLLOW with ferry's deterministic temp name (an interrupted
 * run's leftover is removed and creation retried), mode and mtime are set on the
 * descriptor (to the nanosecond with the native addon, fs/meta-native), and rename(2)
 * publishes it, replacing rather than following whatever is at the final name. On
 * any failure the temp file is removed.
 *
 *   writeSmallFileSync(sink, entry, [{ offset, data }, ...]);   // throws FerryError naming the file
 *   publishSmallFile({ dir, name, size, mode, mtimeNs }, parts);  // the same, raw system errors
 */
import fs, { constants as C } from 'node:fs';
import type { Entry } from '../core/entry.js';
import { fromSystemError } from '../core/errors.js';
import { baseOf, parentOf } from '../fs/path-safety.js';
import type { SafeWriter } from '../fs/safe-writer.js';
import { setTimesFd } from '../fs/meta-native.js';
import { tempNameFor } from '../fs/temp-names.js';

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
  const flags = C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW;
  let fd = -1;
  try {
    try {
      fd = fs.openSync(temp, flags, 0o600);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      fs.unlinkSync(temp); // an interrupted run's temp file (ours by name)
      fd = fs.openSync(temp, flags, 0o600);
    }
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
