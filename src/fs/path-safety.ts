/**
 * Path safety: the one gate every relative path and symlink target passes before
 * ferry uses it to touch the destination.
 *
 * Paths come from the local walker (fs/walk) and, in network modes, from an
 * untrusted peer. Both go through `validateRelativePath`, which accepts only the
 * canonical form ferry itself produces: '/'-separated components, none of them
 * empty, '.', or '..', no NUL, within MAX_PATH_BYTES / MAX_NAME_BYTES / MAX_PATH_DEPTH
 * (core/limits), and no component in ferry's own temp-file pattern
 * (`.ferry-XXXXXXXX.NAME.part`, fs/temp-names): the walker never produces one, and
 * from a peer such a name would collide with the temp file of another entry, which
 * the writer removes as an interrupted run's leftover (and finish() sweeps away).
 * Control characters are legal in Linux file names and are allowed here; they are
 * escaped only when printed (`cleanForDisplay`). A backslash is an
 * ordinary character in a Linux file name (ferry runs on Linux at both ends), so it is
 * accepted and never treated as a separator.
 *
 * The lexical check is half the story. The other half lives in fs/safe-writer:
 * never follow a symlink that already exists in DST (every parent not created in
 * this session is lstat'ed, the last component is opened O_NOFOLLOW, temp files
 * O_EXCL) and create symlinks last, so that a link made by this transfer can never
 * redirect a later write. `validateLinkTarget` only caps what a link may contain; a
 * symlink's target is data, copied verbatim like cp -a and rsync -a do, and the
 * writer never resolves it. `validateHardlinkTarget` is stricter: a hard link's
 * target is a path inside the tree, so it obeys the same rules as any other path.
 *
 * Shared API (stable; network engineer builds on it):
 *   validateRelativePath(p): string          -> p, or throws FerryError(FERRY_E_PATH)
 *   validateLinkTarget(target, linkPath): string
 *   validateHardlinkTarget(target, linkPath): string
 *   pathDepth(p): number
 *   parentOf(p): string                      -> '' for top-level entries
 */
import { ErrorCodes, FerryError, cleanForDisplay } from '../core/errors.js';
import { MAX_LINK_TARGET_BYTES, MAX_NAME_BYTES, MAX_PATH_BYTES, MAX_PATH_DEPTH } from '../core/limits.js';
import { isFerryTempName } from './temp-names.js';

/** Shortest name of ferry's temp pattern: `.ferry-` + 8 hex + `.` + `.part`. */
const MIN_TEMP_NAME = 21;

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

function fail(p: string, why: string): never {
  const shown = cleanForDisplay(p.length > 200 ? `${p.slice(0, 200)}…` : p);
  throw new FerryError(ErrorCodes.PATH, `unsafe path "${shown}": ${why}`, { subject: p });
}

/**
 * Validate a transfer-relative path; returns it unchanged when it is safe.
 * One pass over the UTF-16 code units (this runs for every entry, twice on the no-op
 * path): components are checked as they end; UTF-8 byte lengths are computed only
 * when a component could exceed MAX_NAME_BYTES (a UTF-16 unit is at most 3 bytes).
 */
export function validateRelativePath(p: string): string {
  if (typeof p !== 'string' || p.length === 0) fail(String(p), 'empty path');
  if (p.charCodeAt(0) === 47) fail(p, 'absolute path');
  if (p.length > MAX_PATH_BYTES / 3 && Buffer.byteLength(p, 'utf8') > MAX_PATH_BYTES) fail(p, `longer than ${MAX_PATH_BYTES} bytes`);
  let depth = 1;
  let start = 0;
  let surrogates = false;
  for (let i = 0; i <= p.length; i++) {
    const c = i === p.length ? 47 : p.charCodeAt(i);
    if (c === 0) fail(p, 'contains a NUL byte');
    if (c >= 0xd800 && c <= 0xdfff) surrogates = true;
    if (c !== 47) continue;
    const len = i - start;
    if (len === 0) fail(p, 'empty component (leading, trailing or double slash)');
    if (len <= 2 && p.charCodeAt(start) === 46 && (len === 1 || p.charCodeAt(start + 1) === 46)) {
      fail(p, len === 1 ? "'.' component" : "'..' component (traversal)");
    }
    if (len >= MIN_TEMP_NAME && p.charCodeAt(start) === 46 && isFerryTempName(p.slice(start, i))) {
      fail(p, "a component has the shape of ferry's own temp files (.ferry-XXXXXXXX.NAME.part)");
    }
    if (len * 3 > MAX_NAME_BYTES && Buffer.byteLength(p.slice(start, i), 'utf8') > MAX_NAME_BYTES) {
      fail(p, `a component is longer than ${MAX_NAME_BYTES} bytes`);
    }
    if (i < p.length && ++depth > MAX_PATH_DEPTH) fail(p, `deeper than ${MAX_PATH_DEPTH} levels`);
    start = i + 1;
  }
  if (surrogates && LONE_SURROGATE.test(p)) fail(p, 'not valid UTF-8 (lone surrogate)');
  return p;
}

/**
 * Validate a symlink's target. Targets are kept verbatim (absolute and '..' targets
 * are legal, as in cp -a); ferry never follows them. Only the size and NUL are capped.
 */
export function validateLinkTarget(target: string, linkPath: string): string {
  if (typeof target !== 'string' || target.length === 0) fail(linkPath, 'symlink with an empty target');
  if (target.includes('\0')) fail(linkPath, 'symlink target contains a NUL byte');
  if (Buffer.byteLength(target, 'utf8') > MAX_LINK_TARGET_BYTES) {
    fail(linkPath, `symlink target longer than ${MAX_LINK_TARGET_BYTES} bytes`);
  }
  return target;
}

/** A hard link's target is another path of the same tree: same rules as any path. */
export function validateHardlinkTarget(target: string, linkPath: string): string {
  try {
    return validateRelativePath(target);
  } catch {
    return fail(linkPath, `hard link target "${cleanForDisplay(String(target))}" is outside the tree`);
  }
}

export function pathDepth(p: string): number {
  let n = 1;
  for (let i = 0; i < p.length; i++) if (p.charCodeAt(i) === 47) n++;
  return n;
}

export function parentOf(p: string): string {
  const i = p.lastIndexOf('/');
  return i < 0 ? '' : p.slice(0, i);
}

export function baseOf(p: string): string {
  return p.slice(p.lastIndexOf('/') + 1);
}
