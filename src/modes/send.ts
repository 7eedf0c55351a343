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
import net from 'node:net';
import type { SourceEntry } from '../core/entry.js';
import { ErrorCodes, FerryError, isFerryError } from '../core/errors.js';
import { compileExcludes } from '../fs/exclude.js';
import { resolveSource, walk, type SourceRoot } from '../fs/walk.js';
import type { XattrPolicy } from '../fs/xattrs.js';
import { channelOptions, establishChannel, type SecureChannel } from '../secure/channel.js';
import { sendStream } from './stream.js';
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
  connectTimeoutMs?: number;
  handshakeTimeoutMs?: number;
  idleTimeoutMs?: number;
  events?: SenderEvents;
}

export interface SendOutcome extends SenderResult {
  seconds: number;
  cipher: string;
  tx: string;
  rx: string;
  ktlsReason: string;
  handshakeMs: number;
  peer: string;
}

/** Open a TCP connection, failing with FERRY_E_CONNECT naming the peer. */
export function connectTcp(host: string, port: number, timeoutMs = 15_000): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host, port });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new FerryError(ErrorCodes.CONNECT, `${host}:${port}: connection timed out`, { subject: `${host}:${port}` }));
    }, timeoutMs);
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.setNoDelay(true);
      resolve(sock);
    });
    sock.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new FerryError(ErrorCodes.CONNECT, `${host}:${port}: cannot connect: ${e.code ?? e.message}`, { subject: `${host}:${port}`, cause: e }));
    });
  });
}

async function openChannel(o: SendOptions): Promise<SecureChannel> {
  const sock = await connectTcp(o.host, o.port, o.connectTimeoutMs);
  try {
    return await establishChannel(sock, channelOptions('client', o));
  } catch (e) {
    sock.destroy();
    throw e;
  }
}

export async function send(o: SendOptions): Promise<SendOutcome> {
  const root = await resolveSource(o.src);
  const t0 = performance.now();
  const control = await openChannel(o);
  return sendOver(control, [root], o, () => openChannel(o), t0);
}

/** `ferry send - HOST:PORT`: send one byte stream to a `ferry recv -` (modes/stream.ts). */
export async function sendStdinStream(o: SendOptions, input: AsyncIterable<Buffer | Uint8Array>): Promise<{ bytes: number; seconds: number; peer: string }> {
  const t0 = performance.now();
  const ch = await openChannel(o);
  const r = await sendStream(ch, input, 'stdin');
  return { bytes: r.bytes, seconds: (performance.now() - t0) / 1000, peer: ch.info.peer };
}

/** What a session needs besides its channels (the ssh mode shares it). */
export type SendSessionOptions = Pick<
  SendOptions,
  'streams' | 'chunkSize' | 'checksum' | 'delete' | 'dryRun' | 'excludes' | 'preserveSpecial' | 'events' | 'owners' | 'ownerNames' | 'xattrs'
>;

/**
 * Run one sender session over an authenticated control channel: walk every root (their
 * entries laid end to end, each under its own prefix) and send. `openStream` makes the
 * extra `-P` streams. Destroys every channel on a fatal error.
 */
export async function sendOver(
  control: SecureChannel,
  roots: readonly SourceRoot[],
  o: SendSessionOptions,
  openStream: () => Promise<SecureChannel>,
  t0: number = performance.now(),
): Promise<SendOutcome> {
  const exclude = o.excludes.length > 0 ? compileExcludes(o.excludes) : undefined;
  const walkFailures: FerryError[] = [];
  const warnings: FerryError[] = [];
  const walkOpts = {
    ...(exclude ? { exclude } : {}),
    onProblem: (e: FerryError) => {
      if (e.code === ErrorCodes.UNSUPPORTED) {
        warnings.push(e);
        o.events?.onWarning?.(e);
      } else {
        walkFailures.push(e);
        o.events?.onFailure?.(e);
      }
    },
  };
  const entries: AsyncIterable<SourceEntry[]> =
    roots.length === 1
      ? walk(roots[0]!, walkOpts)
      : (async function* () {
          for (const r of roots) yield* walk(r, walkOpts);
        })();
  const extra: SecureChannel[] = [];
  let result: SenderResult;
  try {
    result = await runSender(control, entries, {
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
      openStream: async () => {
        const ch = await openStream();
        extra.push(ch);
        return ch;
      },
      ...(o.events ? { events: o.events } : {}),
    });
  } catch (e) {
    control.destroy();
    for (const ch of extra) ch.destroy();
    if (isFerryError(e)) throw e;
    throw new FerryError(ErrorCodes.INTERNAL, String((e as Error)?.stack ?? e));
  }
  result.failures.push(...walkFailures);
  result.warnings.push(...warnings);
  return {
    ...result,
    seconds: (performance.now() - t0) / 1000,
    cipher: control.info.cipher,
    tx: control.info.tx,
    rx: control.info.rx,
    ktlsReason: control.ktlsReason,
    handshakeMs: control.handshakeMs,
    peer: control.info.peer,
  };
}
