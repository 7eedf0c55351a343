/**
 * Helpers for attacking a listening `recv` from the test process: the library
 * listener started in-process (so its options, warnings and outcome are visible),
 * a real library sender, idle sockets, and a raw guessing client that stops after
 * reading the server's key confirmation.
 *
 * Loopback tests all come from 127.0.0.1 unless a socket binds another local address:
 * on Linux every 127.x.y.z routes to lo, so `localAddress: '127.0.0.2'` is a second
 * "machine" for the listener's per-address accounting. The legitimate sender uses
 * 127.0.0.1, attackers 127.0.0.2 and up.
 */
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { recv, type RecvOptions, type RecvOutcome } from '../../src/modes/recv.js';
import { send, type SendOptions, type SendOutcome } from '../../src/modes/send.js';
import { encodeMessage, MsgTypes } from '../../src/secure/handshake.js';
import { startCPace } from '../../src/secure/cpace.js';
import { deriveSessionSecrets, finishedMac, macEqual, sha256 } from '../../src/secure/key-schedule.js';
import { secretBytes } from '../../src/secure/secret.js';
import { encodeHello, HELLO_BYTES, PROTOCOL_VERSION } from '../../src/wire/hello.js';

export const SECRET = 'correct-horse-battery-staple-42';

export interface Listener {
  port: number;
  outcome: Promise<RecvOutcome>;
  warnings: string[];
  stop(): Promise<RecvOutcome>;
}

/** The library listener on 127.0.0.1, a free port, --keep-serving unless told otherwise. */
export async function startListener(dst: string, opts: Partial<RecvOptions> = {}): Promise<Listener> {
  const ac = new AbortController();
  const warnings: string[] = [];
  let resolvePort!: (p: number) => void;
  const port = new Promise<number>((r) => (resolvePort = r));
  const outcome = recv({
    dst,
    host: '127.0.0.1',
    port: 0,
    secret: SECRET,
    ktls: 'off',
    keepServing: true,
    maxAuthFailures: 3,
    preserveSpecial: false,
    signal: ac.signal,
    onWarning: (m) => warnings.push(m),
    onListening: (_h, p) => resolvePort(p),
    ...opts,
  });
  const p = await Promise.race([port, outcome.then((o) => Promise.reject(new Error(`recv ended before listening: ${JSON.stringify(o)}`)))]);
  return {
    port: p,
    outcome,
    warnings,
    stop: () => {
      ac.abort();
      return outcome;
    },
  };
}

/** A real `ferry send` of `src` (library), from 127.0.0.1. */
export function sendTree(src: string, port: number, opts: Partial<SendOptions> = {}): Promise<SendOutcome> {
  return send({
    src,
    host: '127.0.0.1',
    port,
    secret: SECRET,
    ktls: 'off',
    streams: 1,
    chunkSize: 1 << 20,
    checksum: false,
    delete: false,
    dryRun: false,
    excludes: [],
    preserveSpecial: false,
    handshakeTimeoutMs: 10_000,
    ...opts,
  });
}

/** Connect from `localAddress` and resolve once connected. */
export function connectFrom(port: number, localAddress: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

export interface IdleSocket {
  socket: net.Socket;
  /** Bytes the server sent us. */
  received(): number;
  /** Resolves when the server closed (or reset) the connection. */
  closed: Promise<void>;
  isClosed(): boolean;
}

/** A connection that never sends a byte. */
export async function idleSocket(port: number, localAddress: string): Promise<IdleSocket> {
  const socket = await connectFrom(port, localAddress);
  let n = 0;
  let done = false;
  socket.on('data', (c: Buffer) => (n += c.length));
  socket.on('error', () => undefined);
  const closed = new Promise<void>((r) =>
    socket.once('close', () => {
      done = true;
      r();
    }),
  );
  return { socket, received: () => n, closed, isClosed: () => done };
}

export interface GuessResult {
  /** The server sent ServerShare and ServerConfirm. */
  confirmed: boolean;
  /** Checked against mac_s: the guess was right. Meaningless unless `confirmed`. */
  right: boolean;
}

/**
 * One online guess that never proves anything: send hello and ClientShare for
 * `guess`, read the server's hello, ServerShare and ServerConfirm, check mac_s
 * against the guess (the attacker now knows whether it was right), then hang up
 * without sending ClientConfirm.
 */
export async function guessAndHangUp(port: number, guess: string, localAddress = '127.0.0.2', timeoutMs = 10_000): Promise<GuessResult> {
  const sock = await connectFrom(port, localAddress);
  sock.on('error', () => undefined);
  const sid = randomBytes(16);
  const cpace = startCPace('a', secretBytes(guess), Buffer.from(`ferry/${PROTOCOL_VERSION}`), sid, Buffer.from([1]));
  const myHello = encodeHello();
  const clientShare = encodeMessage(MsgTypes.CLIENT_SHARE, Buffer.concat([sid, cpace.msg]));
  sock.write(Buffer.concat([myHello, clientShare]));

  let got = Buffer.alloc(0);
  const messages = await new Promise<Buffer[] | null>((resolve) => {
    const timer = setTimeout(() => resolve(null), timeoutMs);
    const finish = (v: Buffer[] | null): void => {
      clearTimeout(timer);
      resolve(v);
    };
    sock.on('data', (c: Buffer) => {
      got = Buffer.concat([got, c]);
      const msgs: Buffer[] = [];
      let off = HELLO_BYTES;
      while (got.length >= off + 3) {
        const len = got.readUInt16BE(off + 1);
        if (got.length < off + 3 + len) break;
        msgs.push(got.subarray(off, off + 3 + len));
        off += 3 + len;
      }
      if (msgs.length >= 2) finish(msgs);
    });
    sock.once('close', () => finish(null));
  });
  sock.destroy();
  if (messages === null || messages[0]![0] !== MsgTypes.SERVER_SHARE || messages[1]![0] !== MsgTypes.SERVER_CONFIRM) {
    return { confirmed: false, right: false };
  }
  const serverShare = messages[0]!;
  const r = cpace.finish(serverShare.subarray(3));
  if (r === null) return { confirmed: true, right: false };
  const th = sha256(myHello, clientShare, got.subarray(0, HELLO_BYTES), serverShare);
  const secrets = deriveSessionSecrets(r.isk, th);
  return { confirmed: true, right: macEqual(messages[1]!.subarray(3), finishedMac(secrets.serverFinishedKey, th)) };
}

/** Resolve with `p`, or reject after `ms` saying what did not happen. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
    }),
  ]);
}

/** Poll `cond` every 10 ms until it holds; reject after `ms` saying what did not happen. */
export async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
