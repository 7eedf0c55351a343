/**
 * rsync's spellings for what ferry does anyway or can do the same way: one option
 * table shared by `ferry copy`, `ferry send`, `ferry recv` and the ssh mode, and one
 * function that turns what was typed into the choices the modes take, refusing (a
 * one-line FERRY_E_USAGE saying why, exit 2) an option that cannot mean anything in
 * the mode at hand instead of ignoring it. README "rsync options" is the table of
 * what is supported, with the same meaning, and where it differs.
 *
 * Filters keep their command-line order: `--include`, `--exclude` and the patterns
 * read by `--include-from` / `--exclude-from` form one list in which the first match
 * wins (rsync's rule), so the order is read from parseArgs' tokens.
 */
import { readFileSync } from 'node:fs';
import { ErrorCodes, FerryError } from '../core/errors.js';
import { parsePatternList, type FilterRule } from '../fs/exclude.js';
import { parseFilesFrom } from '../fs/files-from.js';
import { parseRate } from '../transfer/token-bucket.js';
import type { UpdatePolicy } from '../transfer/update-policy.js';

export const RSYNC_OPTIONS = {
  archive: { type: 'boolean', short: 'a' },
  recursive: { type: 'boolean', short: 'r' },
  stats: { type: 'boolean' },
  include: { type: 'string', multiple: true },
  'include-from': { type: 'string', multiple: true },
  'exclude-from': { type: 'string', multiple: true },
  'files-from': { type: 'string' },
  'size-only': { type: 'boolean' },
  'ignore-existing': { type: 'boolean' },
  update: { type: 'boolean', short: 'u' },
  'remove-source-files': { type: 'boolean' },
  'one-file-system': { type: 'boolean', short: 'x' },
  'copy-links': { type: 'boolean', short: 'L' },
  bwlimit: { type: 'string' },
  'link-dest': { type: 'string', multiple: true },
  inplace: { type: 'boolean' },
  'partial-dir': { type: 'string' },
} as const;

export { RSYNC_VALUE_OPTIONS, rsyncHelp } from './rsync-help.js';

/** Where the options are used. */
export type RsyncMode = 'copy' | 'send' | 'recv' | 'ssh-push' | 'ssh-pull' | 'stream';

export interface RsyncValues {
  archive?: boolean | undefined;
  recursive?: boolean | undefined;
  stats?: boolean | undefined;
  include?: string[] | undefined;
  'include-from'?: string[] | undefined;
  'exclude-from'?: string[] | undefined;
  exclude?: string[] | undefined;
  'files-from'?: string | undefined;
  'size-only'?: boolean | undefined;
  'ignore-existing'?: boolean | undefined;
  update?: boolean | undefined;
  'remove-source-files'?: boolean | undefined;
  'one-file-system'?: boolean | undefined;
  'copy-links'?: boolean | undefined;
  bwlimit?: string | undefined;
  'link-dest'?: string[] | undefined;
  inplace?: boolean | undefined;
  'partial-dir'?: string | undefined;
  checksum?: boolean | undefined;
  json?: boolean | undefined;
  verbose?: boolean | boolean[] | undefined;
}

/** A parseArgs token (only the fields used here). */
export interface OptionToken {
  kind: string;
  name?: string;
  value?: string | undefined;
}

export interface RsyncChoices {
  /** Set when any --include / --*-from was given: the ordered rules (else plain `exclude`). */
  filters: FilterRule[] | undefined;
  filesFrom: string[] | undefined;
  recursive: boolean;
  policy: UpdatePolicy | undefined;
  removeSourceFiles: boolean;
  oneFileSystem: boolean;
  followLinks: boolean;
  /** Bytes per second; 0: none. */
  bwlimit: number;
  /** --link-dest directories, in order. */
  linkDest: string[] | undefined;
  inplace: boolean;
  partialDir: string | undefined;
  stats: boolean;
  /** -v count (-vv = 2). */
  verbosity: number;
}

function usage(cmd: string, msg: string): FerryError {
  return new FerryError(ErrorCodes.USAGE, `${cmd}: ${msg} (see 'ferry ${cmd} --help')`);
}

/** Read a list file ('-' = standard input) for `opt`; unreadable is a usage error naming it. */
function readList(path: string, opt: string, cmd: string, read: (p: string) => string): string {
  try {
    return read(path);
  } catch (e) {
    throw usage(cmd, `${opt} ${path}: cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

const readFile = (p: string): string => readFileSync(p === '-' ? 0 : p, 'utf8');

/** -v given n times (parseArgs returns an array with `multiple: true`). */
export function verbosityOf(v: boolean | boolean[] | undefined): number {
  return Array.isArray(v) ? v.length : v === true ? 1 : 0;
}

/**
 * Turn the parsed values and tokens into choices for `mode`, refusing what the mode
 * cannot do. `cmd` names the command in messages.
 */
export function rsyncChoices(cmd: string, mode: RsyncMode, v: RsyncValues, tokens: readonly OptionToken[], read: (p: string) => string = readFile): RsyncChoices {
  const refuse = (opt: string, why: string): never => {
    throw usage(cmd, `${opt} ${why}`);
  };
  // What only the sender decides: the receiver learns it from the session.
  if (mode === 'recv') {
    for (const name of ['include', 'include-from', 'exclude-from', 'files-from', 'size-only', 'ignore-existing', 'update', 'remove-source-files', 'one-file-system', 'copy-links', 'bwlimit', 'link-dest', 'inplace', 'partial-dir'] as const) {
      if (v[name] !== undefined) refuse(`--${name}`, "is chosen by the sending side: give it to 'ferry send'");
    }
  }
  if (mode === 'stream') {
    for (const name of ['include', 'include-from', 'exclude-from', 'files-from', 'size-only', 'ignore-existing', 'update', 'remove-source-files', 'one-file-system', 'copy-links', 'link-dest', 'inplace', 'partial-dir'] as const) {
      if (v[name] !== undefined) refuse(`--${name}`, 'does not apply to a stream (- as SRC or DST)');
    }
  }
  if (v['link-dest'] !== undefined && mode !== 'copy') refuse('--link-dest', 'is for local copies: the directory it names must be on the machine that writes DST (use ferry copy)');
  if (v['files-from'] !== undefined && mode === 'ssh-pull') refuse('--files-from', 'is not available when pulling over ssh: the list would have to be read on the other machine');
  if (v.bwlimit !== undefined && mode === 'copy') refuse('--bwlimit', 'applies to network transfers: a local copy is moved by the kernel (copy_file_range), not paced');
  if (v['remove-source-files'] && v['copy-links']) refuse('--remove-source-files', 'with -L/--copy-links would delete the files the links point to, not the links: refused');
  if (v['size-only'] && v.checksum) refuse('--size-only', 'and --checksum contradict each other: pick one');
  if (v.inplace && v['partial-dir'] !== undefined) refuse('--inplace', 'and --partial-dir contradict each other: in place there is no temp file to keep');
  const pd = v['partial-dir'];
  if (pd !== undefined && (pd === '' || pd === '.' || pd === '..' || pd.includes('/') || pd.includes('\0') || pd.startsWith('.ferry-'))) {
    refuse('--partial-dir', `takes one plain directory name, created inside each target directory (got "${pd}")`);
  }
  if (v.stats && v.json) refuse('--stats', 'and --json both write to standard output: pick one');

  // Filters in command-line order.
  let filters: FilterRule[] | undefined;
  const ordered = pd !== undefined || tokens.some((t) => t.kind === 'option' && (t.name === 'include' || t.name === 'include-from' || t.name === 'exclude-from'));
  if (ordered) {
    filters = [];
    for (const t of tokens) {
      if (t.kind !== 'option' || t.value === undefined) continue;
      if (t.name === 'include' || t.name === 'exclude') filters.push({ include: t.name === 'include', pattern: t.value });
      else if (t.name === 'include-from' || t.name === 'exclude-from') {
        const include = t.name === 'include-from';
        for (const pattern of parsePatternList(readList(t.value, `--${t.name}`, cmd, read))) filters.push({ include, pattern });
      }
    }
    // rsync: the partial directory is neither sent nor deleted.
    if (pd !== undefined) filters.push({ include: false, pattern: `${pd.replace(/[*?[\\]/g, '\\$&')}/` });
  }

  let filesFrom: string[] | undefined;
  if (v['files-from'] !== undefined) {
    const f = v['files-from'];
    try {
      filesFrom = parseFilesFrom(readList(f, '--files-from', cmd, read), f === '-' ? 'stdin' : f);
    } catch (e) {
      if (e instanceof FerryError && e.code === ErrorCodes.USAGE) throw usage(cmd, e.message);
      throw e;
    }
  }

  let bwlimit = 0;
  if (v.bwlimit !== undefined) {
    const r = parseRate(v.bwlimit);
    if (r === null) refuse('--bwlimit', `takes a rate in KiB/s or with a suffix (500K, 10M, 1G), got "${v.bwlimit}"`);
    bwlimit = r!;
  }

  const policy: UpdatePolicy | undefined =
    v['size-only'] || v['ignore-existing'] || v.update
      ? { sizeOnly: v['size-only'] === true, ignoreExisting: v['ignore-existing'] === true, update: v.update === true }
      : undefined;

  return {
    filters,
    filesFrom,
    recursive: v.recursive === true,
    policy,
    removeSourceFiles: v['remove-source-files'] === true,
    oneFileSystem: v['one-file-system'] === true,
    followLinks: v['copy-links'] === true,
    bwlimit,
    linkDest: v['link-dest'],
    inplace: v.inplace === true,
    partialDir: v['partial-dir'],
    stats: v.stats === true,
    verbosity: verbosityOf(v.verbose),
  };
}

