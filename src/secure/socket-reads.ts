/**
 * Socket reads into one buffer of ours, reused for every read.
 *
 * Why: by default every read of a net.Socket lands in a fresh 64 KiB ArrayBuffer.
 * A receiver of a 1 GiB transfer allocates and frees 16,000 of them, and V8 counts
 * that memory against its heap: it runs a full mark-compact of the whole heap every
 * few dozen megabytes received (the manifest of a large transfer makes each one dear).
 * Node reads into a caller-owned buffer when a socket is created with
 * `onread: { buffer, callback }` (documented for client sockets); the callback then
 * runs synchronously for each read, and the bytes must be consumed before it returns,
 * since the next read overwrites them. The secure channel does so: records are
 * decrypted in place and every frame leaves as a copy (wire/frame.ts `borrowed`).
 *
 * An accepted socket (the receiver's) cannot be created with `onread`, so the same
 * switch is made on an open socket: the three internal properties that `onread` sets
 * (found by their symbols' descriptions on a probe socket) and the handle's
 * `useUserBuffer`, which is what Node itself calls. The switch is made only when
 * every one of those pieces is there and nothing is buffered in the stream; otherwise
 * it is not made, and the caller keeps its 'data' listener (the same bytes, in fresh
 * buffers). `FERRY_USER_READS=0` turns it off.
 *
 * Pausing: the callback returns false to stop reading; `socket.resume()` starts again
 * (net.Socket's pause/resume handle this mode).
 */
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

interface ReadSymbols {
  buffer: symbol;
  callback: symbol;
  generator: symbol;
}

let symbols: ReadSymbols | null | undefined;

function readSymbols(): ReadSymbols | null {
  if (symbols !== undefined) return symbols;
  symbols = null;
  try {
    // onread is accepted by net.Socket's constructor (Node's types list it for connect() only).
    const probe = new Socket({ onread: { buffer: Buffer.alloc(1), callback: () => true } } as ConstructorParameters<typeof Socket>[0]);
    const find = (name: string): symbol | undefined => Object.getOwnPropertySymbols(probe).find((s) => s.description === name);
    const buffer = find('kBuffer');
    const callback = find('kBufferCb');
    const generator = find('kBufferGen');
    probe.destroy();
    if (buffer && callback && generator) symbols = { buffer, callback, generator };
  } catch {
    /* another Node: keep the default reads */
  }
  return symbols;
}

interface UserBufferHandle {
  useUserBuffer(buf: Uint8Array): void;
}

/**
 * Switch `stream` (a net.Socket with nothing buffered) to reading into `buf`; each
 * read calls `onRead(bytes)` with a view of `buf` valid until it returns, and returns
 * what `onRead` does (false pauses reading). True when switched.
 */
export function readIntoBuffer(stream: Duplex, buf: Buffer, onRead: (bytes: Buffer) => boolean): boolean {
  if (process.env.FERRY_USER_READS === '0') return false;
  if (!(stream instanceof Socket) || stream.readableLength !== 0 || stream.destroyed) return false;
  const handle = (stream as unknown as { _handle?: Partial<UserBufferHandle> | null })._handle;
  if (!handle || typeof handle.useUserBuffer !== 'function') return false;
  const sym = readSymbols();
  if (sym === null) return false;
  const s = stream as unknown as Record<symbol, unknown>;
  if (s[sym.buffer] !== null && s[sym.buffer] !== undefined) return false;
  s[sym.buffer] = buf;
  s[sym.generator] = null;
  s[sym.callback] = (nread: number, b: Buffer): boolean => onRead(b.subarray(0, nread));
  handle.useUserBuffer(buf);
  return true;
}
