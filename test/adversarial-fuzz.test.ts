/**
 * Issue #11, fuzzing everything a peer can reach after authentication, seeded and
 * bounded: every message decoder of wire/messages.ts and the hello parser; the
 * receiver session (transfer/receiver.ts, with a real SafeWriter on disk) fed mutated
 * versions of a valid sender's frame sequence; and the sender session
 * (transfer/sender.ts, reading a real tree) fed mutated versions of a valid receiver's
 * replies. Frames and records are fuzzed in wire-frame.test.ts and secure-fuzz.test.ts.
 *
 * Every run must end in a FerryError with an expected code (or succeed, when a mutation
 * happens to be harmless), never another exception, an INTERNAL error, a hang or an
 * unhandled rejection; the receiver must write nothing outside DST. The seed and the
 * iteration are in every failure message: a failure reproduces from them.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { isFerryError } from '../src/core/errors.js';
import { SafeWriter } from '../src/fs/safe-writer.js';
import { resolveSource, walk } from '../src/fs/walk.js';
import type { Frame } from '../src/secure/channel-api.js';
import { ReceiverSession, readOpening } from '../src/transfer/receiver.js';
import { runSender } from '../src/transfer/sender.js';
import { newHash } from '../src/transfer/hash.js';
import { checkHelloPrefix, encodeHello, guessProtocol, parseHello } from '../src/wire/hello.js';
import * as M from '../src/wire/messages.js';
import { prng } from './support/secure-helpers.js';
import { dataFor, entry } from './support/hostile-peer.js';
import { PLAIN_SENDER } from './support/memory-peers.js';
import { memoryChannelPair } from './support/plain-channel.js';
import { cleanupTmpDirs, makeTree, tmpDir } from './support/tree.js';

after(cleanupTmpDirs);

type Rnd = () => number;
const int = (rnd: Rnd, n: number): number => Math.floor(rnd() * n);

function mutateBytes(rnd: Rnd, input: Uint8Array): Buffer {
  const out = Buffer.from(input);
  switch (int(rnd, 5)) {
    case 0: {
      for (let k = 0, n = 1 + int(rnd, 4); k < n && out.length > 0; k++) {
        const i = int(rnd, out.length);
        out[i] = out[i]! ^ (1 << int(rnd, 8));
      }
      return out;
    }
    case 1:
      return out.subarray(0, int(rnd, out.length + 1));
    case 2: {
      if (out.length > 0) out[int(rnd, out.length)] = int(rnd, 256);
      return out;
    }
    case 3: {
      // A varint-looking run of 0xff: lengths and counts at their extremes.
      const i = int(rnd, out.length + 1);
      return Buffer.concat([out.subarray(0, i), Buffer.alloc(1 + int(rnd, 9), 0xff), out.subarray(i)]);
    }
    default: {
      const i = int(rnd, out.length + 1);
      const junk = Buffer.alloc(1 + int(rnd, 16));
      for (let k = 0; k < junk.length; k++) junk[k] = int(rnd, 256);
      return Buffer.concat([out.subarray(0, i), junk, out.subarray(i)]);
    }
  }
}

// --- every decoder ----------------------------------------------------------------------------

const T0 = 1_700_000_000_123_456_789n;
const samples: [string, Uint8Array, (b: Uint8Array) => unknown][] = [
  ['SESSION', M.encodeSession({ version: M.TRANSFER_VERSION, flags: 15, streams: 4, chunkSize: 1 << 20, excludes: ['*.tmp', 'build/**'] }), M.decodeSession],
  ['JOIN', M.encodeJoin({ token: new Uint8Array(16).fill(3), stream: 2 }), M.decodeJoin],
  ['SESSION_OK', M.encodeSessionOk(new Uint8Array(16).fill(1)), M.decodeSessionOk],
  [
    'MANIFEST',
    M.encodeManifest(
      [entry(5, 'dir', 'a'), entry(6, 'file', 'a/f', { size: 2 ** 40, mtimeNs: T0 }), entry(7, 'symlink', 'a/l', { target: '../x' }), entry(8, 'hardlink', 'a/h', { target: 'a/f' })],
      false,
    ),
    (b) => M.decodeManifest(b, false),
  ],
  ['MANIFEST --checksum', M.encodeManifest([entry(0, 'file', 'f', { size: 3, hash: new Uint8Array(M.HASH_BYTES).fill(7) })], true), (b) => M.decodeManifest(b, true)],
  ['MANIFEST_END', M.encodeCount(4096), (b) => M.decodeCount(b, 'MANIFEST_END')],
  ['DECISIONS', M.encodeDecisions([{ index: 1, action: M.Action.SKIP, offset: 0 }, { index: 2, action: M.Action.RESUME, offset: 99, prefixHash: new Uint8Array(M.HASH_BYTES) }]), M.decodeDecisions],
  ['COMMITTED', M.encodeCommitted([0, 1, 300, 2 ** 20]), M.decodeCommitted],
  ['FAILED', M.encodeFailed([{ index: 1, code: 'FERRY_E_WRITE', message: 'disk on fire' }]), M.decodeFailed],
  ['SUMMARY', M.encodeSummary({ committed: 1, skipped: 2, failed: 3, dirs: 4, symlinks: 5, hardlinks: 6, deleted: 7, bytesWritten: 8, resumedBytes: 9 }), M.decodeSummary],
  ['ERROR', M.encodeError({ code: 'FERRY_E_NOSPC', message: 'full' }), M.decodeError],
  ['DELETED', M.encodeDeleted([{ path: 'old/x', dir: false }, { path: 'gone', dir: true }]), M.decodeDeleted],
  [
    'DATA',
    (() => {
      const w = new M.ByteWriter();
      M.writeBegin(w, 3, 0, 0, 10);
      M.writeChunkHeader(w, 2, 3);
      w.bytes(Buffer.from('abc'));
      M.writeEnd(w, new Uint8Array(M.HASH_BYTES));
      M.writeAbort(w, 4, 'FERRY_E_CHANGED', 'changed');
      return w.take();
    })(),
    M.decodeData,
  ],
];

test('fuzz (seed 11001): every message decoder gives a message or FERRY_E_PROTOCOL, nothing else', () => {
  const seed = 11001;
  const rnd = prng(seed);
  for (const [name, valid, decode] of samples) decode(valid); // the samples themselves are valid
  for (let iter = 0; iter < 12_000; iter++) {
    const [name, valid, decode] = samples[iter % samples.length]!;
    let input: Buffer;
    if (iter % 7 === 0) {
      input = Buffer.alloc(int(rnd, 64));
      for (let i = 0; i < input.length; i++) input[i] = int(rnd, 256);
    } else {
      input = mutateBytes(rnd, valid);
      if (rnd() < 0.3) input = mutateBytes(rnd, input);
    }
    try {
      decode(input);
    } catch (e) {
      assert.ok(isFerryError(e, 'FERRY_E_PROTOCOL'), `seed ${seed} iteration ${iter} (${name}, input ${input.toString('hex').slice(0, 200)}): ${String((e as Error)?.stack ?? e)}`);
    }
  }
});

test('fuzz (seed 11002): the hello parser names or refuses any first bytes, never throws', () => {
  const seed = 11002;
  const rnd = prng(seed);
  const hello = encodeHello();
  for (let iter = 0; iter < 5000; iter++) {
    const input = iter % 2 === 0 ? mutateBytes(rnd, hello) : Buffer.from(Array.from({ length: int(rnd, 40) }, () => int(rnd, 256)));
    const where = `seed ${seed} iteration ${iter} (${input.toString('hex')})`;
    try {
      checkHelloPrefix(input);
      if (input.length >= hello.length) parseHello(input);
      const g = guessProtocol(input);
      assert.equal(typeof g, 'string', where);
      assert.ok(!/[\u0000-\u001f\u007f]/.test(g), `${where}: the guess carries control characters: ${JSON.stringify(g)}`);
    } catch (e) {
      assert.ok(isFerryError(e), `${where}: ${String(e)}`);
    }
  }
});

// --- the receiver session -------------------------------------------------------------------

const RECEIVER_CODES = new Set(['FERRY_E_PROTOCOL', 'FERRY_E_PATH', 'FERRY_E_INTEGRITY', 'FERRY_E_CONNECT', 'FERRY_E_REMOTE', 'FERRY_E_VERSION', 'FERRY_E_WRITE', 'FERRY_E_NOSPC', 'FERRY_E_CHANGED', 'FERRY_E_READ', 'FERRY_E_INTERRUPTED']);

/** A valid sender's frames for a small tree: dirs, files (one big enough for the TempFile path), links. */
function validSenderFrames(): { type: number; payload: Buffer }[] {
  const content = new Map<number, Buffer>([
    [1, Buffer.from('hello')],
    [2, Buffer.alloc(300 * 1024, 7)],
    [4, Buffer.from('')],
    [6, Buffer.from('x'.repeat(1000))],
  ]);
  const es: M.WireEntry[] = [
    entry(0, 'dir', 'd'),
    entry(1, 'file', 'd/a.txt', { size: 5 }),
    entry(2, 'file', 'big.bin', { size: 300 * 1024 }),
    entry(3, 'symlink', 'd/link', { target: 'a.txt' }),
    entry(4, 'file', 'empty', { size: 0 }),
    entry(5, 'dir', 'd/e'),
    entry(6, 'file', 'd/e/x', { size: 1000 }),
    entry(7, 'hardlink', 'd/e/hl', { target: 'd/a.txt' }),
  ];
  const frames: { type: number; payload: Buffer }[] = [
    { type: M.MsgType.SESSION, payload: M.encodeSession({ version: M.TRANSFER_VERSION, flags: 0, streams: 1, chunkSize: 65536, excludes: [] }) },
    { type: M.MsgType.MANIFEST, payload: M.encodeManifest(es.slice(0, 5), false) },
    { type: M.MsgType.MANIFEST, payload: M.encodeManifest(es.slice(5), false) },
    { type: M.MsgType.MANIFEST_END, payload: M.encodeCount(es.length) },
  ];
  for (const [i, c] of content) frames.push({ type: M.MsgType.DATA, payload: dataFor(i, c) });
  return frames;
}

function mutateFrames(rnd: Rnd, frames: { type: number; payload: Buffer }[]): { list: { type: number; payload: Buffer }[]; what: string } {
  const list = frames.map((f) => ({ ...f }));
  const i = int(rnd, list.length);
  const kind = int(rnd, 6);
  switch (kind) {
    case 0:
    case 1:
      list[i] = { type: list[i]!.type, payload: mutateBytes(rnd, list[i]!.payload) };
      return { list, what: `payload of frame ${i} mutated` };
    case 2: {
      const types: number[] = Object.values(M.MsgType);
      list[i] = { type: types[int(rnd, types.length)]!, payload: list[i]!.payload };
      return { list, what: `frame ${i} retyped ${list[i]!.type}` };
    }
    case 3:
      list.splice(i, 1);
      return { list, what: `frame ${i} dropped` };
    case 4:
      list.splice(i, 0, list[i]!);
      return { list, what: `frame ${i} duplicated` };
    default: {
      const j = int(rnd, list.length);
      [list[i], list[j]] = [list[j]!, list[i]!];
      return { list, what: `frames ${i} and ${j} swapped` };
    }
  }
}

async function withDeadline<T>(p: Promise<T>, ms: number, where: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, rej) => (t = setTimeout(() => rej(new Error(`${where}: no outcome within ${ms} ms (hang)`)), ms)))]);
  } finally {
    clearTimeout(t);
  }
}

test('fuzz (seed 11003): the receiver session, fed mutated frame sequences, ends in an expected FerryError or succeeds, writing only inside DST', async () => {
  const seed = 11003;
  const rnd = prng(seed);
  const valid = validSenderFrames();
  const box = await tmpDir('ferry-adv-fuzz-');
  const outside = path.join(box, 'outside');
  await fsp.mkdir(outside);
  const codes = new Map<string, number>();
  for (let iter = 0; iter < 200; iter++) {
    const { list, what } = iter === 0 ? { list: valid, what: 'unmutated' } : mutateFrames(rnd, valid);
    const where = `seed ${seed} iteration ${iter} (${what})`;
    const dst = path.join(box, `dst${iter}`);
    const [s, r] = memoryChannelPair();
    const outcome = (async () => {
      const o = await readOpening(r);
      if (o.kind !== 'session') throw new Error('not a session'); // a JOIN here: refused by modes/recv.ts
      const sink = await SafeWriter.open(dst);
      return new ReceiverSession(r, o.frames, o.session, sink, { maxOpenFiles: 4 }).run();
    })();
    outcome.catch(() => r.destroy()); // as modes/recv.ts does with a connection it gives up on
    const script = (async () => {
      for (const f of list) await s.send(f.type, f.payload);
      // Read until SUMMARY or ERROR or the end, then close like a sender does. A sender that
      // stays silent is ended by the channel's idle timeout on a real connection: here, after the
      // receiver has been quiet for a while (longer for the valid sequence, which must succeed).
      const it = s.frames()[Symbol.asyncIterator]();
      const quietMs = iter === 0 ? 3000 : 60;
      for (;;) {
        const x = await Promise.race([it.next(), new Promise<null>((res) => setTimeout(() => res(null), quietMs))]);
        if (x === null || x.done || x.value.type === M.MsgType.SUMMARY || x.value.type === M.MsgType.ERROR) break;
      }
      await s.close();
    })().catch(() => s.destroy());
    let result: unknown;
    try {
      result = await withDeadline(outcome, 5000, where);
    } catch (e) {
      if ((e as Error).message === 'not a session') continue;
      assert.ok(isFerryError(e) && RECEIVER_CODES.has(e.code), `${where}: ${String((e as Error)?.stack ?? e)}`);
      codes.set(e.code, (codes.get(e.code) ?? 0) + 1);
    }
    await withDeadline(script, 5000, `${where} (script)`);
    if (iter === 0) assert.ok(result, `${where}: the valid sequence failed`);
    assert.deepEqual(await fsp.readdir(outside), [], `${where}: wrote outside DST`);
    const names = (await fsp.readdir(box)).filter((n) => !/^dst\d+$/.test(n));
    assert.deepEqual(names, ['outside'], `${where}: wrote next to DST`);
    if (result && iter === 0) {
      assert.equal(await fsp.readFile(path.join(dst, 'd/a.txt'), 'utf8'), 'hello');
      assert.equal((await fsp.stat(path.join(dst, 'd/e/hl'))).ino, (await fsp.stat(path.join(dst, 'd/a.txt'))).ino);
    }
    // A failed session's last queued writes may still land (in DST): retry while they do.
    await fsp.rm(dst, { recursive: true, force: true, maxRetries: 10, retryDelay: 20 });
  }
  assert.ok((codes.get('FERRY_E_PROTOCOL') ?? 0) > 10, `seed ${seed}: the mutations rarely reached the protocol checks: ${JSON.stringify([...codes])}`);
});

// --- the sender session -------------------------------------------------------------------------

const SENDER_CODES = new Set(['FERRY_E_PROTOCOL', 'FERRY_E_CONNECT', 'FERRY_E_INTEGRITY', 'FERRY_E_REMOTE', 'FERRY_E_WRITE', 'FERRY_E_NOSPC', 'FERRY_E_PATH', 'FERRY_E_VERSION', 'FERRY_E_CHANGED', 'FERRY_E_READ', 'FERRY_E_INTERRUPTED', 'FERRY_E_AUTH', 'FERRY_E_TIMEOUT']);

test('fuzz (seed 11004): the sender session, fed mutated receiver replies, ends in an expected FerryError or succeeds', async () => {
  const seed = 11004;
  const rnd = prng(seed);
  const root = await tmpDir('ferry-adv-fuzz-');
  const src = path.join(root, 'src');
  await makeTree(src, { 'a.txt': 'aaaa', 'd/b.txt': 'bbbbbbbb', 'd/big.bin': Buffer.alloc(200 * 1024, 5), 'l': { type: 'symlink', target: 'a.txt' } });
  // What a valid receiver says, learnt from one clean run's manifest.
  const files: { index: number; size: number; hash: Buffer }[] = [];
  {
    const [s, r] = memoryChannelPair();
    const p = runSender(s, walk(await resolveSource(`${src}/`)), PLAIN_SENDER);
    p.catch(() => undefined);
    const it = r.frames()[Symbol.asyncIterator]();
    await it.next();
    await r.send(M.MsgType.SESSION_OK, new Uint8Array(16));
    for (let x = await it.next(); !x.done && x.value.type !== M.MsgType.MANIFEST_END; x = await it.next()) {
      if (x.value.type !== M.MsgType.MANIFEST) continue;
      for (const e of M.decodeManifest(x.value.payload, false)) {
        if (e.kind === 'file') files.push({ index: e.index, size: e.size, hash: newHash().update(await fsp.readFile(path.join(src, e.path))).digest() });
      }
    }
    r.destroy();
    await p.catch(() => undefined);
  }
  const replies = (): { type: number; payload: Buffer }[] => [
    { type: M.MsgType.SESSION_OK, payload: M.encodeSessionOk(new Uint8Array(16)) },
    { type: M.MsgType.DECISIONS, payload: M.encodeDecisions(files.map((f, i) => (i === 0 ? { index: f.index, action: M.Action.RESUME, offset: 2, prefixHash: new Uint8Array(M.HASH_BYTES) } : { index: f.index, action: M.Action.SEND, offset: 0 }))) },
    { type: M.MsgType.COMMITTED, payload: M.encodeCommitted(files.slice(1).map((f) => f.index)) },
    { type: M.MsgType.FAILED, payload: M.encodeFailed([{ index: files[0]!.index, code: 'FERRY_E_WRITE', message: 'no room' }]) },
    { type: M.MsgType.SUMMARY, payload: M.encodeSummary({ committed: files.length - 1, skipped: 0, failed: 1, dirs: 1, symlinks: 1, hardlinks: 0, deleted: 0, bytesWritten: 0, resumedBytes: 0 }) },
  ];
  const codes = new Map<string, number>();
  for (let iter = 0; iter < 80; iter++) {
    const { list, what } = iter === 0 ? { list: replies(), what: 'unmutated' } : mutateFrames(rnd, replies());
    const where = `seed ${seed} iteration ${iter} (${what})`;
    const [s, r] = memoryChannelPair();
    const outcome = runSender(s, walk(await resolveSource(`${src}/`)), PLAIN_SENDER);
    outcome.catch(() => s.destroy()); // as modes/send.ts does
    const script = (async () => {
      const it = r.frames()[Symbol.asyncIterator]();
      const seen: Frame[] = [];
      const pump = (async () => {
        for (let x = await it.next(); !x.done; x = await it.next()) seen.push(x.value);
      })().catch(() => undefined);
      // Reply as a receiver would: commits only once the data has been sent (END or ABORT of every file), or 50 ms.
      const ended = (): number => {
        let n = 0;
        for (const f of seen) if (f.type === M.MsgType.DATA) for (const rec of M.decodeData(f.payload)) if (rec.rec === 3 || rec.rec === 4) n++;
        return n;
      };
      const patience = iter === 0 ? 3000 : 50;
      const ready = async (): Promise<void> => {
        const end = Date.now() + patience;
        while (Date.now() < end && ended() < files.length) await new Promise((res) => setTimeout(res, 2));
      };
      const manifestEnded = async (): Promise<void> => {
        const end = Date.now() + patience;
        while (Date.now() < end && !seen.some((f) => f.type === M.MsgType.MANIFEST_END)) await new Promise((res) => setTimeout(res, 2));
      };
      for (const [k, f] of list.entries()) {
        if (k === 1) await manifestEnded();
        if (k === 2) await ready();
        await r.send(f.type, f.payload);
      }
      await new Promise((res) => setTimeout(res, 5));
      await r.close();
      await pump;
    })().catch(() => r.destroy());
    try {
      const res = await withDeadline(outcome, 5000, where);
      if (iter === 0) assert.deepEqual([res.summary.committed, res.failures.length], [files.length - 1, 1], where);
    } catch (e) {
      if (iter === 0) throw e;
      assert.ok(isFerryError(e) && SENDER_CODES.has(e.code), `${where}: ${String((e as Error)?.stack ?? e)}`);
      codes.set(e.code, (codes.get(e.code) ?? 0) + 1);
    }
    await withDeadline(script, 5000, `${where} (script)`);
  }
  assert.ok((codes.get('FERRY_E_PROTOCOL') ?? 0) > 10, `seed ${seed}: the mutations rarely reached the protocol checks: ${JSON.stringify([...codes])}`);
});
