/**
 * Size operands ("128K", "1M", "4MiB", "65536"), shared by every command's parser.
 * A module of its own so that parsing options loads nothing heavy: the ssh mode
 * parses its options before it starts ssh, and every millisecond there is start-up.
 */
import { ErrorCodes, FerryError } from '../core/errors.js';

/** "128K", "1M", "4MiB", "65536" -> bytes, between 4K and 256M. */
export function parseSize(s: string, name: string, cmd = 'copy'): number {
  const usage = (msg: string): FerryError => new FerryError(ErrorCodes.USAGE, `${cmd}: ${msg} (see 'ferry ${cmd} --help')`);
  const m = /^(\d+)(?:([kKmMgG])(?:i?[bB])?|[bB])?$/.exec(s.trim());
  if (!m) throw usage(`${name}: not a size: "${s}" (examples: 65536, 128K, 1M)`);
  const mult = m[2] === undefined ? 1 : { k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2].toLowerCase() as 'k' | 'm' | 'g'];
  const n = Number(m[1]) * mult;
  if (!Number.isSafeInteger(n) || n < 4096 || n > 256 * 1024 ** 2) throw usage(`${name}: must be between 4K and 256M, got "${s}"`);
  return n;
}
