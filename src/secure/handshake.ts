/**
 * The ferry handshake: hello (magic + version), CPace, key confirmation. Each side
 * is one straight-line async function (js-libp2p-noise `performHandshake.ts`
 * style); the wire format and the crypto live in wire/hello.ts, cpace.ts and
 * key-schedule.ts.
 *
 *   client                                         server
 *   hello, ClientShare{sid, MSGa}   ───────►
 *                                   ◄───────       hello          (sent at accept)
 *                                   ◄───────       ServerShare{MSGb}, ServerConfirm{mac_s}
 *   verify mac_s; ClientConfirm{mac_c} ────►       verify mac_c
 *   (records may follow at once)                   (records follow)
 *
 *   messages: type (u8) || length (u16) || body, every length ≤ 1 KiB
 *   MSGa/MSGb = prefix_free_cat(Y, AD); AD = one flags byte (bit 0: encrypt, always set;
 *               bit 1: this side's channel is carried over ssh's stdin/stdout, see below)
 *   th   = SHA-256(client hello || ClientShare || server hello || ServerShare)
 *   mac_s = HMAC(s_finished, th); mac_c = HMAC(c_finished, SHA-256(th-input || ServerConfirm))
 *
 * Properties this flow gives (SECURITY.md has the full argument):
 * - The secret never crosses the wire; a recording, or an active attacker, can test
 *   one guess per session online and none offline (CPace).
 * - sid is 16 fresh random bytes from the client and every scalar is fresh, so a
 *   replayed recording meets a fresh server scalar and fails key confirmation.
 * - Wrong secret: the client sees a bad mac_s one round trip after connecting and
 *   tells the server with an (unauthenticated) Notice; both fail FERRY_E_AUTH before
 *   any record is sent. A server that sees a bad mac_c likewise sends a Notice.
 * - Guesses are counted on the server. Whichever side confirms first hands the other
 *   a check of one guess; the server confirms first here (as SPAKE2+, RFC 9383, and
 *   TLS 1.3 do) because that keeps the handshake to one round trip before data flows.
 *   The price is that a guessing client learns its answer from mac_s without ever
 *   sending mac_c, so the server treats every handshake that got past its
 *   ServerConfirm without a valid ClientConfirm as FERRY_E_AUTH, whatever ended it;
 *   the listener then throttles the guesser (modes/recv.ts). For the same reason a
 *   client that has verified mac_s always sends mac_c, even when it is about to give
 *   up over the peer's flags.
 * - The encrypt flag of each side is inside the confirmed transcript. Every session
 *   is encrypted now; a peer without the flag (an older ferry run with --no-encrypt)
 *   is refused after authentication, on both sides, naming the flag.
 * - Plaintext records inside ssh: a side whose channel runs over the ssh connection's
 *   own stdin/stdout (the scp-like mode's --via-ssh path, and nothing else) sets flag
 *   bit 1; when both sides set it, the channel after the handshake carries its frames
 *   without AES-GCM, because ssh already encrypts and authenticates those bytes between
 *   the two hosts and the key itself came over that same ssh connection (SECURITY.md,
 *   "Plaintext records inside ssh"). The flags are in the confirmed transcript, so no
 *   one without the key can set the bit; and a side on a direct connection refuses a
 *   peer that sets it (after key confirmation, like the encrypt flag), so a direct TCP
 *   channel never runs without record protection, whoever asks.
 * - A version or magic mismatch: the side that sees it sends a Notice (after its
 *   own hello) and both fail FERRY_E_VERSION; a non-ferry peer is named by guess.
 *
 * The ssh mode's variant, PSK (`auth: 'psk'`): there the key is 32 fresh random bytes
 * that ssh handed over, not something a person chose, so a PAKE buys nothing and
 * costs two scalar multiplications and the loading of @noble/curves on each side.
 * The same flow with nonces in place of the CPace shares:
 *
 *   client                                         server
 *   hello, ClientNonce{n_c, flags}  ───────►
 *                                   ◄───────       hello, ServerNonce{n_s, flags}, ServerConfirm{mac_s}
 *   verify mac_s; ClientConfirm{mac_c} ────►       verify mac_c
 *
 *   n_c, n_s = 32 fresh random bytes each; prk = HKDF-Extract("ferry/1 psk", key)
 *   th, mac_s, mac_c, traffic secrets and binding exactly as above
 *
 * Both nonces are in th, so every connection under one key (the -P streams, a retry)
 * gets its own traffic keys, and a replayed client meets a fresh n_s and fails
 * mac_c. The finished keys differ per direction and mac_c also covers
 * ServerConfirm, so a MAC reflected back to its sender never verifies. A man in the
 * middle without the key can neither produce mac_s nor alter a byte of the
 * transcript unnoticed. What PSK gives up is CPace's resistance to offline guessing
 * (mac_s is a MAC under the key over public values): harmless for a uniformly random
 * 256-bit key, fatal for a password, so `psk` demands exactly PSK_BYTES of key and
 * the CLI never offers it for a typed secret. The mode is fixed by each side's
 * configuration, never negotiated: a PSK server refuses a ClientShare and a CPace
 * server a ClientNonce (FERRY_E_PROTOCOL), and the two modes' keys come from
 * different HKDF salts.
 */
import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { ErrorCodes, FerryError, cleanForDisplay, isFerryError, type ErrorCode } from '../core/errors.js';
import { BufferList } from '../wire/frame.js';
import { HELLO_BYTES, MAGIC, PROTOCOL_VERSION, checkHelloPrefix, encodeHello, guessProtocol, parseHello } from '../wire/hello.js';
import { deriveSessionSecrets, finishedMac, macEqual, sha256, type SessionSecrets } from './key-schedule.js';

export const MsgTypes = {
  CLIENT_SHARE: 0x01,
  SERVER_SHARE: 0x02,
  SERVER_CONFIRM: 0x03,
  CLIENT_CONFIRM: 0x04,
  CLIENT_NONCE: 0x05,
  SERVER_NONCE: 0x06,
  NOTICE: 0x7f,
} as const;

/** Reasons carried by a Notice (an unauthenticated "I am giving up because ..."). */
export const NoticeCodes = {
  VERSION: 1,
  AUTH: 2,
  PROTOCOL: 3,
  MODE: 4,
} as const;

export const MAX_HANDSHAKE_MESSAGE = 1024;
const MSG_HEADER = 3;
const SID_BYTES = 16;
const NONCE_BYTES = 32;
/** The only key length `auth: 'psk'` accepts: a full-entropy key, never a password. */
export const PSK_BYTES = 32;
const MAC_BYTES = 32;
const FLAG_ENCRYPT = 0x01;
const FLAG_PLAIN_IN_SSH = 0x02;
/** CPace channel identifier: binds the exchange to this protocol and version. */
const CI = Buffer.from(`ferry/${PROTOCOL_VERSION}`);

export type HandshakeAuth = 'cpace' | 'psk';

export interface HandshakeOptions {
  /** The shared secret, as bytes (UTF-8 of what the user typed, or the ssh mode's random key). */
  secret: Uint8Array;
  /** 'cpace' (default) for a secret a person chose; 'psk' only for PSK_BYTES random bytes. */
  auth?: HandshakeAuth;
  /** Printable name of the peer for messages. */
  peer: string;
  /** The whole handshake must finish within this many ms. */
  timeoutMs: number;
  /**
   * This stream is the ssh connection's own stdin/stdout (never a TCP connection): offer
   * plaintext records (flag bit 1). They are used only when the peer offers them too.
   */
  plainInSsh?: boolean;
}

export interface HandshakeResult {
  /** Traffic secret (32 bytes) for what we send and what we receive. */
  txSecret: Buffer;
  rxSecret: Buffer;
  /** Equal on both sides, unique per session (see key-schedule.ts). */
  sessionBinding: Buffer;
  /** Bytes that arrived after the handshake (the first records): feed them to the record layer. */
  leftover: Buffer[];
  /** Both sides offered plaintext records inside ssh: frames go without AES-GCM records. */
  plainInSsh: boolean;
}

export async function clientHandshake(stream: Duplex, opts: HandshakeOptions): Promise<HandshakeResult> {
  if (opts.auth === 'psk') return clientPskHandshake(stream, opts);
  // Loaded here, not at the top: the ssh mode's PSK handshake never needs the curve code.
  const { startCPace } = await import('./cpace.js');
  const io = new HandshakeIO(stream, opts);
  try {
    const sid = randomBytes(SID_BYTES);
    const cpace = startCPace('a', opts.secret, CI, sid, Buffer.from([flagsOf(opts)]));
    const myHello = encodeHello();
    const clientShare = encodeMessage(MsgTypes.CLIENT_SHARE, Buffer.concat([sid, cpace.msg]));
    io.write(Buffer.concat([myHello, clientShare]));

    const peerHello = await io.readHello(false);
    const serverShare = await io.readMessage(MsgTypes.SERVER_SHARE);
    const result = cpace.finish(serverShare.body);
    if (result === null) throw io.fatal(ErrorCodes.PROTOCOL, NoticeCodes.PROTOCOL, 'sent an invalid CPace share');
    const thInput = Buffer.concat([myHello, clientShare, peerHello, serverShare.raw]);
    return await confirmAsClient(io, opts, thInput, (th) => deriveSessionSecrets(result.isk, th), result.peerAD);
  } finally {
    io.stop();
  }
}

export async function serverHandshake(stream: Duplex, opts: HandshakeOptions): Promise<HandshakeResult> {
  if (opts.auth === 'psk') return serverPskHandshake(stream, opts);
  const { startCPace } = await import('./cpace.js');
  const io = new HandshakeIO(stream, opts);
  try {
    const myHello = encodeHello();
    io.write(myHello);
    const peerHello = await io.readHello(true);
    const clientShare = await io.readMessage(MsgTypes.CLIENT_SHARE);
    if (clientShare.body.length <= SID_BYTES) throw io.fatal(ErrorCodes.PROTOCOL, NoticeCodes.PROTOCOL, 'sent a short ClientShare');
    const sid = clientShare.body.subarray(0, SID_BYTES);
    const cpace = startCPace('b', opts.secret, CI, sid, Buffer.from([flagsOf(opts)]));
    const result = cpace.finish(clientShare.body.subarray(SID_BYTES));
    if (result === null) throw io.fatal(ErrorCodes.PROTOCOL, NoticeCodes.PROTOCOL, 'sent an invalid CPace share');
    const serverShare = encodeMessage(MsgTypes.SERVER_SHARE, cpace.msg);
    const thInput = Buffer.concat([peerHello, clientShare.raw, myHello, serverShare]);
    return await confirmAsServer(io, opts, thInput, serverShare, (th) => deriveSessionSecrets(result.isk, th), result.peerAD);
  } finally {
    io.stop();
  }
}

/** The ssh mode's client side: nonces instead of CPace shares, the same confirmations. */
async function clientPskHandshake(stream: Duplex, opts: HandshakeOptions): Promise<HandshakeResult> {
  const key = pskOf(opts);
  const io = new HandshakeIO(stream, opts);
  try {
    const myHello = encodeHello();
    const clientNonce = encodeMessage(MsgTypes.CLIENT_NONCE, Buffer.concat([randomBytes(NONCE_BYTES), Buffer.from([flagsOf(opts)])]));
    io.write(Buffer.concat([myHello, clientNonce]));

    const peerHello = await io.readHello(false);
    const serverNonce = await io.readMessage(MsgTypes.SERVER_NONCE);
    if (serverNonce.body.length !== NONCE_BYTES + 1) throw io.fatal(ErrorCodes.PROTOCOL, NoticeCodes.PROTOCOL, 'sent a malformed ServerNonce');
    const thInput = Buffer.concat([myHello, clientNonce, peerHello, serverNonce.raw]);
    return await confirmAsClient(io, opts, thInput, (th) => deriveSessionSecrets(key, th, 'psk'), serverNonce.body.subarray(NONCE_BYTES));
  } finally {
    io.stop();
  }
}

/** The ssh mode's server side. */
async function serverPskHandshake(stream: Duplex, opts: HandshakeOptions): Promise<HandshakeResult> {
  const key = pskOf(opts);
  const io = new HandshakeIO(stream, opts);
  try {
    const myHello = encodeHello();
    io.write(myHello);
    const peerHello = await io.readHello(true);
    const clientNonce = await io.readMessage(MsgTypes.CLIENT_NONCE);
    if (clientNonce.body.length !== NONCE_BYTES + 1) throw io.fatal(ErrorCodes.PROTOCOL, NoticeCodes.PROTOCOL, 'sent a malformed ClientNonce');
    const serverNonce = encodeMessage(MsgTypes.SERVER_NONCE, Buffer.concat([randomBytes(NONCE_BYTES), Buffer.from([flagsOf(opts)])]));
    const thInput = Buffer.concat([peerHello, clientNonce.raw, myHello, serverNonce]);
    return await confirmAsServer(io, opts, thInput, serverNonce, (th) => deriveSessionSecrets(key, th, 'psk'), clientNonce.body.subarray(NONCE_BYTES));
  } finally {
    io.stop();
  }
}

/** Session secrets from the transcript hash: CPace's ISK or the PSK, each under its own HKDF salt. */
type DeriveSecrets = (th: Buffer) => SessionSecrets;

/**
 * The client's key confirmation, the same after CPace and PSK: derive the secrets from
 * the transcript, check the server's mac_s, send mac_c (over the transcript and
 * ServerConfirm), then check the peer's flags.
 */
async function confirmAsClient(io: HandshakeIO, opts: HandshakeOptions, thInput: Buffer, derive: DeriveSecrets, peerFlags: Buffer): Promise<HandshakeResult> {
  const th = sha256(thInput);
  const secrets = derive(th);
  const serverConfirm = await io.readMessage(MsgTypes.SERVER_CONFIRM);
  if (!macEqual(serverConfirm.body, finishedMac(secrets.serverFinishedKey, th))) {
    throw io.fatal(ErrorCodes.AUTH, NoticeCodes.AUTH, authFailedText(opts.peer));
  }
  // Prove the secret before anything else, even when about to refuse the peer's
  // flags: the server counts every handshake that ends without a valid mac_c as a
  // failed guess, and a peer that knows the secret is not a guesser.
  io.write(encodeMessage(MsgTypes.CLIENT_CONFIRM, finishedMac(secrets.clientFinishedKey, sha256(thInput, serverConfirm.raw))));
  const plainInSsh = agreeFlags(io, peerFlags, opts);
  return { txSecret: secrets.clientTraffic, rxSecret: secrets.serverTraffic, sessionBinding: secrets.binding, leftover: io.release(), plainInSsh };
}

/**
 * The server's key confirmation, the same after CPace and PSK: derive the secrets from
 * the transcript, send `myShare` (the transcript's last message) with mac_s in one
 * write, check the client's mac_c, then check the peer's flags.
 */
async function confirmAsServer(
  io: HandshakeIO,
  opts: HandshakeOptions,
  thInput: Buffer,
  myShare: Buffer,
  derive: DeriveSecrets,
  peerFlags: Buffer,
): Promise<HandshakeResult> {
  const th = sha256(thInput);
  const secrets = derive(th);
  const serverConfirm = encodeMessage(MsgTypes.SERVER_CONFIRM, finishedMac(secrets.serverFinishedKey, th));
  // From here on the client can check its guess of the secret against mac_s, so
  // whatever ends this handshake short of a valid mac_c (a disconnect, a reset, a
  // timeout, a Notice, garbage) is a failed guess: FERRY_E_AUTH, which the listener
  // counts and throttles (modes/recv.ts).
  io.write(Buffer.concat([myShare, serverConfirm]));

  let clientConfirm: { body: Buffer; raw: Buffer };
  try {
    clientConfirm = await io.readMessage(MsgTypes.CLIENT_CONFIRM);
  } catch (e) {
    throw unprovenAfterConfirm(opts.peer, e);
  }
  if (!macEqual(clientConfirm.body, finishedMac(secrets.clientFinishedKey, sha256(thInput, serverConfirm)))) {
    throw io.fatal(ErrorCodes.AUTH, NoticeCodes.AUTH, authFailedText(opts.peer));
  }
  const plainInSsh = agreeFlags(io, peerFlags, opts);
  return { txSecret: secrets.serverTraffic, rxSecret: secrets.clientTraffic, sessionBinding: secrets.binding, leftover: io.release(), plainInSsh };
}

/** A PSK is a full-entropy key of exactly PSK_BYTES: anything else is a programming error. */
function pskOf(opts: HandshakeOptions): Uint8Array {
  if (opts.secret.length !== PSK_BYTES) {
    throw new FerryError(ErrorCodes.INTERNAL, `the PSK handshake needs a ${PSK_BYTES}-byte random key, not a ${opts.secret.length}-byte secret`);
  }
  return opts.secret;
}

function authFailedText(peer: string): string {
  return `authentication failed with ${peer}: the shared secrets differ`;
}

/**
 * The server's verdict on a client that received mac_s and then did not send a valid
 * mac_c: it may have checked a guess against mac_s, so this is an authentication
 * failure whatever the immediate cause (kept as `cause`).
 */
function unprovenAfterConfirm(peer: string, e: unknown): FerryError {
  if (isFerryError(e, ErrorCodes.AUTH)) return e;
  const why = isFerryError(e) ? e.message : String(e);
  return new FerryError(
    ErrorCodes.AUTH,
    `authentication failed with ${peer}: it received the key confirmation but never proved the secret (${why}); counted as a failed guess`,
    { subject: peer, cause: e },
  );
}

function modeMismatchText(peer: string): string {
  return `${peer} runs with --no-encrypt (an older ferry): every session is encrypted now; drop --no-encrypt there or upgrade it`;
}

/** Our flags byte: encrypt, and whether our channel is carried over ssh's stdio. */
function flagsOf(opts: HandshakeOptions): number {
  return FLAG_ENCRYPT | (opts.plainInSsh === true ? FLAG_PLAIN_IN_SSH : 0);
}

/**
 * The peer's flags, checked after key confirmation (so they are the peer's own, not an
 * attacker's): encryption must be on, and plaintext records are agreed only when both
 * sides run over ssh's stdio. A peer that offers them to a side that does not (a direct
 * connection) is refused: the downgrade is never silent, whoever asks for it.
 */
function agreeFlags(io: HandshakeIO, ad: Buffer, opts: HandshakeOptions): boolean {
  if (ad.length !== 1 || (ad[0]! & ~(FLAG_ENCRYPT | FLAG_PLAIN_IN_SSH)) !== 0) {
    throw io.fatal(ErrorCodes.PROTOCOL, NoticeCodes.PROTOCOL, 'sent unknown handshake flags');
  }
  if ((ad[0]! & FLAG_ENCRYPT) === 0) throw io.fatal(ErrorCodes.PROTOCOL, NoticeCodes.MODE, modeMismatchText(opts.peer));
  const peerPlain = (ad[0]! & FLAG_PLAIN_IN_SSH) !== 0;
  if (peerPlain && opts.plainInSsh !== true) {
    throw io.fatal(ErrorCodes.PROTOCOL, NoticeCodes.PROTOCOL, 'offered plaintext records on a connection that is not carried by ssh: refused');
  }
  return peerPlain;
}

export function encodeMessage(type: number, body: Uint8Array): Buffer {
  if (body.length > MAX_HANDSHAKE_MESSAGE) throw new FerryError(ErrorCodes.INTERNAL, 'handshake message too long');
  const m = Buffer.allocUnsafe(MSG_HEADER + body.length);
  m[0] = type;
  m.writeUInt16BE(body.length, 1);
  m.set(body, MSG_HEADER);
  return m;
}

export function encodeNotice(code: number, text: string): Buffer {
  const t = Buffer.from(text, 'utf8').subarray(0, 256);
  return encodeMessage(MsgTypes.NOTICE, Buffer.concat([Buffer.from([code]), t]));
}

/**
 * Byte-level I/O for the handshake over any Duplex: buffered reads with a deadline,
 * caps on every length, Notices on fatal errors, and a clean hand-over of the bytes
 * that follow the handshake.
 */
class HandshakeIO {
  readonly #stream: Duplex;
  readonly #peer: string;
  readonly #timeoutMs: number;
  readonly #list = new BufferList();
  #eof = false;
  #error: Error | null = null;
  #timedOut = false;
  #wake: (() => void) | null = null;
  readonly #timer: NodeJS.Timeout;
  readonly #onData = (c: Buffer): void => {
    this.#list.push(c);
    this.#poke();
  };
  readonly #onEnd = (): void => {
    this.#eof = true;
    this.#poke();
  };
  readonly #onError = (e: Error): void => {
    this.#error = e;
    this.#poke();
  };

  constructor(stream: Duplex, opts: HandshakeOptions) {
    this.#stream = stream;
    this.#peer = opts.peer;
    const timeoutMs = opts.timeoutMs;
    this.#timeoutMs = timeoutMs;
    stream.on('data', this.#onData);
    stream.on('end', this.#onEnd);
    stream.on('close', this.#onEnd);
    stream.on('error', this.#onError);
    this.#timer = setTimeout(() => {
      this.#timedOut = true;
      this.#poke();
    }, timeoutMs);
  }

  #poke(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }

  write(b: Buffer): void {
    if (!this.#stream.destroyed && this.#stream.writable) this.#stream.write(b);
  }

  /** Wait until `n` bytes are buffered (or a hello prefix mismatch is visible, when `check` says so). */
  async #need(n: number, check?: () => void): Promise<void> {
    for (;;) {
      check?.();
      if (this.#list.length >= n) return;
      if (this.#timedOut) {
        throw new FerryError(ErrorCodes.TIMEOUT, `${this.#peer}: handshake not finished after ${(this.#timeoutMs / 1000).toFixed(1)} s`, {
          subject: this.#peer,
        });
      }
      if (this.#error) {
        throw new FerryError(ErrorCodes.CONNECT, `${this.#peer}: connection failed during the handshake: ${this.#error.message}`, {
          subject: this.#peer,
          cause: this.#error,
        });
      }
      if (this.#eof) {
        throw new FerryError(ErrorCodes.CONNECT, `${this.#peer}: connection closed during the handshake`, { subject: this.#peer });
      }
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
    }
  }

  /** Read and check the peer's hello; returns its bytes for the transcript. */
  async readHello(isServer: boolean): Promise<Buffer> {
    const peekMismatch = (): void => {
      const n = Math.min(this.#list.length, MAGIC.length);
      const head = Buffer.alloc(n);
      for (let i = 0; i < n; i++) head[i] = this.#list.byteAt(i);
      if (!checkHelloPrefix(head)) {
        const guess = guessProtocol(Buffer.concat(this.#list.drain()).subarray(0, 16));
        // A non-ferry client gets a readable line too (e.g. curl shows it).
        throw this.fatal(
          ErrorCodes.VERSION,
          NoticeCodes.VERSION,
          `${this.#peer} is ${guess} (no ferry hello); is the address right?`,
          isServer ? `this is a ferry server (protocol ${PROTOCOL_VERSION}); use ferry send\n` : undefined,
        );
      }
    };
    await this.#need(HELLO_BYTES, peekMismatch);
    const hello = this.#list.consume(HELLO_BYTES);
    const r = parseHello(hello);
    if (!r.ok) {
      if (r.reason === 'version') {
        throw this.fatal(
          ErrorCodes.VERSION,
          NoticeCodes.VERSION,
          `${this.#peer} speaks ferry protocol version ${r.version}, this side speaks ${PROTOCOL_VERSION}: use the same ferry version on both sides`,
        );
      }
      throw this.fatal(ErrorCodes.VERSION, NoticeCodes.VERSION, `${this.#peer} is ${r.guess}`);
    }
    return Buffer.from(hello);
  }

  /** Read one handshake message of the expected type; a Notice becomes the error it reports. */
  async readMessage(expected: number): Promise<{ body: Buffer; raw: Buffer }> {
    await this.#need(MSG_HEADER);
    const type = this.#list.byteAt(0);
    const len = this.#list.readUIntBE(1, 2);
    if (len > MAX_HANDSHAKE_MESSAGE) {
      throw this.fatal(ErrorCodes.PROTOCOL, NoticeCodes.PROTOCOL, `sent a ${len}-byte handshake message (limit ${MAX_HANDSHAKE_MESSAGE})`);
    }
    await this.#need(MSG_HEADER + len);
    const raw = Buffer.from(this.#list.consume(MSG_HEADER + len));
    const body = raw.subarray(MSG_HEADER);
    if (type === MsgTypes.NOTICE) throw this.#fromNotice(body);
    if (type !== expected) {
      throw this.fatal(ErrorCodes.PROTOCOL, NoticeCodes.PROTOCOL, `sent handshake message ${type} where ${expected} was expected`);
    }
    return { body, raw };
  }

  #fromNotice(body: Buffer): FerryError {
    const code = body[0];
    const text = cleanForDisplay(body.subarray(1).toString('utf8')).slice(0, 200);
    const peer = this.#peer;
    const mk = (c: ErrorCode, m: string): FerryError => new FerryError(c, m, { subject: peer });
    switch (code) {
      case NoticeCodes.AUTH:
        return mk(ErrorCodes.AUTH, `authentication failed with ${peer}: the shared secrets differ (${peer} says so)`);
      case NoticeCodes.VERSION:
        return mk(ErrorCodes.VERSION, `${peer} refused the connection: ${text}`);
      case NoticeCodes.MODE:
        return mk(ErrorCodes.PROTOCOL, modeMismatchText(peer));
      default:
        return mk(ErrorCodes.PROTOCOL, `${peer} aborted the handshake: ${text}`);
    }
  }

  /**
   * Build the local error and tell the peer why we give up (best effort). For
   * messages about the peer's behaviour the peer's name prefixes the text.
   */
  fatal(code: ErrorCode, notice: number, text: string, rawLine?: string): FerryError {
    const message = code === ErrorCodes.PROTOCOL && !text.startsWith(this.#peer) ? `${this.#peer} ${text}` : text;
    if (rawLine !== undefined) this.write(Buffer.from(rawLine));
    else this.write(encodeNotice(notice, noticeTextFor(notice, text)));
    this.#stream.end();
    return new FerryError(code, message, { subject: this.#peer });
  }

  /** Detach and return the bytes that followed the handshake. */
  release(): Buffer[] {
    this.stop();
    this.#stream.pause();
    return this.#list.drain();
  }

  stop(): void {
    clearTimeout(this.#timer);
    this.#stream.off('data', this.#onData);
    this.#stream.off('end', this.#onEnd);
    this.#stream.off('close', this.#onEnd);
    this.#stream.off('error', this.#onError);
  }
}

/** What the peer reads in our Notice: phrased from its point of view where that matters. */
function noticeTextFor(notice: number, text: string): string {
  if (notice === NoticeCodes.VERSION) return `protocol mismatch: this side speaks ferry protocol version ${PROTOCOL_VERSION}`;
  if (notice === NoticeCodes.MODE) return 'this side always encrypts: --no-encrypt is no longer supported';
  return text;
}
