/**
 * Which existing destination entries a transfer leaves alone: rsync's `--size-only`,
 * `--ignore-existing` and `-u/--update`, decided in one pure function that both the
 * local copy (modes/copy.ts) and the network receiver (transfer/receiver.ts) call
 * after their quick check said "not the same", with what one lstat of DST showed.
 *
 * rsync's meanings, kept:
 * - `--ignore-existing`: anything that exists in DST (whatever its kind) is not
 *   updated; directories are still entered, so new files inside them arrive.
 * - `-u/--update`: a regular file whose DST copy is newer (mtime strictly later) is
 *   skipped; equal mtimes fall back to the normal check; a change of kind (file vs
 *   symlink, …) is always transferred; directories and symlinks are not affected.
 * - `--size-only`: a regular file whose DST copy has the same size is up to date,
 *   whatever its mtime.
 * The quick check's own "same" always wins (nothing to do), so these only ever
 * turn a transfer into a skip, never the other way.
 */
import type { EntryKind } from '../core/entry.js';
import { SessionPolicy } from '../wire/messages.js';

export interface UpdatePolicy {
  sizeOnly: boolean;
  ignoreExisting: boolean;
  update: boolean;
}

export const NO_POLICY: UpdatePolicy = { sizeOnly: false, ignoreExisting: false, update: false };

export function hasPolicy(p: UpdatePolicy): boolean {
  return p.sizeOnly || p.ignoreExisting || p.update;
}

/** What DST holds at the entry's path (from lstat), or null when nothing. */
export interface ExistingEntry {
  kind: 'file' | 'dir' | 'symlink' | 'other';
  size: number;
  mtimeNs: bigint;
}

/**
 * Why the entry must be left as DST has it, or null when it is transferred.
 * 'same-size' counts as up to date (rsync removes such a source with
 * --remove-source-files); the other two mean DST differs and is kept on purpose.
 */
export type KeepReason = 'ignore-existing' | 'newer' | 'same-size';

export function keepExisting(p: UpdatePolicy, src: { kind: EntryKind; size: number; mtimeNs: bigint }, dst: ExistingEntry | null): KeepReason | null {
  if (dst === null || src.kind === 'dir') return null;
  if (p.ignoreExisting) return 'ignore-existing';
  const srcFile = src.kind === 'file' || src.kind === 'hardlink';
  if (!srcFile || dst.kind !== 'file') return null;
  if (p.update && dst.mtimeNs > src.mtimeNs) return 'newer';
  if (p.sizeOnly && src.kind === 'file' && dst.size === src.size) return 'same-size';
  return null;
}

/** An lstat result (bigint) as an ExistingEntry. */
export function existingFromStat(st: { isFile(): boolean; isDirectory(): boolean; isSymbolicLink(): boolean; size: bigint; mtimeNs: bigint }): ExistingEntry {
  const kind = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other';
  return { kind, size: Number(st.size), mtimeNs: st.mtimeNs };
}

/** The policy as SESSION extension bits (wire/messages.ts). */
export function policyBits(p: UpdatePolicy): number {
  return (p.sizeOnly ? SessionPolicy.SIZE_ONLY : 0) | (p.ignoreExisting ? SessionPolicy.IGNORE_EXISTING : 0) | (p.update ? SessionPolicy.UPDATE : 0);
}

export function policyFromBits(bits: number): UpdatePolicy {
  return {
    sizeOnly: (bits & SessionPolicy.SIZE_ONLY) !== 0,
    ignoreExisting: (bits & SessionPolicy.IGNORE_EXISTING) !== 0,
    update: (bits & SessionPolicy.UPDATE) !== 0,
  };
}
