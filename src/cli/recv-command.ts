/**
 * `ferry recv [options] DST --listen [ADDR:]PORT` (and uring-sync's `ferry recv DST
 * --listen PORT --secret S --tls`): listen, say where (`listening on ADDR:PORT` on
 * stderr; with `--json` also a `{"event":"listening",...}` line on stdout; `--listen
 * 0` picks a free port), generate and print a secret when none was given, then serve
 * one session (or, with `--keep-serving`, one after another). The policy for failed
 * authentication is in modes/recv.ts. The summary matches the sender's.
 */
import os from 'node:os';
import { ExitCodes, FerryError } from '../core/errors.js';
import { MAX_SESSION_ENTRIES } from '../core/limits.js';
import { recv, type ListenScope, type RecvSessionOutcome } from '../modes/recv.js';
import { NO_ENCRYPT_REMOVED } from '../secure/channel.js';
import { GENERATED_SECRET_BITS, SECRET_ON_COMMAND_LINE_WARNING, generateSecret, weakSecretWarning } from '../secure/secret.js';
import { SessionFlags } from '../wire/messages.js';
import { META_HELP, META_OPTIONS, NET_OPTIONS, buildNetJson, chooseSecret, metaChoices, netStats, parseKtls, parseListen, parseNetArgs, progressEvents, usage } from './net-common.js';
import { rsyncChoices, rsyncHelp, verbosityOf } from './rsync-options.js';
import { printStats } from './stats.js';
import { printError, printInfo, printJson, printWarning, useColor } from './output.js';
import { ProgressReporter, newNetProgress } from './progress.js';
import { renderSummaryLine } from './summary.js';

const OPTIONS = {
  ...NET_OPTIONS,
  listen: { type: 'string', short: 'l' },
  'keep-serving': { type: 'boolean' },
  'max-auth-failures': { type: 'string' },
  'refuse-delete': { type: 'boolean' },
  'max-entries': { type: 'string' },
  'max-hole-bytes': { type: 'string' },
  ...META_OPTIONS,
} as const;

export const RECV_HELP = `ferry recv — receive a tree sent by 'ferry send'

Usage:
  ferry recv [options] DST --listen [ADDR:]PORT
  ferry recv DST --listen PORT --secret S --tls    (uring-sync's form)

  Listens on PORT (0 picks a free one) of every IPv6 and IPv4 address (one
  dual-stack socket; IPv4 only on a machine without IPv6), or of ADDR alone
  ([v6]:PORT for IPv6); says where: "listening on ADDR:PORT (...)". DST - writes the one stream
  a 'ferry send -' sends to standard output. Without a secret, one is
  generated and printed once, with the command to run on the sending side.

Secret:
      --secret-file F     read the shared secret from the first line of F
                          (or set FERRY_SECRET in the environment)
      --secret S          the secret on the command line (visible in ps: warned)
Options:
  -l, --listen [ADDR:]PORT    where to listen (required)
      --keep-serving      serve sessions one after another until interrupted
                          (default: exit after the first session)
      --max-auth-failures N   exit with status 3 after N failed authentication
                          attempts before any session succeeded (default 3;
                          each failure also delays the next attempt from the
                          same address, 1 s doubling to 60 s)
      --ktls=auto|on|off  kernel TLS offload for sending (default auto)
      --tls, --uring, --splice   accepted for uring-sync compatibility
      --preserve-special-bits    honour a sender's request to keep setuid/setgid/sticky
                          (and, with -X, file capabilities)
${META_HELP}      --refuse-delete     refuse a session whose sender asks for --delete
                          (FERRY_E_REFUSED; nothing is written)
      --max-entries N     refuse a manifest of more than N entries (default
                          ${MAX_SESSION_ENTRIES}; FERRY_E_LIMIT)
      --max-hole-bytes N  hash at most N bytes of sparse-file holes per session
                          (default 1T; suffixes K M G T; FERRY_E_LIMIT)
  -v, --verbose
      --progress[=auto|always|never]   live progress on stderr (default auto)
      --json              machine-readable output on stdout
  -h, --help              this help
  -V, --version           print the version

${rsyncHelp('recv')}
The sender chooses --checksum, --delete, --exclude, --dry-run, -P and -c;
owners (-o/-g) and extended attributes (-X/-A) need both ends to ask.
File and directory modes from the sender are masked with recv's umask.
The summary says how many entries --delete removed ("deleted N").
Exit codes: 0 every file committed, 1 some files failed, 2 usage, 3 authentication
failed (too many attempts), 4 connection/protocol/integrity failure.
`;

const LISTEN_SCOPE_SHOWN: Record<ListenScope, string> = {
  address: '',
  'dual-stack': ' (every IPv6 and IPv4 address)',
  'ipv4-only': ' (every IPv4 address; this machine has no IPv6)',
};

/** "1T", "500G", "1048576" -> bytes (binary multiples). */
function parseByteCount(s: string, name: string): number {
  const m = /^(\d+)([kKmMgGtT])?(?:i?[bB])?$/.exec(s.trim());
  const mult = m?.[2] === undefined ? 1 : 1024 ** ('kmgt'.indexOf(m[2].toLowerCase()) + 1);
  const n = m ? Number(m[1]) * mult : NaN;
  if (!Number.isSafeInteger(n) || n < 0) throw usage('recv', `${name}: not a byte count: "${s}" (examples: 1048576, 500G, 2T)`);
  return n;
}

function displayHost(listenHost: string): string {
  if (listenHost !== '0.0.0.0' && listenHost !== '::') return listenHost.includes(':') ? `[${listenHost}]` : listenHost;
  for (const addrs of Object.values(os.networkInterfaces())) {
    for (const a of addrs ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return os.hostname();
}

export async function runRecvCommand(argv: string[]): Promise<number> {
  const { values: v, positionals, progressMode, tokens } = parseNetArgs('recv', argv, OPTIONS);
  if (v.help) {
    process.stdout.write(RECV_HELP);
    return ExitCodes.OK;
  }
  if (v['no-encrypt'] === true) throw usage('recv', NO_ENCRYPT_REMOVED);
  if (positionals.length !== 1) throw usage('recv', 'expected one DST operand');
  if (v.listen === undefined) throw usage('recv', '--listen [ADDR:]PORT is required');
  const dst = positionals[0]!;
  const rs = rsyncChoices('recv', dst === '-' ? 'stream' : 'recv', v, tokens);
  const listen = parseListen(v.listen, 'recv');
  const ktls = parseKtls(v.ktls, 'recv');
  let maxAuthFailures = 3;
  if (v['max-auth-failures'] !== undefined) {
    if (!/^\d+$/.test(v['max-auth-failures']) || Number(v['max-auth-failures']) < 1) throw usage('recv', '--max-auth-failures must be a number ≥ 1');
    maxAuthFailures = Number(v['max-auth-failures']);
  }
  let maxEntries: number | undefined;
  if (v['max-entries'] !== undefined) {
    if (!/^\d+$/.test(v['max-entries']) || Number(v['max-entries']) < 1 || !Number.isSafeInteger(Number(v['max-entries']))) {
      throw usage('recv', '--max-entries must be a number ≥ 1');
    }
    maxEntries = Number(v['max-entries']);
  }
  const maxHoleBytes = v['max-hole-bytes'] === undefined ? undefined : parseByteCount(v['max-hole-bytes'], '--max-hole-bytes');
  const choice = await chooseSecret(v, 'recv');
  let secret = choice.secret;
  let generated = false;
  if (secret === undefined) {
    secret = generateSecret();
    generated = true;
  }
  if (choice.source === 'argument') printWarning(SECRET_ON_COMMAND_LINE_WARNING.replace(/^warning: /, ''));
  const weak = weakSecretWarning(secret);
  if (weak) printWarning(weak.replace(/^warning: /, ''));

  const toStdout = dst === '-';
  if (toStdout && (v.json || v['keep-serving'])) throw usage('recv', '--json and --keep-serving cannot share stdout with the stream (DST -)');

  let reporter: ProgressReporter | null = null;
  let exitCode: number = ExitCodes.OK;
  let fatal: FerryError | undefined;
  const out = await recv({
    dst,
    ...listen,
    secret,
    ktls,
    keepServing: v['keep-serving'] === true,
    ...(toStdout ? { streamOutput: process.stdout } : {}),
    maxAuthFailures,
    ...(process.env['FERRY_TEST_AUTH_BACKOFF_MS'] ? { authBackoffMs: Number(process.env['FERRY_TEST_AUTH_BACKOFF_MS']) } : {}),
    preserveSpecial: v['preserve-special-bits'] === true,
    ...metaChoices('recv', v),
    refuseDelete: v['refuse-delete'] === true,
    ...(maxEntries !== undefined ? { maxEntries } : {}),
    ...(maxHoleBytes !== undefined ? { maxHoleBytes } : {}),
    onListening: (h, p, scope) => {
      const shown = h.includes(':') ? `[${h}]:${p}` : `${h}:${p}`;
      printInfo(`listening on ${shown}${LISTEN_SCOPE_SHOWN[scope]}`);
      if (v.json) printJson({ event: 'listening', host: h, port: p, scope });
      if (generated) {
        const target = `${displayHost(h)}:${p}`;
        printInfo(`secret (generated, ${GENERATED_SECRET_BITS} bits; shown once): ${secret}`);
        printInfo(`on the sending machine run:\n  FERRY_SECRET=${secret} ferry send SRC ${target}`);
        printInfo(`(or put the secret in a file and use --secret-file FILE)`);
      }
    },
    onWarning: (msg) => {
      reporter?.clear();
      printWarning(msg);
    },
    onSessionStart: (peer, flags, streams) => {
      if (v.verbose) printInfo(`ferry: session from ${peer}, ${streams} stream(s)${flags & SessionFlags.DRY_RUN ? ', dry run' : ''}`);
      const counters = newNetProgress(performance.now());
      reporter = new ProgressReporter(counters, { mode: progressMode });
      reporter.start();
      return progressEvents(counters, reporter, undefined, { verbose: verbosityOf(v.verbose) > 0 });
    },
    onSessionEnd: (s: RecvSessionOutcome) => {
      reporter?.stop();
      reporter = null;
      if (s.error) {
        printError(`session from ${s.peer} failed: ${s.error.toLine()}`);
        fatal = s.error;
        return;
      }
      if (s.stream) {
        printInfo(`received a stream from ${s.peer}: ${s.stream.bytes} bytes in ${s.seconds.toFixed(2)} s`);
        return;
      }
      const r = s.result!;
      const sm = r.summary;
      const code = sm.failed > 0 ? ExitCodes.PARTIAL : ExitCodes.OK;
      if (code > exitCode) exitCode = code;
      const dry = (r.flags & SessionFlags.DRY_RUN) !== 0;
      printInfo(
        renderSummaryLine(
          { copied: sm.committed, skipped: sm.skipped, failed: sm.failed, bytesCopied: sm.bytesWritten, deleted: sm.deleted },
          s.seconds,
          { color: useColor(), verb: dry ? 'would receive' : 'received' },
        ),
      );
      if (rs.stats) printStats(netStats({ ...r, seconds: s.seconds }, sm.committed, 0, s.seconds, sm.bytesWritten));
      if (v.json) {
        printJson(
          buildNetJson({
            command: 'recv',
            operand: dst,
            peer: s.peer,
            exitCode: code,
            dryRun: dry,
            files: r.files,
            summary: sm,
            failed: sm.failed,
            bytesTotal: r.bytesTotal,
            seconds: s.seconds,
            streams: r.streams,
            cipher: s.cipher,
            tx: s.tx,
            rx: s.rx,
            errors: r.failures,
          }),
        );
      }
    },
  });
  if (out.authError) throw out.authError;
  if (fatal && !v['keep-serving']) {
    // Already printed; exit with its code without printing it twice.
    const { exitCodeFor } = await import('../core/errors.js');
    return exitCodeFor(fatal.code);
  }
  return exitCode;
}
