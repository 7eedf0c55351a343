/**
 * Write-behind for large files the network receiver writes: every WRITE_BEHIND_BYTES
 * of a file, ask the kernel to start writing that part to the disk now
 * (sync_file_range(SYNC_FILE_RANGE_WRITE), native/net-batch.c, on a pool thread).
 *
 * Why: a receiver's bytes arrive slower than the disk can take them, yet by default
 * the kernel leaves them dirty in memory until its flusher threads wake (30 s, or 10%
 * of memory dirty), so the disk idles during the transfer and then works alone while
 * the user's `sync` (or the next job) waits. Started early, the writeback overlaps the
 * transfer. It changes no byte: it is only a hint, so its result is not reported (a
 * write error stays recorded in the file for fsync, as for any buffered write) and
 * without the addon (FERRY_NATIVE=0) it does nothing. Local copies do not use it:
 * there the copy outruns the disk, and early writeback only adds seeks.
 */
import { netBatchAddon } from '../native/index.js';

/** How much of a file is written before its writeback is started. */
export const WRITE_BEHIND_BYTES = 8 * 1024 * 1024;

/** Calls made and bytes covered (a length of 0, "to the end", counts 0), for tests. */
export const writeBehindCounts = { calls: 0, bytes: 0 };

/** Start writeback of [offset, offset + length) of `fd` (length 0: to its end); null when there is no native path. Keep `fd` open until it settles. */
export function startWriteback(fd: number, offset: number, length: number): Promise<void> | null {
  const a = netBatchAddon();
  if (a?.writeBehind === undefined) return null;
  writeBehindCounts.calls++;
  writeBehindCounts.bytes += length;
  return a.writeBehind(fd, offset, length);
}

/** Whether write-behind runs here (the native addon has it). */
export function writeBehindAvailable(): boolean {
  return netBatchAddon()?.writeBehind !== undefined;
}
