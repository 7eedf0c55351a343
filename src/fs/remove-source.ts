/**
 * `--remove-source-files`: delete a source file after its copy is safely in DST.
 *
 * The callers decide *when* (local copy: after the file was published or found up to
 * date; network: after the receiver confirmed it); this module decides *whether*:
 * the path must still be the very entry that was read — same kind, device, inode,
 * size and mtime, checked with lstat (never followed) just before the unlink — so a
 * file rewritten or replaced after it was copied is kept and reported
 * (FERRY_E_CHANGED, a warning), never lost. Directories are never removed (rsync's
 * rule: only non-directories).
 *
 * There is a window between the lstat and the unlink in which the file could be
 * changed in place: the same window rsync has. A file replaced by rename inside it
 * would be removed by name; the data at that name was new and never copied. Closing
 * it needs unlinkat on an inode, which POSIX does not offer.
 */
import { lstatSync, unlinkSync } from 'node:fs';
import type { SourceEntry } from '../core/entry.js';
import { ErrorCodes, FerryError, fromSystemError } from '../core/errors.js';

/** Remove one source entry; null when removed, else why it was kept. */
export function removeSource(e: Pick<SourceEntry, 'path' | 'absPath' | 'kind' | 'dev' | 'ino' | 'size' | 'mtimeNs'>): FerryError | null {
  if (e.kind === 'dir') return null;
  const kept = (why: string): FerryError =>
    new FerryError(ErrorCodes.CHANGED, `${e.path}: source kept (--remove-source-files): ${why}`, { subject: e.path });
  let st;
  try {
    st = lstatSync(e.absPath, { bigint: true });
  } catch (x) {
    return fromSystemError(x, 'read', e.path);
  }
  const kindOk = e.kind === 'symlink' ? st.isSymbolicLink() : st.isFile();
  if (!kindOk || st.dev !== e.dev || st.ino !== e.ino) return kept('it was replaced after it was copied');
  // A hard link's entry carries size 0 (the data went with its first name).
  if ((e.kind === 'file' && Number(st.size) !== e.size) || st.mtimeNs !== e.mtimeNs) return kept('it changed after it was copied');
  try {
    unlinkSync(e.absPath);
  } catch (x) {
    return fromSystemError(x, 'write', e.path);
  }
  return null;
}
