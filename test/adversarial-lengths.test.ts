/**
 * Issue #11, lengths: every length and count the peer controls, at its cap (accepted)
 * and one past it (refused with FERRY_E_PROTOCOL / FERRY_E_PATH before anything is
 * allocated or written), before authentication (handshake) and after it (frames,
 * records, every message field), as a hostile sender against the real receiver and as
 * a hostile receiver against the real sender (test/support/hostile-peer.ts).
 *
 * The caps are the ones docs/PROTOCOL.md "Limits" lists; the decoder table here covers
 * each field once at the cap and once past it.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { isFerryError } from '../src/core/errors.js';
import { MAX_FILE_SIZE } from '../src/core/limits.js';
import { MAX_FRAME_PAYLOAD } from '../src/secure/channel-api.js';
import { MAX_HANDSHAKE_MESSAGE, MsgTypes } from '../src/secure/handshake.js';
import { encodeHello } from '../src/wire/hello.js';
import * as M from '../src/wire/messages.js';
import { connectAsSender, entry, hostileReceiver, hostileSender, scriptedSend } from './support/hostile-peer.js';
import { startRecv, TEST_SECRET } from './support/net-harness.js';
import { cleanupTmpDirs, makeTree, tmpDir } from './support/tree.js';

after(cleanupTmpDirs);

const W = (): M.ByteWriter => new M.ByteWriter();
const H = new Uint8Array(M.HASH_BYTES);

/** [field, cap, build(n) → payload, decode]: build(cap) must decode, build(cap + 1) must not. */
type Row = [string, number, (n: number) => Uint8Array, (b: Uint8Array) => unknown];

const session = (o: Partial<{ version: number; flags: number; streams: number; chunk: number; nEx: number; pat: number }>): Uint8Array => {
  const w = W().varint(o.version ?? M.TRANSFER_VERSION).varint(o.flags ?? 0).varint(o.streams ?? 1).varint(o.chunk ?? 65536);
  const n = o.nEx ?? 0;
  w.varint(n);
  for (let i = 0; i < n; i++) w.str(i === 0 && o.pat !== undefined ? 'p'.repeat(o.pat) : 'x');
  return w.take();
};
const manifest = (first: number, es: M.WireEntry[]): Uint8Array => M.encodeManifest(es.map((e, i) => ({ ...e, index: first + i })), false);
const fileE = (extra: Partial<M.WireEntry> = {}): M.WireEntry => entry(0, 'file', 'f', extra);

const rows: Row[] = [
  ['SESSION version', 0xffff, (n) => session({ version: n }), M.decodeSession],
  // Every known flag at once decodes; the next bit up is unknown and refused (unknown bits are never ignored).
  ['SESSION flags', Object.values(M.SessionFlags).reduce((a, b) => a | b, 0), (n) => session({ flags: n }), M.decodeSession],
  ['SESSION streams', M.MAX_STREAMS, (n) => session({ streams: n }), M.decodeSession],
  ['SESSION chunk size', M.MAX_CHUNK_SIZE, (n) => session({ chunk: n }), M.decodeSession],
  ['SESSION exclude count', M.MAX_EXCLUDES, (n) => session({ nEx: n }), M.decodeSession],
  ['SESSION exclude pattern bytes', M.MAX_PATTERN_BYTES, (n) => session({ nEx: 1, pat: n }), M.decodeSession],
  ['JOIN stream number', M.MAX_STREAMS - 1, (n) => W().bytes(new Uint8Array(16)).varint(n).take(), M.decodeJoin],
  ['MANIFEST entries per batch', M.MAX_ENTRIES_PER_BATCH, (n) => manifest(0, Array.from({ length: n }, (_, i) => entry(i, 'dir', `d${i}`))), (b) => M.decodeManifest(b, false)],
  ['MANIFEST first index + count', M.MAX_ENTRIES, (n) => manifest(n - 1, [entry(0, 'dir', 'd')]), (b) => M.decodeManifest(b, false)],
  ['MANIFEST path bytes', 4096, (n) => manifest(0, [fileE({ path: 'p'.repeat(n) })]), (b) => M.decodeManifest(b, false)],
  ['MANIFEST symlink target bytes', 4096, (n) => manifest(0, [entry(0, 'symlink', 'l', { target: 't'.repeat(n) })]), (b) => M.decodeManifest(b, false)],
  ['MANIFEST file size', MAX_FILE_SIZE, (n) => manifest(0, [fileE({ size: n })]), (b) => M.decodeManifest(b, false)],
  ['MANIFEST mode', 0o7777, (n) => manifest(0, [fileE({ mode: n })]), (b) => M.decodeManifest(b, false)],
  ['MANIFEST_END count', M.MAX_ENTRIES, (n) => M.encodeCount(n), (b) => M.decodeCount(b, 'MANIFEST_END')],
  ['DECISIONS items', M.MAX_ITEMS_PER_BATCH, (n) => M.encodeDecisions(Array.from({ length: n }, (_, i) => ({ index: i, action: M.Action.SEND, offset: 0 }))), M.decodeDecisions],
  ['DECISIONS index', M.MAX_ENTRIES, (n) => M.encodeDecisions([{ index: n, action: M.Action.SKIP, offset: 0 }]), M.decodeDecisions],
  ['DECISIONS resume offset', MAX_FILE_SIZE, (n) => M.encodeDecisions([{ index: 0, action: M.Action.RESUME, offset: n, prefixHash: H }]), M.decodeDecisions],
  ['COMMITTED items', M.MAX_ITEMS_PER_BATCH, (n) => M.encodeCommitted(Array.from({ length: n }, (_, i) => i)), M.decodeCommitted],
  ['FAILED items', M.MAX_ENTRIES_PER_BATCH, (n) => M.encodeFailed(Array.from({ length: n }, (_, i) => ({ index: i, code: 'C', message: 'm' }))), M.decodeFailed],
  ['FAILED code bytes', M.MAX_CODE_BYTES, (n) => W().varint(1).varint(0).str('C'.repeat(n)).str('m').take(), M.decodeFailed],
  ['FAILED message bytes', M.MAX_MESSAGE_BYTES, (n) => W().varint(1).varint(0).str('C').str('m'.repeat(n)).take(), M.decodeFailed],
  ['SUMMARY counters', 64, (n) => { const w = W().varint(n); for (let i = 0; i < n; i++) w.varint(i); return w.take(); }, M.decodeSummary],
  ['ERROR code bytes', M.MAX_CODE_BYTES, (n) => W().str('C'.repeat(n)).str('m').take(), M.decodeError],
  ['ERROR message bytes', M.MAX_MESSAGE_BYTES, (n) => W().str('C').str('m'.repeat(n)).take(), M.decodeError],
  ['DATA BEGIN index', M.MAX_ENTRIES, (n) => W().u8(1).varint(n).varint(0).varint(0).varint(1).take(), M.decodeData],
  ['DATA BEGIN end', MAX_FILE_SIZE, (n) => W().u8(1).varint(0).varint(0).varint(0).varint(n).take(), M.decodeData],
  ['DATA CHUNK offset', MAX_FILE_SIZE, (n) => W().u8(2).varint(n).varint(1).u8(0).take(), M.decodeData],
  ['DATA CHUNK length', M.MAX_CHUNK_SIZE, (n) => { const w = W().u8(2).varint(0).varint(n); w.bytes(new Uint8Array(n)); return w.take(); }, M.decodeData],
  ['DATA ABORT message bytes', M.MAX_MESSAGE_BYTES, (n) => W().u8(4).varint(0).str('C').str('m'.repeat(n)).take(), M.decodeData],
];

for (const [field, cap, build, decode] of rows) {
  test(`length: ${field} at its cap (${cap}) decodes, one past it is FERRY_E_PROTOCOL`, () => {
    decode(build(cap));
    assert.throws(() => decode(build(cap + 1)), (e: unknown) => isFerryError(e, 'FERRY_E_PROTOCOL'), `${field} = ${cap + 1} was accepted`);
  });
}

test('length: counts past their cap are refused from the count alone (nothing behind it is read or allocated)', () => {
  const countOnly: [string, Uint8Array, (b: Uint8Array) => unknown][] = [
    ['MANIFEST', W().varint(0).varint(2 ** 52).take(), (b) => M.decodeManifest(b, false)],
    ['DECISIONS', W().varint(2 ** 52).take(), M.decodeDecisions],
    ['COMMITTED', W().varint(2 ** 52).take(), M.decodeCommitted],
    ['FAILED', W().varint(2 ** 52).take(), M.decodeFailed],
    ['SUMMARY', W().varint(2 ** 52).take(), M.decodeSummary],
    ['SESSION excludes', W().varint(1).varint(0).varint(1).varint(65536).varint(2 ** 52).take(), M.decodeSession],
    ['a string', W().str('C').varint(2 ** 52).take(), M.decodeError],
  ];
  for (const [what, b, decode] of countOnly) {
    assert.throws(() => decode(b), (e: unknown) => isFerryError(e, 'FERRY_E_PROTOCOL') && /exceeds/.test((e as Error).message), what);
  }
  // A varint longer than 8 bytes, and one over 2^53 - 1.
  assert.throws(() => M.decodeCount(Buffer.from([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]), 'x'), /varint too long/);
  assert.throws(() => M.decodeCount(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]), 'x', Number.MAX_SAFE_INTEGER), (e: unknown) => isFerryError(e, 'FERRY_E_PROTOCOL'));
});

// --- before authentication: the real receiver's handshake --------------------------------

/** Stop an in-process recv() that is still waiting: a valid session that the sender breaks off. */
async function stopRecv(port: number): Promise<void> {
  const p = await connectAsSender(port);
  await p.send(M.MsgType.SESSION, M.encodeSession({ version: M.TRANSFER_VERSION, flags: 0, streams: 1, chunkSize: 65536, excludes: [] }));
  await p.next();
  await p.send(M.MsgType.ERROR, M.encodeError({ code: 'FERRY_E_INTERRUPTED', message: 'test over' }));
  await p.end();
}

async function rawHandshakeBytes(port: number, bytes: Buffer): Promise<Buffer> {
  const s = net.connect({ host: '127.0.0.1', port });
  const got: Buffer[] = [];
  s.on('data', (c: Buffer) => got.push(c));
  s.on('error', () => undefined);
  await new Promise<void>((r) => s.once('connect', () => r()));
  s.write(bytes);
  await new Promise<void>((r) => {
    s.once('close', () => r());
    setTimeout(() => {
      s.destroy();
      r();
    }, 3000).unref();
  });
  return Buffer.concat(got);
}

for (const [len, what] of [
  [MAX_HANDSHAKE_MESSAGE, /invalid CPace share|handshake/],
  [MAX_HANDSHAKE_MESSAGE + 1, new RegExp(`${MAX_HANDSHAKE_MESSAGE + 1}-byte handshake message`)],
  [0xffff, /65535-byte handshake message/],
] as const) {
  test(`length (before authentication): a ClientShare of ${len} bytes is refused by the real receiver, which keeps listening and writes nothing`, async () => {
    const root = await tmpDir('ferry-adv-len-');
    const dst = path.join(root, 'dst');
    const h = await hostileSender(dst, { session: null });
    // The driver's own connection is authenticated but idle; a second, raw one misbehaves.
    const body = Buffer.alloc(Math.min(len, MAX_HANDSHAKE_MESSAGE + 1), 7);
    const msg = Buffer.concat([Buffer.from([MsgTypes.CLIENT_SHARE, len >> 8, len & 0xff]), body]);
    const reply = await rawHandshakeBytes(h.port, Buffer.concat([encodeHello(), msg]));
    assert.ok(reply.length > 0 && reply.length < 2048, `the receiver answered ${reply.length} bytes (hello + notice at most)`);
    assert.ok(h.warnings.some((w) => what.test(w)), h.warnings.join('\n'));
    await assert.rejects(fsp.readdir(dst), 'DST is not even created before a session starts');
    h.peer.destroy();
    await stopRecv(h.port);
    const o = await h.outcome;
    assert.equal(o.authError, undefined, 'a malformed handshake is not counted as a failed secret');
  });
}

// --- after authentication: frames and records against the real receiver ---------------------

test('length: a DATA frame of exactly 4 MiB (the frame cap) is accepted and its file published', async () => {
  const root = await tmpDir('ferry-adv-len-');
  const dst = path.join(root, 'dst');
  const h = await hostileSender(dst);
  // BEGIN + CHUNK(MAX_CHUNK) + CHUNK(rest) + END = exactly MAX_FRAME_PAYLOAD bytes.
  const fixed = (size: number, c2: number): number => {
    const w = W();
    M.writeBegin(w, 0, 0, 0, size);
    M.writeChunkHeader(w, 0, M.MAX_CHUNK_SIZE);
    M.writeChunkHeader(w, M.MAX_CHUNK_SIZE, c2);
    M.writeEnd(w, H);
    return w.length;
  };
  let c2 = MAX_FRAME_PAYLOAD - M.MAX_CHUNK_SIZE - 60;
  while (fixed(M.MAX_CHUNK_SIZE + c2, c2) + M.MAX_CHUNK_SIZE + c2 < MAX_FRAME_PAYLOAD) c2++;
  const size = M.MAX_CHUNK_SIZE + c2;
  const content = Buffer.alloc(size);
  for (let i = 0; i < size; i += 4093) content[i] = i & 0xff;
  const { newHash } = await import('../src/transfer/hash.js');
  const w = W();
  M.writeBegin(w, 0, 0, 0, size);
  M.writeChunkHeader(w, 0, M.MAX_CHUNK_SIZE);
  w.bytes(content.subarray(0, M.MAX_CHUNK_SIZE));
  M.writeChunkHeader(w, M.MAX_CHUNK_SIZE, c2);
  w.bytes(content.subarray(M.MAX_CHUNK_SIZE));
  M.writeEnd(w, newHash().update(content).digest());
  const payload = w.take();
  assert.equal(payload.length, MAX_FRAME_PAYLOAD);
  await h.peer.send(M.MsgType.MANIFEST, M.encodeManifest([entry(0, 'file', 'big.bin', { size })], false));
  await h.peer.send(M.MsgType.MANIFEST_END, M.encodeCount(1));
  assert.equal((await h.peer.next())?.type, M.MsgType.DECISIONS);
  await h.peer.send(M.MsgType.DATA, payload);
  const seen: number[] = [];
  for (let f = await h.peer.next(); f !== null && f.type !== M.MsgType.SUMMARY; f = await h.peer.next()) seen.push(f.type);
  assert.deepEqual(seen, [M.MsgType.COMMITTED]);
  await h.peer.end();
  assert.equal(await h.sessionError(), undefined);
  assert.ok((await fsp.readFile(path.join(dst, 'big.bin'))).equals(content));
});

for (const [what, len] of [
  ['4 MiB + 1', MAX_FRAME_PAYLOAD + 1],
  ['2^32 - 1', 0xffffffff],
] as const) {
  test(`length: a frame header announcing ${what} bytes is FERRY_E_PROTOCOL at once (no waiting for the bytes, nothing written)`, async () => {
    const root = await tmpDir('ferry-adv-len-');
    const dst = path.join(root, 'dst');
    const h = await hostileSender(dst);
    await h.peer.send(M.MsgType.MANIFEST, M.encodeManifest([entry(0, 'file', 'f', { size: 4 })], false));
    await h.peer.sendFrameHeader(M.MsgType.DATA, len);
    const err = await h.sessionError();
    assert.equal(err?.code, 'FERRY_E_PROTOCOL', String(err));
    assert.match(err!.message, /exceeds the 4194304-byte limit/);
    assert.deepEqual(await fsp.readdir(dst), []);
  });
}

test('length: a record length field past 2^14 + 256 is FERRY_E_INTEGRITY (refused from the header)', async () => {
  const root = await tmpDir('ferry-adv-len-');
  const h = await hostileSender(path.join(root, 'dst'));
  await h.peer.sendRecordBytes(Buffer.from([0x17, 0x03, 0x03, 0x41, 0x01]));
  const err = await h.sessionError();
  assert.equal(err?.code, 'FERRY_E_INTEGRITY', String(err));
  assert.match(err!.message, /record length 16641 out of range/);
});

test('length: a MANIFEST batch of 4097 entries is FERRY_E_PROTOCOL, nothing created', async () => {
  const root = await tmpDir('ferry-adv-len-');
  const dst = path.join(root, 'dst');
  const h = await hostileSender(dst);
  await h.peer.send(M.MsgType.MANIFEST, M.encodeManifest(Array.from({ length: 4097 }, (_, i) => entry(i, 'dir', `d${i}`)), false));
  assert.equal((await h.sessionError())?.code, 'FERRY_E_PROTOCOL');
  assert.deepEqual(await fsp.readdir(dst), []);
});

/** Dirs then a file: a path of `n` components, each `comp` bytes long (the last one the file). */
function deepPath(components: number[]): M.WireEntry[] {
  const out: M.WireEntry[] = [];
  let p = '';
  components.forEach((len, i) => {
    const name = String.fromCharCode(97 + (i % 26)).repeat(len);
    p = p === '' ? name : `${p}/${name}`;
    out.push(entry(i, i === components.length - 1 ? 'file' : 'dir', p, i === components.length - 1 ? { size: 3 } : {}));
  });
  return out;
}

for (const [what, comps, ok] of [
  ['a 255-byte name', [255], true],
  ['a 256-byte name', [256], 'FERRY_E_PATH'],
  ['a path of 4097 bytes', [...Array(16).fill(254), 4097 - 16 * 255], 'FERRY_E_PROTOCOL'],
  ['256 levels deep', Array(256).fill(1), true],
  ['257 levels deep', Array(257).fill(1), 'FERRY_E_PATH'],
] as [string, number[], true | string][]) {
  test(`length: ${what} ${ok === true ? 'is published inside DST' : `is refused (${ok}), nothing written`}`, async () => {
    const root = await tmpDir('ferry-adv-len-');
    const dst = path.join(root, 'dst');
    const h = await hostileSender(dst);
    const es = deepPath(comps);
    const last = es[es.length - 1]!;
    const r = await scriptedSend(h.peer, es, new Map([[last.index, Buffer.from('end')]]));
    if (ok === true) {
      assert.ok(r.summary, JSON.stringify(r.error));
      assert.equal(await fsp.readFile(path.join(dst, last.path), 'utf8'), 'end');
    } else {
      assert.equal(r.error?.code, ok, JSON.stringify(r.error));
      assert.deepEqual(await fsp.readdir(dst), []);
    }
  });
}

test('length: a path of exactly 4096 bytes (the cap; over PATH_MAX once DST is prefixed) ends the session cleanly, nothing outside DST', async () => {
  const root = await tmpDir('ferry-adv-len-');
  const dst = path.join(root, 'dst');
  const h = await hostileSender(dst);
  const es = deepPath([...Array(16).fill(254), 4096 - 16 * 255]);
  assert.equal(Buffer.byteLength(es[es.length - 1]!.path), 4096);
  const r = await scriptedSend(h.peer, es);
  assert.ok(r.summary, JSON.stringify(r.error));
  const failed = r.frames.filter((f) => f.type === M.MsgType.FAILED).flatMap((f) => M.decodeFailed(f.payload));
  const committed = r.frames.filter((f) => f.type === M.MsgType.COMMITTED).flatMap((f) => M.decodeCommitted(f.payload));
  const fileIndex = es[es.length - 1]!.index;
  assert.ok(failed.some((f) => f.index === fileIndex) || committed.includes(fileIndex), 'the file is reported, failed or committed');
  assert.deepEqual(await fsp.readdir(root), ['dst']);
});

test('length: a CHUNK one byte over the chunk cap is FERRY_E_PROTOCOL and the file is not published', async () => {
  const root = await tmpDir('ferry-adv-len-');
  const dst = path.join(root, 'dst');
  const h = await hostileSender(dst);
  const size = M.MAX_CHUNK_SIZE + 1;
  await h.peer.send(M.MsgType.MANIFEST, M.encodeManifest([entry(0, 'file', 'f', { size })], false));
  await h.peer.send(M.MsgType.MANIFEST_END, M.encodeCount(1));
  await h.peer.next();
  const w = W();
  M.writeBegin(w, 0, 0, 0, size);
  M.writeChunkHeader(w, 0, size);
  w.bytes(new Uint8Array(size));
  await h.peer.send(M.MsgType.DATA, w.take());
  assert.equal((await h.sessionError())?.code, 'FERRY_E_PROTOCOL');
  assert.deepEqual((await fsp.readdir(dst)).filter((n) => n === 'f'), []);
});

test('length: SESSION with 1024 excludes (the cap) of 4000 bytes is accepted and the session runs', async () => {
  const root = await tmpDir('ferry-adv-len-');
  const dst = path.join(root, 'dst');
  // 1024 × 4 KB: both caps at once would exceed the 4 MiB frame, so the patterns are 4000 bytes.
  const pat = (i: number): string => `${String(i).padStart(4, '0')}${'x'.repeat(3996)}`;
  const h = await hostileSender(dst, { session: { excludes: Array.from({ length: M.MAX_EXCLUDES }, (_, i) => pat(i)) } });
  assert.ok(h.token, 'SESSION_OK');
  const r = await scriptedSend(h.peer, [entry(0, 'file', 'f', { size: 2 })]);
  assert.ok(r.summary, JSON.stringify(r.error));
});

test('length: a 16 TiB file that is one hole does not stall the receiver (hashing is bounded or off the main thread)', { timeout: 30_000 }, async () => {
  // A child `ferry recv`, so that a receiver busy hashing 2^44 zero bytes cannot stall this test process.
  const root = await tmpDir('ferry-adv-len-');
  const rv = await startRecv(path.join(root, 'dst'), [], {}, 20_000);
  try {
    const p = await connectAsSender(rv.port, TEST_SECRET);
    await p.send(M.MsgType.SESSION, M.encodeSession({ version: M.TRANSFER_VERSION, flags: 0, streams: 1, chunkSize: 65536, excludes: [] }));
    await p.next();
    await p.send(M.MsgType.MANIFEST, M.encodeManifest([entry(0, 'file', 'hole', { size: MAX_FILE_SIZE })], false));
    await p.send(M.MsgType.MANIFEST_END, M.encodeCount(1));
    await p.next();
    const w = W();
    M.writeBegin(w, 0, 0, 0, MAX_FILE_SIZE);
    M.writeEnd(w, H);
    await p.send(M.MsgType.DATA, w.take());
    // The receiver must still answer within 3 s: a FAILED/ERROR/SUMMARY, or it ends the session.
    const t0 = Date.now();
    const f = await p.next(3000).catch(() => 'timeout' as const);
    assert.notEqual(f, 'timeout', `the receiver stalled for ${Date.now() - t0} ms`);
    p.destroy();
  } finally {
    rv.child.kill('SIGKILL');
    await rv.done;
  }
});

// --- after authentication: the real sender against a hostile receiver -------------------------

async function senderAgainst(script: (r: Awaited<ReturnType<typeof hostileReceiver>>) => Promise<void>): Promise<unknown> {
  const root = await tmpDir('ferry-adv-len-');
  const src = path.join(root, 'src');
  await makeTree(src, { 'a.txt': 'aaaa', 'd/b.txt': 'bbbb' });
  const r = await hostileReceiver(`${src}/`);
  await script(r).catch(() => undefined);
  return r.outcome.then(
    () => assert.fail('the sender succeeded against a hostile receiver'),
    (e: unknown) => e,
  );
}

for (const [what, payload] of [
  ['a SESSION_OK token of 15 bytes', Buffer.alloc(15)],
  ['a SESSION_OK token of 17 bytes', Buffer.alloc(17)],
] as const) {
  test(`length (hostile receiver): ${what} is FERRY_E_PROTOCOL`, async () => {
    const e = await senderAgainst(async (r) => {
      await r.peer.send(M.MsgType.SESSION_OK, payload);
    });
    assert.ok(isFerryError(e, 'FERRY_E_PROTOCOL'), String(e));
  });
}

test('length (hostile receiver): DECISIONS of 65537 items is FERRY_E_PROTOCOL', async () => {
  const e = await senderAgainst(async (r) => {
    await r.peer.send(M.MsgType.SESSION_OK, Buffer.alloc(16));
    await r.peer.send(M.MsgType.DECISIONS, M.encodeDecisions(Array.from({ length: 65537 }, (_, i) => ({ index: i, action: M.Action.SKIP, offset: 0 }))));
  });
  assert.ok(isFerryError(e, 'FERRY_E_PROTOCOL'), String(e));
});

test('length (hostile receiver): a frame header announcing 4 MiB + 1 is FERRY_E_PROTOCOL', async () => {
  const e = await senderAgainst(async (r) => {
    await r.peer.send(M.MsgType.SESSION_OK, Buffer.alloc(16));
    await r.peer.sendFrameHeader(M.MsgType.DECISIONS, MAX_FRAME_PAYLOAD + 1);
  });
  assert.ok(isFerryError(e, 'FERRY_E_PROTOCOL'), String(e));
});

test('length (hostile receiver): an ERROR message at the cap keeps its code; one byte past it is FERRY_E_PROTOCOL', async () => {
  const msg = `\u001b[31m${'m'.repeat(M.MAX_MESSAGE_BYTES - 5)}`;
  const e1 = await senderAgainst(async (r) => {
    await r.peer.send(M.MsgType.ERROR, M.encodeError({ code: 'FERRY_E_WRITE', message: msg }));
  });
  assert.ok(isFerryError(e1, 'FERRY_E_WRITE'), String(e1));
  const e2 = await senderAgainst(async (r) => {
    await r.peer.send(M.MsgType.ERROR, W().str('FERRY_E_WRITE').str('m'.repeat(M.MAX_MESSAGE_BYTES + 1)).take());
  });
  assert.ok(isFerryError(e2, 'FERRY_E_PROTOCOL'), String(e2));
});

test('length (hostile receiver): FAILED repeated without end for an entry that is not a file ends the session', { timeout: 30_000 }, async () => {
  const e = await senderAgainst(async (r) => {
    await r.peer.send(M.MsgType.SESSION_OK, Buffer.alloc(16));
    const m = await r.peer.next();
    const es = M.decodeManifest(m!.payload, false);
    const dir = es.find((x) => x.kind === 'dir')!;
    const batch = M.encodeFailed(Array.from({ length: M.MAX_ENTRIES_PER_BATCH }, () => ({ index: dir.index, code: 'FERRY_E_WRITE', message: 'again' })));
    for (let i = 0; i < 25 && !r.peer.socket.destroyed; i++) await r.peer.send(M.MsgType.FAILED, batch);
    await new Promise((res) => setTimeout(res, 200));
    r.peer.destroy();
  });
  assert.ok(isFerryError(e, 'FERRY_E_PROTOCOL'), `expected the sender to refuse repeated failure reports, got ${String(e)}`);
});


// --- extended attributes (-X/-A, issue #14) -----------------------------------------

/** A MANIFEST of one file whose attributes are written raw (so that every field can be out of range). */
function xattrManifest(pairs: Array<[string, number]>, opts: { count?: number } = {}): Uint8Array {
  const w = W().varint(0).varint(1).u8(0).str('f').varint(0).varint(0o644).i64(0n);
  w.varint(opts.count ?? pairs.length);
  for (const [name, len] of pairs) w.str(name).varint(len).bytes(new Uint8Array(len));
  return w.take();
}
const decodeX = (b: Uint8Array): unknown => M.decodeManifest(b, false, { xattrs: true });

test('lengths attack: oversized xattr', async () => {
  // The decoder: a value, a name, a count and an entry's total, each at its cap and one past it.
  const { MAX_XATTR_VALUE_BYTES, MAX_XATTR_NAME_BYTES, MAX_XATTRS_PER_ENTRY, MAX_XATTR_BYTES_PER_ENTRY } = await import('../src/core/limits.js');
  const refused = (b: Uint8Array, what: string): void =>
    assert.throws(() => decodeX(b), (e: unknown) => isFerryError(e, 'FERRY_E_PROTOCOL'), `${what} was accepted`);
  decodeX(xattrManifest([['user.v', MAX_XATTR_VALUE_BYTES]]));
  refused(xattrManifest([['user.v', MAX_XATTR_VALUE_BYTES + 1]]), 'a 64 KiB + 1 value');
  const name = (n: number): string => `user.${'n'.repeat(n - 5)}`;
  decodeX(xattrManifest([[name(MAX_XATTR_NAME_BYTES), 1]]));
  refused(xattrManifest([[name(MAX_XATTR_NAME_BYTES + 1), 1]]), 'a 256-byte name');
  const many = (n: number): Array<[string, number]> => Array.from({ length: n }, (_, i) => [`user.${String(i).padStart(4, '0')}`, 1]);
  decodeX(xattrManifest(many(MAX_XATTRS_PER_ENTRY)));
  refused(xattrManifest(many(MAX_XATTRS_PER_ENTRY + 1)), 'one attribute too many');
  refused(xattrManifest([], { count: 2 ** 40 }), 'a huge count (refused from the count alone)');
  const big = Math.ceil(MAX_XATTR_BYTES_PER_ENTRY / MAX_XATTR_VALUE_BYTES) + 1;
  refused(xattrManifest(Array.from({ length: big }, (_, i) => [`user.${i}`, MAX_XATTR_VALUE_BYTES] as [string, number])), 'more than the per-entry total');
  refused(xattrManifest([['nodot', 1]]), 'a name without a namespace');
  refused(xattrManifest([['user.b', 1], ['user.a', 1]]), 'names out of order (or repeated)');

  // The real receiver (asked for -X): a sender announcing an oversized value fails the session, nothing is written.
  const root = await tmpDir('ferry-adv-len-');
  const dst = path.join(root, 'dst');
  const { xattrPolicy } = await import('../src/fs/xattrs.js');
  const h = await hostileSender(dst, {
    session: { flags: M.SessionFlags.XATTRS },
    recv: { xattrs: xattrPolicy({ xattrs: true })! },
  });
  await h.peer.send(M.MsgType.MANIFEST, xattrManifest([['user.v', MAX_XATTR_VALUE_BYTES + 1]]));
  const err = await h.sessionError();
  assert.equal(err?.code, 'FERRY_E_PROTOCOL', String(err));
  assert.match(err!.message, /exceeds 65536/);
  assert.deepEqual(await fsp.readdir(dst), []);
});

// --- owner names (--names, issue #14) -----------------------------------------------

/** A MANIFEST of one file with owners and a raw owner name table (so that every field can be out of range). */
function namesManifest(users: Array<[number, string]>, groups: Array<[number, string]> = [], opts: { count?: number; first?: number } = {}): Uint8Array {
  const w = W().varint(opts.first ?? 0).varint(1);
  w.varint(opts.count ?? users.length);
  for (const [id, name] of users) w.varint(id).str(name);
  w.varint(groups.length);
  for (const [id, name] of groups) w.varint(id).str(name);
  w.u8(0).str(`f${opts.first ?? 0}`).varint(0).varint(0o644).i64(0n).varint(1000).varint(50);
  return w.take();
}
const namesFields = M.manifestFields(M.SessionFlags.OWNERS | M.SessionFlags.OWNER_NAMES);
const decodeN = (b: Uint8Array): unknown => M.decodeManifestBatch(b, false, namesFields);

test('lengths attack: oversized owner name table', async () => {
  const { MAX_OWNER_NAME_BYTES, MAX_OWNER_NAMES } = await import('../src/core/limits.js');
  const refused = (b: Uint8Array, what: string): void =>
    assert.throws(() => decodeN(b), (e: unknown) => isFerryError(e, 'FERRY_E_PROTOCOL'), `${what} was accepted`);
  // A name at its cap and one past it; names outside the allowed bytes.
  decodeN(namesManifest([[1000, 'n'.repeat(MAX_OWNER_NAME_BYTES)]]));
  decodeN(namesManifest([[1000, `${'n'.repeat(MAX_OWNER_NAME_BYTES - 1)}$`]]));
  refused(namesManifest([[1000, 'n'.repeat(MAX_OWNER_NAME_BYTES + 1)]]), 'a 33-byte name');
  refused(namesManifest([[1000, 'n'.repeat(1 << 20)]]), 'a 1 MiB name (refused from its length alone)');
  for (const bad of ['', 'a b', 'a:b', 'a$b', '../x', 'ü']) refused(namesManifest([[1000, bad]]), JSON.stringify(bad));
  refused(namesManifest([], [[50, 'g\n']]), 'a group name with a newline');
  refused(namesManifest([[2 ** 32, 'big']]), 'an id past 32 bits');
  // The count: at the cap, one past it, a huge one; users and groups together.
  const many = (n: number, from = 0): Array<[number, string]> => Array.from({ length: n }, (_, i) => [from + i, `u${from + i}`]);
  decodeN(namesManifest(many(MAX_OWNER_NAMES)));
  refused(namesManifest(many(MAX_OWNER_NAMES + 1)), 'one name too many');
  refused(namesManifest(many(MAX_OWNER_NAMES / 2 + 1), many(MAX_OWNER_NAMES / 2)), 'users and groups past the cap together');
  refused(namesManifest([], [], { count: 2 ** 40 }), 'a huge count (refused from the count alone)');

  // The real receiver (asked for -o -g --names): more names than a session allows,
  // spread over two batches that each pass the decoder, fail the session; nothing is written.
  const root = await tmpDir('ferry-adv-len-');
  const dst = path.join(root, 'dst');
  const h = await hostileSender(dst, {
    session: { flags: M.SessionFlags.OWNERS | M.SessionFlags.OWNER_NAMES },
    recv: { owners: { uid: true, gid: true }, ownerNames: true },
  });
  await h.peer.send(M.MsgType.MANIFEST, namesManifest(many(MAX_OWNER_NAMES)));
  await h.peer.send(M.MsgType.MANIFEST, namesManifest(many(1, MAX_OWNER_NAMES), [], { first: 1 }));
  const err = await h.sessionError();
  assert.equal(err?.code, 'FERRY_E_PROTOCOL', String(err));
  assert.match(err!.message, /more than 4096 owner names/);
  assert.deepEqual(await fsp.readdir(dst), []);

  // An id named twice in one session is refused as well.
  const dst2 = path.join(root, 'dst2');
  const h2 = await hostileSender(dst2, {
    session: { flags: M.SessionFlags.OWNERS | M.SessionFlags.OWNER_NAMES },
    recv: { owners: { uid: true, gid: true }, ownerNames: true },
  });
  await h2.peer.send(M.MsgType.MANIFEST, namesManifest([[1000, 'alice']]));
  await h2.peer.send(M.MsgType.MANIFEST, namesManifest([[1000, 'mallory']], [], { first: 1 }));
  const err2 = await h2.sessionError();
  assert.equal(err2?.code, 'FERRY_E_PROTOCOL', String(err2));
  assert.match(err2!.message, /named twice/);
});
