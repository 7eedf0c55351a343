/**
 * `ferry recv`: listen, authenticate each connection, run receiver sessions
 * (transfer/receiver.ts) into DST, one session at a time.
 *
 * Policy, decided for a demanding user who may face an attacker on the network:
 * - Nothing is written before authentication succeeds: DST is not even opened until
 *   a SESSION frame arrives over an authenticated channel.
 * - A failed authentication (FERRY_E_AUTH) is logged and the receiver keeps
 *   listening, so a typo on the sending side does not kill a waiting `recv`; but it
 *   exits with status 3 after `maxAuthFailures` failures (default 3) when it has not
 *   yet served a session, and with `--keep-serving` it never exits on them. Every
 *   failure doubles a delay before the next handshake may start (1 s, 2 s, 4 s … 30 s),
 *   so online guessing is slow; CPace already limits an attacker to one guess per
 *   connection and offline guessing is impossible. A guesser can therefore never
 *   make recv exit 0 or write anything; at worst it exits 3 (a visible DoS).
 * - Connections that are not ferry at all (port scanners, wrong protocol) are
 *   dropped with a warning and do not count as authentication failures.
 * - One session at a time: a sender that arrives while a session runs waits until it
 *   ends (`--keep-serving`) or is refused with "busy" (a single-session recv), so two
 *   sessions never write the same file at once. Extra `-P` streams (JOIN) are routed
 *   to the running session by its random token and refused otherwise.
 * - By default recv exits after its first session: 0 when everything was committed,
 *   1 when some files failed, 4 when the session broke (cut connection, protocol).
 *   With `--keep-serving` it serves sessions one after another until interrupted.
 */
import net from 'node:net';
import { ErrorCodes, FerryError, isFerryError } from '../core/errors.js';
import { SafeWriter } from '../fs/safe-writer.js';
import { channelOptions, establishChannel, type SecureChannel } from '../secure/channel.js';
import { ReceiverSession, checkSessionPolicy, readOpening, refuseSession, type ReceiverEvents, type ReceiverResult } from '../transfer/receiver.js';
import { SessionFlags } from '../wire/messages.js';

export interface RecvOptions {
  dst: string;
  host: string;
  port: number;
  secret: string;
  ktls: 'auto' | 'on' | 'off';
  keepServing: boolean;
  maxAuthFailures: number;
  preserveSpecial: boolean;
  /** Refuse sessions that ask for --delete (FERRY_E_REFUSED). */
  refuseDelete?: boolean;
  /** Per-session caps (core/limits.ts defaults). */
  maxEntries?: number;
  maxHoleBytes?: number;
  handshakeTimeoutMs?: number;
  idleTimeoutMs?: number;
  /** Base of the back-off after a failed authentication (default 1000 ms). */
  authBackoffMs?: number;
  onListening?(host: string, port: number): void;
  onSessionStart?(peer: string, flags: number, streams: number): ReceiverEvents | undefined;
  onSessionEnd?(r: RecvSessionOutcome): void;
  onWarning?(msg: string): void;
}

export interface RecvSessionOutcome {
  result?: ReceiverResult;
  error?: FerryError;
  seconds: number;
  peer: string;
  cipher: string;
  tx: string;
  rx: string;
}

export interface RecvOutcome {
  sessions: RecvSessionOutcome[];
  /** Set when recv stopped because of authentication failures. */
  authError?: FerryError;
}

const MAX_PENDING_HANDSHAKES = 16;

export async function recv(o: RecvOptions): Promise<RecvOutcome> {
  const sessions: RecvSessionOutcome[] = [];
  const server = net.createServer();
  const sockets = new Set<net.Socket>();
  let authFailures = 0;
  let notBefore = 0;
  let pendingHandshakes = 0;
  let active: { session: ReceiverSession; done: Promise<void> } | null = null;
  let queue: Promise<void> = Promise.resolve();
  let stopped = false;
  let finish!: (v: RecvOutcome) => void;
  let fail!: (e: unknown) => void;
  const outcome = new Promise<RecvOutcome>((res, rej) => {
    finish = res;
    fail = rej;
  });
  const backoff = o.authBackoffMs ?? 1000;

  const stop = (v: RecvOutcome | Error): void => {
    if (stopped) return;
    stopped = true;
    server.close();
    for (const s of sockets) s.destroy();
    if (v instanceof Error) fail(v);
    else finish(v);
  };

  const handshake = async (sock: net.Socket): Promise<SecureChannel | null> => {
    const wait = notBefore - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    if (stopped || sock.destroyed) return null;
    try {
      return await establishChannel(sock, channelOptions('server', o));
    } catch (e) {
      sock.destroy();
      const err = isFerryError(e) ? e : new FerryError(ErrorCodes.INTERNAL, String(e));
      if (err.code === ErrorCodes.AUTH) {
        authFailures++;
        notBefore = Date.now() + Math.min(backoff * 2 ** (authFailures - 1), 30_000);
        o.onWarning?.(`${err.message} (failed attempt ${authFailures}${o.keepServing ? '' : ` of ${o.maxAuthFailures}`})`);
        if (!o.keepServing && sessions.length === 0 && authFailures >= o.maxAuthFailures && !active) {
          stop({ sessions, authError: err });
        }
      } else {
        o.onWarning?.(`dropped a connection: ${err.code}: ${err.message}`);
      }
      return null;
    }
  };

  const runSession = async (ch: SecureChannel, frames: AsyncIterator<import('../secure/channel-api.js').Frame>, msg: import('../wire/messages.js').SessionMsg): Promise<void> => {
    const t0 = performance.now();
    const peer = ch.info.peer;
    let result: ReceiverResult | undefined;
    let error: FerryError | undefined;
    try {
      checkSessionPolicy(msg, o, peer);
      const sink = await SafeWriter.open(o.dst, {
        preserveSpecialBits: o.preserveSpecial && (msg.flags & SessionFlags.PRESERVE_SPECIAL) !== 0,
        dryRun: (msg.flags & SessionFlags.DRY_RUN) !== 0,
        umask: process.umask(), // modes from the wire are masked like those of files we create
      });
      const events = o.onSessionStart?.(peer, msg.flags, msg.streams);
      const session = new ReceiverSession(ch, frames, msg, sink, {
        ...(events ? { events } : {}),
        ...(o.refuseDelete ? { refuseDelete: true } : {}),
        ...(o.maxEntries !== undefined ? { maxEntries: o.maxEntries } : {}),
        ...(o.maxHoleBytes !== undefined ? { maxHoleBytes: o.maxHoleBytes } : {}),
        ...(o.idleTimeoutMs !== undefined ? { idleTimeoutMs: o.idleTimeoutMs } : {}),
      });
      const done = session.run().then(
        (r) => {
          result = r;
        },
        (e: unknown) => {
          error = isFerryError(e) ? e : new FerryError(ErrorCodes.INTERNAL, String((e as Error)?.stack ?? e));
        },
      );
      active = { session, done };
      await done;
    } catch (e) {
      error = isFerryError(e) ? e : new FerryError(ErrorCodes.INTERNAL, String((e as Error)?.stack ?? e));
      await refuseSession(ch, error);
    } finally {
      active = null;
    }
    const out: RecvSessionOutcome = { seconds: (performance.now() - t0) / 1000, peer, cipher: ch.info.cipher, tx: ch.info.tx, rx: ch.info.rx };
    if (result) out.result = result;
    if (error) out.error = error;
    sessions.push(out);
    o.onSessionEnd?.(out);
    if (!o.keepServing) stop({ sessions });
  };

  server.on('connection', (sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => undefined);
    sock.setNoDelay(true);
    if (stopped || pendingHandshakes >= MAX_PENDING_HANDSHAKES) {
      sock.destroy();
      return;
    }
    pendingHandshakes++;
    void (async () => {
      let ch: SecureChannel | null;
      try {
        ch = await handshake(sock);
      } finally {
        pendingHandshakes--;
      }
      if (!ch || stopped) return;
      let opening;
      try {
        opening = await readOpening(ch);
      } catch (e) {
        o.onWarning?.(`dropped a connection from ${ch.info.peer}: ${(e as Error).message}`);
        ch.destroy();
        return;
      }
      if (opening.kind === 'join') {
        const a = active as { session: ReceiverSession } | null;
        if (a && Buffer.from(a.session.token).equals(Buffer.from(opening.join.token))) {
          a.session.addStream(ch, opening.frames, opening.join.stream);
        } else {
          ch.destroy();
        }
        return;
      }
      const msg = opening.session;
      if (active && !o.keepServing) {
        await refuseSession(ch, new FerryError(ErrorCodes.CONNECT, 'receiver is busy with another session'));
        return;
      }
      // Sessions run strictly one after another.
      const prev = queue;
      let release!: () => void;
      queue = new Promise<void>((r) => (release = r));
      await prev;
      try {
        if (!stopped) await runSession(ch, opening.frames, msg);
        else ch.destroy();
      } finally {
        release();
      }
    })().catch((e) => stop(isFerryError(e) ? e : new FerryError(ErrorCodes.INTERNAL, String(e))));
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(new FerryError(ErrorCodes.CONNECT, `cannot listen on ${o.host}:${o.port}: ${e.code ?? e.message}`, { cause: e })),
    );
    server.listen({ host: o.host, port: o.port }, () => resolve());
  });
  const addr = server.address() as net.AddressInfo;
  o.onListening?.(addr.address, addr.port);
  return outcome;
}
