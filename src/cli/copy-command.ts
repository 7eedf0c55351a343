/**
 * `ferry copy [options] SRC DST` and uring-sync's `ferry [options] SRC DST`.
 *
 * Parses options with node:util parseArgs (strict: an unknown option or a missing
 * operand is FERRY_E_USAGE, exit 2), runs modes/copy, draws progress, prints each
 * failure as one line with its code, then the summary line, and with `--json` a
 * machine-readable summary on stdout.
 *
 * `--json` schema (version 1; one JSON object on one line on stdout; keys are
 * stable, new keys may be added):
 *   {
 *     "schema": 1,                     number
 *     "command": "copy",               string
 *     "src": string, "dst": string,    the operands as given
 *     "dryRun": boolean,
 *     "exitCode": number,              0 | 1
 *     "entries": number,               entries walked (all kinds, directories included)
 *     "dirs": number,                  directories walked
 *     "dirsCreated": number,           directories created in DST
 *     "copied": number,                files, symlinks and hard links written
 *     "skipped": number,               files, symlinks and hard links already up to date
 *     "metadataFixed": number,         entries whose content was right and whose mode or times were set in place
 *     "deleted": number,               entries removed by --delete
 *     "sourcesRemoved": number,        (only with --remove-source-files) source files deleted
 *     "failed": number,
 *     "warnings": number,              e.g. FIFOs/sockets/devices skipped
 *     "bytes": number,                 file bytes copied
 *     "seconds": number,
 *     "bytesPerSecond": number,
 *     "native":   {"records": "native"|"js", "ktls": "native"|"js", "copy": "native"|"js"},
 *     "errors":   [{"code": string, "path": string, "message": string}],
 *     "warningList": [{"code": string, "path": string, "message": string}]
 *   }
 */
import { parseArgs } from 'node:util';
import { ErrorCodes, ExitCodes, FerryError, cleanForDisplay } from '../core/errors.js';
import { newCounters, runCopy, type CopyEvent, type CopyResult } from '../modes/copy.js';
import { printError, printInfo, printJson, printWarning, useColor } from './output.js';
import { ProgressReporter, type ProgressMode } from './progress.js';
import { nativePaths, renderSummaryLine } from './summary.js';
import { VERSION } from './version.js';
import { parseSize } from './sizes.js';
import { RSYNC_OPTIONS, rsyncChoices } from './rsync-options.js';
import { printStats } from './stats.js';

const OPTIONS = {
  jobs: { type: 'string', short: 'j' },
  'queue-depth': { type: 'string', short: 'q' },
  'chunk-size': { type: 'string', short: 'c' },
  ...RSYNC_OPTIONS,
  verbose: { type: 'boolean', short: 'v', multiple: true },
  progress: { type: 'string' },
  json: { type: 'boolean' },
  'dry-run': { type: 'boolean', short: 'n' },
  checksum: { type: 'boolean' },
  delete: { type: 'boolean' },
  exclude: { type: 'string', multiple: true },
  'preserve-special-bits': { type: 'boolean' },
  xattrs: { type: 'boolean', short: 'X' },
  acls: { type: 'boolean', short: 'A' },
  owner: { type: 'boolean', short: 'o' },
  group: { type: 'boolean', short: 'g' },
  'no-owner': { type: 'boolean' },
  'no-group': { type: 'boolean' },
  'numeric-ids': { type: 'boolean' },
  fsync: { type: 'boolean' },
  sync: { type: 'boolean' },
  'no-splice': { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
} as const;

function usage(msg: string): FerryError {
  return new FerryError(ErrorCodes.USAGE, `copy: ${msg} (see 'ferry copy --help')`);
}

export { parseSize } from './sizes.js';

function parseIntOpt(s: string | undefined, name: string, min: number, max: number, dflt: number): number {
  if (s === undefined) return dflt;
  if (!/^\d+$/.test(s)) throw usage(`${name}: not a number: "${s}"`);
  const n = Number(s);
  if (n < min || n > max) throw usage(`${name}: must be between ${min} and ${max}, got ${n}`);
  return n;
}

type Parsed = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true; strict: true; tokens: true }>>;

function parse(argv: string[]): Parsed {
  try {
    return parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true, tokens: true });
  } catch (e) {
    const first = String((e as Error).message).split(/\.\s|\n/)[0] ?? 'bad arguments';
    throw usage(first.replace(/\.$/, ''));
  }
}

interface Issue {
  code: string;
  path: string;
  message: string;
}

function issue(e: FerryError): Issue {
  return { code: e.code, path: cleanForDisplay(e.subject ?? ''), message: cleanForDisplay(e.message) };
}

export function buildJsonSummary(src: string, dst: string, dryRun: boolean, r: CopyResult, exitCode: number, removeSourceFiles = false): Record<string, unknown> {
  const c = r.counters;
  return {
    schema: 1,
    command: 'copy',
    src,
    dst,
    dryRun,
    exitCode,
    entries: c.entries,
    dirs: c.dirs,
    dirsCreated: c.dirsCreated,
    copied: c.copied,
    skipped: c.skipped,
    metadataFixed: c.metaFixed,
    deleted: c.deleted,
    ...(removeSourceFiles ? { sourcesRemoved: c.sourcesRemoved } : {}),
    failed: c.failed,
    warnings: c.warnings,
    bytes: c.bytesCopied,
    seconds: Math.round(r.seconds * 1e6) / 1e6,
    bytesPerSecond: r.seconds > 0 ? Math.round(c.bytesCopied / r.seconds) : 0,
    native: nativePaths(),
    errors: r.errors.map(issue),
    warningList: r.warnings.map(issue),
  };
}

export async function runCopyCommand(argv: string[]): Promise<number> {
  const { values: v, positionals, tokens } = parse(argv);
  if (v.help) {
    process.stdout.write((await import('./help.js')).COPY_HELP);
    return ExitCodes.OK;
  }
  if (v.version) {
    process.stdout.write(`ferry ${VERSION}\n`);
    return ExitCodes.OK;
  }
  if (positionals.length !== 2) {
    throw usage(positionals.length < 2 ? 'missing operand: need SRC and DST' : `too many operands: ${positionals.length} (need SRC and DST)`);
  }
  const [src, dst] = positionals as [string, string];
  const progress = (v.progress ?? 'auto') as ProgressMode;
  if (!['auto', 'always', 'never'].includes(progress)) throw usage(`--progress must be auto, always or never, got "${v.progress}"`);
  const jobs = parseIntOpt(v.jobs, '--jobs', 1, 64, 1);
  let queueDepth = parseIntOpt(v['queue-depth'], '--queue-depth', 1, 4096, 64);
  if (v.sync) queueDepth = 1;
  const chunkSize = v['chunk-size'] === undefined ? 128 * 1024 : parseSize(v['chunk-size'], '--chunk-size');
  const dryRun = v['dry-run'] === true;
  const rs = rsyncChoices('copy', 'copy', v, tokens);
  const verbose = rs.verbosity > 0;
  let regularCopied = 0;

  const counters = newCounters();
  const reporter = new ProgressReporter(counters, { mode: progress });
  const say = (f: () => void): void => {
    reporter.clear();
    f();
  };
  const onEvent = (ev: CopyEvent): void => {
    if (ev.type === 'failed') say(() => printError(ev.error.toLine()));
    else if (ev.type === 'warning') say(() => printWarning(ev.error.toLine()));
    else {
      if (ev.type === 'copied' && ev.kind === 'file') regularCopied++;
      if (verbose && (ev.type === 'copied' || ev.type === 'deleted' || ev.type === 'meta-fixed')) {
        const verb = ev.type === 'meta-fixed' ? (dryRun ? 'would fix metadata of' : 'fixed metadata of') : dryRun ? (ev.type === 'copied' ? 'would copy' : 'would delete') : ev.type;
        say(() => printInfo(`${verb} ${cleanForDisplay(ev.path)}`));
      } else if (verbose && ev.type === 'linked') {
        say(() => printInfo(`${dryRun ? 'would link' : 'linked'} ${cleanForDisplay(ev.path)} (--link-dest)`));
      } else if (verbose && ev.type === 'removed-source') {
        say(() => printInfo(`removed source ${cleanForDisplay(ev.path)}`));
      } else if (rs.verbosity > 1 && ev.type === 'skipped') {
        // rsync -vv's wording.
        say(() => printInfo(`${cleanForDisplay(ev.path)} is uptodate`));
      } else if (rs.verbosity > 1 && ev.type === 'kept') {
        const why = { 'ignore-existing': 'exists (--ignore-existing)', newer: 'is newer in DST (-u)', 'same-size': 'has the same size (--size-only)' }[ev.reason];
        say(() => printInfo(`${cleanForDisplay(ev.path)} ${why}; not copied`));
      }
    }
  };
  if (verbose) {
    printInfo(
      `ferry ${VERSION}: copy ${cleanForDisplay(src)} -> ${cleanForDisplay(dst)}; ` +
        `${jobs * queueDepth} operations in flight (jobs ${jobs} x queue depth ${queueDepth}), chunk ${chunkSize} B, ` +
        `${v['no-splice'] ? 'read/write' : 'copy_file_range/FICLONE'}, ` +
        `io_uring ${process.env['UV_USE_IO_URING'] === '1' ? 'on' : 'off'}, threadpool ${process.env['UV_THREADPOOL_SIZE'] ?? '4'}`,
    );
  }
  reporter.start();
  let result: CopyResult;
  try {
    result = await runCopy(
      {
        src,
        dst,
        jobs,
        queueDepth,
        chunkSize,
        dryRun,
        checksum: v.checksum === true,
        delete: v.delete === true,
        exclude: v.exclude ?? [],
        ...(rs.filters ? { filters: rs.filters } : {}),
        ...(rs.filesFrom ? { filesFrom: rs.filesFrom } : {}),
        recursive: rs.recursive,
        ...(rs.policy ? { policy: rs.policy } : {}),
        ...(rs.linkDest !== undefined ? { linkDest: rs.linkDest } : {}),
        removeSourceFiles: rs.removeSourceFiles,
        inplace: rs.inplace,
        ...(rs.partialDir !== undefined ? { partialDir: rs.partialDir } : {}),
        oneFileSystem: rs.oneFileSystem,
        followLinks: rs.followLinks,
        preserveSpecialBits: v['preserve-special-bits'] === true,
        // Owners: kept by number when root (or asked); --numeric-ids is accepted (local ids are always numeric).
        ...(v['no-owner'] ? { owner: false } : v.owner ? { owner: true } : {}),
        ...(v['no-group'] ? { group: false } : v.group ? { group: true } : {}),
        ...(v.xattrs ? { xattrs: true } : {}),
        ...(v.acls ? { acls: true } : {}),
        readWrite: v['no-splice'] === true,
        fsync: v.fsync === true,
        onEvent,
      },
      counters,
    );
  } finally {
    reporter.stop();
  }
  const exitCode = result.counters.failed > 0 ? ExitCodes.PARTIAL : ExitCodes.OK;
  printInfo(renderSummaryLine(result.counters, result.seconds, { color: useColor(), verb: dryRun ? 'would copy' : 'copied' }));
  if (v.json) printJson(buildJsonSummary(src, dst, dryRun, result, exitCode, rs.removeSourceFiles));
  if (rs.stats) {
    const c = result.counters;
    printStats({
      files: c.entries,
      regular: c.entries - c.dirs - c.symlinks,
      dirs: c.dirs,
      links: c.symlinks,
      deleted: c.deleted,
      transferred: regularCopied,
      totalSize: c.bytesTotal,
      transferredSize: c.bytesCopied,
      sent: c.bytesCopied,
      received: 0,
      seconds: result.seconds,
    });
  }
  return exitCode;
}
