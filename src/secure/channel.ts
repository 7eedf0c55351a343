/**
 * establishChannel: run the handshake on a duplex byte stream, then carry frames
 * over TLS 1.3 records — the FrameChannel contract of
 * channel-api.ts, plus `sessionBinding` for tying the -P N connections of one
 * session together.
 *
 * Layout of the stream after the handshake (each direction independently):
 *
 *   records(frames...)  where frames are wire/frame.ts frames laid end to end
 *
 * Frames do not align with records. Sends are gathered: each `send` appends its
 * frame to a pending list; the list is sealed into records by one batch call
 * (record-layer.ts: the data plane's, or node:crypto's) into one buffer and written
 * once 64 KiB are pending or at the end of the current tick, so many small frames
 * share records and one large frame is one write of many records. Received chunks
 * are opened straight into the frame being assembled where they fit, else in place. On a TCP
 * socket, and on ssh's pipes, every read lands in the same buffer of ours (socket-reads.ts: no fresh
 * 64 KiB allocation per read for the garbage collector to free), so the received
 * bytes are only lent: each frame leaves the decoder as a copy (a large one in a
 * reusable buffer that the consumer releases), and a record split across reads is
 * gathered in one reused buffer.
 *
 * Every byte after the handshake is in an authenticated record: there is no
 * unencrypted mode, with one exception, where ssh provides the protection: a channel
 * carried over the ssh connection's own stdin/stdout (`plainInSsh`, the scp-like
 * mode's --via-ssh path) agrees in its authenticated handshake to lay its frames on
 * the stream without records (plain-records.ts says why); a direct connection refuses
 * that (handshake.ts), and a net.Socket cannot even offer it. An on-path attacker must not be able to inject a frame, and an
 * integrity-only record would save little: with the data plane AES-GCM costs a few
 * times a plain copy (bench/records.ts), and a MAC over every byte costs about as much.
 * `--no-encrypt` is refused by the CLI.
 *
 * Channel-level frames (types 0x00-0x0f, never seen by transfer/):
 * - END (0x00): the authenticated end of a direction. A TCP EOF before it is
 *   FERRY_E_INTEGRITY (truncation), never a normal end.
 * - KEY_UPDATE (0x01): the last frame of its record; the sender's next record uses
 *   application_traffic_secret_N+1 = HKDF-Expand-Label(secret, "traffic upd", "",
 *   32) (RFC 8446 §7.2). Sent every `rekeyAfterRecords` records (default 2^23,
 *   well under §5.5's 2^24.5 for AES-GCM). Only application_data records are
 *   ever sent (the kernel's TLS_RX rejects others on plain read()).
 *
 * kTLS: when secure/ktls.ts is present and the kernel has the tls ULP, `ktls:
 * 'auto'|'on'` hands our TX direction to the kernel (it writes byte-identical
 * records from the same key/IV/seq). The kernel cannot be told to rekey at our
 * frame boundary here, so a kTLS TX direction refuses to go past the rekey limit
 * (FERRY_E_KTLS, about 128 GiB per connection) instead of rekeying. RX stays in
 * userspace: bytes that arrive with the handshake's last message are already in
 * our buffers and cannot be handed back to the kernel.
 *
 * Any fault (bad record, bad frame, cut) destroys the stream and makes `frames()`
 * throw at the next pull; frames still queued are dropped, nothing after the
 * fault is delivered.
 */
import type { Duplex } from 'node:stream';
import { Socket } from 'node:net';
import { ErrorCodes, FerryError, isFerryError } from '../core/errors.js';
import { DEFAULT_MAX_FRAME_PAYLOAD, FrameDecoder, FrameTypes, LAST_RESERVED_FRAME_TYPE, PLACE_SLACK, encodeFrame } from '../wire/frame.js';
import type { ChannelInfo, Frame, FrameChannel } from './channel-api.js';
import { MAX_FRAME_PAYLOAD, READS_INTO_BUFFER, WRITES_RELEASE_BUFFERS, type ReadsIntoBuffer } from './channel-api.js';
import { clientHandshake, serverHandshake, type HandshakeAuth } from './handshake.js';
import { nextTrafficSecret, trafficKeys } from './key-schedule.js';
import { MAX_RECORD_PLAINTEXT, RecordOpener, RecordSealer, sealedLength } from './record-layer.js';
import { PlainOpener, PlainSealer } from './plain-records.js';
import { secretBytes } from './secret.js';
import { readIntoBuffer } from './socket-reads.js';
import { dataLead, MsgType } from '../wire/messages.js';
import { netBatchAddon } from '../native/index.js';
import type { TrafficSecret } from './traffic-secret.js';

export interface ChannelOptions {
  role: 'client' | 'server';
  /** The shared secret (a string is NFC-normalised and UTF-8 encoded). */
  secret: Uint8Array | string;
  /** The handshake: 'cpace' (default) for any secret, 'psk' for the ssh mode's 32 random bytes (secure/handshake.ts). */
  auth?: HandshakeAuth;
  /** Printable peer name; default from the socket's remote address. */
  peer?: string;
  /** Handshake deadline. Default 30 s. */
  handshakeTimeoutMs?: number;
  /** After the handshake: fail with FERRY_E_TIMEOUT after this long without progress while waiting. Default 120 s. */
  idleTimeoutMs?: number;
  /** kTLS offload for our sending direction. Default 'auto'. */
  ktls?: 'auto' | 'on' | 'off';
  /** Records per key before a key update. Default 2^23; tests lower it. */
  rekeyAfterRecords?: number;
  /** Largest frame payload accepted. Default MAX_FRAME_PAYLOAD (4 MiB). */
  maxFramePayload?: number;
  /**
   * The stream is the ssh connection's own stdin/stdout (ours under `ferry --server`,
   * or the ssh child's): offer plaintext records inside ssh (plain-records.ts). Never
   * for a TCP connection: a net.Socket with this option is refused.
   */
  plainInSsh?: boolean;
}

export interface SecureChannel extends FrameChannel {
  /** 32 bytes, equal on both ends, unique per session; never sent in clear. */
  readonly sessionBinding: Buffer;
  /** Wall time the handshake took, ms. */
  readonly handshakeMs: number;
  /** Key updates done so far, per direction (diagnostics, tests). */
  readonly keyUpdates: { tx: number; rx: number };
  /** Why kTLS was or was not used (for -v and the JSON summary). */
  readonly ktlsReason: string;
}

/** What the CLI says to `--no-encrypt` (refused: every session is encrypted). */
export const NO_ENCRYPT_REMOVED =
  '--no-encrypt is no longer supported: every session is encrypted and every record authenticated ' +
  '(without that an on-path attacker could inject frames; AES-128-GCM costs about 0.25 CPU s per GiB). Drop the flag.';

/** ChannelInfo.cipher of a channel whose frames ssh protects (plain-records.ts). */
export const PLAIN_IN_SSH_CIPHER = 'none inside ssh';
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 30_000;
export const DEFAULT_IDLE_TIMEOUT_MS = 120_000;
export const DEFAULT_REKEY_AFTER_RECORDS = 2 ** 23;
const FLUSH_BYTES = 64 * 1024;
const EMPTY = Buffer.alloc(0);
const RX_HIGH_WATER = 16 * 1024 * 1024;
/** Sealed-output buffers kept for reuse (TCP sockets only), and the size they are allocated in. */
const TX_POOL_MAX = 4;
const TX_POOL_UNIT = 1024 * 1024;
const RX_LOW_WATER = 4 * 1024 * 1024;
/** The one buffer a TCP socket or ssh's pipe reads into (socket-reads.ts), reused for every read. */
const RX_READ_BYTES = 256 * 1024;
/**
 * The receive queue is bounded in frames too: a frame with an empty payload costs a
 * queue slot and an object but no payload bytes, so a byte bound alone lets a peer
 * grow the queue without limit with 5-byte frames.
 */
const RX_HIGH_FRAMES = 16 * 1024;
const RX_LOW_FRAMES = 4 * 1024;

if (MAX_FRAME_PAYLOAD !== DEFAULT_MAX_FRAME_PAYLOAD) throw new Error('channel-api MAX_FRAME_PAYLOAD and wire/frame disagree');

interface KtlsModule {
  ktlsSupport(): { available: boolean; reason: string };
  enableKtls(socket: Socket, direction: 'tx' | 'rx', secret: TrafficSecret): void;
}

async function loadKtls(): Promise<KtlsModule | string> {
  try {
    // A literal specifier: the CLI's bundle (scripts/bundle.mjs) folds in only what it
    // can see; a specifier in a variable would be looked up beside the bundle, in vain.
    return (await import('./ktls.js')) as KtlsModule;
  } catch (e) {
    return `kTLS module not available (${(e as Error).message.split('\n')[0]})`;
  }
}

/**
 * Where a large DATA payload starts in its assembly buffer: so that its first CHUNK's
 * bytes begin at a multiple of PLACE_SLACK (4096) in memory. The receiver writes a big
 * file's chunks with direct I/O (fs/direct-io.ts), which takes them straight from memory
 * so aligned; anywhere else they would go through a staging copy. Without the addon
 * there is no direct I/O, and nothing to place.
 */
function placeDataPayload(): ((type: number, head: Uint8Array, buf: Buffer) => number) | undefined {
  const gap = netBatchAddon()?.alignGap;
  if (gap === undefined) return undefined;
  return (type, head, buf) => {
    if (type !== MsgType.DATA) return 0;
    const lead = dataLead(head);
    return lead === null ? 0 : (((gap(buf, PLACE_SLACK) - lead) % PLACE_SLACK) + PLACE_SLACK) % PLACE_SLACK;
  };
}

/** What a mode knows about the channel it wants; unset timeouts keep their defaults. */
export interface ChannelSettings {
  secret: Uint8Array | string;
  ktls: 'auto' | 'on' | 'off';
  handshakeTimeoutMs?: number | undefined;
  idleTimeoutMs?: number | undefined;
}

/** ChannelOptions for one side from a mode's settings (send and recv share this). */
export function channelOptions(role: ChannelOptions['role'], s: ChannelSettings): ChannelOptions {
  const opts: ChannelOptions = { role, secret: s.secret, ktls: s.ktls };
  if (s.handshakeTimeoutMs !== undefined) opts.handshakeTimeoutMs = s.handshakeTimeoutMs;
  if (s.idleTimeoutMs !== undefined) opts.idleTimeoutMs = s.idleTimeoutMs;
  return opts;
}

export function peerNameOf(stream: Duplex): string {
  const s = stream as Partial<Socket>;
  if (typeof s.remoteAddress === 'string') {
    // An IPv4 peer of a dual-stack listener arrives as ::ffff:a.b.c.d: show it as IPv4.
    const addr = s.remoteAddress.replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/i, '$1');
    return addr.includes(':') ? `[${addr}]:${s.remotePort}` : `${addr}:${s.remotePort}`;
  }
  return 'peer';
}

export async function establishChannel(stream: Duplex, opts: ChannelOptions): Promise<SecureChannel> {
  const peer = opts.peer ?? peerNameOf(stream);
  const wantKtls = opts.ktls ?? 'auto';
  const plainInSsh = opts.plainInSsh === true;
  if (plainInSsh && (stream instanceof Socket || wantKtls !== 'off')) {
    stream.destroy();
    throw new FerryError(ErrorCodes.INTERNAL, 'plaintext records are only for a channel carried over ssh stdio (not a socket, no kTLS)');
  }

  // Decide about kTLS before the handshake, so that --ktls=on fails before any byte is exchanged.
  let ktls: KtlsModule | null = null;
  let ktlsReason = 'kTLS off (--ktls=off)';
  if (wantKtls !== 'off') {
    const mod = await loadKtls();
    if (typeof mod === 'string') ktlsReason = mod;
    else {
      const sup = mod.ktlsSupport();
      ktlsReason = sup.reason;
      if (sup.available) ktls = mod;
    }
    if (wantKtls === 'on' && ktls === null) {
      stream.destroy();
      throw new FerryError(ErrorCodes.KTLS, `kTLS was required (--ktls=on) but is not available: ${ktlsReason}`);
    }
  }

  // Each direction ends with its own authenticated END frame, so a peer's FIN must not
  // end our direction too (net.Socket's default): we may still have frames to send.
  (stream as Duplex & { allowHalfOpen: boolean }).allowHalfOpen = true;

  const t0 = performance.now();
  const hsOpts = {
    secret: typeof opts.secret === 'string' ? secretBytes(opts.secret) : opts.secret,
    peer,
    timeoutMs: opts.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
    auth: opts.auth ?? 'cpace',
    plainInSsh,
  };
  let hs;
  try {
    hs = opts.role === 'client' ? await clientHandshake(stream, hsOpts) : await serverHandshake(stream, hsOpts);
  } catch (e) {
    // Let a Notice we queued reach the peer, then make sure the stream is gone.
    stream.on('error', () => {});
    stream.end();
    setTimeout(() => stream.destroy(), 2000).unref();
    throw e;
  }
  const handshakeMs = performance.now() - t0;

  let ktlsTx = false;
  if (ktls !== null) {
    const sock = stream as Socket;
    try {
      // Every handshake byte must have left userspace before the kernel takes over:
      // an empty write completes only after the writes queued before it.
      await new Promise<void>((resolve, reject) => sock.write(EMPTY, (err) => (err ? reject(err) : resolve())));
      ktls.enableKtls(sock, 'tx', trafficKeys(hs.txSecret));
      ktlsTx = true;
      ktlsReason = 'kTLS TX in use (RX in userspace)';
    } catch (e) {
      ktlsReason = `kTLS could not be enabled: ${(e as Error).message}`;
      if (wantKtls === 'on') {
        stream.destroy();
        throw isFerryError(e, ErrorCodes.KTLS) ? e : new FerryError(ErrorCodes.KTLS, `kTLS was required (--ktls=on): ${ktlsReason}`, { cause: e });
      }
    }
  }

  return new Channel(stream, {
    peer,
    txSecret: hs.txSecret,
    rxSecret: hs.rxSecret,
    sessionBinding: hs.sessionBinding,
    leftover: hs.leftover,
    plain: hs.plainInSsh,
    handshakeMs,
    ktlsTx,
    ktlsReason,
    idleTimeoutMs: opts.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
    rekeyAfterRecords: opts.rekeyAfterRecords ?? DEFAULT_REKEY_AFTER_RECORDS,
    maxFramePayload: opts.maxFramePayload ?? MAX_FRAME_PAYLOAD,
  });
}

interface ChannelState {
  peer: string;
  txSecret: Buffer;
  rxSecret: Buffer;
  sessionBinding: Buffer;
  leftover: Buffer[];
  /** Frames without records (plain-records.ts): agreed in the handshake, over ssh stdio only. */
  plain: boolean;
  handshakeMs: number;
  ktlsTx: boolean;
  ktlsReason: string;
  idleTimeoutMs: number;
  rekeyAfterRecords: number;
  maxFramePayload: number;
}


class Channel implements SecureChannel {
  readonly info: ChannelInfo;
  readonly sessionBinding: Buffer;
  readonly handshakeMs: number;
  readonly ktlsReason: string;
  readonly keyUpdates = { tx: 0, rx: 0 };
  bytesSent = 0;
  bytesReceived = 0;

  readonly #stream: Duplex;
  readonly #peer: string;
  readonly #ktlsTx: boolean;
  readonly #rekeyAfter: number;
  readonly #maxPayload: number;
  #txSecret: Buffer;
  #rxSecret: Buffer;
  readonly #plain: boolean;
  readonly #sealer: RecordSealer | PlainSealer | null;
  readonly #opener: RecordOpener | PlainOpener;
  readonly #decoder: FrameDecoder;
  #ktlsRecords = 0;

  // send side
  /**
   * Sealed-output buffers to reuse, so that sending does not fault in fresh pages for
   * every byte (about 0.1 CPU s per GiB here). Only on a net.Socket, which is done with
   * a buffer when the write's callback runs; other streams (an in-memory pair, a pipe
   * wrapper) may still hold it, so they get fresh buffers.
   */
  readonly #txPool: Buffer[] | null;
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #flushScheduled = false;
  #closing: Promise<void> | null = null;

  // receive side
  #queue: Frame[] = [];
  #qHead = 0;
  #queuedBytes = 0;
  #paused = false;
  /** Reads land in one reused buffer (socket-reads.ts, or the stream's READS_INTO_BUFFER) rather than 'data' events. */
  #userReads = false;
  #ended = false; // peer's END seen
  #failure: Error | null = null;
  readonly #waiters = new Set<() => void>();
  #iterated = false;

  // idle timeout
  readonly #idleMs: number;
  #lastProgress = performance.now();
  #idleTimer: NodeJS.Timeout | null = null;
  #waiting = 0;

  constructor(stream: Duplex, s: ChannelState) {
    this.#stream = stream;
    this.#peer = s.peer;
    this.#ktlsTx = s.ktlsTx;
    this.#txSecret = s.txSecret;
    this.#rxSecret = s.rxSecret;
    this.#rekeyAfter = Math.max(1, s.rekeyAfterRecords);
    this.#maxPayload = s.maxFramePayload;
    this.#idleMs = s.idleTimeoutMs;
    this.sessionBinding = s.sessionBinding;
    this.handshakeMs = s.handshakeMs;
    this.ktlsReason = s.ktlsReason;
    this.#plain = s.plain;
    this.#sealer = s.plain ? new PlainSealer() : s.ktlsTx ? null : new RecordSealer(trafficKeys(s.txSecret));
    this.#txPool = stream instanceof Socket || (stream as { [WRITES_RELEASE_BUFFERS]?: boolean })[WRITES_RELEASE_BUFFERS] === true ? [] : null;
    // Received bytes are lent (one reused read buffer on a TCP socket): records are
    // opened in place and every frame leaves the decoder as a copy.
    this.#opener = s.plain ? new PlainOpener() : new RecordOpener(trafficKeys(s.rxSecret), { peer: s.peer, borrowed: true });
    this.#decoder = new FrameDecoder({ maxPayload: s.maxFramePayload, peer: s.peer, borrowed: true, place: placeDataPayload() });
    this.info = {
      cipher: s.plain ? PLAIN_IN_SSH_CIPHER : 'aes-128-gcm',
      tx: s.ktlsTx ? 'ktls' : 'userspace',
      rx: 'userspace',
      records: this.#opener.implementation,
      peer: s.peer,
    };

    stream.on('end', this.#onEnd);
    stream.on('close', this.#onClose);
    stream.on('error', this.#onError);
    for (const c of s.leftover) this.#onData(c);
    // What the stream buffered while paused after the handshake comes first.
    for (let c = stream.read() as Buffer | null; c !== null; c = stream.read() as Buffer | null) this.#onData(c);
    const readBuf = Buffer.allocUnsafeSlow(RX_READ_BYTES);
    this.#userReads = readIntoBuffer(stream, readBuf, this.#onRead) || (stream as Partial<ReadsIntoBuffer>)[READS_INTO_BUFFER]?.(readBuf, this.#onRead) === true;
    if (!this.#userReads) stream.on('data', this.#onData);
    stream.resume();
  }

  /** A read into the socket's reused buffer: false pauses reading (see #onData). */
  readonly #onRead = (bytes: Buffer): boolean => {
    this.#onData(bytes);
    return !this.#paused;
  };

  // ---------------------------------------------------------------- receive

  readonly #onData = (chunk: Buffer): void => {
    if (this.#failure) return;
    this.#lastProgress = performance.now();
    try {
      if (this.#ended) throw this.#protocol('sent data after its end of stream');
      // The chunk is lent to us until we return (a socket read): its records are
      // decrypted in place, and what outlives this call is copied (frames, a split record).
      // Records go straight into the frame being assembled where they fit (no copy from
      // the read buffer); the others are opened in place one at a time and copied.
      const opener = this.#opener;
      const decoder = this.#decoder;
      opener.push(chunk);
      for (;;) {
        const room = this.#plain ? null : decoder.room();
        if (room !== null) {
          const n = (opener as RecordOpener).nextInto(room.buf, room.off, room.stop);
          if (n > 0) {
            if (this.#ended) throw this.#protocol('sent records after its end of stream');
            decoder.wrote(n);
            this.#drainFrames();
            continue;
          }
        }
        const content = opener.next(1);
        if (content === null) break;
        if (this.#ended) throw this.#protocol('sent records after its end of stream');
        decoder.push(content);
        this.#drainFrames();
      }
    } catch (e) {
      this.#fail(e);
      return;
    }
    if ((this.#queuedBytes > RX_HIGH_WATER || this.#queue.length - this.#qHead > RX_HIGH_FRAMES) && !this.#paused) {
      this.#paused = true;
      // With reads into our buffer, #onRead's false stops them (pause() would too, but
      // also pauses the Readable, which then holds back the 'end' event).
      if (!this.#userReads) this.#stream.pause();
    }
    this.#poke();
  };

  /** Decode every complete frame of the record contents pushed so far (they end at a record boundary). */
  #drainFrames(): void {
    const d = this.#decoder;
    for (let f = d.next(); f !== null; f = d.next()) {
      if (f.type > LAST_RESERVED_FRAME_TYPE) {
        this.#queue.push(f);
        this.#queuedBytes += f.payload.length;
        this.bytesReceived += f.payload.length;
        continue;
      }
      if (f.type === FrameTypes.END) {
        if (f.payload.length !== 0 || d.buffered !== 0 || this.#opener.buffered !== 0) {
          throw this.#protocol('sent data after its end of stream');
        }
        this.#ended = true;
        this.#clearIdle();
      } else if (f.type === FrameTypes.KEY_UPDATE) {
        if (this.#plain) throw this.#protocol('sent a key update on a channel without records');
        if (d.buffered !== 0 || f.payload.length !== 0) throw this.#protocol('sent a misplaced key update');
        this.#rxSecret = nextTrafficSecret(this.#rxSecret);
        this.#opener.setKeys(trafficKeys(this.#rxSecret));
        this.keyUpdates.rx++;
      } else {
        throw this.#protocol(`sent unknown channel frame type ${f.type}`);
      }
    }
  }

  readonly #onEnd = (): void => {
    if (!this.#ended && !this.#failure) {
      this.#fail(
        new FerryError(ErrorCodes.INTEGRITY, `${this.#peer}: connection cut before the authenticated end of stream`, { subject: this.#peer }),
      );
    }
    this.#poke();
  };

  readonly #onClose = (): void => {
    this.#onEnd();
    this.#clearIdle();
  };

  readonly #onError = (e: Error): void => {
    if (this.#failure) return;
    this.#fail(new FerryError(ErrorCodes.CONNECT, `${this.#peer}: connection lost: ${e.message}`, { subject: this.#peer, cause: e }));
  };

  #protocol(what: string): FerryError {
    return new FerryError(ErrorCodes.PROTOCOL, `${this.#peer} ${what}`, { subject: this.#peer });
  }

  #fail(e: unknown): void {
    if (this.#failure) return;
    this.#failure = isFerryError(e)
      ? e
      : new FerryError(ErrorCodes.INTERNAL, `${this.#peer}: ${(e as Error)?.message ?? String(e)}`, { cause: e });
    this.#queue = [];
    this.#qHead = 0;
    this.#queuedBytes = 0;
    this.#pending = [];
    this.#pendingBytes = 0;
    this.#clearIdle();
    this.#stream.destroy();
    this.#poke();
  }

  #poke(): void {
    if (this.#waiters.size === 0) return;
    const ws = [...this.#waiters];
    this.#waiters.clear();
    for (const w of ws) w();
  }

  #waitEvent(): Promise<void> {
    return new Promise((resolve) => {
      this.#waiters.add(resolve);
    });
  }

  frames(): AsyncIterable<Frame> {
    if (this.#iterated) throw new FerryError(ErrorCodes.INTERNAL, 'channel frames() may be iterated once');
    this.#iterated = true;
    const self = this;
    return {
      async *[Symbol.asyncIterator]() {
        for (;;) {
          if (self.#failure) throw self.#failure;
          if (self.#qHead < self.#queue.length) {
            const f = self.#queue[self.#qHead]!;
            self.#queue[self.#qHead++] = undefined as unknown as Frame;
            if (self.#qHead > 1024 && self.#qHead * 2 > self.#queue.length) {
              self.#queue = self.#queue.slice(self.#qHead);
              self.#qHead = 0;
            }
            self.#queuedBytes -= f.payload.length;
            if (self.#paused && self.#queuedBytes < RX_LOW_WATER && self.#queue.length - self.#qHead < RX_LOW_FRAMES) {
              self.#paused = false;
              self.#stream.resume();
            }
            yield f;
            continue;
          }
          if (self.#ended) return;
          await self.#waitWithIdle(() => self.#waitEvent());
        }
      },
    };
  }

  // ------------------------------------------------------------- idle timer

  async #waitWithIdle(wait: () => Promise<void>): Promise<void> {
    this.#waiting++;
    this.#armIdle();
    try {
      await wait();
    } finally {
      // The timer is left armed (re-arming per wait would cost a timer per frame);
      // it stops itself when it finds nobody waiting, and is cleared at the end.
      this.#waiting--;
    }
  }

  #armIdle(): void {
    if (this.#idleTimer !== null || this.#failure) return;
    const check = (): void => {
      this.#idleTimer = null;
      if (this.#failure || this.#waiting === 0) return;
      const idle = performance.now() - this.#lastProgress;
      if (idle >= this.#idleMs) {
        this.#fail(
          new FerryError(ErrorCodes.TIMEOUT, `${this.#peer}: no progress for ${(idle / 1000).toFixed(idle < 10_000 ? 1 : 0)} s`, { subject: this.#peer }),
        );
        return;
      }
      this.#idleTimer = setTimeout(check, this.#idleMs - idle + 1);
    };
    // Not unref'd: someone awaits this channel; cleared at the peer's end, on failure and on close.
    this.#idleTimer = setTimeout(check, Math.max(1, this.#idleMs - (performance.now() - this.#lastProgress)) + 1);
  }

  #clearIdle(): void {
    if (this.#idleTimer !== null) clearTimeout(this.#idleTimer);
    this.#idleTimer = null;
  }

  // ------------------------------------------------------------------ send

  async send(type: number, payload: Uint8Array | readonly Uint8Array[]): Promise<void> {
    if (type <= LAST_RESERVED_FRAME_TYPE || type > 0xff) {
      throw new FerryError(ErrorCodes.INTERNAL, `frame type ${type} is reserved for the channel`);
    }
    const first = this.#pending.length + 1; // after the frame header, which is ours
    this.#enqueue(type, payload);
    if (this.#pendingBytes >= FLUSH_BYTES) this.#flush();
    else {
      // The caller may reuse the payload once we return (channel-api.ts): a frame that
      // waits for the end of the tick is copied; a flushed one is already sealed.
      for (let i = first; i < this.#pending.length; i++) this.#pending[i] = Buffer.from(this.#pending[i]!);
      this.#scheduleFlush();
    }
    if (this.#stream.writableNeedDrain) await this.#drain();
  }

  #enqueue(type: number, payload: Uint8Array | readonly Uint8Array[]): void {
    if (this.#failure) throw this.#failure;
    if (this.#closing) throw new FerryError(ErrorCodes.INTERNAL, 'send after close');
    const parts = encodeFrame(type, payload);
    const len = parts[0]!.readUInt32BE(1);
    if (len > this.#maxPayload) {
      throw new FerryError(ErrorCodes.INTERNAL, `frame of ${len} bytes exceeds the ${this.#maxPayload}-byte limit`);
    }
    for (const p of parts) this.#pending.push(p);
    this.#pendingBytes += len + parts[0]!.length;
    if (type > LAST_RESERVED_FRAME_TYPE) this.bytesSent += len;
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    setImmediate(() => {
      this.#flushScheduled = false;
      if (!this.#failure) this.#flush();
    });
  }

  #flush(): void {
    if (this.#pendingBytes === 0 || this.#failure) return;
    const parts = this.#pending;
    const bytes = this.#pendingBytes;
    this.#pending = [];
    this.#pendingBytes = 0;
    const s = this.#stream;
    try {
      const sealer = this.#sealer;
      if (sealer !== null) {
        if (sealer.seq >= BigInt(this.#rekeyAfter)) {
          // §4.6.3/§7.2: the KEY_UPDATE frame ends its record; everything after uses the next key.
          s.write(sealer.seal(encodeFrame(FrameTypes.KEY_UPDATE, EMPTY)));
          this.#txSecret = nextTrafficSecret(this.#txSecret);
          sealer.setKeys(trafficKeys(this.#txSecret));
          this.keyUpdates.tx++;
        }
        // One batch seal of everything pending into one buffer, one write.
        this.#writeSealed(sealer, parts, bytes);
        return;
      }
      if (this.#ktlsTx) {
        // The kernel cuts each sendmsg into ≤ 16 KiB records; +1 per flush for a short last record.
        // Partial writes can add a few more: the 2^23 limit leaves a 2.8× margin to §5.5's 2^24.5.
        this.#ktlsRecords += Math.ceil(bytes / MAX_RECORD_PLAINTEXT) + 1;
        if (this.#ktlsRecords >= this.#rekeyAfter) {
          throw new FerryError(
            ErrorCodes.KTLS,
            `${this.#peer}: kTLS cannot rekey; this connection reached its record limit (use --ktls=off for transfers this large per connection)`,
          );
        }
      }
      // One copy, so that the socket never holds the caller's buffers (see send).
      s.write(parts.length === 1 ? parts[0]! : Buffer.concat(parts, bytes), this.#onWritten);
    } catch (e) {
      this.#fail(e);
    }
  }

  #writeSealed(sealer: RecordSealer | PlainSealer, parts: readonly Buffer[], bytes: number): void {
    const pool = this.#txPool;
    const need = this.#plain ? bytes : sealedLength(bytes);
    if (pool === null) {
      this.#stream.write(sealer.seal(parts), this.#onWritten);
      return;
    }
    let buf: Buffer | undefined;
    for (let i = pool.length - 1; i >= 0; i--) {
      if (pool[i]!.length >= need) {
        buf = pool[i]!;
        pool[i] = pool[pool.length - 1]!;
        pool.pop();
        break;
      }
    }
    buf ??= Buffer.allocUnsafe(Math.ceil(need / TX_POOL_UNIT) * TX_POOL_UNIT);
    const n = sealer.sealInto(parts, buf, 0);
    const out = buf;
    let recycled = false;
    this.#stream.write(out.subarray(0, n), (err?: Error | null) => {
      // The socket is done with the buffer once its write completed.
      if (!err && !recycled && pool.length < TX_POOL_MAX) pool.push(out);
      this.#onWritten(err);
    });
    // Nothing buffered: the kernel took the whole write synchronously (its callback
    // only runs on a later tick, after a burst of sends that each would need a fresh
    // buffer), so the buffer is free again now.
    if (this.#stream.writableLength === 0 && pool.length < TX_POOL_MAX) {
      recycled = true;
      pool.push(out);
    }
  }

  readonly #onWritten = (err?: Error | null): void => {
    if (!err) this.#lastProgress = performance.now();
  };

  async #drain(): Promise<void> {
    const s = this.#stream;
    while (s.writableNeedDrain && !this.#failure && !s.destroyed) {
      await this.#waitWithIdle(
        () =>
          new Promise<void>((resolve) => {
            const done = (): void => {
              s.off('drain', done);
              s.off('close', done);
              this.#waiters.delete(done); // a failure pokes the waiters, so it wakes us as well
              resolve();
            };
            s.on('drain', done);
            s.on('close', done);
            this.#waiters.add(done);
          }),
      );
      this.#lastProgress = performance.now();
    }
    if (this.#failure) throw this.#failure;
  }

  close(): Promise<void> {
    if (this.#closing) return this.#closing;
    this.#closing = (async () => {
      if (this.#failure) throw this.#failure;
      const parts = encodeFrame(FrameTypes.END, EMPTY);
      for (const p of parts) this.#pending.push(p);
      this.#pendingBytes += parts[0]!.length;
      this.#flush();
      if (this.#failure) throw this.#failure;
      const s = this.#stream;
      await new Promise<void>((resolve, reject) => {
        s.end((err?: Error | null) => (err ? reject(err) : resolve()));
      });
    })();
    return this.#closing;
  }

  destroy(err?: Error): void {
    this.#fail(err ?? new FerryError(ErrorCodes.CONNECT, `${this.#peer}: connection closed locally`, { subject: this.#peer }));
  }
}
