/**
 * Test helpers for the secure channel: an in-memory duplex pair (with a hook that
 * sees, records or rewrites every chunk going one way), a loopback TCP pair, and a
 * client/server channel pair on either.
 */
import { Duplex } from 'node:stream';
import { createServer, connect, type Socket } from 'node:net';
import { establishChannel, type ChannelOptions, type SecureChannel } from '../../src/secure/channel.js';

export type Tap = (chunk: Buffer) => Buffer | null;

class PipeEnd extends Duplex {
  other!: PipeEnd;
  tap: Tap | null = null;
  #pendingCb: (() => void) | null = null;

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    const c = this.tap ? this.tap(chunk) : chunk;
    if (c === null || c.length === 0) return cb();
    if (this.other.destroyed) return cb();
    if (this.other.push(c)) cb();
    else this.other.#pendingCb = () => cb();
  }
  override _final(cb: (e?: Error | null) => void): void {
    if (!this.other.destroyed) this.other.push(null);
    cb();
  }
  override _read(): void {
    const p = this.#pendingCb;
    this.#pendingCb = null;
    p?.();
  }
  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    const o = this.other;
    setImmediate(() => {
      if (!o.destroyed) o.destroy();
    });
    cb(err);
  }
}

/** [a, b]: bytes written to a are read from b and vice versa. `tapAtoB` sees a→b chunks. */
export function duplexPair(tapAtoB: Tap | null = null, tapBtoA: Tap | null = null): [Duplex, Duplex] {
  const a = new PipeEnd();
  const b = new PipeEnd();
  a.other = b;
  b.other = a;
  a.tap = tapAtoB;
  b.tap = tapBtoA;
  return [a, b];
}

export async function tcpPair(): Promise<{ client: Socket; server: Socket; close: () => void }> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as { port: number }).port;
  const accepted = new Promise<Socket>((r) => srv.once('connection', r));
  const client = connect(port, '127.0.0.1');
  await new Promise<void>((r, j) => {
    client.once('connect', () => r());
    client.once('error', j);
  });
  const server = await accepted;
  srv.close();
  return { client, server, close: () => { client.destroy(); server.destroy(); } };
}

export type Side = Partial<Omit<ChannelOptions, 'role'>>;

/** Establish both ends; each promise settles on its own (one side may fail, the other succeed). */
export function channelPair(
  a: Duplex,
  b: Duplex,
  client: Side = {},
  server: Side = {},
): { client: Promise<SecureChannel>; server: Promise<SecureChannel> } {
  const secret = 'correct horse battery staple';
  const c = establishChannel(a, { role: 'client', secret, peer: 'server', ktls: 'off', ...client });
  const s = establishChannel(b, { role: 'server', secret, peer: 'client', ktls: 'off', ...server });
  return { client: c, server: s };
}

export async function collect(ch: SecureChannel): Promise<{ type: number; payload: Buffer }[]> {
  const out: { type: number; payload: Buffer }[] = [];
  for await (const f of ch.frames()) out.push({ type: f.type, payload: Buffer.from(f.payload) });
  return out;
}

/** Deterministic PRNG (mulberry32) for fuzzing: reproducible from its seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
