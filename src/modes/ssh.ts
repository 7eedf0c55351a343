/**
 * The scp-like mode, local half: `ferry SRC... [user@]host:DST` (push) and
 * `ferry [user@]host:SRC... DST` (pull).
 *
 * ssh is only the control channel. We run the system `ssh` (so ~/.ssh/config, the
 * agent, ProxyJump and known_hosts behave as users expect) with a fixed remote command,
 * `<remote ferry> --server`, and write a fresh 256-bit key and the request on its stdin
 * (modes/ssh-bootstrap.ts): the key is never on a command line or in an environment.
 * The remote listens on an ephemeral port and reports it; we dial it (the local side
 * always dials, also for pull, so a receiver behind NAT works) and run the ordinary
 * sender or receiver session over ferry's secure channel keyed by that key. When the
 * port cannot be reached within `connectTimeoutMs` (firewall, NAT on the remote side,
 * ProxyJump), we say so once and carry the very same channel over ssh's stdin/stdout
 * instead; `viaSsh` asks for that from the start (and may move ssh's AES-GCM cipher
 * first, when the user has not chosen ciphers: ssh-cipher.ts). Over ssh the session has one stream.
 *
 * The remote's stderr is passed up line by line (the CLI cleans and prefixes it with
 * the host); failures to start are explained from ssh's exit status: 255 is ssh's own
 * failure (its message is already on stderr), 127 is a missing remote ferry.
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { isIP } from 'node:net';
import { basename, dirname, posix } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { ErrorCodes, FerryError, isFerryError, peerErrorCode } from '../core/errors.js';
import type { SourceRoot } from '../fs/walk.js';
import type { SecureChannel } from '../secure/channel.js';
import type { ReceiverEvents } from '../transfer/receiver.js';
import type { SenderEvents } from '../transfer/sender.js';
import type { RecvSessionOutcome } from './recv.js';
import type { SendOutcome } from './send.js';
import { connectTcp } from './dial.js';
import { loadChannel, loadSession, pipeDuplex } from './server.js';
import { receiveStream, sendStream, writableSink, type StreamResult } from './stream.js';
import { earlyStartSettled, sshArgv, takeSsh } from './ssh-spawn.js';
import { viaSshCipherArgs } from './ssh-cipher.js';
import { LineReader, SSH_PROTOCOL, encodeLine, parseJsonLine, remoteMeta, senderSession, type RemoteOptions, type ServerRequest } from './ssh-bootstrap.js';

export const DEFAULT_CONNECT_TIMEOUT_MS = 3000;

export interface SshOptions {
  /** The ssh command as argv (from -e/--rsh; default ['ssh']). */
  rsh: string[];
  /** ssh's destination argument: host or user@host. */
  destination: string;
  /** The host as the user wrote it (for messages and the default address to dial). */
  host: string;
  remoteFerry: string;
  direction: 'push' | 'pull';
  /** push: [DST]; pull: the remote sources. */
  remotePaths: string[];
  /** push: the local sources. */
  roots?: SourceRoot[];
  /** pull: the local destination. */
  dst?: string;
  options: RemoteOptions;
  viaSsh: boolean;
  /** A byte stream instead of a tree: push reads `streamInput`, pull writes `streamOutput`. */
  streamInput?: AsyncIterable<Buffer | Uint8Array>;
  streamOutput?: Writable;
  connectTimeoutMs?: number;
  /** Test hook: dial this HOST:PORT instead of what the remote reported. */
  directOverride?: string | undefined;
  senderEvents?: SenderEvents;
  onSessionStart?(peer: string, flags: number, streams: number): ReceiverEvents | undefined;
  /** A line the remote (or ssh) wrote on stderr, raw. */
  onRemoteLine?(line: string): void;
  /** Said once, e.g. the fallback to ssh. */
  onNotice?(msg: string): void;
}

export interface SshOutcome {
  via: 'tcp' | 'ssh';
  remoteVersion: string;
  send?: SendOutcome;
  recv?: RecvSessionOutcome;
  stream?: StreamResult;
  /** The remote's exit status (null when it had to be killed). */
  remoteExit: number | null;
}

export { shellQuote, splitCommand } from './ssh-spawn.js';

export async function sshTransfer(o: SshOptions): Promise<SshOutcome> {
  const key = randomBytes(32);
  // Started already by the CLI when it could (ssh-spawn.ts): the same argv either way.
  const sshOptions = o.viaSsh ? await viaSshCipherArgs(o.rsh, o.destination) : [];
  await earlyStartSettled();
  const child = takeSsh(sshArgv(o.rsh, o.destination, o.remoteFerry, sshOptions));
  // ssh is on its way: load the channel and this side's half of the session while it connects.
  const channel = loadChannel();
  const tree = !o.streamInput && !o.streamOutput;
  const sender = tree && o.direction === 'push' ? loadSession('send') : undefined;
  const receiver = tree && o.direction === 'pull' ? loadSession('recv') : undefined;
  // A push walks its sources while ssh connects and the remote starts, unless it is one
  // file, whose name on the remote side depends on the reply (scp's rule, below).
  const pushRoots = o.roots ?? [];
  const earlyWalk =
    sender && !(pushRoots.length === 1 && pushRoots[0]!.kind === 'file')
      ? sender.then((m) => m.startWalk(pushRoots, senderSession(o.options, o.options.streams, o.senderEvents)))
      : undefined;
  earlyWalk?.catch(() => undefined);
  const lastLines: string[] = [];
  let spawnError: Error | null = null;
  const exited = new Promise<number | null>((resolve) => {
    child.once('error', (e) => {
      spawnError = e;
      resolve(null);
    });
    // 'exit', then the end of stderr (its last words explain a failure); not 'close',
    // which also waits for our end of stdin.
    child.once('exit', (code) => {
      if (child.stderr.readableEnded) resolve(code);
      else {
        child.stderr.once('end', () => resolve(code));
        setTimeout(() => resolve(code), 1000).unref();
      }
    });
  });
  // stderr: line by line, passed up; the last few kept to explain a failure.
  let partial = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (s: string) => {
    partial += s;
    let nl;
    while ((nl = partial.indexOf('\n')) >= 0) {
      const line = partial.slice(0, nl).replace(/\r$/, '');
      partial = partial.slice(nl + 1);
      if (line.trim() === '') continue;
      lastLines.push(line);
      if (lastLines.length > 10) lastLines.shift();
      o.onRemoteLine?.(line);
    }
  });
  child.stderr.on('end', () => {
    if (partial.trim() !== '') {
      lastLines.push(partial);
      o.onRemoteLine?.(partial);
    }
    partial = '';
  });
  child.stdin.on('error', () => undefined);
  const all = new Set<SecureChannel>();
  const kill = (): void => {
    for (const c of all) c.destroy();
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  };

  const req: ServerRequest = {
    protocol: SSH_PROTOCOL,
    key: key.toString('base64'),
    role: o.direction === 'push' ? 'recv' : 'send',
    paths: o.remotePaths,
    options: o.options,
    via: o.viaSsh ? 'ssh' : 'tcp',
    ...(o.streamInput || o.streamOutput ? { stream: true } : {}),
  };
  child.stdin.write(encodeLine(req));

  const lines = new LineReader(child.stdout as Readable);
  /** ssh or the remote ferry ended before the bootstrap finished: say why. */
  const explain = async (): Promise<FerryError> => {
    const code = await Promise.race([exited, new Promise<number | null>((r) => setTimeout(() => r(-1), 5000).unref())]);
    const last = lastLines.at(-1)?.trim() ?? '';
    if (spawnError) return new FerryError(ErrorCodes.SSH, `cannot run ${o.rsh[0]}: ${(spawnError as NodeJS.ErrnoException).code ?? spawnError.message}`);
    // ssh's own lines were already passed up (onRemoteLine): point at them, do not repeat them.
    if (code === 255) return new FerryError(ErrorCodes.SSH, `ssh to ${o.host} failed${last ? ' (its reason is above)' : ' (status 255)'}`);
    if (code === 127 || code === 126 || /not found|No such file/i.test(last)) {
      return new FerryError(
        ErrorCodes.SSH,
        `${o.host}: ferry is not installed there (no "${o.remoteFerry}" on the PATH of a non-interactive ssh session): ` +
          'install it on that machine (npm install -g ferry) or give its path with --remote-ferry PATH',
      );
    }
    return new FerryError(ErrorCodes.SSH, `${o.host}: "${o.remoteFerry} --server" exited with status ${code}${last ? ' (its last words are above)' : ''}`);
  };

  try {
    // A login script may print to stdout before ferry starts (rsync's "is your shell
    // clean?"): pass such lines on, up to a point, and look for the hello.
    let helloLine = await lines.next();
    for (let junk = 0; helloLine !== null && !helloLine.startsWith('{') && junk < 100; junk++) {
      o.onRemoteLine?.(helloLine);
      helloLine = await lines.next();
    }
    if (helloLine === null) throw await explain();
    let hello: Record<string, unknown>;
    try {
      hello = parseJsonLine(helloLine, 'hello');
    } catch {
      kill();
      throw new FerryError(
        ErrorCodes.VERSION,
        `${o.host}: "${o.remoteFerry} --server" did not answer like ferry (a login script printing to stdout, or a ferry without the ssh mode?): ${JSON.stringify(helloLine.slice(0, 80))}`,
      );
    }
    const remoteVersion = String(hello['version'] ?? '?');
    if (hello['ferry'] !== 'server' || hello['protocol'] !== SSH_PROTOCOL) {
      kill();
      throw new FerryError(
        ErrorCodes.VERSION,
        `${o.host} runs ferry ${remoteVersion} (ssh protocol ${String(hello['protocol'])}); this ferry speaks ssh protocol ${SSH_PROTOCOL}: install the same version on both machines`,
      );
    }
    const replyLine = await lines.next();
    if (replyLine === null) throw await explain();
    const reply = parseJsonLine(replyLine, 'reply');
    if (typeof reply['error'] === 'string') {
      throw new FerryError(peerErrorCode(reply['code']), `${o.host}: ${reply['error']}`, { subject: o.host });
    }

    // scp's rule for a single file: it may arrive under another name.
    let roots = o.roots ?? [];
    let localDst = o.dst ?? '.';
    const extras: { name?: string; intoParent?: true } = {};
    if (!req.stream && o.direction === 'push') {
      const remotePath = o.remotePaths[0] ?? '';
      const name = posix.basename(remotePath);
      if (roots.length === 1 && roots[0]!.kind === 'file' && reply['target'] !== 'dir' && !remotePath.endsWith('/') && name !== '' && name !== '.' && name !== '..') {
        roots = [{ ...roots[0]!, prefix: name }];
        extras.intoParent = true;
      }
    } else if (!req.stream) {
      const kinds = Array.isArray(reply['kinds']) ? (reply['kinds'] as unknown[]) : [];
      const st = await fsp.stat(localDst).catch(() => null);
      const name = basename(localDst);
      if (kinds.length === 1 && kinds[0] === 'file' && !st?.isDirectory() && !localDst.endsWith('/') && name !== '.' && name !== '..') {
        extras.name = name;
        localDst = dirname(localDst);
      }
    }

    const { establishChannel } = await channel;
    let via: 'tcp' | 'ssh' = 'ssh';
    let control: SecureChannel | undefined;
    let dial: (() => Promise<SecureChannel>) | undefined;
    const ktls = o.options.ktls;
    if (reply['listen'] && typeof reply['listen'] === 'object') {
      const l = reply['listen'] as { addr?: unknown; port?: unknown };
      // Only an IP literal is taken from the remote: it cannot steer us to some other name.
      let addr = typeof l.addr === 'string' && isIP(l.addr) !== 0 ? l.addr : o.host;
      let port = typeof l.port === 'number' ? l.port : 0;
      if (o.directOverride) {
        const i = o.directOverride.lastIndexOf(':');
        addr = o.directOverride.slice(0, i).replace(/^\[|\]$/g, '');
        port = Number(o.directOverride.slice(i + 1));
      }
      const shown = addr.includes(':') ? `[${addr}]:${port}` : `${addr}:${port}`;
      const open = async (): Promise<SecureChannel> => {
        const sock = await connectTcp(addr, port, o.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS);
        try {
          const ch = await establishChannel(sock, { role: 'client', secret: key, auth: 'psk', ktls, peer: `${o.host.includes(':') ? `[${o.host}]` : o.host} (${shown})`, handshakeTimeoutMs: 15_000 });
          all.add(ch);
          return ch;
        } catch (e) {
          sock.destroy();
          throw e;
        }
      };
      try {
        control = await open();
        via = 'tcp';
        dial = open;
        child.stdin.write(encodeLine({ use: 'tcp', ...extras }));
      } catch (e) {
        if (isFerryError(e, ErrorCodes.KTLS)) throw e;
        o.onNotice?.(`direct connection to ${shown} failed (${(e as Error).message.replace(/^.*?: /, '')}); carrying the data over the ssh connection instead`);
        child.stdin.write(encodeLine({ use: 'ssh', ...extras }));
      }
    } else if (reply['via'] === 'ssh') {
      child.stdin.write(encodeLine({ use: 'ssh', ...extras }));
    } else {
      throw new FerryError(ErrorCodes.PROTOCOL, `${o.host}: unexpected bootstrap reply`);
    }
    if (control === undefined) {
      lines.release();
      control = await establishChannel(pipeDuplex(child.stdout as Readable, child.stdin), {
        role: 'client',
        secret: key,
        auth: 'psk',
        ktls: 'off',
        peer: `${o.host.includes(':') ? `[${o.host}]` : o.host} (via ssh)`,
        plainInSsh: true,
      });
      all.add(control);
    }

    const out: SshOutcome = { via, remoteVersion, remoteExit: null };
    // If ssh dies mid-session, the channel sees the cut; nothing else to watch here.
    if (o.streamInput) {
      out.stream = await sendStream(control, o.streamInput, 'stdin');
    } else if (o.streamOutput) {
      out.stream = await receiveStream(control, writableSink(o.streamOutput));
    } else if (o.direction === 'push') {
      const { sendOver } = await sender!;
      out.send = await sendOver(
        control,
        (await earlyWalk) ?? roots,
        senderSession(o.options, via === 'tcp' ? o.options.streams : 1, o.senderEvents),
        dial ?? (() => Promise.reject(new FerryError(ErrorCodes.INTERNAL, 'no extra streams over ssh'))),
      );
    } else {
      const { receiveOver } = await receiver!;
      out.recv = await receiveOver(
        control,
        { dst: localDst, preserveSpecial: o.options.preserveSpecial, ...remoteMeta(o.options), ...(o.onSessionStart ? { onSessionStart: o.onSessionStart } : {}) },
        dial,
      );
    }
    // The remote exits once its session is over; give it a moment to say why if it fails.
    const code = await Promise.race([exited, new Promise<number | null>((r) => setTimeout(() => r(-1), 15_000).unref())]);
    if (code === -1) kill();
    out.remoteExit = code === -1 ? null : code;
    return out;
  } catch (e) {
    kill();
    void earlyWalk?.then((w) => w.stop(), () => undefined);
    throw e;
  } finally {
    child.stdin.destroy();
  }
}
