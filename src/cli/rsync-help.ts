/**
 * The light half of cli/rsync-options.ts: the help text of rsync's spellings and the
 * options that take a value, with no imports, so that `ferry --help` and the command
 * dispatch in main.ts do not load the file-system modules.
 */

/** Options of RSYNC_OPTIONS that take a value: main.ts's operand scan skips their values. */
export const RSYNC_VALUE_OPTIONS = ['--include', '--include-from', '--exclude-from', '--files-from', '--bwlimit', '--link-dest', '--partial-dir'];

/** The rsync options in `--help` (README "rsync options" has the differences). */
export function rsyncHelp(mode: 'copy' | 'send' | 'recv'): string {
  if (mode === 'recv') {
    return `rsync's spellings:
  -a, -r                   accepted (ferry always keeps metadata and recurses)
      --stats              rsync's summary block on stdout
  The sender chooses --include, --*-from, --size-only, --ignore-existing, -u,
  --inplace, --partial-dir, -x, -L, --bwlimit, --remove-source-files.
`;
  }
  const lines = [
    "rsync's spellings (same meaning; README \"rsync options\" lists the differences):",
    '  -a, --archive            accepted: what ferry always does',
    '  -r, --recursive          accepted; with --files-from: descend into listed dirs',
    '  -vv                      also list what is up to date',
    '      --stats              rsync\'s summary block on stdout',
    '      --include PATTERN    keep matching entries; with --exclude, the first',
    '                           matching rule in command-line order wins',
    '      --include-from F, --exclude-from F   rules from a file (- = stdin)',
    '      --files-from F       only these paths, relative to SRC (- = stdin; no ..)',
    '      --size-only          a file of the same size is up to date',
    '      --ignore-existing    never update what DST already has',
    '  -u, --update             keep DST files that are newer',
    '      --remove-source-files  delete each source file once its copy is',
    '                           confirmed (kept if it changed since it was read)',
    '  -x, --one-file-system    do not enter other filesystems (mount points empty)',
    '  -L, --copy-links         copy what symlinks point to (dangling: an error)',
    '      --inplace            rewrite existing files in place: no atomic publish,',
    '                           an interrupted file is left partly written',
    '      --partial-dir DIR    keep temp files in DIR inside each target directory',
  ];
  if (mode === 'copy') lines.push('      --link-dest DIR      hard-link files unchanged in DIR (snapshots; repeatable)');
  else lines.push('      --bwlimit RATE       limit the data rate: KiB/s, or 500K, 10M, 1G');
  return `${lines.join('\n')}\n`;
}
