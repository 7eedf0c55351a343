/**
 * `ferry send`: connect to a waiting `ferry recv`, authenticate, and run the sender
 * state machine (transfer/sender.ts) over one control stream plus `streams - 1`
 * extra TCP streams of the same session.
 *
 * Each stream is its own TCP connection with its own handshake (same secret, fresh
 * keys); an extra stream then presents the session token it received inside the
 * control stream's encrypted channel (JOIN), so only a peer that knows the secret
 * *and* belongs to this session can add a stream. Sockets get TCP_NODELAY (frames
 * are already batched by the channel) and nothing else here touches bytes.
 */
import type { SourceEntry } from '../core/entry.js';
import { prefetch, type Prefetched } from '../core/prefetch.js';
import { ErrorCodes, FerryError, isFerryError } from '../core/errors.js';
import { compileExcludes, compileFilters, type FilterRule } from '../fs/exclude.js';
import { resolveSendRoot, walkFilesFrom } from '../fs/files-from.js';
import { removeSource } from '../fs/remove-source.js';
import { TokenBucket } from '../transfer/token-bucket.js';
import type { UpdatePolicy } from '../transfer/update-policy.js';
import { MsgType } from '../wire/messages.js';
import { withSendHook, type FrameChannel } from '../secure/channel-api.js';
import { walk, type SourceRoot } from '../fs/walk.js';
import type { XattrPolicy } from '../fs/xattrs.js';
import { channelOptions, establishChannel, type SecureChannel } from '../secure/channel.js';
import { sendStream } from './stream.js';
import { connectTcp } from './dial.js';
import { runSender, type SenderEvents, type SenderResult } from '../transfer/sender.js';

export interface SendOptions {
  src: string;
  host: string;
  port: number;
  secret: string;
  ktls: 'auto' | 'on' | 'off';
  streams: number;
  chunkSize: number;
  checksum: boolean;
  delete: boolean;
  dryRun: boolean;
  excludes: string[];
  preserveSpecial: boolean;
  /** -o/-g: send numeric owners and groups. */
  owners?: boolean;
  /** --names (with owners): also send owner and group names, for the receiver to map. */
  ownerNames?: boolean;
  /** -X/-A: send extended attributes (fs/xattrs policy). */
  xattrs?: XattrPolicy;
  /** rsync's options for the sending side (cli/rsync-options.ts). */
  extras?: SendExtras;
  connectTimeoutMs?: number;
  handshakeTimeoutMs?: number;
  idleTimeoutMs?: number;
  events?: SenderEvents;
}

/** rsync's options that the sending side carries out or forwards (all optional). */
export interface SendExtras {
  /** --include/--exclude in order (replaces `excludes`). */
  filters?: FilterRule[];
  /** --size-only, --ignore-existing, -u: forwarded to the receiver. */
  policy?: UpdatePolicy;
  /** --files-from: paths relative to SRC (parsed); `recursive` is -r. */
  filesFrom?: string[];
  recursive?: boolean;
  oneFileSystem?: boolean;
  followLinks?: boolean;
  /** --remove-source-files: delete each file the receiver confirmed. */
  removeSourceFiles?: boolean;
  /** --partial-dir: forwarded to the receiver. */
  partialDir?: string;
  /** --inplace: forwarded to the receiver. */
  inplace?: boolean;
  /** --bwlimit in bytes per second (0 or absent: none). */
  bwlimit?: number;
}

export interface SendOutcome extends SenderResult {
  /** Source files deleted by --remove-source-files. */
  sourcesRemoved: number;
  seconds: number;
  cipher: string;
  tx: string;
  rx: string;
  ktlsReason: string;
  handshakeMs: number;
  peer: string;
}

/** Open a TCP connection, failing with FERRY_E_CONNECT naming the peer. */
async function openChannel(o: SendOptions): Promise<SecureChannel> {
  // The handshake's curve code loads while TCP connects (a round trip on a long link).
  void import('../secure/cpace.js').catch(() => undefined);
  const sock = await connectTcp(o.host, o.port, o.connectTimeoutMs);
  try {
    return await establishChannel(sock, channelOptions('client', o));
  } catch (e) {
    sock.destroy();
    throw e;
  }
}

export async function send(o: SendOptions): Promise<SendOutcome> {
  const root = await resolveSendRoot(o.src, o.extras);
  const t0 = performance.now();
  // The walk starts while TCP connects and the handshake runs.
  const walked = startWalk([root], o);
  let control: SecureChannel;
  try {
    control = await openChannel(o);
  } catch (e) {
    // Not awaited: the error is reported now, the walk ends once its current listing does.
    void walked.stop();
    throw e;
  }
  return sendOver(control, walked, o, () => openChannel(o), t0);
}

/** `ferry send - HOST:PORT`: send one byte stream to a `ferry recv -` (modes/stream.ts). */
export async function sendStdinStream(o: SendOptions, input: AsyncIterable<Buffer | Uint8Array>): Promise<{ bytes: number; seconds: number; peer: string }> {
  const t0 = performance.now();
  const ch = await openChannel(o);
  const r = await sendStream(ch, input, 'stdin');
  return { bytes: r.bytes, seconds: (performance.now() - t0) / 1000, peer: ch.info.peer };
}

export { resolveSendRoot } from '../fs/files-from.js';
export { connectTcp } from './dial.js';

/** What a session needs besides its channels (the ssh mode shares it). */
export type SendSessionOptions = Pick<
  SendOptions,
  'streams' | 'chunkSize' | 'checksum' | 'delete' | 'dryRun' | 'excludes' | 'preserveSpecial' | 'events' | 'owners' | 'ownerNames' | 'xattrs' | 'extras'
>;

/** Every DATA frame waits for the shared bucket (--bwlimit); other frames pass. */
function paced(ch: FrameChannel, bucket: TokenBucket): FrameChannel {
  return withSendHook(ch, (type, payload) => {
    if (type !== MsgType.DATA) return;
    const n = payload instanceof Uint8Array ? payload.length : payload.reduce((a, b) => a + b.length, 0);
    const wait = bucket.take(n, performance.now());
    if (wait > 0) return new Promise((r) => setTimeout(r, wait));
  });
}

/** A walk of the session's roots, already under way (startWalk). */
export interface StartedWalk {
  entries: Prefetched<SourceEntry[]>;
  /** What the walk reported so far: failures (a file not sent) and warnings (skipped kinds). */
  failures: FerryError[];
  warnings: FerryError[];
  stop(): Promise<void>;
}

/**
 * Start walking every root (their entries laid end to end, each under its own prefix)
 * now, before the session's channel exists: the listing overlaps the connection.
 * Its problems go to `o.events` as they are found and are kept for the outcome.
 */
export function startWalk(roots: readonly SourceRoot[], o: Pick<SendSessionOptions, 'excludes' | 'extras' | 'events'>): StartedWalk {
  const x = o.extras ?? {};
  const exclude = x.filters ? compileFilters(x.filters) : o.excludes.length > 0 ? compileExcludes(o.excludes) : undefined;
  const failures: FerryError[] = [];
  const warnings: FerryError[] = [];
  const walkOpts = {
    ...(exclude ? { exclude } : {}),
    oneFileSystem: x.oneFileSystem === true,
    followLinks: x.followLinks === true,
    onProblem: (e: FerryError) => {
      if (e.code === ErrorCodes.UNSUPPORTED) {
        warnings.push(e);
        o.events?.onWarning?.(e);
      } else {
        failures.push(e);
        o.events?.onFailure?.(e);
      }
    },
  };
  const walkRoot = (r: SourceRoot): AsyncGenerator<SourceEntry[]> =>
    x.filesFrom ? walkFilesFrom(r.absPath, x.filesFrom, { ...walkOpts, recursive: x.recursive === true }) : walk(r, walkOpts);
  const entries = prefetch(
    roots.length === 1
      ? walkRoot(roots[0]!)
      : (async function* () {
          for (const r of roots) yield* walkRoot(r);
        })(),
  );
  return { entries, failures, warnings, stop: () => entries.stop() };
}

function isStartedWalk(s: readonly SourceRoot[] | StartedWalk): s is StartedWalk {
  return !Array.isArray(s);
}

/**
 * Run one sender session over an authenticated control channel: walk every root (or
 * take a walk startWalk began) and send. `openStream` makes the extra `-P` streams.
 * Destroys every channel on a fatal error.
 */
export async function sendOver(
  control: SecureChannel,
  source: readonly SourceRoot[] | StartedWalk,
  o: SendSessionOptions,
  openStream: () => Promise<SecureChannel>,
  t0: number = performance.now(),
): Promise<SendOutcome> {
  const x = o.extras ?? {};
  const walked = isStartedWalk(source) ? source : startWalk(source, o);
  const { entries, failures: walkFailures, warnings } = walked;
  // --remove-source-files: once the receiver confirmed a file (committed, or up to
  // date without a policy that keeps a differing copy), and only if the file is still
  // what was read (fs/remove-source).
  let sourcesRemoved = 0;
  const removeOk = (how: 'committed' | 'skipped'): boolean => how === 'committed' || !(x.policy?.ignoreExisting || x.policy?.update);
  const events: SenderEvents | undefined =
    x.removeSourceFiles && !o.dryRun
      ? {
          ...o.events,
          onFileDone: (e, how, size) => {
            o.events?.onFileDone?.(e, how, size);
            if (!removeOk(how)) return;
            const err = removeSource(e);
            if (err === null) sourcesRemoved++;
            else {
              warnings.push(err);
              o.events?.onWarning?.(err);
            }
          },
        }
      : o.events;
  const bucket = x.bwlimit ? new TokenBucket(x.bwlimit, performance.now()) : null;
  const data = (ch: SecureChannel): FrameChannel => (bucket ? paced(ch, bucket) : ch);
  const extra: SecureChannel[] = [];
  let result: SenderResult;
  try {
    result = await runSender(data(control), entries, {
      streams: o.streams,
      chunkSize: o.chunkSize,
      checksum: o.checksum,
      delete: o.delete,
      dryRun: o.dryRun,
      excludes: o.excludes,
      preserveSpecial: o.preserveSpecial,
      ...(o.owners ? { owners: true } : {}),
      ...(o.owners && o.ownerNames ? { ownerNames: true } : {}),
      ...(o.xattrs ? { xattrs: o.xattrs } : {}),
      ...(x.filters ? { filters: x.filters } : {}),
      ...(x.policy ? { policy: x.policy } : {}),
      ...(x.inplace ? { inplace: true } : {}),
      ...(x.partialDir !== undefined ? { partialDir: x.partialDir } : {}),
      openStream: async () => {
        const ch = await openStream();
        extra.push(ch);
        return data(ch);
      },
      ...(events ? { events } : {}),
    });
  } catch (e) {
    control.destroy();
    for (const ch of extra) ch.destroy();
    void walked.stop();
    if (isFerryError(e)) throw e;
    throw new FerryError(ErrorCodes.INTERNAL, String((e as Error)?.stack ?? e));
  }
  result.failures.push(...walkFailures);
  result.warnings.push(...warnings);
  return {
    ...result,
    sourcesRemoved,
    seconds: (performance.now() - t0) / 1000,
    cipher: control.info.cipher,
    tx: control.info.tx,
    rx: control.info.rx,
    ktlsReason: control.ktlsReason,
    handshakeMs: control.handshakeMs,
    peer: control.info.peer,
  };
}
