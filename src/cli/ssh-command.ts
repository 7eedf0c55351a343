/**
 * `ferry [options] SRC... [user@]host:DST` and `ferry [options] [user@]host:SRC... DST`
 * (also after `ferry copy`): the scp-like mode (modes/ssh.ts); its hidden remote half,
 * `ferry --server`, is cli/server-command.ts.
 *
 * What the user sees is the network mode's: progress, one line per failure, the
 * summary line, `--json` (cli/net-common.ts schema, plus "via" and "host"). Every line
 * that comes from the remote — ssh's own complaints, the remote ferry's errors — is
 * cleaned of control characters and printed as `ferry: HOST: line`.
 */
import { ErrorCodes, ExitCodes, FerryError, cleanForDisplay, exitCodeFor } from '../core/errors.js';
import { DEFAULT_CONNECT_TIMEOUT_MS, splitCommand, sshTransfer, type SshOutcome } from '../modes/ssh.js';
import { DEFAULT_CHUNK, DEFAULT_STREAMS, META_HELP, META_OPTIONS, SENDER_OPTIONS, buildNetJson, checkNamesNeedOwners, netStats, parseChunk, parseKtls, parseNetArgs, parseStreams, progressEvents, sendExtras, senderFlags, usage } from './net-common.js';
import { rsyncChoices, rsyncHelp, verbosityOf } from './rsync-options.js';
import { printStats } from './stats.js';
import { resolveSendRoot } from '../fs/files-from.js';
import { parseOperand, sshDestination, type Operand } from './operands.js';
import { printError, printInfo, printJson, printWarning, useColor } from './output.js';
import { ProgressReporter, newNetProgress } from './progress.js';
import { renderSummaryLine } from './summary.js';
import { VERSION } from './version.js';

const OPTIONS = {
  ...SENDER_OPTIONS,
  rsh: { type: 'string', short: 'e' },
  'remote-ferry': { type: 'string' },
  'via-ssh': { type: 'boolean' },
  'connect-timeout': { type: 'string' },
  ...META_OPTIONS,
} as const;

export const SSH_HELP = `ferry — copy to or from another machine over ssh (like scp -r / rsync -a)

Usage:
  ferry [options] SRC... [user@]host:DST       push
  ferry [options] [user@]host:SRC... DST       pull
  ferry copy [options] ...                     the same

  ssh starts 'ferry --server' on the other machine and hands it a fresh key over
  its stdin; the data then flows over a direct TCP connection with ferry's own
  encrypted channel. When that connection cannot be made (a firewall that lets only
  ssh through), the same channel is carried over the ssh connection instead.

  SRC/ (or SRC/.) sends the contents of SRC; SRC sends the directory itself.
  DST is a directory (created if missing); one file goes to DST/<name> when DST
  is a directory or ends in /, else to DST. host: alone is the remote home.
  - as SRC (push) or DST (pull) streams stdin to a remote file / a file to stdout.
  A colon before the first slash makes an operand remote (rsync's rule): write
  ./name:with:colons for a local one. IPv6: user@[2001:db8::1]:path.

Options:
  -e, --rsh CMD           the ssh command (default "ssh"), e.g. -e 'ssh -p 2222'
      --remote-ferry PATH ferry on the remote machine (default "ferry")
      --via-ssh           carry the data over the ssh connection from the start
                          (ssh's aes128-gcm first, unless you chose ciphers;
                          FERRY_SSH_CIPHER=keep leaves ssh's order)
      --connect-timeout MS  how long to try the direct connection (default ${DEFAULT_CONNECT_TIMEOUT_MS})
  -P, --parallel N        TCP streams (default ${DEFAULT_STREAMS}; 1 over ssh)
  -c, --chunk-size SIZE   read size for large files (default 1M)
      --checksum          compare content hashes instead of size+mtime
      --delete            delete what SRC does not have from DST
      --exclude PATTERN   skip matching paths (repeatable; see 'ferry copy --help')
  -n, --dry-run           only report what would be transferred
      --ktls=auto|on|off  kernel TLS offload for the sending side (default auto)
      --preserve-special-bits    keep setuid/setgid/sticky
${META_HELP}  -v, --verbose           say which path, cipher and kTLS path are used
      --progress[=auto|always|never]   live progress on stderr (default auto)
      --json              machine-readable summary on stdout
  -h, --help              this help
  -V, --version           print the version

${rsyncHelp('send')}  (--files-from: push only)
Exit codes: 0 everything delivered and confirmed, 1 some files failed, 2 usage,
4 ssh, connection, protocol or integrity failure.
`;

export async function runSshCommand(argv: string[]): Promise<number> {
  const { values: v, positionals, progressMode, tokens } = parseNetArgs('copy', argv, OPTIONS);
  if (v.help) {
    process.stdout.write(SSH_HELP);
    return ExitCodes.OK;
  }
  checkNamesNeedOwners('copy', v);
  if (positionals.length < 2) throw usage('copy', 'expected SRC... and DST');
  const ops = positionals.map(parseOperand);
  const dstOp = ops.at(-1)!;
  const srcOps = ops.slice(0, -1);
  let direction: 'push' | 'pull';
  let remote: Extract<Operand, { kind: 'remote' }>;
  if (dstOp.kind === 'remote') {
    direction = 'push';
    remote = dstOp;
    if (srcOps.some((s) => s.kind === 'remote')) throw usage('copy', 'copying between two remote machines is not supported');
    if (srcOps.some((s) => s.kind === 'stdio') && srcOps.length !== 1) throw usage('copy', '- (stdin) must be the only source');
  } else {
    if (!srcOps.every((s) => s.kind === 'remote')) throw usage('copy', 'mixing local and remote sources is not supported');
    if (dstOp.kind === 'stdio' && srcOps.length !== 1) throw usage('copy', 'only one remote file can be written to stdout');
    direction = 'pull';
    remote = srcOps[0] as Extract<Operand, { kind: 'remote' }>;
    for (const s of srcOps as Extract<Operand, { kind: 'remote' }>[]) {
      if (s.host !== remote.host || s.user !== remote.user) throw usage('copy', 'all remote sources must be on the same host');
    }
  }
  if (v.secret !== undefined || v['secret-file'] !== undefined) throw usage('copy', '--secret is not used over ssh: a fresh key is made for each run');
  if (v['no-encrypt']) throw usage('copy', '--no-encrypt is not available over ssh');
  const streams = parseStreams(v.parallel, 'copy', DEFAULT_STREAMS);
  const chunkSize = parseChunk(v['chunk-size'], 'copy', DEFAULT_CHUNK);
  const ktls = parseKtls(v.ktls, 'copy');
  const rsh = splitCommand(v.rsh ?? process.env['FERRY_RSH'] ?? 'ssh');
  let connectTimeoutMs = DEFAULT_CONNECT_TIMEOUT_MS;
  if (v['connect-timeout'] !== undefined) {
    if (!/^\d+$/.test(v['connect-timeout'])) throw usage('copy', '--connect-timeout takes milliseconds');
    connectTimeoutMs = Number(v['connect-timeout']);
  }
  const host = remote.host;
  const hostShown = cleanForDisplay(host.includes(':') ? `[${host}]` : host);
  const streamIn = srcOps[0]?.kind === 'stdio';
  const streamOut = dstOp.kind === 'stdio';
  if (streamOut && v.json) throw usage('copy', '--json cannot share stdout with the stream');
  if ((streamIn || streamOut) && (v.delete || v.checksum || v.exclude)) throw usage('copy', '--delete, --checksum and --exclude do not apply to a stream');
  const rs = rsyncChoices('copy', streamIn || streamOut ? 'stream' : direction === 'push' ? 'ssh-push' : 'ssh-pull', v, tokens);
  const extras = sendExtras(rs);
  const roots = direction === 'push' && !streamIn ? await Promise.all(srcOps.map((s) => resolveSendRoot((s as { path: string }).path, extras))) : undefined;

  const counters = newNetProgress(performance.now());
  const reporter = new ProgressReporter(counters, { mode: progressMode });
  const errors: FerryError[] = [];
  const events = progressEvents(counters, reporter, (e) => errors.push(e), { verbose: verbosityOf(v.verbose) > 0 });
  const t0 = performance.now();
  reporter.start();
  let out: SshOutcome;
  try {
    out = await sshTransfer({
      rsh,
      destination: sshDestination(remote),
      host,
      remoteFerry: v['remote-ferry'] ?? 'ferry',
      direction,
      remotePaths: direction === 'push' ? [remote.path] : (srcOps as Extract<Operand, { kind: 'remote' }>[]).map((s) => s.path),
      ...(roots ? { roots } : {}),
      ...(direction === 'pull' ? { dst: (dstOp as { path: string }).path } : {}),
      options: {
        streams,
        chunkSize,
        ...senderFlags(v),
        ktls,
        ...(v.owner ? { owner: true } : {}),
        ...(v.group ? { group: true } : {}),
        ...((v.owner || v.group) && v.names && !v['numeric-ids'] ? { names: true } : {}),
        ...(v.xattrs ? { xattrs: true } : {}),
        ...(v.acls ? { acls: true } : {}),
        ...(Object.keys(extras).length > 0 ? { extras } : {}),
      },
      viaSsh: v['via-ssh'] === true,
      ...(streamIn ? { streamInput: process.stdin } : {}),
      ...(streamOut ? { streamOutput: process.stdout } : {}),
      connectTimeoutMs,
      directOverride: process.env['FERRY_TEST_SSH_DIRECT'],
      senderEvents: {
        ...events,
        onWarning: (e) => {
          reporter.clear();
          printWarning(e.toLine());
        },
      },
      onSessionStart: () => events,
      onRemoteLine: (line) => {
        reporter.clear();
        process.stderr.write(`ferry: ${hostShown}: ${cleanForDisplay(line.replace(/^ferry: /, ''))}\n`);
      },
      onNotice: (msg) => {
        reporter.clear();
        printInfo(`ferry: ${hostShown}: ${cleanForDisplay(msg)}`);
      },
    });
  } finally {
    reporter.stop();
  }
  const seconds = (performance.now() - t0) / 1000;
  const dryRun = v['dry-run'] === true;
  let exitCode: number = ExitCodes.OK;
  let json: Record<string, unknown>;
  if (out.stream) {
    const verb = streamIn ? `wrote stdin to ${hostShown}:${cleanForDisplay(remote.path)}` : `wrote ${hostShown}:${cleanForDisplay(remote.path)} to stdout`;
    if (v.verbose || streamIn) printInfo(`${verb}: ${out.stream.bytes} bytes in ${seconds.toFixed(2)} s (via ${out.via})`);
    json = { schema: 1, command: 'stream', host: cleanForDisplay(host), exitCode, bytes: out.stream.bytes, seconds: Math.round(seconds * 1e6) / 1e6 };
  } else if (out.send) {
    const r = out.send;
    const failed = Math.max(r.failures.length, r.summary.failed);
    if (failed > 0) exitCode = ExitCodes.PARTIAL;
    if (v.verbose) printInfo(`ferry: ${cleanForDisplay(r.peer)}, ferry ${cleanForDisplay(out.remoteVersion)}, via ${out.via}: cipher ${r.cipher}, tx ${r.tx}, rx ${r.rx}; ${r.streams} stream(s)`);
    const s = r.summary;
    printInfo(
      renderSummaryLine(
        { copied: s.committed, skipped: s.skipped, failed, bytesCopied: s.bytesWritten, deleted: s.deleted, warnings: r.warnings.length },
        seconds,
        { color: useColor(), verb: dryRun ? 'would send' : 'sent' },
      ),
    );
    if (rs.stats) printStats(netStats({ ...r, seconds }, s.committed, r.bytesSent, seconds));
    json = buildNetJson({
      command: 'send', operand: positionals.slice(0, -1).join(' '), peer: host, exitCode, dryRun, files: r.files, summary: s, failed,
      bytesTotal: r.bytesTotal, bytesSent: r.bytesSent, seconds, streams: r.streams, cipher: r.cipher, tx: r.tx, rx: r.rx, errors: r.failures,
    });
  } else {
    const s = out.recv!;
    if (s.error) {
      printError(s.error.toLine());
      return exitCodeFor(s.error.code);
    }
    const r = s.result!;
    const sm = r.summary;
    if (sm.failed > 0) exitCode = ExitCodes.PARTIAL;
    if (v.verbose) printInfo(`ferry: ${cleanForDisplay(s.peer)}, ferry ${cleanForDisplay(out.remoteVersion)}, via ${out.via}: cipher ${s.cipher}, tx ${s.tx}, rx ${s.rx}; ${r.streams} stream(s)`);
    printInfo(
      renderSummaryLine(
        { copied: sm.committed, skipped: sm.skipped, failed: sm.failed, bytesCopied: sm.bytesWritten, deleted: sm.deleted },
        seconds,
        { color: useColor(), verb: dryRun ? 'would receive' : 'received' },
      ),
    );
    if (rs.stats) printStats(netStats({ ...r, seconds }, sm.committed, 0, seconds, sm.bytesWritten));
    json = buildNetJson({
      command: 'recv', operand: (dstOp as { path: string }).path, peer: host, exitCode, dryRun, files: r.files, summary: sm, failed: sm.failed,
      bytesTotal: r.bytesTotal, seconds, streams: r.streams, cipher: s.cipher, tx: s.tx, rx: s.rx, errors: r.failures,
    });
  }
  if (out.remoteExit !== 0 && exitCode === ExitCodes.OK) {
    // The remote's own failures (a pulled source it could not read) were printed above
    // with the host's name; they count as ours.
    if (out.remoteExit === ExitCodes.PARTIAL) exitCode = ExitCodes.PARTIAL;
    else printWarning(`${hostShown}: the remote ferry exited with status ${out.remoteExit ?? 'unknown'} after the transfer`);
    json['exitCode'] = exitCode;
  }
  if (v.json) printJson({ ...json, via: out.via, host: cleanForDisplay(host) });
  return exitCode;
}
