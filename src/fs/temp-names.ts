/**
 * Names of ferry's temporary files.
 *
 * Every file is written to a temp file in its target directory and renamed into
 * place when complete, so a final name never holds a truncated file. The temp name
 * is deterministic, `.ferry-<8 hex>.<basename>.part`, so that a later run can find
 * (and either resume or remove) what an interrupted run left. The 8 hex digits are a
 * hash of the full basename: long basenames are shortened to keep the temp name within
 * NAME_MAX, and the hash keeps two shortened names apart.
 *
 * `isFerryTempName` recognises only this exact shape: cleanup never touches a file
 * ferry did not name. The walker skips such names too (they are partial data, never
 * part of a tree).
 */
import { createRequire } from 'node:module';
import { constants as C, openSync, unlinkSync } from 'node:fs';
import { MAX_NAME_BYTES } from '../core/limits.js';

const TEMP_RE = /^\.ferry-[0-9a-f]{8}\..*\.part$/s;

export function isFerryTempName(name: string): boolean {
  // (checked for every name the walk lists: the regular expression only for names of the shape's length and first character)
  return name.length >= 21 && name.charCodeAt(0) === 46 && TEMP_RE.test(name);
}

/**
 * crypto.hash (Node >= 20.12) where there, one object less per name than createHash.
 * node:crypto is loaded on the first temp name, not at start-up: a no-op re-run never
 * makes one, and loading it is a noticeable part of a short run's start.
 */
let sha256Hex: ((s: string) => string) | undefined;
function sha256HexOnce(): (s: string) => string {
  if (sha256Hex === undefined) {
    const crypto = createRequire(import.meta.url)('node:crypto') as typeof import('node:crypto');
    sha256Hex = typeof crypto.hash === 'function' ? (s) => crypto.hash('sha256', s, 'hex') : (s) => crypto.createHash('sha256').update(s).digest('hex');
  }
  return sha256Hex;
}

export function tempNameFor(basename: string): string {
  const h = sha256HexOnce()(basename).slice(0, 8);
  const room = MAX_NAME_BYTES - (7 + 8 + 1 + 5);
  let base = basename;
  if (Buffer.byteLength(base, 'utf8') > room) {
    const buf = Buffer.from(base, 'utf8').subarray(0, room);
    // Do not cut inside a UTF-8 sequence: drop a trailing partial character.
    base = buf.toString('utf8').replace(/\ufffd+$/u, '');
  }
  return `.ferry-${h}.${base}.part`;
}

/**
 * Create the temp file at `tempPath` (a path inside a verified directory, fs/dir-handles):
 * O_WRONLY|O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600, so nothing already there is followed
 * or written through. A leftover of an interrupted run under that name (ours by name)
 * is removed and creation retried once. Returns the descriptor; throws system errors.
 */
export function openTempSync(tempPath: string): number {
  const flags = C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW;
  try {
    return openSync(tempPath, flags, 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  try {
    unlinkSync(tempPath);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  return openSync(tempPath, flags, 0o600);
}
