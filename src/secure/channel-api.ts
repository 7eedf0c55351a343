/**
 * The contract between the secure channel (secure/) and everything above it
 * (transfer/, modes/). Defined first so that both sides can be built at once.
 *
 * A FrameChannel carries wire frames (wire/frame.ts: a type byte and a payload) in
 * order, authenticated and encrypted, over any duplex byte
 * stream: a TCP socket, ssh's stdin/stdout, or an in-memory pair in tests.
 *
 * - `send` queues one frame. It resolves at once while the outgoing buffer is below
 *   its high-water mark and otherwise when it has drained: `await` every call and
 *   backpressure is honoured end to end. Once it resolves the channel no longer
 *   reads the payload: the caller may reuse the memory (the sender recycles its read
 *   buffers this way).
 * - `frames()` yields the peer's frames in order. It ends normally only after the
 *   peer's authenticated end (`close()`); a connection cut before it, or any record
 *   that fails authentication, throws FerryError(FERRY_E_INTEGRITY). It may be
 *   iterated once.
 * - `close()` sends the authenticated end, flushes, and half-closes our direction.
 * - `destroy(err)` tears the connection down at once (fatal errors).
 *
 * Frame types 0x00-0x0f are reserved for the channel itself; transfer/ uses 0x10 up.
 */

export interface Frame {
  type: number;
  payload: Uint8Array;
  /**
   * Optional: the consumer calls it once it holds no view of `payload` any more, and
   * the channel may then reuse that memory for a later frame. Never calling it is
   * always safe (the memory is then garbage-collected); calling it early is not.
   */
  release?: () => void;
}

export interface ChannelInfo {
  /** 'aes-128-gcm', or 'none inside ssh' (frames protected by ssh: secure/plain-records.ts). */
  cipher: string;
  /** Which implementation encrypts what we send / decrypts what we receive. */
  tx: 'userspace' | 'ktls';
  rx: 'userspace' | 'ktls';
  /** Which userspace record layer: the data plane's batches ('native') or node:crypto ('js'). */
  records: 'native' | 'js' | 'none';
  /** A printable name of the peer, e.g. "127.0.0.1:7000". */
  peer: string;
}

export interface FrameChannel {
  readonly info: ChannelInfo;
  send(type: number, payload: Uint8Array | readonly Uint8Array[]): Promise<void>;
  frames(): AsyncIterable<Frame>;
  close(): Promise<void>;
  destroy(err?: Error): void;
  /** Bytes of plaintext payload sent / received so far (for progress and benches). */
  readonly bytesSent: number;
  readonly bytesReceived: number;
}

/**
 * `ch` with `hook` run before each send (to pace or count frames): the frame goes out
 * once the hook's promise, if it returns one, has settled. Everything else passes through.
 */
export function withSendHook(
  ch: FrameChannel,
  hook: (type: number, payload: Uint8Array | readonly Uint8Array[]) => Promise<unknown> | void,
): FrameChannel {
  return {
    get info() {
      return ch.info;
    },
    get bytesSent() {
      return ch.bytesSent;
    },
    get bytesReceived() {
      return ch.bytesReceived;
    },
    send: (type, payload): Promise<void> => {
      const wait = hook(type, payload);
      return wait === undefined ? ch.send(type, payload) : wait.then(() => ch.send(type, payload));
    },
    frames: () => ch.frames(),
    close: () => ch.close(),
    destroy: (e) => ch.destroy(e),
  };
}

/** Largest frame payload either side accepts (checked before allocating). */
export const MAX_FRAME_PAYLOAD = 4 * 1024 * 1024;
/** First frame type available to transfer/. */
export const FIRST_TRANSFER_FRAME_TYPE = 0x10;

/**
 * Set (to true) on a duplex whose write callbacks run only once the bytes have left the
 * buffer they were written from, as a net.Socket's do: the channel may then reuse its
 * sealed-output buffers on it (modes/stdio-duplex.ts carries ssh's pipes this way).
 */
export const WRITES_RELEASE_BUFFERS: unique symbol = Symbol.for('ferry.writesReleaseBuffers');

/**
 * A method on a duplex that is not itself a socket but reads from one (modes/stdio-duplex.ts:
 * ssh's pipes): switch to reading into `buf` as secure/socket-reads.ts does for a socket,
 * each read lent to `onRead` until it returns (false pauses; the duplex's `resume()` starts
 * again). True when switched; false leaves the duplex's 'data' events as they were.
 */
export const READS_INTO_BUFFER: unique symbol = Symbol.for('ferry.readsIntoBuffer');
export interface ReadsIntoBuffer {
  [READS_INTO_BUFFER](buf: Buffer, onRead: (bytes: Buffer) => boolean): boolean;
}
