/**
 * A trivial FrameChannel for tests of transfer/: no handshake, no encryption, just
 * frames (type byte + u32 length + payload) over an in-memory pair or any duplex
 * byte stream (a socket). It honours the channel-api.ts contract that transfer/
 * depends on — `send` resolves only when the buffer is below its high-water mark,
 * `frames()` ends only after the peer's `close()`, a cut stream throws
 * FERRY_E_INTEGRITY — so the state machines are exercised exactly as over the real
 * secure channel, and a hand-written malicious peer can drive them frame by frame.
 */
import type { Duplex } from 'node:stream';
import { ErrorCodes, FerryError } from '../../src/core/errors.js';
import type { ChannelInfo, Frame, FrameChannel } from '../../src/secure/channel-api.js';
import { MAX_FRAME_PAYLOAD } from '../../src/secure/channel-api.js';

const CLOSE_TYPE = 0x01;

interface Waiter {
  resolve: () => void;
}

/** Frames queued from the peer, with a byte budget that the sender waits on. */
class Inbox {
  frames: Frame[] = [];
  bytes = 0;
  ended = false;
  error: Error | undefined;
  #readers: Waiter[] = [];
  #writers: Waiter[] = [];
  constructor(readonly highWater: number) {}

  push(f: Frame): void {
    this.frames.push(f);
    this.bytes += f.payload.length;
    this.#wakeReaders();
  }
  end(err?: Error): void {
    if (this.ended) return;
    this.ended = true;
    this.error = err;
    this.#wakeReaders();
    this.#wakeWriters();
  }
  async waitRoom(): Promise<void> {
    while (this.bytes > this.highWater && !this.ended) {
      await new Promise<void>((resolve) => this.#writers.push({ resolve }));
    }
  }
  async *iterate(): AsyncGenerator<Frame> {
    for (;;) {
      const f = this.frames.shift();
      if (f) {
        this.bytes -= f.payload.length;
        if (this.bytes <= this.highWater) this.#wakeWriters();
        yield f;
        continue;
      }
      if (this.ended) {
        if (this.error) throw this.error;
        return;
      }
      await new Promise<void>((resolve) => this.#readers.push({ resolve }));
    }
  }
  #wakeReaders(): void {
    const r = this.#readers;
    this.#readers = [];
    for (const w of r) w.resolve();
  }
  #wakeWriters(): void {
    const r = this.#writers;
    this.#writers = [];
    for (const w of r) w.resolve();
  }
}

function concat(payload: Uint8Array | readonly Uint8Array[]): Uint8Array {
  if (payload instanceof Uint8Array) return payload;
  return Buffer.concat(payload as Uint8Array[]);
}

class MemoryChannel implements FrameChannel {
  readonly info: ChannelInfo = { cipher: 'none', tx: 'userspace', rx: 'userspace', records: 'js', peer: 'memory' };
  bytesSent = 0;
  bytesReceived = 0;
  peer!: MemoryChannel;
  readonly inbox: Inbox;
  #closed = false;
  constructor(highWater: number) {
    this.inbox = new Inbox(highWater);
  }
  async send(type: number, payload: Uint8Array | readonly Uint8Array[]): Promise<void> {
    if (this.#closed || this.peer.inbox.ended) {
      throw new FerryError(ErrorCodes.CONNECT, 'memory channel: send after close');
    }
    // Copy: the real channel encrypts into fresh buffers, so callers may reuse theirs.
    const p = Buffer.from(concat(payload));
    this.bytesSent += p.length;
    this.peer.bytesReceived += p.length;
    this.peer.inbox.push({ type, payload: p });
    await this.peer.inbox.waitRoom();
  }
  frames(): AsyncIterable<Frame> {
    return this.inbox.iterate();
  }
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.peer.inbox.end();
  }
  destroy(err?: Error): void {
    this.#closed = true;
    const cut = new FerryError(ErrorCodes.INTEGRITY, 'memory channel: connection cut', err ? { cause: err } : {});
    this.peer.inbox.end(cut);
    this.inbox.end(err ?? cut);
  }
}

/** Two connected in-memory channels. */
export function memoryChannelPair(highWater = 1 << 20): [FrameChannel, FrameChannel] {
  const a = new MemoryChannel(highWater);
  const b = new MemoryChannel(highWater);
  a.peer = b;
  b.peer = a;
  return [a, b];
}

/** A FrameChannel over a duplex byte stream: [type u8][len u32be][payload]. */
export function plainChannelOverStream(stream: Duplex, peer = 'stream'): FrameChannel {
  const inbox = new Inbox(Infinity);
  let pending: Buffer = Buffer.alloc(0);
  let sawClose = false;
  let sent = 0;
  let received = 0;
  stream.on('data', (chunk: Buffer) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    while (pending.length >= 5) {
      const type = pending[0]!;
      const len = pending.readUInt32BE(1);
      if (len > MAX_FRAME_PAYLOAD) {
        inbox.end(new FerryError(ErrorCodes.PROTOCOL, `${peer}: oversized frame`));
        stream.destroy();
        return;
      }
      if (pending.length < 5 + len) break;
      const payload = Buffer.from(pending.subarray(5, 5 + len));
      pending = pending.subarray(5 + len);
      if (type === CLOSE_TYPE) {
        sawClose = true;
        continue;
      }
      received += len;
      inbox.push({ type, payload });
    }
  });
  const cut = (): void => {
    if (sawClose) inbox.end();
    else inbox.end(new FerryError(ErrorCodes.INTEGRITY, `${peer}: connection cut`));
  };
  stream.on('end', cut);
  stream.on('close', cut);
  stream.on('error', () => cut());
  const write = async (buf: Buffer): Promise<void> => {
    if (stream.destroyed || stream.writableEnded) throw new FerryError(ErrorCodes.CONNECT, `${peer}: connection closed`);
    if (!stream.write(buf)) {
      await new Promise<void>((resolve, reject) => {
        const done = (): void => {
          stream.off('drain', done);
          stream.off('close', onClose);
          resolve();
        };
        const onClose = (): void => {
          stream.off('drain', done);
          reject(new FerryError(ErrorCodes.CONNECT, `${peer}: connection closed`));
        };
        stream.on('drain', done);
        stream.on('close', onClose);
      });
    }
  };
  return {
    info: { cipher: 'none', tx: 'userspace', rx: 'userspace', records: 'js', peer },
    get bytesSent() {
      return sent;
    },
    get bytesReceived() {
      return received;
    },
    async send(type, payload) {
      const p = concat(payload);
      const h = Buffer.allocUnsafe(5);
      h[0] = type;
      h.writeUInt32BE(p.length, 1);
      sent += p.length;
      await write(Buffer.concat([h, p]));
    },
    frames: () => inbox.iterate(),
    async close() {
      const h = Buffer.from([CLOSE_TYPE, 0, 0, 0, 0]);
      await write(h);
      await new Promise<void>((resolve) => stream.end(resolve));
    },
    destroy(err?: Error) {
      stream.destroy(err);
    },
  };
}
