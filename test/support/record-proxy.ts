/**
 * A TCP proxy that understands just enough of ferry's wire to tamper with it: it
 * lets each direction's handshake through (hello + two handshake messages, see
 * secure/handshake.ts), then cuts the byte stream into TLS 1.3 records (5-byte
 * header, RFC 8446 §5.2) and hands each record to a mutation that returns what to
 * forward instead: a flipped bit, nothing (dropped), the record twice, a held-back
 * record released later (reordered), or a cut.
 */
import net from 'node:net';
import { HELLO_BYTES } from '../../src/wire/hello.js';

export type Direction = 'up' | 'down';
/** Gets each record (numbered from 0 per direction) and returns the buffers to forward; 'cut' ends both sides. */
export type RecordMutation = (dir: Direction, record: Buffer, index: number) => Buffer[] | 'cut';

export interface RecordProxy {
  port: number;
  /** Records seen per direction after the handshake. */
  records: Record<Direction, number>;
  close(): Promise<void>;
}

/** Handshake items each side sends before its first record: hello, then two messages. */
const HANDSHAKE_MESSAGES = 2;

class DirectionParser {
  #buf: Buffer = Buffer.alloc(0);
  #helloLeft = HELLO_BYTES;
  #msgsLeft = HANDSHAKE_MESSAGES;
  index = 0;
  constructor(
    readonly dir: Direction,
    readonly mutate: RecordMutation,
  ) {}

  /** Bytes to forward for this chunk, and whether to cut the connection after them. */
  push(chunk: Buffer): { data: Buffer; cut: boolean } {
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
    const out: Buffer[] = [];
    for (;;) {
      if (this.#helloLeft > 0) {
        const n = Math.min(this.#helloLeft, this.#buf.length);
        if (n === 0) break;
        out.push(this.#buf.subarray(0, n));
        this.#buf = this.#buf.subarray(n);
        this.#helloLeft -= n;
        continue;
      }
      if (this.#msgsLeft > 0) {
        if (this.#buf.length < 3) break;
        const len = 3 + this.#buf.readUInt16BE(1);
        if (this.#buf.length < len) break;
        out.push(this.#buf.subarray(0, len));
        this.#buf = this.#buf.subarray(len);
        this.#msgsLeft--;
        continue;
      }
      if (this.#buf.length < 5) break;
      const len = 5 + this.#buf.readUInt16BE(3);
      if (this.#buf.length < len) break;
      const rec = Buffer.from(this.#buf.subarray(0, len));
      this.#buf = this.#buf.subarray(len);
      const r = this.mutate(this.dir, rec, this.index++);
      if (r === 'cut') {
        // Forward what came before and half of this record, then cut.
        out.push(rec.subarray(0, rec.length >> 1));
        return { data: Buffer.concat(out), cut: true };
      }
      out.push(...r);
    }
    return { data: Buffer.concat(out), cut: false };
  }
}

export async function startRecordProxy(targetPort: number, mutate: RecordMutation): Promise<RecordProxy> {
  const sockets = new Set<net.Socket>();
  const records: Record<Direction, number> = { up: 0, down: 0 };
  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    const upstream = net.connect({ host: '127.0.0.1', port: targetPort, allowHalfOpen: true });
    sockets.add(client);
    sockets.add(upstream);
    const cutBoth = (): void => {
      client.destroy();
      upstream.destroy();
    };
    const pipe = (from: net.Socket, to: net.Socket, p: DirectionParser): void => {
      from.on('data', (c: Buffer) => {
        const r = p.push(c);
        records[p.dir] = p.index;
        if (r.data.length > 0 && !to.destroyed) to.write(r.data);
        if (r.cut) setImmediate(cutBoth);
      });
      from.on('end', () => to.end());
      from.on('error', cutBoth);
      from.on('close', () => {
        sockets.delete(from);
        setImmediate(() => to.destroy());
      });
    };
    pipe(client, upstream, new DirectionParser('up', mutate));
    pipe(upstream, client, new DirectionParser('down', mutate));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as net.AddressInfo).port,
    records,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
