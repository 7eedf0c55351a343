/**
 * A scripted hostile peer for the adversarial suites (issue #11): it completes a
 * *valid* handshake with a real ferry endpoint — the in-process `recv()` of
 * modes/recv.ts or `send()` of modes/send.ts, over loopback TCP, with the real
 * CPace handshake and TLS 1.3-format records — and then writes whatever the test
 * scripts: well-formed messages (src/wire/messages.ts encoders), malformed ones,
 * raw frame bytes (a header announcing more than the cap), or raw record bytes.
 * Everything the real endpoint sends back can be read frame by frame.
 *
 * It holds the traffic keys itself (secure/handshake.ts + record-layer.ts) instead of
 * going through secure/channel.ts, because the channel refuses to produce what an
 * attacker would: oversized frames, reserved frame types, data after the end.
 *
 *   const h = await hostileSender(dst);                 // real receiver, SESSION_OK read
 *   await h.peer.send(MsgType.MANIFEST, encodeManifest([...], false));
 *   const err = await h.sessionError();                  // FerryError the receiver ended with
 *
 *   const r = await hostileReceiver(src);                // real sender, SESSION read
 *   await r.peer.send(MsgType.SESSION_OK, encodeSessionOk(token));
 *   await assert.rejects(r.outcome, ...);
 */
import net from 'node:net';
import type { FerryError } from '../../src/core/errors.js';
import { recv, type RecvOptions, type RecvOutcome } from '../../src/modes/recv.js';
import { send, type SendOptions, type SendOutcome } from '../../src/modes/send.js';
import { clientHandshake, serverHandshake, type HandshakeResult } from '../../src/secure/handshake.js';
import { nextTrafficSecret, trafficKeys } from '../../src/secure/key-schedule.js';
import { RecordOpener, RecordSealer } from '../../src/secure/record-layer.js';
import { secretBytes } from '../../src/secure/secret.js';
import { FrameDecoder, FrameTypes, encodeFrame, encodeFrameHeader } from '../../src/wire/frame.js';
import { newHash } from '../../src/transfer/hash.js';
import {
  Action,
  ByteWriter,
  MsgType,
  TRANSFER_VERSION,
  decodeDecisions,
  decodeError,
  decodeSession,
  encodeCount,
  encodeManifest,
  encodeSession,
  writeBegin,
  writeChunkHeader,
  writeEnd,
  type Decision,
  type ErrorMsg,
  type SessionMsg,
  type WireEntry,
} from '../../src/wire/messages.js';

export const HOSTILE_SECRET = 'hostile-peer-shared-secret-11';

export interface PeerFrame {
  type: number;
  payload: Buffer;
}

/** One authenticated connection, driven by hand. */
export class HostilePeer {
  readonly socket: net.Socket;
  readonly #sealer: RecordSealer;
  readonly #opener: RecordOpener;
  #rxSecret: Buffer;
  readonly #decoder = new FrameDecoder({ maxPayload: 64 * 1024 * 1024 });
  readonly #frames: PeerFrame[] = [];
  #ended = false;
  #closed = false;
  /** Why our reading of the real peer's bytes failed (a test bug, or the peer's). */
  readError: Error | null = null;
  #wake: (() => void) | null = null;
  readonly closed: Promise<void>;

  constructor(socket: net.Socket, hs: HandshakeResult) {
    this.socket = socket;
    this.#sealer = new RecordSealer(trafficKeys(hs.txSecret));
    this.#rxSecret = hs.rxSecret;
    this.#opener = new RecordOpener(trafficKeys(hs.rxSecret), { peer: 'real peer' });
    this.closed = new Promise((r) => socket.once('close', () => r()));
    void this.closed.then(() => {
      this.#closed = true;
      this.#poke();
    });
    socket.on('error', () => undefined);
    socket.on('data', (c: Buffer) => this.#onData(c));
    for (const c of hs.leftover) this.#onData(c);
    socket.resume();
  }

  #onData(chunk: Buffer): void {
    if (this.readError) return;
    try {
      this.#opener.push(chunk);
      for (let c = this.#opener.next(); c !== null; c = this.#opener.next()) {
        this.#decoder.push(c);
        for (let f = this.#decoder.next(); f !== null; f = this.#decoder.next()) {
          if (f.type === FrameTypes.END) this.#ended = true;
          else if (f.type === FrameTypes.KEY_UPDATE) {
            this.#rxSecret = nextTrafficSecret(this.#rxSecret);
            this.#opener.setKeys(trafficKeys(this.#rxSecret));
          } else this.#frames.push({ type: f.type, payload: Buffer.from(f.payload) });
        }
      }
    } catch (e) {
      this.readError = e as Error;
    }
    this.#poke();
  }

  #poke(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }

  /** Seal one frame as the real channel would. Resolves when the socket took it. */
  send(type: number, payload: Uint8Array | readonly Uint8Array[]): Promise<void> {
    return this.sendPlain(Buffer.concat(encodeFrame(type, payload)));
  }

  /** Seal arbitrary bytes of the frame stream (e.g. a lone frame header) into records. */
  sendPlain(bytes: Uint8Array): Promise<void> {
    return this.sendRecordBytes(Buffer.concat(this.#sealer.sealv([bytes])));
  }

  /** A frame header announcing `length` bytes, with no payload behind it. */
  sendFrameHeader(type: number, length: number): Promise<void> {
    return this.sendPlain(encodeFrameHeader(type, length));
  }

  /** Seal each buffer as records and return them without writing (for record-level tampering). */
  seal(bytes: Uint8Array): Buffer {
    return Buffer.concat(this.#sealer.sealv([bytes]));
  }

  /** Write raw bytes on the socket (records, or garbage). */
  sendRecordBytes(bytes: Uint8Array): Promise<void> {
    if (this.socket.destroyed) return Promise.resolve();
    return new Promise((resolve) => this.socket.write(bytes, () => resolve()));
  }

  /** The authenticated end of our direction, then FIN. */
  async end(): Promise<void> {
    await this.send(FrameTypes.END, new Uint8Array(0));
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }

  /**
   * The next frame from the real peer (types ≥ 0x10); null once it ended its direction
   * or the connection closed. Rejects after `timeoutMs` without one.
   */
  async next(timeoutMs = 10_000): Promise<PeerFrame | null> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const f = this.#frames.shift();
      if (f) return f;
      if (this.#ended || this.#closed || this.readError) return null;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`hostile peer: no frame from the real peer within ${timeoutMs} ms`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.#wake = () => {
          clearTimeout(t);
          r();
        };
      });
    }
  }

  /** Frames until the real peer ends or closes (bounded by `timeoutMs` overall). */
  async drain(timeoutMs = 10_000): Promise<PeerFrame[]> {
    const out: PeerFrame[] = [];
    const deadline = Date.now() + timeoutMs;
    for (let f = await this.next(timeoutMs); f !== null; f = await this.next(Math.max(1, deadline - Date.now()))) out.push(f);
    return out;
  }

  /** Put a frame back at the head of what `next` returns. */
  pushBack(f: PeerFrame): void {
    this.#frames.unshift(f);
  }

  /** Whether the real peer sent its authenticated end (a clean close, not a cut). */
  get peerEnded(): boolean {
    return this.#ended;
  }
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

/** Handshake as the client (a hostile sender). */
export async function connectAsSender(port: number, secret = HOSTILE_SECRET): Promise<HostilePeer> {
  const s = await connect(port);
  s.setNoDelay(true);
  const hs = await clientHandshake(s, { secret: secretBytes(secret), peer: 'receiver', timeoutMs: 10_000 });
  return new HostilePeer(s, hs);
}

export interface HostileSenderRun {
  /** The hostile end, already past SESSION / SESSION_OK unless `session: null`. */
  peer: HostilePeer;
  /** The SESSION_OK token. */
  token: Buffer | null;
  port: number;
  /** The real `recv()` (one session, then it stops). */
  outcome: Promise<RecvOutcome>;
  /** The FerryError the receiver's session ended with (undefined: it succeeded). */
  sessionError(): Promise<FerryError | undefined>;
  warnings: string[];
}

/**
 * A real receiver (modes/recv.ts, in process) writing into `dst`, and a hostile
 * sender connected to it. With `session` (default: a plain one) it sends SESSION and
 * reads SESSION_OK; with `session: null` it stops right after the handshake.
 */
export async function hostileSender(
  dst: string,
  opts: { session?: Partial<SessionMsg> | null; recv?: Partial<RecvOptions> } = {},
): Promise<HostileSenderRun> {
  const warnings: string[] = [];
  let port = 0;
  const outcome = recv({
    dst,
    host: '127.0.0.1',
    port: 0,
    secret: HOSTILE_SECRET,
    ktls: 'off',
    keepServing: false,
    maxAuthFailures: 1,
    preserveSpecial: false,
    handshakeTimeoutMs: 10_000,
    idleTimeoutMs: 10_000,
    onListening: (_h, p) => (port = p),
    onWarning: (m) => warnings.push(m),
    ...opts.recv,
  });
  let failed = false;
  outcome.catch(() => (failed = true));
  while (port === 0 && !failed) await new Promise((r) => setImmediate(r));
  if (port === 0) await outcome;
  const peer = await connectAsSender(port);
  let token: Buffer | null = null;
  if (opts.session !== null) {
    const s: SessionMsg = { version: TRANSFER_VERSION, flags: 0, streams: 1, chunkSize: 65536, excludes: [], ...opts.session };
    await peer.send(MsgType.SESSION, encodeSession(s));
    const ok = await peer.next();
    if (ok?.type === MsgType.SESSION_OK) token = ok.payload;
    else if (ok) peer.pushBack(ok);
  }
  const sessionError = async (): Promise<FerryError | undefined> => {
    const o = await outcome;
    return o.sessions[0]?.error;
  };
  return { peer, token, port, outcome, sessionError, warnings };
}

export interface HostileReceiverRun {
  peer: HostilePeer;
  /** The real sender's SESSION message. */
  session: SessionMsg;
  /** The real `send()`; settles when it gives up or succeeds. */
  outcome: Promise<SendOutcome>;
  server: net.Server;
}

/** A real sender (modes/send.ts, in process) sending `src` to a hostile receiver. */
export async function hostileReceiver(src: string, opts: Partial<SendOptions> = {}): Promise<HostileReceiverRun> {
  const server = net.createServer({ allowHalfOpen: true });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as net.AddressInfo).port;
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const outcome = send({
    src,
    host: '127.0.0.1',
    port,
    secret: HOSTILE_SECRET,
    ktls: 'off',
    streams: 1,
    chunkSize: 65536,
    checksum: false,
    delete: false,
    dryRun: false,
    excludes: [],
    preserveSpecial: false,
    handshakeTimeoutMs: 10_000,
    idleTimeoutMs: 10_000,
    ...opts,
  });
  outcome.catch(() => undefined);
  const sock = await accepted;
  server.close();
  sock.setNoDelay(true);
  const hs = await serverHandshake(sock, { secret: secretBytes(HOSTILE_SECRET), peer: 'sender', timeoutMs: 10_000 });
  const peer = new HostilePeer(sock, hs);
  const first = await peer.next();
  if (first?.type !== MsgType.SESSION) throw new Error(`hostile receiver: expected SESSION, got ${first?.type}`);
  return { peer, session: decodeSession(first.payload), outcome, server };
}

export const T0 = 1_700_000_000_000_000_000n;

/** A manifest entry with defaults (mode 0644/0755, mtime T0). */
export function entry(index: number, kind: WireEntry['kind'], p: string, extra: Partial<WireEntry> = {}): WireEntry {
  return { index, kind, path: p, size: 0, mode: kind === 'dir' ? 0o755 : 0o644, mtimeNs: T0, ...extra };
}

/** One whole file as a DATA payload: BEGIN, one CHUNK, END with the right hash. */
export function dataFor(index: number, content: Buffer, from = 0): Buffer {
  const w = new ByteWriter();
  writeBegin(w, index, from, from, content.length);
  if (content.length > from) {
    writeChunkHeader(w, from, content.length - from);
    w.bytes(content.subarray(from));
  }
  writeEnd(w, newHash().update(content.subarray(from)).digest());
  return w.take();
}

export interface ScriptResult {
  decisions: Decision[];
  frames: PeerFrame[];
  /** The receiver's ERROR frame, if it sent one. */
  error: ErrorMsg | null;
  summary: boolean;
}

/**
 * Behave like an honest sender for `entries` (contents by index; default: `size`
 * bytes of 'x'): manifest, end, the data each decision asks for, then wait for
 * SUMMARY (or ERROR, or the end) and close. Tests tamper before or around it.
 */
export async function scriptedSend(
  peer: HostilePeer,
  entries: WireEntry[],
  contents: Map<number, Buffer> = new Map(),
  opts: { onDecisions?: (ds: Decision[]) => Promise<void> | void } = {},
): Promise<ScriptResult> {
  const out: ScriptResult = { decisions: [], frames: [], error: null, summary: false };
  for (let i = 0; i < entries.length; i += 4096) await peer.send(MsgType.MANIFEST, encodeManifest(entries.slice(i, i + 4096), false));
  await peer.send(MsgType.MANIFEST_END, encodeCount(entries.length));
  for (;;) {
    const f = await peer.next();
    if (f === null) break;
    out.frames.push(f);
    if (f.type === MsgType.DECISIONS) {
      const ds = decodeDecisions(f.payload);
      out.decisions.push(...ds);
      await opts.onDecisions?.(ds);
      for (const d of ds) {
        if (d.action === Action.SKIP) continue;
        const e = entries.find((x) => x.index === d.index)!;
        const c = contents.get(d.index) ?? Buffer.alloc(e.size, 'x');
        await peer.send(MsgType.DATA, dataFor(d.index, c));
      }
    } else if (f.type === MsgType.ERROR) {
      out.error = decodeError(f.payload);
      break;
    } else if (f.type === MsgType.SUMMARY) {
      out.summary = true;
      break;
    }
  }
  await peer.end().catch(() => undefined);
  return out;
}
