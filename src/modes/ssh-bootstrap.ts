/**
 * The scp-like mode's bootstrap: what the local ferry and `ferry --server` (started
 * by ssh on the remote machine) say to each other over ssh's stdin/stdout before the
 * secure channel starts. docs/PROTOCOL.md, "ssh bootstrap", is the reference.
 *
 * Every message is one line of JSON ending in "\n" (JSON escapes any newline inside a
 * path), at most MAX_LINE bytes:
 *
 *   remote → local   {"ferry":"server","protocol":P,"version":"x.y.z"}     (hello, first)
 *   local  → remote  {"protocol":P,"key":"<base64 of 32 bytes>","role":"recv"|"send",
 *                     "paths":[...],"options":{...},"via":"tcp"|"ssh","stream":bool} (request)
 *   remote → local   {"listen":{"addr":A,"port":N},"target"|"kinds":…} | {"via":"ssh",…} | {"error":"..."}
 *   local  → remote  {"use":"tcp"|"ssh","name"?:N,"intoParent"?:true}       (decision)
 *
 * "target" (push: what DST is on the remote) and "kinds" (pull: file or dir per source)
 * let the local side apply scp's rule for one file: `a.txt host:/x/b.txt` writes b.txt
 * when /x/b.txt is not a directory ("intoParent"), `host:/x/a.txt ./b.txt` likewise
 * ("name", a single path component).
 *
 * After the decision the bytes that follow on stdin/stdout
 * are ferry's secure channel (secure/channel.ts) when "ssh" was chosen; with "tcp" the
 * channel runs over TCP connections the local side makes to A:N, and stdin/stdout stay
 * quiet until the remote exits. The key keys those channels' handshake.
 *
 * The handshake is secure/handshake.ts's PSK variant, not CPace: the key is 32 random
 * bytes, so there is nothing to protect from offline guessing, and nonces from both
 * sides plus key confirmation both ways give what the ssh mode needs: fresh traffic
 * keys per connection (several streams under one key never share them), replays and
 * reflections fail, and a stranger who reaches the listening port first learns nothing
 * and is dropped after one failed handshake. Neither side loads the curve code.
 *
 * The remote's argv is fixed (`ferry --server`): no path, name or option from the user
 * is ever part of a shell command line.
 */
import type { Readable } from 'node:stream';
import { ErrorCodes, FerryError } from '../core/errors.js';
import { xattrsAvailable, xattrsUnsupported } from '../fs/meta-native.js';
import { xattrPolicy, type XattrPolicy } from '../fs/xattrs.js';
import type { SenderEvents } from '../transfer/sender.js';
import type { SendExtras, SendSessionOptions } from './send.js';

/**
 * Version of this bootstrap and of the channel handshake it keys; bumped when either
 * changes incompatibly (2: the PSK handshake in place of CPace).
 */
export const SSH_PROTOCOL = 2;
export const KEY_BYTES = 32;
export const MAX_LINE = 1024 * 1024;

export interface ServerHello {
  ferry: 'server';
  protocol: number;
  version: string;
}

/** Options the remote side needs; the same names as the command-line options. */
export interface RemoteOptions {
  streams: number;
  chunkSize: number;
  checksum: boolean;
  delete: boolean;
  dryRun: boolean;
  excludes: string[];
  preserveSpecial: boolean;
  ktls: 'auto' | 'on' | 'off';
  /** -o/-g/-X/-A (issue #14): the same user asked for them on both ends. */
  owner?: boolean;
  group?: boolean;
  /** --names: owners and groups by name (both ends, since one user asks for both). */
  names?: boolean;
  xattrs?: boolean;
  acls?: boolean;
  /** rsync's sender-side options (modes/send.ts SendExtras): used by whichever side sends. */
  extras?: SendExtras;
}

export interface ServerRequest {
  protocol: number;
  key: string;
  /** What the remote does: receive into paths[0], or send paths. */
  role: 'recv' | 'send';
  paths: string[];
  options: RemoteOptions;
  via: 'tcp' | 'ssh';
  /** A byte stream (modes/stream.ts) into the file paths[0] (recv) or out of it (send). */
  stream?: boolean;
}

/** What the remote found: a push target's kind, or each pull source's kind (scp's single-file rule). */
export interface ServerAbout {
  target?: 'dir' | 'file' | 'missing';
  kinds?: ('dir' | 'file')[];
}

export type ServerReply = ({ listen: { addr: string; port: number } } & ServerAbout) | ({ via: 'ssh' } & ServerAbout) | { error: string };

export function encodeLine(msg: unknown): Buffer {
  return Buffer.from(`${JSON.stringify(msg)}\n`, 'utf8');
}

/**
 * Reads lines from a stream without losing what follows them: `release()` puts back
 * every byte after the last line taken, so the stream can be handed to the secure
 * channel intact.
 */
export class LineReader {
  readonly #stream: Readable;
  #buf: Buffer = Buffer.alloc(0);
  #ended = false;
  #error: Error | null = null;
  #wake: (() => void) | null = null;
  readonly #onData = (b: Buffer): void => {
    this.#buf = this.#buf.length === 0 ? b : Buffer.concat([this.#buf, b]);
    this.#poke();
  };
  readonly #onEnd = (): void => {
    this.#ended = true;
    this.#poke();
  };
  readonly #onError = (e: Error): void => {
    this.#error = e;
    this.#poke();
  };

  constructor(stream: Readable) {
    this.#stream = stream;
    stream.on('data', this.#onData);
    stream.on('end', this.#onEnd);
    stream.on('error', this.#onError);
  }

  #poke(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }

  /** The next line (without "\n"), or null at the end of the stream. */
  async next(): Promise<string | null> {
    for (;;) {
      const nl = this.#buf.indexOf(10);
      if (nl >= 0) {
        const line = this.#buf.subarray(0, nl).toString('utf8');
        this.#buf = this.#buf.subarray(nl + 1);
        return line;
      }
      if (this.#buf.length > MAX_LINE) throw new FerryError(ErrorCodes.PROTOCOL, `bootstrap line longer than ${MAX_LINE} bytes`);
      if (this.#error) throw this.#error;
      if (this.#ended) return null;
      await new Promise<void>((r) => (this.#wake = r));
    }
  }

  /** Stop reading; put the unread bytes back at the front of the stream. */
  release(): void {
    this.#stream.off('data', this.#onData);
    this.#stream.off('end', this.#onEnd);
    this.#stream.off('error', this.#onError);
    this.#stream.pause();
    if (this.#buf.length > 0) this.#stream.unshift(this.#buf);
    this.#buf = Buffer.alloc(0);
  }
}

function bad(what: string): FerryError {
  return new FerryError(ErrorCodes.PROTOCOL, `ssh bootstrap: ${what}`);
}

export function parseJsonLine(line: string, what: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    throw bad(`${what} is not JSON`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad(`${what} is not an object`);
  return v as Record<string, unknown>;
}

/**
 * The sender-side rsync options of a request, checked field by field: a wrong type is
 * a protocol error, never silently a different transfer. Paths of --files-from are
 * checked again where they are used (fs/files-from, fs/path-safety).
 */
export function parseExtras(x: unknown): SendExtras {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) throw bad('options.extras must be an object');
  const o = x as Record<string, unknown>;
  const out: SendExtras = {};
  const bool = (k: 'recursive' | 'oneFileSystem' | 'followLinks' | 'removeSourceFiles' | 'inplace'): void => {
    if (o[k] === undefined) return;
    if (typeof o[k] !== 'boolean') throw bad(`options.extras.${k} must be a boolean`);
    out[k] = o[k] as boolean;
  };
  bool('recursive');
  bool('oneFileSystem');
  bool('followLinks');
  bool('removeSourceFiles');
  bool('inplace');
  if (o['bwlimit'] !== undefined) {
    const b = o['bwlimit'];
    if (typeof b !== 'number' || !Number.isSafeInteger(b) || b < 0) throw bad('options.extras.bwlimit must be a byte rate');
    out.bwlimit = b;
  }
  if (o['filters'] !== undefined) {
    const f = o['filters'];
    if (!Array.isArray(f) || f.length > 1024) throw bad('options.extras.filters must be a list');
    out.filters = f.map((r: unknown) => {
      const rr = r as Record<string, unknown> | null;
      if (typeof rr !== 'object' || rr === null || typeof rr['include'] !== 'boolean' || typeof rr['pattern'] !== 'string') throw bad('options.extras.filters: bad rule');
      return { include: rr['include'], pattern: rr['pattern'] };
    });
  }
  if (o['partialDir'] !== undefined) {
    if (typeof o['partialDir'] !== 'string') throw bad('options.extras.partialDir must be a string');
    out.partialDir = o['partialDir'];
  }
  if (o['filesFrom'] !== undefined) {
    const f = o['filesFrom'];
    if (!Array.isArray(f) || !f.every((p) => typeof p === 'string' && !p.includes('\0'))) throw bad('options.extras.filesFrom must be a list of paths');
    out.filesFrom = f as string[];
  }
  if (o['policy'] !== undefined) {
    const p = o['policy'] as Record<string, unknown> | null;
    if (typeof p !== 'object' || p === null || !['sizeOnly', 'ignoreExisting', 'update'].every((k) => typeof p[k] === 'boolean')) throw bad('options.extras.policy is malformed');
    out.policy = { sizeOnly: p['sizeOnly'] as boolean, ignoreExisting: p['ignoreExisting'] as boolean, update: p['update'] as boolean };
  }
  return out;
}

/** Validate a request from the local side (the remote is the one that checks). */
export function parseRequest(line: string): { req: ServerRequest; key: Buffer } {
  const v = parseJsonLine(line, 'request');
  if (v['protocol'] !== SSH_PROTOCOL) {
    throw new FerryError(ErrorCodes.VERSION, `local ferry speaks ssh bootstrap protocol ${String(v['protocol'])}, this one ${SSH_PROTOCOL}`);
  }
  const key = typeof v['key'] === 'string' ? Buffer.from(v['key'], 'base64') : Buffer.alloc(0);
  if (key.length !== KEY_BYTES) throw bad('key must be 32 bytes');
  const role = v['role'];
  if (role !== 'recv' && role !== 'send') throw bad('role must be recv or send');
  const paths = v['paths'];
  if (!Array.isArray(paths) || paths.length === 0 || paths.length > 4096 || !paths.every((p) => typeof p === 'string' && !p.includes('\0'))) {
    throw bad('paths must be a non-empty list of strings');
  }
  if (role === 'recv' && paths.length !== 1) throw bad('recv takes one path');
  const via = v['via'];
  if (via !== 'tcp' && via !== 'ssh') throw bad('via must be tcp or ssh');
  const o = (v['options'] ?? {}) as Record<string, unknown>;
  const num = (x: unknown, d: number, lo: number, hi: number): number => (typeof x === 'number' && Number.isInteger(x) && x >= lo && x <= hi ? x : d);
  const options: RemoteOptions = {
    streams: num(o['streams'], 1, 1, 64),
    chunkSize: num(o['chunkSize'], 1024 * 1024, 4096, 4 * 1024 * 1024),
    checksum: o['checksum'] === true,
    delete: o['delete'] === true,
    dryRun: o['dryRun'] === true,
    excludes: Array.isArray(o['excludes']) ? (o['excludes'] as unknown[]).filter((x): x is string => typeof x === 'string') : [],
    preserveSpecial: o['preserveSpecial'] === true,
    ktls: o['ktls'] === 'on' || o['ktls'] === 'off' ? o['ktls'] : 'auto',
    owner: o['owner'] === true,
    group: o['group'] === true,
    names: o['names'] === true,
    xattrs: o['xattrs'] === true,
    acls: o['acls'] === true,
  };
  if (o['extras'] !== undefined) options.extras = parseExtras(o['extras']);
  const stream = v['stream'] === true;
  if (stream && paths.length !== 1) throw bad('a stream has one path');
  return { req: { protocol: SSH_PROTOCOL, key: '', role, paths: paths as string[], options, via, stream }, key };
}

/**
 * The metadata choices of RemoteOptions for one end: `send` (owners: send the ids;
 * xattrs: the policy to read with) and `recv` (what to apply). In the ssh mode the same
 * user asks for both ends on one command line, so both ends honour the request.
 * -X/-A without the native data plane is FERRY_E_UNSUPPORTED.
 */
export function remoteMeta(o: RemoteOptions): { owners?: { uid: boolean; gid: boolean }; ownerNames?: boolean; xattrs?: XattrPolicy } {
  const out: { owners?: { uid: boolean; gid: boolean }; ownerNames?: boolean; xattrs?: XattrPolicy } = {};
  if (o.owner || o.group) out.owners = { uid: o.owner === true, gid: o.group === true };
  if (out.owners && o.names) out.ownerNames = true;
  const x = xattrPolicy({ xattrs: o.xattrs === true, acls: o.acls === true, capabilities: o.preserveSpecial });
  if (x) {
    if (!xattrsAvailable()) throw xattrsUnsupported();
    out.xattrs = x;
  }
  return out;
}


/** remoteMeta for the sending end: whether to send ids, and the xattr policy to read with. */
export function senderMeta(o: RemoteOptions): { owners?: boolean; ownerNames?: boolean; xattrs?: XattrPolicy } {
  const m = remoteMeta(o);
  return { ...(m.owners ? { owners: true } : {}), ...(m.ownerNames ? { ownerNames: true } : {}), ...(m.xattrs ? { xattrs: m.xattrs } : {}) };
}

/** The sending end's session options (a push's local side, a pull's remote side), with `streams` as the path allows. */
export function senderSession(o: RemoteOptions, streams: number, events?: SenderEvents): SendSessionOptions {
  return {
    streams,
    chunkSize: o.chunkSize,
    checksum: o.checksum,
    delete: o.delete,
    dryRun: o.dryRun,
    excludes: o.excludes,
    preserveSpecial: o.preserveSpecial,
    ...senderMeta(o),
    ...(o.extras ? { extras: o.extras } : {}),
    ...(events ? { events } : {}),
  };
}
