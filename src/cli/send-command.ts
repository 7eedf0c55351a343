/**
 * `ferry send [options] SRC HOST:PORT` (and uring-sync's `ferry send SRC host:port
 * --secret S --tls`): parse, find the secret, run modes/send, render progress,
 * failures and the summary the receiver confirmed. Exit 0 only when the receiver
 * confirmed every file; see cli/net-common.ts for the `--json` schema.
 */
import { ErrorCodes, ExitCodes, FerryError, cleanForDisplay } from '../core/errors.js';
import { send, sendStdinStream } from '../modes/send.js';
import { NO_ENCRYPT_REMOVED } from '../secure/channel.js';
import { SECRET_ON_COMMAND_LINE_WARNING, weakSecretWarning } from '../secure/secret.js';
import {
  DEFAULT_CHUNK,
  DEFAULT_STREAMS,
  NO_SECRET_HINT,
  buildNetJson,
  chooseSecret,
  parseNetArgs,
  progressEvents,
  parseChunk,
  parseHostPort,
  parseKtls,
  parseStreams,
  netStats,
  sendExtras,
  senderFlags,
  usage,
  META_HELP,
  META_OPTIONS,
  SENDER_OPTIONS,
  metaChoices,
} from './net-common.js';
import { rsyncChoices, rsyncHelp } from './rsync-options.js';
import { printStats } from './stats.js';
import { printInfo, printJson, printWarning, useColor } from './output.js';
import { ProgressReporter, newNetProgress } from './progress.js';
import { nativePaths, renderSummaryLine } from './summary.js';

/**
 * Default `-P`: 1, chosen by measurement (docs/PROTOCOL.md, "Parallel streams"). Each
 * side is one Node process with one main thread doing the crypto and hashing, so
 * extra streams add no CPU; on this 2-core machine (both ends on it) the quick network
 * bench gave -P 1 / -P 2 medians of 4.90 / 5.32 s on ml_small, 2.89 / 2.98 s on
 * 2×128 MiB and 1.76 / 1.91 s for the no-op re-send. More streams help only where one
 * TCP connection cannot fill the path (long fat or lossy links): use -P there.
 */
export { DEFAULT_CHUNK, DEFAULT_STREAMS } from './net-common.js';

const OPTIONS = {
  ...SENDER_OPTIONS,
  ...META_OPTIONS,
} as const;

export const SEND_HELP = `ferry send — send a tree to a waiting 'ferry recv'

Usage:
  ferry send [options] SRC HOST:PORT
  ferry send SRC host:port --secret S --tls        (uring-sync's form)

  SRC/ sends the contents of SRC; SRC (no slash) sends the directory itself.
  SRC - sends standard input as one stream to a 'ferry recv -'.

Secret (the receiver prints one if it generated it):
      --secret-file F     read the shared secret from the first line of F
                          (or set FERRY_SECRET in the environment)
      --secret S          the secret on the command line (visible in ps: warned)
Options:
  -P, --parallel N        TCP streams in the session (default ${DEFAULT_STREAMS})
  -c, --chunk-size SIZE   read size for large files (default 1M; 4K..4M)
      --checksum          compare content hashes instead of size+mtime
      --delete            make the receiver delete what SRC does not have
      --exclude PATTERN   skip matching paths (repeatable; see 'ferry copy --help')
  -n, --dry-run           only report what would be sent
      --ktls=auto|on|off  kernel TLS offload for sending (default auto)
      --tls, --uring, --splice   accepted for uring-sync compatibility (encryption
                          is always on; I/O paths are chosen automatically)
      --preserve-special-bits    ask the receiver to keep setuid/setgid/sticky
${META_HELP}  -v, --verbose           say which cipher and kTLS path are used
      --progress[=auto|always|never]   live progress on stderr (default auto)
      --json              machine-readable summary on stdout
  -h, --help              this help
  -V, --version           print the version

${rsyncHelp('send')}
Exit codes: 0 every file delivered and confirmed, 1 some files failed,
2 usage, 3 authentication failed, 4 connection/protocol/integrity failure.
`;

export async function runSendCommand(argv: string[]): Promise<number> {
  const { values: v, positionals, progressMode, tokens } = parseNetArgs('send', argv, OPTIONS);
  if (v.help) {
    process.stdout.write(SEND_HELP);
    return ExitCodes.OK;
  }
  if (v['no-encrypt'] === true) throw usage('send', NO_ENCRYPT_REMOVED);
  if (positionals.length !== 2) throw usage('send', 'expected SRC and HOST:PORT');
  const src = positionals[0]!;
  const { host, port } = parseHostPort(positionals[1]!, 'send');
  const streams = parseStreams(v.parallel, 'send', DEFAULT_STREAMS);
  const chunkSize = parseChunk(v['chunk-size'], 'send', DEFAULT_CHUNK);
  const ktls = parseKtls(v.ktls, 'send');
  const meta = metaChoices('send', v);
  const { secret, source } = await chooseSecret(v, 'send');
  if (secret === undefined) throw usage('send', `no secret: ${NO_SECRET_HINT}`);
  if (source === 'argument') printWarning(SECRET_ON_COMMAND_LINE_WARNING.replace(/^warning: /, ''));
  const weak = weakSecretWarning(secret);
  if (weak) printWarning(weak.replace(/^warning: /, ''));

  const rs = rsyncChoices('send', src === '-' ? 'stream' : 'send', v, tokens);
  if (src === '-') {
    if (v.delete || v.checksum || v.exclude || v['dry-run']) throw usage('send', '--delete, --checksum, --exclude and --dry-run do not apply to a stream');
    const r = await sendStdinStream({ src, host, port, secret, ktls, streams: 1, chunkSize, checksum: false, delete: false, dryRun: false, excludes: [], preserveSpecial: false }, process.stdin);
    printInfo(`sent stdin to ${r.peer}: ${r.bytes} bytes in ${r.seconds.toFixed(2)} s`);
    if (v.json) printJson({ schema: 1, command: 'send', src: '-', peer: r.peer, exitCode: 0, bytes: r.bytes, seconds: Math.round(r.seconds * 1e6) / 1e6 });
    return ExitCodes.OK;
  }

  const counters = newNetProgress(performance.now());

  const reporter = new ProgressReporter(counters, { mode: progressMode });
  const errors: FerryError[] = [];
  let regularSent = 0;
  const events = progressEvents(counters, reporter, (e) => errors.push(e), { verbose: rs.verbosity > 0 });
  reporter.start();
  let r;
  try {
    r = await send({
      src,
      host,
      port,
      secret,
      ktls,
      streams,
      chunkSize,
      ...senderFlags(v),
      ...(meta.owners ? { owners: true } : {}),
      ...(meta.ownerNames ? { ownerNames: true } : {}),
      ...(meta.xattrs ? { xattrs: meta.xattrs } : {}),
      extras: sendExtras(rs),
      events: {
        ...events,
        onFileDone: (e, how, size) => {
          // The shared progress accounting, plus rsync's -vv listing.
          events.onFileDone(e, how, size);
          if (how === 'committed') regularSent++;
          if (rs.verbosity > 1) {
            reporter.clear();
            printInfo(how === 'committed' ? `${v['dry-run'] ? 'would send' : 'sent'} ${cleanForDisplay(e.path)}` : `${cleanForDisplay(e.path)} is uptodate`);
          }
        },
        onQueued: () => {
          reporter.clear();
          printInfo(`ferry: queued behind another transfer at ${host.includes(':') ? `[${host}]` : host}:${port}; waiting for it to finish`);
        },
        onWarning: (e) => {
          reporter.clear();
          printWarning(e.toLine());
        },
      },
    });
  } finally {
    reporter.stop();
  }
  const failed = Math.max(r.failures.length, r.summary.failed);
  const exitCode = failed > 0 ? ExitCodes.PARTIAL : ExitCodes.OK;
  if (v.verbose) {
    printInfo(`ferry: ${r.peer}: cipher ${r.cipher}, tx ${r.tx}, rx ${r.rx} (${r.ktlsReason}); records: ${nativePaths().records}; ${r.streams} stream(s); handshake ${r.handshakeMs.toFixed(1)} ms`);
    if (r.resumedBytes > 0) printInfo(`ferry: resumed ${r.resumedBytes} bytes from verified partial files`);
  }
  const s = r.summary;
  printInfo(
    renderSummaryLine(
      { copied: s.committed, skipped: s.skipped, failed, bytesCopied: s.bytesWritten, deleted: s.deleted, warnings: r.warnings.length },
      r.seconds,
      { color: useColor(), verb: v['dry-run'] ? 'would send' : 'sent' },
    ),
  );
  if (v.json) {
    printJson(
      buildNetJson({
        command: 'send',
        operand: src,
        peer: r.peer,
        exitCode,
        dryRun: v['dry-run'] === true,
        files: r.files,
        summary: s,
        failed,
        bytesTotal: r.bytesTotal,
        bytesSent: r.bytesSent,
        seconds: r.seconds,
        streams: r.streams,
        cipher: r.cipher,
        tx: r.tx,
        rx: r.rx,
        errors: r.failures,
      }),
    );
  }
  if (rs.removeSourceFiles && (v.verbose || r.sourcesRemoved > 0)) printInfo(`removed ${r.sourcesRemoved} source file(s) the receiver confirmed`);
  if (rs.stats) printStats(netStats(r, regularSent, r.bytesSent, r.seconds));
  if (exitCode !== ExitCodes.OK && failed === 0) throw new FerryError(ErrorCodes.INTERNAL, 'inconsistent result');
  return exitCode;
}
