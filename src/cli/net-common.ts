/**
 * What `ferry send` and `ferry recv` share on the command line: option table,
 * operand parsing (HOST:PORT, [ADDR:]PORT), where the secret comes from, and the
 * `--json` summary, so that both ends print the same thing.
 *
 * `--json` schema (version 1; one object on one line on stdout, keys stable, new keys
 * may be added). `ferry recv --json` first prints one line
 * `{"event":"listening","host":string,"port":number,"scope":"address"|"dual-stack"|"ipv4-only"}`
 * as soon as it listens (scope: the one address given, or every IPv6 and IPv4 address,
 * or every IPv4 address on a machine without IPv6).
 *   {
 *     "schema": 1, "command": "send" | "recv",
 *     "src": string (send) | "dst": string (recv), "peer": string,
 *     "exitCode": number,
 *     "dryRun": boolean,
 *     "files": number,          files in the manifest
 *     "committed": number,      files written and confirmed (dry run: would be)
 *     "skipped": number,        files already up to date
 *     "failed": number,
 *     "deleted": number, "dirs": number, "symlinks": number, "hardlinks": number,
 *     "bytes": number,          file bytes written by the receiver
 *     "bytesTotal": number,     size of all files in the manifest
 *     "bytesSent": number,      (send) file payload bytes put on the wire
 *     "resumedBytes": number,   bytes not re-sent thanks to verified partial files
 *     "seconds": number, "bytesPerSecond": number,
 *     "streams": number, "cipher": string, "tx": string, "rx": string,
 *     "errors": [{"code": string, "path": string, "message": string}]
 *   }
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ErrorCodes, FerryError, cleanForDisplay } from '../core/errors.js';
import { printError, printInfo } from './output.js';
import { applyProgress, type NetProgress, type ProgressMode, type ProgressReporter } from './progress.js';
import { readSecretFile, secretFromEnv, SECRET_ENV_VAR } from '../secure/secret.js';
import { ktlsSupport } from '../secure/ktls.js';
import type { SummaryMsg } from '../wire/messages.js';
import { MAX_CHUNK_SIZE, MAX_STREAMS } from '../wire/messages.js';
import { parseSize } from './sizes.js';
import { nativePaths } from './summary.js';
import { xattrsAvailable, xattrsUnsupported } from '../fs/meta-native.js';
import { xattrPolicy, type XattrPolicy } from '../fs/xattrs.js';
import { RSYNC_OPTIONS, type RsyncChoices } from './rsync-options.js';
import type { StatsInput } from './stats.js';
import type { SendExtras } from '../modes/send.js';

export const NET_OPTIONS = {
  secret: { type: 'string' },
  'secret-file': { type: 'string' },
  tls: { type: 'boolean' },
  'no-encrypt': { type: 'boolean' },
  ktls: { type: 'string' },
  uring: { type: 'boolean' },
  splice: { type: 'boolean' },
  verbose: { type: 'boolean', short: 'v', multiple: true },
  ...RSYNC_OPTIONS,
  progress: { type: 'string' },
  json: { type: 'boolean' },
  'preserve-special-bits': { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** Defaults of the network modes (send, and the ssh mode). */
export const DEFAULT_STREAMS = 1;
export const DEFAULT_CHUNK = 1024 * 1024;

/** Metadata beyond mode and times (issue #14): both ends must ask (see modes/recv.ts peerMetadataPolicy). */
/** The options of every command that sends a tree: `ferry send` and the ssh mode. */
export const SENDER_OPTIONS = {
  ...NET_OPTIONS,
  parallel: { type: 'string', short: 'P' },
  'chunk-size': { type: 'string', short: 'c' },
  'dry-run': { type: 'boolean', short: 'n' },
  checksum: { type: 'boolean' },
  delete: { type: 'boolean' },
  exclude: { type: 'string', multiple: true },
} as const;

/** What a sender session takes from SENDER_OPTIONS as they are: `ferry send` and the ssh mode alike. */
export function senderFlags(v: {
  checksum?: boolean;
  delete?: boolean;
  'dry-run'?: boolean;
  exclude?: string[];
  'preserve-special-bits'?: boolean;
}): { checksum: boolean; delete: boolean; dryRun: boolean; excludes: string[]; preserveSpecial: boolean } {
  return {
    checksum: v.checksum === true,
    delete: v.delete === true,
    dryRun: v['dry-run'] === true,
    excludes: v.exclude ?? [],
    preserveSpecial: v['preserve-special-bits'] === true,
  };
}

export const META_OPTIONS = {
  owner: { type: 'boolean', short: 'o' },
  group: { type: 'boolean', short: 'g' },
  'numeric-ids': { type: 'boolean' },
  names: { type: 'boolean' },
  xattrs: { type: 'boolean', short: 'X' },
  acls: { type: 'boolean', short: 'A' },
} as const;

export const META_HELP = `  -o, --owner             keep owners, by number unless --names (sender: send them;
                          receiver: apply them, as root only)
  -g, --group             keep groups, by number unless --names (receiver: as non-root,
                          only your groups)
      --names             with -o/-g, keep owners and groups by name (rsync's default):
                          the sender sends names, the receiver maps each to its own
                          id, the number where the name is unknown; both ends must ask
      --numeric-ids       keep ids by number (ferry's default; overrides --names)
  -X, --xattrs            keep extended attributes (user.*; as root trusted.* and
                          security.*); needs the native data plane
  -A, --acls              keep POSIX ACLs (system.posix_acl_*); needs the native data plane
`;

/**
 * `--names` maps owners and groups by name, so on its own it would do nothing: refused
 * with the reason rather than silently ignored (rsync's -a implies -o -g; ferry's does not).
 */
export function checkNamesNeedOwners(cmd: string, v: { owner?: boolean; group?: boolean; names?: boolean }): void {
  if (v.names && !v.owner && !v.group) throw usage(cmd, '--names needs -o/--owner or -g/--group (it maps their ids by name)');
}

/** The -o/-g/-X/-A choices of a network command; -X/-A without the native addon is FERRY_E_UNSUPPORTED. */
export function metaChoices(
  cmd: string,
  v: { owner?: boolean; group?: boolean; names?: boolean; 'numeric-ids'?: boolean; xattrs?: boolean; acls?: boolean; 'preserve-special-bits'?: boolean },
): { owners?: { uid: boolean; gid: boolean }; ownerNames?: boolean; xattrs?: XattrPolicy } {
  const out: { owners?: { uid: boolean; gid: boolean }; ownerNames?: boolean; xattrs?: XattrPolicy } = {};
  checkNamesNeedOwners(cmd, v);
  if (v.owner || v.group) out.owners = { uid: v.owner === true, gid: v.group === true };
  if (out.owners && v.names && !v['numeric-ids']) out.ownerNames = true;
  const x = xattrPolicy({ xattrs: v.xattrs === true, acls: v.acls === true, capabilities: v['preserve-special-bits'] === true });
  if (x) {
    if (!xattrsAvailable()) throw xattrsUnsupported();
    out.xattrs = x;
  }
  return out;
}

export function usage(cmd: string, msg: string): FerryError {
  return new FerryError(ErrorCodes.USAGE, `${cmd}: ${msg} (see 'ferry ${cmd} --help')`);
}

/**
 * The start both network commands share: parse strictly (a parseArgs complaint becomes
 * a one-line FERRY_E_USAGE naming the command), and validate `--progress`.
 */
type NetArgs<O extends NonNullable<ParseArgsConfig['options']>> = ReturnType<
  typeof parseArgs<{ args: string[]; options: O; allowPositionals: true; strict: true; tokens: true }>
> & { progressMode: ProgressMode };

export function parseNetArgs<O extends NonNullable<ParseArgsConfig['options']>>(cmd: string, argv: string[], options: O): NetArgs<O> {
  let parsed;
  try {
    parsed = parseArgs({ args: normaliseArgv(argv), options, allowPositionals: true, strict: true, tokens: true });
  } catch (e) {
    throw usage(cmd, String((e as Error).message).split(/\.\s|\n/)[0]!.replace(/\.$/, ''));
  }
  const progressMode = ((parsed.values as { progress?: string }).progress ?? 'auto') as ProgressMode;
  if (!['auto', 'always', 'never'].includes(progressMode)) throw usage(cmd, '--progress must be auto, always or never');
  return { ...parsed, progressMode };
}

/** `--progress` alone means `--progress=always` (parseArgs wants a value). */
export function normaliseArgv(argv: string[]): string[] {
  return argv.map((a) => (a === '--progress' ? '--progress=always' : a));
}

export function parsePort(s: string, cmd: string, allowZero: boolean): number {
  if (!/^\d{1,5}$/.test(s)) throw usage(cmd, `not a port number: "${s}"`);
  const n = Number(s);
  if (n > 65535 || (n === 0 && !allowZero)) throw usage(cmd, `port out of range: ${n}`);
  return n;
}

/** "HOST:PORT", "[v6]:PORT" → host and port. */
export function parseHostPort(s: string, cmd: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(s) ?? /^([^:]+):(\d+)$/.exec(s);
  if (!m) throw usage(cmd, `expected HOST:PORT, got "${s}"`);
  return { host: m[1]!, port: parsePort(m[2]!, cmd, false) };
}

/**
 * "PORT", "ADDR:PORT", "[v6]:PORT" → listen address and port. A bare PORT leaves the
 * address unset: every IPv6 and IPv4 address (modes/recv.ts listenOn).
 */
export function parseListen(s: string, cmd: string): { host?: string; port: number } {
  if (/^\d+$/.test(s)) return { port: parsePort(s, cmd, true) };
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(s) ?? /^([^:]+):(\d+)$/.exec(s);
  if (!m) throw usage(cmd, `--listen: expected [ADDR:]PORT, got "${s}"`);
  return { host: m[1]!, port: parsePort(m[2]!, cmd, true) };
}

export function parseKtls(s: string | undefined, cmd: string): 'auto' | 'on' | 'off' {
  const v = s ?? 'auto';
  if (v !== 'auto' && v !== 'on' && v !== 'off') throw usage(cmd, `--ktls must be auto, on or off, got "${v}"`);
  if (v === 'on') {
    // Fail at start, not at the first connection: a recv that can never serve must not wait.
    const support = ktlsSupport();
    if (!support.available) throw new FerryError(ErrorCodes.KTLS, `${cmd}: --ktls=on but kTLS is not available: ${support.reason}`);
  }
  return v;
}

export function parseStreams(s: string | undefined, cmd: string, dflt: number): number {
  if (s === undefined) return dflt;
  if (!/^\d+$/.test(s)) throw usage(cmd, `--parallel: not a number: "${s}"`);
  const n = Number(s);
  if (n < 1 || n > MAX_STREAMS) throw usage(cmd, `--parallel must be between 1 and ${MAX_STREAMS}, got ${n}`);
  return n;
}

export function parseChunk(s: string | undefined, cmd: string, dflt: number): number {
  if (s === undefined) return dflt;
  const n = parseSize(s, '--chunk-size', cmd);
  if (n > MAX_CHUNK_SIZE) throw usage(cmd, `--chunk-size must be at most ${MAX_CHUNK_SIZE} bytes`);
  return n;
}

export interface SecretChoice {
  secret: string | undefined;
  source: 'file' | 'env' | 'argument' | 'none';
}

/** --secret-file, then --secret (warned about by the caller), then FERRY_SECRET. */
export async function chooseSecret(v: { secret?: string | undefined; 'secret-file'?: string | undefined }, cmd: string): Promise<SecretChoice> {
  if (v.secret !== undefined && v['secret-file'] !== undefined) throw usage(cmd, 'give either --secret or --secret-file, not both');
  if (v['secret-file'] !== undefined) return { secret: await readSecretFile(v['secret-file']), source: 'file' };
  if (v.secret !== undefined) {
    if (v.secret.length === 0) throw usage(cmd, '--secret is empty');
    return { secret: v.secret, source: 'argument' };
  }
  const env = secretFromEnv();
  if (env !== undefined) return { secret: env, source: 'env' };
  return { secret: undefined, source: 'none' };
}

export const NO_SECRET_HINT = `pass --secret-file FILE, set ${SECRET_ENV_VAR}, or --secret S (the receiver prints a generated one)`;

export interface Issue {
  code: string;
  path: string;
  message: string;
}

export function issue(e: FerryError): Issue {
  return { code: e.code, path: cleanForDisplay(e.subject ?? ''), message: cleanForDisplay(e.message) };
}

export interface JsonSummaryInput {
  command: 'send' | 'recv';
  operand: string;
  peer: string;
  exitCode: number;
  dryRun: boolean;
  files: number;
  summary: SummaryMsg;
  failed: number;
  bytesTotal: number;
  bytesSent?: number;
  seconds: number;
  streams: number;
  cipher: string;
  tx: string;
  rx: string;
  errors: FerryError[];
}

export function buildNetJson(i: JsonSummaryInput): Record<string, unknown> {
  const s = i.summary;
  const out: Record<string, unknown> = {
    schema: 1,
    command: i.command,
    [i.command === 'send' ? 'src' : 'dst']: i.operand,
    peer: cleanForDisplay(i.peer),
    exitCode: i.exitCode,
    dryRun: i.dryRun,
    files: i.files,
    committed: s.committed,
    skipped: s.skipped,
    failed: i.failed,
    deleted: s.deleted,
    dirs: s.dirs,
    symlinks: s.symlinks,
    hardlinks: s.hardlinks,
    bytes: s.bytesWritten,
    bytesTotal: i.bytesTotal,
    resumedBytes: s.resumedBytes,
    seconds: Math.round(i.seconds * 1e6) / 1e6,
    bytesPerSecond: i.seconds > 0 ? Math.round(s.bytesWritten / i.seconds) : 0,
    streams: i.streams,
    cipher: i.cipher,
    tx: i.tx,
    rx: i.rx,
    native: nativePaths(),
    errors: i.errors.map(issue),
  };
  if (i.bytesSent !== undefined) out['bytesSent'] = i.bytesSent;
  return out;
}

/** The sending side's share of rsync's options (modes/send.ts SendExtras). */
export function sendExtras(rs: RsyncChoices): SendExtras {
  return {
    ...(rs.filters ? { filters: rs.filters } : {}),
    ...(rs.policy ? { policy: rs.policy } : {}),
    ...(rs.filesFrom ? { filesFrom: rs.filesFrom } : {}),
    ...(rs.recursive ? { recursive: true } : {}),
    ...(rs.oneFileSystem ? { oneFileSystem: true } : {}),
    ...(rs.followLinks ? { followLinks: true } : {}),
    ...(rs.removeSourceFiles ? { removeSourceFiles: true } : {}),
    ...(rs.bwlimit > 0 ? { bwlimit: rs.bwlimit } : {}),
    ...(rs.inplace ? { inplace: true } : {}),
    ...(rs.partialDir !== undefined ? { partialDir: rs.partialDir } : {}),
  };
}

/** `--stats` of a network session, from either end's result. */
export function netStats(
  r: { files: number; bytesTotal: number; summary: SummaryMsg; seconds: number },
  transferred: number,
  sent: number,
  seconds: number,
  received = 0,
): StatsInput {
  const s = r.summary;
  return {
    files: r.files + s.dirs + s.symlinks + s.hardlinks,
    regular: r.files + s.hardlinks,
    dirs: s.dirs,
    links: s.symlinks,
    deleted: s.deleted,
    transferred,
    totalSize: r.bytesTotal,
    transferredSize: s.bytesWritten,
    sent,
    received,
    seconds,
  };
}

/**
 * The progress half of a session's events, the same on both ends: they feed the
 * counters through applyProgress (cli/progress.ts); each failure is counted and
 * printed once, on its own line; with `verbose`, each entry --delete removed (or, in
 * a dry run, would remove) is listed as `deleting PATH` (a directory with a trailing
 * /), as rsync -v does.
 */
export function progressEvents(
  counters: NetProgress,
  reporter: ProgressReporter,
  onFailure: (e: FerryError) => void = () => {},
  opts: { verbose?: boolean } = {},
) {
  return {
    onManifest: (files: number, bytes: number, complete: boolean): void => applyProgress(counters, { type: 'manifest', files, bytes, complete }),
    onBytes: (n: number): void => applyProgress(counters, { type: 'bytes', n }),
    onFileDone: (_entry: unknown, how: 'committed' | 'skipped', size: number): void => applyProgress(counters, { type: 'file', how, size }),
    onFailure: (e: FerryError): void => {
      applyProgress(counters, { type: 'failed' });
      onFailure(e);
      reporter.clear();
      printError(e.toLine());
    },
    onDeleted: (path: string, dir: boolean): void => {
      if (!opts.verbose) return;
      reporter.clear();
      printInfo(`deleting ${cleanForDisplay(path)}${dir ? '/' : ''}`);
    },
  };
}
