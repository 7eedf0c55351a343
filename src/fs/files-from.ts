/**
 * `--files-from=FILE`: copy exactly the paths a list names, relative to SRC, instead
 * of the whole tree (rsync's option, with its meaning).
 *
 * - The list: one path per line ('-' reads standard input); blank lines and lines
 *   starting with '#' or ';' are skipped, a CR before the LF is dropped. A leading '/'
 *   or './' is removed (paths are always taken relative to SRC, as rsync does), and a
 *   '..' component is refused (FERRY_E_USAGE naming the line): the list cannot reach
 *   outside SRC.
 * - Each path keeps its place under DST (rsync's implied --relative): the directories
 *   above it are created with their source metadata. A parent that is not a real
 *   directory in SRC (a symlink, a file) is a failure naming the path, not followed.
 * - A listed directory is copied as a directory; its contents only with `-r`
 *   (rsync: with --files-from, -a does not imply -r).
 * - --include/--exclude apply to what is listed and to what -r finds below it.
 * - A path listed twice, or reached both directly and through -r, is sent once.
 *
 * The entries come out through the same walker (fs/walk), one listed path at a time,
 * so identity checks and the parents-first order hold as for a whole tree.
 */
import { promises as fsp, type BigIntStats } from 'node:fs';
import type { SourceEntry } from '../core/entry.js';
import { ErrorCodes, FerryError, fromSystemError } from '../core/errors.js';
import { validateRelativePath } from './path-safety.js';
import { entryFromStat, resolveSource, walk, type SourceRoot, type WalkOptions } from './walk.js';

/** Parse a list; `from` names it in messages. Throws FERRY_E_USAGE on a '..' or bad path. */
export function parseFilesFrom(text: string, from: string): string[] {
  const out: string[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    let l = lines[i]!;
    if (l.endsWith('\r')) l = l.slice(0, -1);
    if (l.length === 0 || l.startsWith('#') || l.startsWith(';')) continue;
    const parts = l.split('/').filter((c) => c !== '' && c !== '.');
    if (parts.includes('..')) {
      throw new FerryError(ErrorCodes.USAGE, `--files-from ${from}: line ${i + 1}: "${l}" has a '..' component; paths must stay inside SRC`);
    }
    if (parts.length === 0) continue;
    const p = parts.join('/');
    try {
      validateRelativePath(p);
    } catch (e) {
      throw new FerryError(ErrorCodes.USAGE, `--files-from ${from}: line ${i + 1}: ${(e as Error).message}`);
    }
    out.push(p);
  }
  return out;
}

export interface FilesFromOptions extends WalkOptions {
  /** `-r`: descend into listed directories. */
  recursive: boolean;
}

/** The entries of `paths` (relative to the directory `base`), parents first, each once. */
export async function* walkFilesFrom(base: string, paths: readonly string[], opts: FilesFromOptions): AsyncGenerator<SourceEntry[]> {
  const report = opts.onProblem ?? ((): void => {});
  const exclude = opts.exclude ?? ((): boolean => false);
  const emitted = new Set<string>();
  const lstat = async (rel: string): Promise<BigIntStats | FerryError> => {
    try {
      return await fsp.lstat(`${base}/${rel}`, { bigint: true });
    } catch (e) {
      return fromSystemError(e, 'read', rel);
    }
  };
  const fresh = (batch: SourceEntry[]): SourceEntry[] => batch.filter((e) => !emitted.has(e.path) && (emitted.add(e.path), true));

  for (const p of paths) {
    // The directories above it, each checked to be a real directory.
    const comps = p.split('/');
    const parents: SourceEntry[] = [];
    let ok = true;
    for (let i = 1; i < comps.length && ok; i++) {
      const dir = comps.slice(0, i).join('/');
      if (emitted.has(dir)) continue;
      const st = await lstat(dir);
      if (st instanceof FerryError || !st.isDirectory()) {
        report(new FerryError(ErrorCodes.READ, `${p}: not copied: ${dir} is not a directory in the source`, { subject: p }));
        ok = false;
      } else parents.push(entryFromStat(dir, `${base}/${dir}`, st));
    }
    if (!ok) continue;
    const st = await lstat(p);
    if (st instanceof FerryError) {
      report(st);
      continue;
    }
    if (exclude(p, st.isDirectory())) continue;
    const list = fresh(parents);
    if (list.length > 0) yield list;
    if (st.isDirectory() && opts.recursive) {
      for await (const batch of walk({ absPath: `${base}/${p}`, kind: 'dir', prefix: p }, opts)) {
        const b = fresh(batch);
        if (b.length > 0) yield b;
      }
    } else if (st.isDirectory()) {
      const b = fresh([entryFromStat(p, `${base}/${p}`, st)]);
      if (b.length > 0) yield b;
    } else {
      // One entry: the walker's single-file form (symlink targets read, -L followed).
      for await (const batch of walk({ absPath: `${base}/${p}`, kind: 'file', prefix: p }, opts)) {
        const b = fresh(batch);
        if (b.length > 0) yield b;
      }
    }
  }
}

/**
 * SRC as a walk root for sending: rsync's trailing-slash rule, except with
 * --files-from, where SRC is the directory the listed paths are relative to.
 */
export async function resolveSendRoot(src: string, x: { followLinks?: boolean; filesFrom?: unknown } | undefined): Promise<SourceRoot> {
  const root = await resolveSource(src, { followLinks: x?.followLinks === true });
  if (x?.filesFrom === undefined) return root;
  if (root.kind !== 'dir') throw new FerryError(ErrorCodes.USAGE, `${src}: --files-from needs a directory as SRC`, { subject: src });
  return { ...root, prefix: '' };
}
