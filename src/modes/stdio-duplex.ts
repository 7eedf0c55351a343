/**
 * One duplex byte stream over a readable and a writable: ssh's stdout and stdin on the
 * local side, our own stdin and stdout on the remote side (`ferry --server`), so that
 * the secure channel can run over them as over a TCP socket.
 *
 * Built for the data path, where every byte of a --via-ssh session passes through it:
 * - Incoming chunks are pushed on as they arrive, each one as is (no re-chunking, no
 *   concatenation of what queued up), and the input is paused while our readable
 *   side is full, so backpressure reaches the pipe. Once the secure channel takes
 *   over, it asks (READS_INTO_BUFFER) for what it gets from a TCP socket: the input
 *   (a pipe is a net.Socket too) reads into one buffer of the channel's, reused for
 *   every read, and each read is lent to the channel's callback instead of being
 *   pushed (secure/socket-reads.ts). Otherwise every read of the pipe is a fresh
 *   64 KiB buffer, and the garbage collector spends more on them than the channel
 *   spends on the bytes. The readable side still ends when the input does.
 * - Writes go straight to the output: `write`, `end`, `writableLength`,
 *   `writableNeedDrain` and 'drain' are the output's own, with no second write queue in
 *   between. A write's callback therefore means what it means on a socket (the output
 *   is done with the buffer), and a write the output took whole leaves
 *   `writableLength` at 0 at once: the channel recycles its sealed-output buffers on
 *   that (WRITES_RELEASE_BUFFERS in secure/channel-api.ts).
 * - Ending the writable side half-closes the output (the peer sees EOF); the input's
 *   end is the readable end. Either side's error destroys both.
 *
 * `growPipe` raises a pipe's capacity (F_SETPIPE_SZ) from the kernel's 64 KiB: sshd gives
 * the remote ferry pipes, and with room for a megabyte in them each side wakes up, reads
 * and writes far less often per byte. Best effort: a pipe over the user's limit, or no
 * data plane (FERRY_NATIVE=0), keeps its size and works as before.
 *
 * `Duplex.from({ readable, writable })` does the same job generically, but reads with
 * `read()`, which concatenates whatever queued up into a fresh buffer, and runs every
 * write through its own queue, whose callbacks come a tick late: the channel then
 * cannot reuse an output buffer and allocates a new one per flush, and the garbage
 * collector pays for it on every byte of the session.
 */
import { Duplex, type Readable, type Writable } from 'node:stream';
import { pipeAddon } from '../native/index.js';
import { READS_INTO_BUFFER, WRITES_RELEASE_BUFFERS, type ReadsIntoBuffer } from '../secure/channel-api.js';
import { readIntoBuffer } from '../secure/socket-reads.js';

/** What `growPipe` asks for: the default limit of /proc/sys/fs/pipe-max-size. */
export const PIPE_BYTES = 1024 * 1024;

/** Raise the capacity of the pipe under `fd` to PIPE_BYTES; the new capacity, or 0 when it stays as it was. */
export function growPipe(fd: number): number {
  const r = pipeAddon()?.setPipeSize(fd, PIPE_BYTES) ?? 0;
  return r > 0 ? r : 0;
}

const READ_HIGH_WATER = 1024 * 1024;

type WriteCallback = (err?: Error | null) => void;

export class StdioDuplex extends Duplex implements ReadsIntoBuffer {
  readonly [WRITES_RELEASE_BUFFERS] = true;
  readonly #input: Readable;
  readonly #output: Writable;
  /** The input reads into a caller's buffer (READS_INTO_BUFFER) instead of pushing here. */
  #lent = false;
  readonly #onInput = (chunk: Buffer): void => {
    if (!this.push(chunk)) this.#input.pause();
  };

  /** The output, for the accessors below (declared as properties by @types/node, so defined after the class). */
  get output(): Writable {
    return this.#output;
  }

  constructor(input: Readable, output: Writable) {
    super({ allowHalfOpen: true, readableHighWaterMark: READ_HIGH_WATER });
    this.#input = input;
    this.#output = output;
    input.on('data', this.#onInput);
    input.once('end', () => this.push(null));
    input.on('error', (e) => this.destroy(e));
    output.on('error', (e) => this.destroy(e));
    output.on('drain', () => this.emit('drain'));
    // Nothing flows until someone reads (a stream handed over by a LineReader is paused).
    input.pause();
  }

  override _read(): void {
    this.#input.resume();
  }

  /**
   * Switch the input to reads into `buf`, each lent to `onRead` (false pauses the input
   * until `resume()`). What the input holds already is handed over first. False, with
   * nothing changed, when the input cannot do that (not a socket, FERRY_USER_READS=0).
   */
  [READS_INTO_BUFFER](buf: Buffer, onRead: (bytes: Buffer) => boolean): boolean {
    const input = this.#input;
    input.off('data', this.#onInput);
    const held: Buffer[] = [];
    for (let c = input.read() as Buffer | null; c !== null; c = input.read() as Buffer | null) held.push(c);
    if (!readIntoBuffer(input as Duplex, buf, onRead)) {
      for (const c of held) this.push(c);
      input.on('data', this.#onInput);
      return false;
    }
    this.#lent = true;
    // Bounded by the input's high-water mark; a pause asked for here takes effect at the next read.
    let go = true;
    for (const c of held) go = onRead(c) && go;
    if (go) input.resume();
    else input.pause();
    return true;
  }

  override resume(): this {
    // A socket reading into a lent buffer starts again on its own resume() (socket-reads.ts).
    if (this.#lent) this.#input.resume();
    return super.resume();
  }

  override write(chunk: unknown, encoding?: BufferEncoding | WriteCallback, cb?: WriteCallback): boolean {
    if (typeof encoding === 'function') return this.#output.write(chunk, encoding);
    return encoding === undefined ? this.#output.write(chunk, cb) : this.#output.write(chunk, encoding, cb);
  }

  override end(chunk?: unknown, encoding?: BufferEncoding | (() => void), cb?: () => void): this {
    const out = this.#output as Writable & { end(...a: unknown[]): Writable };
    out.end(...[chunk, encoding, cb].filter((a) => a !== undefined));
    return this;
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    this.#input.destroy();
    this.#output.destroy();
    cb(err);
  }
}

// The writable state is the output's (see above).
Object.defineProperties(StdioDuplex.prototype, {
  writable: {
    get(this: StdioDuplex): boolean {
      return !this.destroyed && this.output.writable;
    },
  },
  writableLength: {
    get(this: StdioDuplex): number {
      return this.output.writableLength;
    },
  },
  writableNeedDrain: {
    get(this: StdioDuplex): boolean {
      return this.output.writableNeedDrain;
    },
  },
});
