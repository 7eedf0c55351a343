/**
 * `ferry --server`: the remote half of the scp-like mode, started by ssh with a fixed
 * argv and driven entirely by what arrives on stdin (modes/ssh-bootstrap.ts).
 *
 * It says hello (version first), reads the request (key, role, paths, options),
 * checks the paths it will serve before anything else happens (a missing source is
 * one clear error back over ssh, not a broken session), then either listens on an
 * ephemeral port and reports it, or — when asked, or when the local side could not
 * reach that port — runs the same secure channel over its own stdin/stdout.
 *
 * The listening socket binds to the address the ssh client reached us on (the server
 * half of SSH_CONNECTION), so it is reachable exactly where ssh was, and answers only
 * PSK handshakes (secure/handshake.ts) keyed by the fresh key: a stranger who connects
 * first fails one handshake and is dropped. The first authenticated connection is the session's
 * control stream; later ones are its `-P` streams (JOIN).
 *
 * Start-up is on the user's clock (one small file costs what ssh costs, plus this):
 * the hello goes out first, the reply as soon as the request is checked, and the
 * modules a session needs load on demand and in the order they are needed — the
 * channel while ssh carries the request and the reply, then only this side's half of
 * the session (the receiver for a push, the sender for a pull) while the local side
 * dials in and runs the handshake (`loadChannel`, `loadSession`, shared with
 * modes/ssh.ts).
 *
 * While data flows over TCP, stdin stays open as a lifeline: if it ends (the local
 * ferry or its ssh died), the session is torn down at once, and the receiver's partial
 * files stay under their temporary names for the next run to resume.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { Duplex, Readable, Writable } from 'node:stream';
import { ErrorCodes, FerryError, isFerryError } from '../core/errors.js';
import type { SourceRoot } from '../fs/walk.js';
import type { SecureChannel } from '../secure/channel.js';
import type { RecvSessionOutcome } from './recv.js';
import type { SendOutcome, SendSessionOptions, StartedWalk } from './send.js';
import { StdioDuplex, growPipe } from './stdio-duplex.js';
import type { StreamResult, StreamSink } from './stream.js';
import { LineReader, SSH_PROTOCOL, encodeLine, parseJsonLine, parseRequest, senderSession, remoteMeta, type ServerHello, type ServerReply, type ServerRequest } from './ssh-bootstrap.js';

export interface ServerIo {
  input: Readable;
  output: Writable;
  /** The descriptors under input and output (pipes from sshd), grown when the data takes them. */
  fds?: readonly number[];
}

export interface ServerParams {
  version: string;
  /** $SSH_CONNECTION: "client_ip client_port server_ip server_port". */
  sshConnection?: string | undefined;
  /** How long to wait for the local side's first connection after it chose TCP. */
  acceptTimeoutMs?: number;
  /** Test hook: listen on this port instead of an ephemeral one (the bench's wan suite puts a delaying proxy in front of it). */
  listenPort?: number | undefined;
  onProblem?(e: FerryError): void;
  onWarning?(e: FerryError): void;
}

export interface ServerOutcome {
  role: 'recv' | 'send';
  via: 'tcp' | 'ssh';
  send?: SendOutcome;
  recv?: RecvSessionOutcome;
  stream?: StreamResult;
}

/**
 * stdin/stdout of this process as streams that really close, so that the local side
 * sees EOF. ssh gives us pipes or socket pairs: libuv streams (net.Socket) handle both
 * without tying up a pool thread in a blocking read; anything else gets fd streams.
 */
export function stdioOfProcess(): ServerIo {
  const open = (fd: number, readable: boolean): Readable | Writable => {
    try {
      return new net.Socket({ fd, readable, writable: !readable, allowHalfOpen: true });
    } catch {
      return readable
        ? fs.createReadStream('', { fd, highWaterMark: 256 * 1024, autoClose: false })
        : fs.createWriteStream('', { fd, autoClose: true });
    }
  };
  return { input: open(0, true) as Readable, output: open(1, false) as Writable, fds: [0, 1] };
}

/** A duplex over a readable and a writable (ssh's pipes), for the secure channel. */
export function pipeDuplex(input: Readable, output: Writable): Duplex {
  return new StdioDuplex(input, output);
}

function write(out: Writable, msg: unknown): void {
  out.write(encodeLine(msg));
}

/** Accepted connections, authenticated, in arrival order. */
class AuthenticatedQueue {
  readonly #ready: SecureChannel[] = [];
  readonly #waiters: ((c: SecureChannel | Error) => void)[] = [];
  #closed: Error | null = null;
  failures = 0;

  push(c: SecureChannel): void {
    const w = this.#waiters.shift();
    if (w) w(c);
    else this.#ready.push(c);
  }

  close(e: Error): void {
    this.#closed = e;
    for (const w of this.#waiters.splice(0)) w(e);
    for (const c of this.#ready.splice(0)) c.destroy();
  }

  next(timeoutMs: number): Promise<SecureChannel> {
    const c = this.#ready.shift();
    if (c) return Promise.resolve(c);
    if (this.#closed) return Promise.reject(this.#closed);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        const i = this.#waiters.indexOf(done);
        if (i >= 0) this.#waiters.splice(i, 1);
        reject(new FerryError(ErrorCodes.TIMEOUT, `no authenticated connection from the local side within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      const done = (v: SecureChannel | Error): void => {
        clearTimeout(t);
        if (v instanceof Error) reject(v);
        else resolve(v);
      };
      this.#waiters.push(done);
    });
  }
}

interface Decision {
  use: 'tcp' | 'ssh';
  /** Pull of one file: the name it gets at the destination. */
  name?: string;
  /** Push of one file to a name that is not a directory: receive into its parent. */
  intoParent?: boolean;
}

function parseDecision(line: string | null): Decision {
  if (line === null) throw new FerryError(ErrorCodes.CONNECT, 'the local side went away before choosing a path');
  const v = parseJsonLine(line, 'decision');
  if (v['use'] !== 'tcp' && v['use'] !== 'ssh') throw new FerryError(ErrorCodes.PROTOCOL, 'ssh bootstrap: decision must be tcp or ssh');
  const d: Decision = { use: v['use'] };
  const name = v['name'];
  if (typeof name === 'string') {
    if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0') || Buffer.byteLength(name) > 255) {
      throw new FerryError(ErrorCodes.PATH, `ssh bootstrap: not a file name: ${JSON.stringify(name)}`);
    }
    d.name = name;
  }
  if (v['intoParent'] === true) d.intoParent = true;
  return d;
}

/** Is the push destination an existing directory, something else, or missing? */
async function targetKind(p: string): Promise<'dir' | 'file' | 'missing'> {
  const st = await fs.promises.stat(p === '' ? '.' : p).catch(() => null);
  return st === null ? 'missing' : st.isDirectory() ? 'dir' : 'file';
}

/** Errors already sent to the local side in the bootstrap reply (not worth printing twice). */
export const reportedToPeer = new WeakSet<Error>();

/** The address ssh reached us on, when it is an IP literal. */
export function serverAddressOf(sshConnection: string | undefined): string | undefined {
  const a = sshConnection?.trim().split(/\s+/)[2];
  return a !== undefined && net.isIP(a) !== 0 ? a : undefined;
}

/**
 * The secure channel, imported on demand (both sides of the ssh mode): the bootstrap
 * does not need it, so its loading overlaps the ssh round trips instead of preceding
 * them. A failure to load shows where the channel is used.
 */
export function loadChannel(): Promise<typeof import('../secure/channel.js')> {
  const p = import('../secure/channel.js');
  p.catch(() => undefined);
  return p;
}

/** One side's half of a session and nothing of the other's: the receiver or the sender. */
export function loadSession(role: 'recv'): Promise<typeof import('./recv.js')>;
export function loadSession(role: 'send'): Promise<typeof import('./send.js')>;
export function loadSession(role: 'recv' | 'send'): Promise<typeof import('./recv.js') | typeof import('./send.js')> {
  const p = role === 'recv' ? import('./recv.js') : import('./send.js');
  p.catch(() => undefined);
  return p;
}

export async function runServer(io: ServerIo, p: ServerParams): Promise<ServerOutcome> {
  const hello: ServerHello = { ferry: 'server', protocol: SSH_PROTOCOL, version: p.version };
  write(io.output, hello);
  const channel = loadChannel();
  const lines = new LineReader(io.input);
  const first = await lines.next();
  if (first === null) throw new FerryError(ErrorCodes.CONNECT, 'the local side closed the ssh channel before its request');
  let req: ServerRequest;
  let key: Buffer;
  let roots: SourceRoot[] = [];
  let target: 'dir' | 'file' | 'missing' = 'missing';
  let streamSink: StreamSink | undefined;
  let streamSource: Readable | undefined;
  try {
    ({ req, key } = parseRequest(first));
    if (req.stream) {
      const { fileSink, openFileSource } = await import('./stream.js');
      if (req.role === 'recv') streamSink = await fileSink(req.paths[0]!);
      else streamSource = await openFileSource(req.paths[0]!);
    } else if (req.role === 'send') {
      const extras = req.options.extras;
      const { resolveSendRoot } = await import('../fs/files-from.js');
      roots = await Promise.all(req.paths.map((s) => resolveSendRoot(s === '' ? '.' : s, extras)));
    }
    else target = await targetKind(req.paths[0]!);
  } catch (e) {
    const err = isFerryError(e) ? e : new FerryError(ErrorCodes.INTERNAL, String(e));
    await streamSink?.abort();
    const reply: ServerReply & { code: string } = { error: err.message, code: err.code };
    write(io.output, reply);
    reportedToPeer.add(err);
    throw err;
  }
  const o = req.options;
  // This side's half of the session, loaded once the reply is out, while it travels and the local side dials in.
  let recvSession: Promise<typeof import('./recv.js')> | undefined;
  let sendSession: Promise<typeof import('./send.js')> | undefined;
  // A pull's sources are walked from here on, while the local side dials in (one file
  // waits: its name may change with the local side's decision, scp's rule, below).
  let earlyWalk: Promise<StartedWalk> | undefined;
  const replied = (reply: ServerReply): void => {
    write(io.output, reply);
    if (!req.stream && req.role === 'recv') recvSession = loadSession('recv');
    else if (!req.stream) {
      sendSession = loadSession('send');
      if (!(roots.length === 1 && roots[0]!.kind === 'file')) {
        const early = roots;
        earlyWalk = sendSession.then((m) => m.startWalk(early, sendOptions(o.streams)));
        earlyWalk.catch(() => undefined);
      }
    }
  };
  const sendOptions = (streams: number): SendSessionOptions =>
    senderSession(o, streams, { onFailure: (e) => p.onProblem?.(e), onWarning: (e) => p.onWarning?.(e) });
  const acceptMs = p.acceptTimeoutMs ?? 30_000;
  const channelOpts = (peer: string, ktls: 'auto' | 'on' | 'off') => ({ role: 'server' as const, secret: key, auth: 'psk' as const, ktls, peer });

  let via: 'tcp' | 'ssh' = req.via;
  /** What the local side needs to know to apply scp's single-file rule. */
  const about = req.stream ? {} : req.role === 'recv' ? { target } : { kinds: roots.map((r) => r.kind) };
  let decision!: Decision;
  let control: SecureChannel;
  let extra: (() => Promise<SecureChannel>) | undefined;
  let lifeline: Promise<void> | undefined;
  const sockets = new Set<net.Socket>();
  let listener: net.Server | undefined;
  const queue = new AuthenticatedQueue();

  // Whatever ends this session before its sender runs also stops the early walk.
  try {
    if (via === 'tcp') {
      const addr = serverAddressOf(p.sshConnection);
      listener = net.createServer((sock) => {
        sockets.add(sock);
        sock.on('close', () => sockets.delete(sock));
        sock.on('error', () => undefined);
        sock.setNoDelay(true);
        const peer = `${sock.remoteAddress}:${sock.remotePort}`;
        channel.then(({ establishChannel }) => establishChannel(sock, channelOpts(peer, o.ktls))).then(
          (ch) => queue.push(ch),
          (e: unknown) => {
            sock.destroy();
            queue.failures++;
            p.onWarning?.(isFerryError(e) ? e : new FerryError(ErrorCodes.CONNECT, String(e)));
            if (queue.failures >= 8) listener?.close();
          },
        );
      });
      const srv = listener;
      const port = await new Promise<number>((resolve, reject) => {
        srv.once('error', reject);
        srv.listen({ host: addr ?? '::', port: p.listenPort ?? 0 }, () => resolve((srv.address() as net.AddressInfo).port));
      }).catch(
        () =>
          new Promise<number>((resolve, reject) => {
            srv.once('error', reject);
            srv.listen({ host: '0.0.0.0', port: p.listenPort ?? 0 }, () => resolve((srv.address() as net.AddressInfo).port));
          }),
      );
      replied({ listen: { addr: addr ?? '', port }, ...about });
      decision = parseDecision(await lines.next());
      const use = decision?.use;
      if (use === 'tcp') {
        control = await queue.next(acceptMs);
        extra = () => queue.next(acceptMs);
        // The lifeline: stdin's end means the local side is gone.
        lifeline = lines.next().then(
          () => undefined,
          () => undefined,
        );
      } else if (use === 'ssh') {
        via = 'ssh';
        srv.close();
        queue.close(new FerryError(ErrorCodes.CONNECT, 'closed'));
      } else {
        srv.close();
        throw new FerryError(ErrorCodes.CONNECT, 'the local side went away before choosing a path');
      }
    } else {
      replied({ via: 'ssh', ...about });
      decision = parseDecision(await lines.next());
      if (decision?.use !== 'ssh') throw new FerryError(ErrorCodes.CONNECT, 'the local side went away before choosing a path');
    }
    // scp's rename of a single file (`a.txt host:/x/b.txt`, `host:/x/a.txt ./b.txt`), decided
    // by the local side from what we told it.
    let dstRoot = req.paths[0] === '' ? '.' : req.paths[0]!;
    if (decision.intoParent && req.role === 'recv') dstRoot = path.dirname(path.resolve(dstRoot));
    if (decision.name !== undefined && req.role === 'send' && roots.length === 1 && roots[0]!.kind === 'file') {
      roots = [{ ...roots[0]!, prefix: decision.name }];
    }
    if (via === 'ssh') {
      for (const fd of io.fds ?? []) growPipe(fd);
      lines.release();
      const { establishChannel } = await channel;
      control = await establishChannel(pipeDuplex(io.input, io.output), { ...channelOpts('local side (via ssh)', 'off'), plainInSsh: true });
    }
    const ctl = control!;
    const streams = via === 'ssh' ? 1 : o.streams;
    const all = new Set<SecureChannel>([ctl]);
    const nextExtra = extra
      ? async (): Promise<SecureChannel> => {
          const c = await extra!();
          all.add(c);
          return c;
        }
      : undefined;
    const abort = (): void => {
      for (const c of all) c.destroy(new FerryError(ErrorCodes.CONNECT, 'the local side closed the ssh channel'));
    };
    let finished = false;
    void lifeline?.then(() => {
      if (!finished) abort();
    });
    try {
      if (req.stream) {
        const { receiveStream, sendStream } = await import('./stream.js');
        if (streamSink) return { role: 'recv', via, stream: await receiveStream(ctl, streamSink) };
        return { role: 'send', via, stream: await sendStream(ctl, streamSource!, req.paths[0]!) };
      }
      if (req.role === 'recv') {
        const { receiveOver } = await recvSession!;
        const r = await receiveOver(ctl, { dst: dstRoot, preserveSpecial: o.preserveSpecial, ...remoteMeta(o) }, nextExtra);
        return { role: 'recv', via, recv: r };
      }
      const { sendOver } = await sendSession!;
      const r = await sendOver(
        ctl,
        (await earlyWalk) ?? roots,
        sendOptions(streams),
        nextExtra ?? (() => Promise.reject(new FerryError(ErrorCodes.INTERNAL, 'no extra streams over ssh'))),
      );
      return { role: 'send', via, send: r };
    } finally {
      finished = true;
      listener?.close();
      queue.close(new FerryError(ErrorCodes.CONNECT, 'closed'));
      for (const s of sockets) s.destroy();
    }
  } catch (e) {
    void earlyWalk?.then((w) => w.stop(), () => undefined);
    throw e;
  }
}
