/**
 * kTLS interop, run INSIDE the kernel lab (scripts/kernel-lab.sh boots a kernel with
 * the tls module; test/ktls-lab.test.ts starts this file there). The file name ends in
 * `.lab.ts`, so scripts/run-tests.mjs (which picks `*.test.js`) never runs it on the
 * host, and every test skips unless FERRY_IN_LAB=1.
 *
 * What it proves, over loopback TCP with Node sockets exactly as ferry uses them:
 * - kTLS TX → userspace RX (secure/record-layer.ts RecordOpener), also with sequence
 *   numbers above 2^32 (the rec_seq big-endian encoding and the nonce XOR);
 * - userspace TX (RecordSealer) → kTLS RX, including records that were already queued
 *   in the kernel before TLS_RX was set, and records split across TCP writes;
 * - kTLS both ways on both ends;
 * - byte-for-byte identity: the same chunks with the same key/IV/seq, written one
 *   send each, give the same bytes on the wire through kTLS as through RecordSealer
 *   and as through the one-record reference `sealRecord`;
 * - the kernel's RX errors that the channel maps to FERRY_E_INTEGRITY: a tampered
 *   record fails the read with EBADMSG, a non-application_data record (an alert) with
 *   EIO; and enableKtls's own refusals (second TLS_TX on 6.1, bytes already read).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { constants as osConstants } from 'node:os';
import { isFerryError } from '../../src/core/errors.js';
import { enableKtls, ktlsReadErrorReason, ktlsSupport } from '../../src/secure/ktls.js';
import { HARD_RECORD_LIMIT, RecordOpener, RecordSealer, openRecord, sealRecord } from '../../src/secure/record-layer.js';
import type { TrafficSecret } from '../../src/secure/traffic-secret.js';

const inLab = process.env.FERRY_IN_LAB === '1';
const skip = inLab ? false : 'runs only inside the kernel lab (FERRY_IN_LAB=1, see scripts/kernel-lab.sh)';
const T = { skip, timeout: 120_000 };

function secret(seq = 0n): TrafficSecret {
  return { key: randomBytes(16), iv: randomBytes(12), seq };
}
const copy = (s: TrafficSecret): TrafficSecret => ({ key: Buffer.from(s.key), iv: Buffer.from(s.iv), seq: s.seq });

interface Pair {
  server: Server;
  client: Socket;
  accepted: Socket;
}

/** A connected loopback pair; the accepted side starts paused (nothing read yet). */
async function pair(): Promise<Pair> {
  let onAccept!: (s: Socket) => void;
  const acceptedP = new Promise<Socket>((r) => (onAccept = r));
  const server = createServer({ pauseOnConnect: true, allowHalfOpen: true }, (s) => onAccept(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const addr = server.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
  const client = await new Promise<Socket>((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1', allowHalfOpen: true }, () => resolve(s));
    s.once('error', reject);
  });
  return { server, client, accepted: await acceptedP };
}

async function closePair(p: Pair): Promise<void> {
  p.client.destroy();
  p.accepted.destroy();
  await new Promise<void>((r) => p.server.close(() => r()));
}

/** Everything the socket delivers until the peer's FIN. */
function readAll(s: Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    s.on('data', (d: Buffer) => parts.push(d));
    s.once('end', () => resolve(Buffer.concat(parts)));
    s.once('error', reject);
    s.resume();
  });
}

/** Exactly n bytes from the socket (no FIN needed). */
function readN(s: Socket, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let got = 0;
    const onData = (d: Buffer): void => {
      parts.push(d);
      got += d.length;
      if (got >= n) {
        s.off('data', onData);
        s.pause();
        const all = Buffer.concat(parts);
        if (all.length > n) s.unshift(all.subarray(n));
        resolve(all.subarray(0, n));
      }
    };
    s.on('data', onData);
    s.once('error', reject);
    s.resume();
  });
}

/** The error the socket fails with (rejects if it ends cleanly instead). */
function socketError(s: Socket): Promise<NodeJS.ErrnoException> {
  return new Promise((resolve, reject) => {
    s.once('error', resolve);
    s.once('end', () => reject(new Error('socket ended without an error')));
    s.on('data', () => {});
    s.resume();
  });
}

/** One write per chunk, each waiting for its callback: one sendmsg each. */
async function writeEach(s: Socket, chunks: readonly Buffer[]): Promise<void> {
  for (const c of chunks) {
    await new Promise<void>((resolve, reject) => s.write(c, (err) => (err ? reject(err) : resolve())));
  }
}

function endAndWait(s: Socket): Promise<void> {
  return new Promise((r) => s.end(() => r()));
}

/**
 * Opens every record in `wire` with the one-record reference `openRecord` (any seq),
 * and, where the fast RecordOpener allows the starting seq (below its 2^24 hard limit),
 * with that too; returns the content and each record's content length.
 */
function openAll(ts: TrafficSecret, wire: Buffer): { content: Buffer; records: number[] } {
  const out: Buffer[] = [];
  const records: number[] = [];
  let seq = ts.seq;
  for (let off = 0; off < wire.length; ) {
    assert.ok(off + 5 <= wire.length, 'truncated record header');
    const end = off + 5 + wire.readUInt16BE(off + 3);
    assert.ok(end <= wire.length, 'truncated record');
    const { contentType, content } = openRecord({ key: ts.key, iv: ts.iv, seq: seq++ }, wire.subarray(off, end));
    assert.equal(contentType, 23, 'not an application_data record');
    out.push(content);
    records.push(content.length);
    off = end;
  }
  if (ts.seq < BigInt(HARD_RECORD_LIMIT) - 100n) {
    const opener = new RecordOpener(copy(ts), { peer: 'lab' });
    opener.push(Buffer.from(wire)); // push() decrypts in place; the caller still needs `wire`
    const fast: Buffer[] = [];
    for (let r = opener.next(); r !== null; r = opener.next()) fast.push(Buffer.from(r));
    assert.equal(opener.buffered, 0, 'RecordOpener: trailing bytes after the last record');
    assert.ok(Buffer.concat(fast).equals(Buffer.concat(out)), 'RecordOpener differs from openRecord');
  }
  return { content: Buffer.concat(out), records };
}

/**
 * Seals each chunk as one send would be sealed: records of at most 2^14 bytes, with the
 * reference `sealRecord` (any seq); where the seq allows, checks that the fast
 * RecordSealer gives the same bytes.
 */
function sealAll(ts: TrafficSecret, data: readonly Buffer[]): Buffer {
  const parts: Buffer[] = [];
  let seq = ts.seq;
  for (const c of data) {
    for (let off = 0; off < c.length; off += 16384) {
      parts.push(sealRecord({ key: ts.key, iv: ts.iv, seq: seq++ }, c.subarray(off, off + 16384)));
    }
  }
  const wire = Buffer.concat(parts);
  if (ts.seq < BigInt(HARD_RECORD_LIMIT) - 100n) {
    const sealer = new RecordSealer(copy(ts));
    const fast = Buffer.concat(data.map((c) => sealer.seal([c])));
    assert.ok(fast.equals(wire), 'RecordSealer differs from sealRecord');
  }
  return wire;
}

// Sizes: tiny, odd, exactly one full record, and one write the kernel must split.
const chunkSizes = [1, 333, 16384, 5000, 40000];
const chunks = (): Buffer[] => chunkSizes.map((n) => randomBytes(n));

test('the lab kernel has kTLS and the addon loads', T, () => {
  const s = ktlsSupport();
  assert.equal(s.available, true, s.reason);
});

for (const seq of [0n, 7n, (1n << 24n) - 200n, (1n << 32n) + 5n, (1n << 48n) + 0x0102n]) {
  test(`kTLS TX -> userspace RX (first seq ${seq})`, T, async () => {
    const p = await pair();
    try {
      const ts = secret(seq);
      const data = chunks();
      enableKtls(p.client, 'tx', copy(ts));
      const wireP = readAll(p.accepted);
      await writeEach(p.client, data);
      await endAndWait(p.client);
      const { content, records } = openAll(ts, await wireP);
      assert.ok(content.equals(Buffer.concat(data)), 'plaintext differs');
      // One record per write, and the 40000-byte write split at 2^14 like RecordSealer.
      assert.deepEqual(records, [1, 333, 16384, 5000, 16384, 16384, 7232]);
    } finally {
      await closePair(p);
    }
  });
}

for (const seq of [(1n << 23n) + 9n, (1n << 40n) + 3n]) {
  test(`userspace TX -> kTLS RX, records queued before TLS_RX and split across writes (first seq ${seq})`, T, async () => {
    const p = await pair();
    try {
      const ts = secret(seq);
      const data = chunks();
      const wire = sealAll(ts, data);
      // Send everything before the receiver offloads RX: the kernel must parse records
      // already in its receive queue. Cut the stream at awkward places (inside a header,
      // inside a tag) to exercise the kernel's record parser across segments.
      const cuts = [0, 3, 7, 1000, 16390, 16411, 30000, wire.length];
      const pieces = cuts.slice(1).map((end, i) => wire.subarray(cuts[i]!, end));
      // (No FIN yet: TCP_ULP needs an ESTABLISHED socket, see the ENOTCONN test.)
      await writeEach(p.client, pieces);
      assert.equal(p.accepted.readableLength, 0);
      enableKtls(p.accepted, 'rx', copy(ts));
      const gotP = readAll(p.accepted);
      await endAndWait(p.client);
      const got = await gotP;
      assert.ok(got.equals(Buffer.concat(data)), `plaintext differs (${got.length} bytes received)`);
    } finally {
      await closePair(p);
    }
  });
}

test('kTLS both ways on both ends', T, async () => {
  const p = await pair();
  try {
    const c2s = secret(3n);
    const s2c = secret(0n);
    enableKtls(p.client, 'tx', copy(c2s));
    enableKtls(p.client, 'rx', copy(s2c));
    enableKtls(p.accepted, 'rx', copy(c2s));
    enableKtls(p.accepted, 'tx', copy(s2c));
    const request = Buffer.concat(chunks());
    const reply = randomBytes(70_000);
    const reqP = readN(p.accepted, request.length);
    await writeEach(p.client, [request.subarray(0, 20_000), request.subarray(20_000)]);
    assert.ok((await reqP).equals(request), 'server got a different request');
    const replyP = readN(p.client, reply.length);
    await writeEach(p.accepted, [reply]);
    assert.ok((await replyP).equals(reply), 'client got a different reply');
  } finally {
    await closePair(p);
  }
});

for (const seq of [(1n << 20n) + 77n, (1n << 40n) + 0xabcn]) {
  test(`kTLS TX and the userspace record layer put the same bytes on the wire (first seq ${seq})`, T, async () => {
    const ts = secret(seq);
    const data = chunks();

    // Through the kernel, captured raw by a plain receiving socket.
    const p = await pair();
    let kernelWire: Buffer;
    try {
      enableKtls(p.client, 'tx', copy(ts));
      const wireP = readAll(p.accepted);
      await writeEach(p.client, data);
      await endAndWait(p.client);
      kernelWire = await wireP;
    } finally {
      await closePair(p);
    }

    // Through the userspace record layer, one seal per send (sealAll also checks the
    // fast RecordSealer against the one-record reference sealRecord).
    const userWire = sealAll(ts, data);
    assert.equal(kernelWire.length, userWire.length);
    assert.ok(kernelWire.equals(userWire), `first difference at byte ${kernelWire.findIndex((b, i) => b !== userWire[i])}`);
  });
}

test('kTLS RX: a tampered record fails the read with EBADMSG', T, async () => {
  const p = await pair();
  try {
    const ts = secret();
    const good = sealRecord(copy(ts), Buffer.from('first record is fine'));
    const bad = sealRecord({ ...copy(ts), seq: 1n }, Buffer.from('second record is tampered'));
    bad[10] = bad[10]! ^ 0x01;
    enableKtls(p.accepted, 'rx', copy(ts));
    const parts: Buffer[] = [];
    p.accepted.on('data', (d: Buffer) => parts.push(d));
    const errP = socketError(p.accepted);
    await writeEach(p.client, [good, bad]);
    const err = await errP;
    // libuv has no name for EBADMSG: Node reports code 'Unknown system error -74'.
    assert.equal(err.errno, -osConstants.errno.EBADMSG);
    assert.equal(ktlsReadErrorReason(err), 'a record failed authentication (kTLS RX: EBADMSG)');
    assert.equal(Buffer.concat(parts).toString(), 'first record is fine');
  } finally {
    await closePair(p);
  }
});

test('kTLS RX: a non-application_data record (alert) fails a plain read with EIO', T, async () => {
  const p = await pair();
  try {
    const ts = secret();
    const alert = sealRecord(copy(ts), Buffer.from([1, 0]), 21); // close_notify, RFC 8446 §6
    enableKtls(p.accepted, 'rx', copy(ts));
    const errP = socketError(p.accepted);
    await writeEach(p.client, [alert]);
    const err = await errP;
    assert.equal(err.code, 'EIO');
    assert.equal(ktlsReadErrorReason(err), 'a record that is not application_data arrived (kTLS RX: EIO)');
  } finally {
    await closePair(p);
  }
});

test('enableKtls refuses a second TLS_TX (no rekey on this kernel) and RX after bytes were read', T, async () => {
  const p = await pair();
  try {
    const ts = secret();
    enableKtls(p.client, 'tx', copy(ts));
    assert.throws(
      () => enableKtls(p.client, 'tx', copy(ts)),
      (e: unknown) => isFerryError(e, 'FERRY_E_KTLS') && /TLS_TX\) failed: EBUSY/.test(e.message),
    );
    // Bytes already in the userspace stream buffer (a 'readable' listener makes Node
    // read without consuming): RX must not be enabled.
    const readable = new Promise<void>((r) => p.accepted.once('readable', () => r()));
    await writeEach(p.client, [Buffer.from('x')]);
    await readable;
    assert.ok(p.accepted.readableLength > 0);
    assert.throws(
      () => enableKtls(p.accepted, 'rx', copy(ts)),
      (e: unknown) => isFerryError(e, 'FERRY_E_KTLS') && /already read into userspace/.test(e.message),
    );
  } finally {
    await closePair(p);
  }
});

test('TCP_ULP fails with ENOTCONN once the peer has closed its side (CLOSE_WAIT)', T, async () => {
  const p = await pair();
  try {
    await endAndWait(p.client);
    // Wait until the FIN has arrived: the accepted side sees 'end'.
    const ended = new Promise<void>((r) => p.accepted.once('end', () => r()));
    p.accepted.resume();
    await ended;
    assert.throws(
      () => enableKtls(p.accepted, 'tx', secret()),
      (e: unknown) => isFerryError(e, 'FERRY_E_KTLS') && /TCP_ULP, "tls"\) failed: ENOTCONN/.test(e.message),
    );
  } finally {
    await closePair(p);
  }
});
