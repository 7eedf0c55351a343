/**
 * Byte streams over a secure channel: `tar c . | ferry - host:/path/file.tar` and
 * `ferry host:/path/file - | tar x`. Not a tree transfer: one stream of unknown length,
 * so it has its own three frames instead of the manifest/decision protocol.
 *
 *   STREAM_DATA (0x30)  bytes, in order (≤ 256 KiB each)
 *   STREAM_END  (0x31)  u64 total length || SHA-256 of all the bytes: the producer saw a
 *                       clean end of its input
 *   STREAM_OK   (0x32)  the consumer verified length and hash and published the result
 *   ERROR       (0x16)  the other side's fatal error (wire/messages.ts)
 *
 * Writing into a file: the bytes go to a fresh temporary name in the target's directory
 * (`.ferry-<random>.<name>.part`, O_EXCL, never following a link), which is renamed over
 * the target only after STREAM_END arrived over the authenticated channel and agreed.
 * A cut connection (or a producer whose input failed) leaves nothing under the final
 * name and the temporary file is removed. Writing to stdout cannot be taken back: a cut
 * stream ends with a non-zero exit, like `cat` over a dropped ssh.
 */
import { createHash, randomBytes } from 'node:crypto';
import { constants as C, promises as fsp } from 'node:fs';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { ErrorCodes, FerryError, fromSystemError, isFerryError, peerErrorCode } from '../core/errors.js';
import type { FrameChannel } from '../secure/channel-api.js';
import { decodeError, encodeError } from '../wire/messages.js';

export const StreamFrame = { DATA: 0x30, END: 0x31, OK: 0x32, ERROR: 0x16 } as const;
const CHUNK = 256 * 1024;
/** A tree sender's first frame (wire/messages.ts MsgType.SESSION): answered with a clear refusal. */
const SESSION_FRAME = 0x10;

export interface StreamResult {
  bytes: number;
}

function endPayload(len: number, hash: Buffer): Buffer {
  const b = Buffer.alloc(8 + 32);
  b.writeBigUInt64BE(BigInt(len), 0);
  hash.copy(b, 8);
  return b;
}

function peerError(payload: Uint8Array, peer: string): FerryError {
  const m = decodeError(payload);
  const code = peerErrorCode(m.code);
  return new FerryError(code, `${peer}: ${m.message}`, { subject: peer });
}

async function sendError(ch: FrameChannel, e: unknown): Promise<void> {
  const err = isFerryError(e) ? e : new FerryError(ErrorCodes.INTERNAL, String(e));
  try {
    await ch.send(StreamFrame.ERROR, encodeError({ code: err.code, message: err.message }));
    await ch.close();
  } catch {
    ch.destroy();
  }
}

/** Producer: send everything `input` yields, then END; resolve when the consumer said OK. */
export async function sendStream(ch: FrameChannel, input: AsyncIterable<Buffer | Uint8Array>, what: string): Promise<StreamResult> {
  const hash = createHash('sha256');
  let len = 0;
  const frames = ch.frames()[Symbol.asyncIterator]();
  // The consumer only speaks at the end (OK) or to fail (ERROR): watch for it meanwhile.
  const reply = frames.next();
  let replied = false;
  void reply.then(
    () => (replied = true),
    () => (replied = true),
  );
  try {
    for await (const c of input) {
      if (replied) break;
      const buf = Buffer.isBuffer(c) ? c : Buffer.from(c);
      for (let off = 0; off < buf.length; off += CHUNK) {
        const part = buf.subarray(off, Math.min(buf.length, off + CHUNK));
        hash.update(part);
        len += part.length;
        await ch.send(StreamFrame.DATA, part);
      }
    }
  } catch (e) {
    const err = isFerryError(e) ? e : fromSystemError(e, 'read', what);
    if (!replied) await sendError(ch, err);
    throw err;
  }
  if (!replied) {
    await ch.send(StreamFrame.END, endPayload(len, hash.digest()));
    await ch.close();
  }
  const r = await reply;
  if (r.done) throw new FerryError(ErrorCodes.CONNECT, `${ch.info.peer} closed the stream without confirming it`);
  if (r.value.type === StreamFrame.OK) {
    ch.destroy();
    return { bytes: len };
  }
  if (r.value.type === StreamFrame.ERROR) throw peerError(r.value.payload, ch.info.peer);
  throw new FerryError(ErrorCodes.PROTOCOL, `${ch.info.peer} sent frame type ${r.value.type} in a stream`);
}

/** Where a consumer puts the bytes. */
export interface StreamSink {
  write(b: Uint8Array): Promise<void>;
  /** Length and hash agreed: make it final. */
  commit(): Promise<void>;
  /** The stream failed: take back what can be taken back. */
  abort(): Promise<void>;
}

/** Consumer: write DATA to `sink` until END, verify, commit, say OK. */
export async function receiveStream(ch: FrameChannel, sink: StreamSink): Promise<StreamResult> {
  const hash = createHash('sha256');
  let len = 0;
  try {
    for await (const f of ch.frames()) {
      if (f.type === StreamFrame.DATA) {
        hash.update(f.payload);
        len += f.payload.length;
        await sink.write(f.payload);
      } else if (f.type === StreamFrame.END) {
        if (f.payload.length !== 40) throw new FerryError(ErrorCodes.PROTOCOL, `${ch.info.peer}: bad stream end`);
        const b = Buffer.from(f.payload.buffer, f.payload.byteOffset, f.payload.byteLength);
        const want = Number(b.readBigUInt64BE(0));
        if (want !== len || !b.subarray(8).equals(hash.digest())) {
          throw new FerryError(ErrorCodes.INTEGRITY, `${ch.info.peer}: stream length or hash does not match (${len} of ${want} bytes)`);
        }
        await sink.commit();
        await ch.send(StreamFrame.OK, new Uint8Array(0));
        await ch.close();
        return { bytes: len };
      } else if (f.type === StreamFrame.ERROR) {
        throw peerError(f.payload, ch.info.peer);
      } else if (f.type === SESSION_FRAME && len === 0) {
        throw new FerryError(ErrorCodes.USAGE, 'this receiver writes one stream to its stdout (ferry recv -): send with `ferry send - HOST:PORT`');
      } else {
        throw new FerryError(ErrorCodes.PROTOCOL, `${ch.info.peer} sent frame type ${f.type} in a stream`);
      }
    }
    throw new FerryError(ErrorCodes.INTEGRITY, `${ch.info.peer}: stream ended without its end marker`);
  } catch (e) {
    await sink.abort().catch(() => undefined);
    if (isFerryError(e) && e.code !== ErrorCodes.INTEGRITY && e.code !== ErrorCodes.CONNECT && e.code !== ErrorCodes.PROTOCOL) {
      // Our own failure (disk full…): tell the producer.
      await sendError(ch, e);
    } else {
      ch.destroy();
    }
    throw e;
  }
}

/**
 * A sink that publishes `target` atomically: a temp file next to it, renamed over it at
 * commit. `target` must not be an existing directory.
 */
export async function fileSink(target: string): Promise<StreamSink> {
  const abs = path.resolve(target);
  const st = await fsp.stat(abs).catch(() => null);
  if (st?.isDirectory() || target.endsWith('/')) {
    throw new FerryError(ErrorCodes.USAGE, `${target}: is a directory; a stream needs a file name`, { subject: target });
  }
  const dir = path.dirname(abs);
  const temp = path.join(dir, `.ferry-${randomBytes(4).toString('hex')}.${path.basename(abs)}.part`);
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(temp, C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o666 & ~process.umask());
  } catch (e) {
    throw fromSystemError(e, 'write', target);
  }
  let closed = false;
  const close = async (): Promise<void> => {
    if (!closed) {
      closed = true;
      await fh.close();
    }
  };
  return {
    write: async (b) => {
      try {
        await fh.write(b);
      } catch (e) {
        throw fromSystemError(e, 'write', target);
      }
    },
    commit: async () => {
      try {
        await fh.sync();
        await close();
        await fsp.rename(temp, abs);
      } catch (e) {
        throw fromSystemError(e, 'write', target);
      }
    },
    abort: async () => {
      await close().catch(() => undefined);
      await fsp.unlink(temp).catch(() => undefined);
    },
  };
}

/** A sink that writes to a stream (stdout), honouring its backpressure. */
export function writableSink(out: Writable): StreamSink {
  return {
    write: (b) =>
      new Promise<void>((resolve, reject) => {
        out.write(b, (err) => (err ? reject(new FerryError(ErrorCodes.WRITE, `stdout: ${err.message}`)) : resolve()));
      }),
    commit: async () => undefined,
    abort: async () => undefined,
  };
}

/** A remote file as a stream source (checked before the channel starts). */
export async function openFileSource(p: string): Promise<Readable> {
  const fs = await import('node:fs');
  const st = await fsp.stat(p).catch((e: unknown) => {
    throw new FerryError(ErrorCodes.SRC_MISSING, `${p}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'source does not exist' : (e as Error).message}`, { subject: p });
  });
  if (st.isDirectory()) throw new FerryError(ErrorCodes.USAGE, `${p}: is a directory; only a file can be streamed to stdout`, { subject: p });
  const fh = await fsp.open(p, 'r').catch((e: unknown) => {
    throw fromSystemError(e, 'read', p);
  });
  return fs.createReadStream('', { fd: fh, highWaterMark: CHUNK, autoClose: true });
}
