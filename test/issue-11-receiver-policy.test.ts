/**
 * Issue #11, defect 8 (the smaller ones):
 * - names in ferry's own temp pattern (`.ferry-XXXXXXXX.NAME.part`) from the wire
 *   are refused (FERRY_E_PATH): such a name collides with another entry's temp file,
 *   which the writer removes as an interrupted run's leftover;
 * - `--delete` is no longer the sender's decision alone: `ferry recv --refuse-delete`
 *   refuses such a session (FERRY_E_REFUSED) before anything is written, and the
 *   receiver's summary says how many entries it deleted;
 * - modes from the wire are masked with the receiver's umask, for directories as
 *   for files (a sender could make DST's directories 0777);
 * - `cleanForDisplay` escapes bidi controls, zero-width characters and lone
 *   surrogates as well as control characters.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { cleanForDisplay, isFerryError } from '../src/core/errors.js';
import { validateHardlinkTarget, validateRelativePath } from '../src/fs/path-safety.js';
import { SafeWriter } from '../src/fs/safe-writer.js';
import { tempNameFor } from '../src/fs/temp-names.js';
import { resolveSource, walk } from '../src/fs/walk.js';
import { ReceiverSession, readOpening, refuseSession } from '../src/transfer/receiver.js';
import { runSender } from '../src/transfer/sender.js';
import { MsgType, TRANSFER_VERSION, encodeManifest, encodeSession, type WireEntry } from '../src/wire/messages.js';
import { sendTo, startRecv } from './support/net-harness.js';
import { memoryChannelPair } from './support/plain-channel.js';
import { cleanupTmpDirs, makeTree, tmpDir } from './support/tree.js';

after(cleanupTmpDirs);

const NOW = 1_700_000_000_000_000_000n;

function isCode(code: string): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.ok(isFerryError(e), String(e));
    assert.equal(e.code, code, e.message);
    return true;
  };
}

// --- temp-file names from the wire ------------------------------------------------------

test('issue 11.8: a path in ferry\'s temp-file pattern is refused (FERRY_E_PATH)', () => {
  const temp = tempNameFor('a.txt');
  for (const p of [temp, `d/${temp}`, `${temp}/x`, '.ferry-0123abcd..part', '.ferry-0123abcd.x.part']) {
    assert.throws(() => validateRelativePath(p), isCode('FERRY_E_PATH'), p);
  }
  assert.throws(() => validateHardlinkTarget(temp, 'h'), isCode('FERRY_E_PATH'));
  // Near misses are ordinary names.
  for (const p of ['.ferry-0123abcd.x.par', '.ferry-0123ABCD.x.part', '.ferry-0123abc.x.part', 'ferry-0123abcd.x.part', '.ferry-notes.part', 'x.part']) {
    assert.equal(validateRelativePath(p), p);
  }
});

test('attack: a manifest entry named like another entry\'s temp file is refused before anything is written', async () => {
  const root = await tmpDir('ferry-i11-');
  const dst = path.join(root, 'dst');
  await fsp.mkdir(dst);
  const [s, r] = memoryChannelPair();
  const outcome = (async () => {
    const o = await readOpening(r);
    if (o.kind !== 'session') throw new Error('expected session');
    return new ReceiverSession(r, o.frames, o.session, await SafeWriter.open(dst)).run();
  })();
  await s.send(MsgType.SESSION, encodeSession({ version: TRANSFER_VERSION, flags: 0, streams: 1, chunkSize: 65536, excludes: [] }));
  const file = (index: number, p: string): WireEntry => ({ index, kind: 'file', path: p, size: 4, mode: 0o644, mtimeNs: NOW });
  await s.send(MsgType.MANIFEST, encodeManifest([file(0, 'a.txt'), file(1, tempNameFor('a.txt'))], false));
  await assert.rejects(outcome, isCode('FERRY_E_PATH'));
  assert.deepEqual(await fsp.readdir(dst), []);
});

// --- --refuse-delete ---------------------------------------------------------------------

async function sendWithDelete(refuseDelete: boolean): Promise<{ sender: Promise<unknown>; receiver: Promise<unknown>; dst: string }> {
  const root = await tmpDir('ferry-i11-');
  const src = path.join(root, 'src');
  const dst = path.join(root, 'dst');
  await makeTree(src, { 'a.txt': 'aaaa' });
  await makeTree(dst, { 'extra.txt': 'keep me' });
  const [s, r] = memoryChannelPair();
  const receiver = (async () => {
    const o = await readOpening(r);
    if (o.kind !== 'session') throw new Error('expected session');
    let session: ReceiverSession;
    try {
      session = new ReceiverSession(r, o.frames, o.session, await SafeWriter.open(dst), { refuseDelete });
    } catch (e) {
      await refuseSession(r, e as never);
      throw e;
    }
    return session.run();
  })();
  receiver.catch(() => undefined);
  const sender = runSender(s, walk(await resolveSource(`${src}/`)), {
    streams: 1,
    chunkSize: 65536,
    checksum: false,
    delete: true,
    dryRun: false,
    excludes: [],
    preserveSpecial: false,
  });
  sender.catch(() => undefined);
  return { sender, receiver, dst };
}

test('issue 11.8: a receiver with refuseDelete refuses a --delete session (FERRY_E_REFUSED on both sides), nothing deleted', async () => {
  const t = await sendWithDelete(true);
  await assert.rejects(t.receiver, isCode('FERRY_E_REFUSED'));
  await assert.rejects(t.sender, isCode('FERRY_E_REFUSED'));
  assert.deepEqual(await fsp.readdir(t.dst), ['extra.txt']);
});

test('issue 11.8: without refuseDelete, --delete runs and the receiver counts what it deleted', async () => {
  const t = await sendWithDelete(false);
  const r = (await t.receiver) as { summary: { deleted: number; committed: number } };
  await t.sender;
  assert.equal(r.summary.deleted, 1);
  assert.equal(r.summary.committed, 1);
  assert.deepEqual(await fsp.readdir(t.dst), ['a.txt']);
});

test('issue 11.8: ferry recv --refuse-delete against ferry send --delete: both exit 4 with FERRY_E_REFUSED; recv prints its deletions otherwise', async () => {
  const root = await tmpDir('ferry-i11-');
  const src = path.join(root, 'src');
  const dst = path.join(root, 'dst');
  await makeTree(src, { 'a.txt': 'aaaa' });
  await makeTree(dst, { 'extra.txt': 'keep me' });
  const r = await startRecv(dst, ['--refuse-delete']);
  const s = sendTo(`${src}/`, r.port, ['--delete']);
  const [send, recv] = await Promise.all([s.done, r.done]);
  assert.equal(recv.code, 4, recv.stderr);
  assert.equal(send.code, 4, send.stderr);
  assert.match(recv.stderr, /FERRY_E_REFUSED/);
  assert.match(send.stderr, /FERRY_E_REFUSED/);
  assert.deepEqual(await fsp.readdir(dst), ['extra.txt']);
  // Without the flag the deletion happens and recv's summary line counts it.
  const r2 = await startRecv(dst);
  const s2 = sendTo(`${src}/`, r2.port, ['--delete']);
  const [send2, recv2] = await Promise.all([s2.done, r2.done]);
  assert.equal(send2.code, 0, send2.stderr);
  assert.equal(recv2.code, 0, recv2.stderr);
  assert.match(recv2.stderr, /deleted 1/);
  assert.deepEqual(await fsp.readdir(dst), ['a.txt']);
});

// --- umask ---------------------------------------------------------------------------------

test('issue 11.8: the writer\'s umask masks directory modes as it masks file modes', async () => {
  const root = await tmpDir('ferry-i11-');
  const dst = path.join(root, 'dst');
  const w = await SafeWriter.open(dst, { umask: 0o022 });
  await w.mkdir({ kind: 'dir', path: 'open', size: 0, mode: 0o777, mtimeNs: NOW });
  const t = await w.beginFile({ kind: 'file', path: 'open/f', size: 1, mode: 0o666, mtimeNs: NOW });
  await t.write(Buffer.from('x'), 0);
  await t.commit();
  await w.finish();
  assert.equal((await fsp.stat(path.join(dst, 'open'))).mode & 0o7777, 0o755);
  assert.equal((await fsp.stat(path.join(dst, 'open/f'))).mode & 0o7777, 0o644);
  // A second writer with the same umask finds them up to date.
  const w2 = await SafeWriter.open(dst, { umask: 0o022 });
  assert.equal(await w2.quickCheck({ kind: 'file', path: 'open/f', size: 1, mode: 0o666, mtimeNs: NOW }), 'same');
});

test('issue 11.8: ferry recv applies its umask to directories and files from the sender', async () => {
  const root = await tmpDir('ferry-i11-');
  const src = path.join(root, 'src');
  const dst = path.join(root, 'dst');
  await makeTree(src, { 'open/': { type: 'dir', mode: 0o777 }, 'open/f.txt': { type: 'file', content: 'x', mode: 0o666 } });
  const r = await startRecv(dst);
  const s = sendTo(`${src}/`, r.port);
  const [send, recv] = await Promise.all([s.done, r.done]);
  assert.equal(send.code, 0, send.stderr);
  assert.equal(recv.code, 0, recv.stderr);
  const umask = process.umask(); // the child inherited it
  assert.notEqual(umask & 0o022, 0, 'this test needs a umask that clears group/other write');
  assert.equal((await fsp.stat(path.join(dst, 'open'))).mode & 0o7777, 0o777 & ~umask);
  assert.equal((await fsp.stat(path.join(dst, 'open/f.txt'))).mode & 0o7777, 0o666 & ~umask);
});

// --- cleanForDisplay ------------------------------------------------------------------------

test('issue 11.8: cleanForDisplay escapes bidi controls, zero-width characters and lone surrogates', () => {
  const cases: [string, string][] = [
    ['a\nb', 'a\\x0ab'],
    ['\x1b[31mred', '\\x1b[31mred'],
    ['evil\u202Etxt.exe', 'evil\\u202etxt.exe'],
    ['\u202A\u202B\u202C\u202D', '\\u202a\\u202b\\u202c\\u202d'],
    ['\u2066\u2067\u2068\u2069', '\\u2066\\u2067\\u2068\\u2069'],
    ['\u200E\u200F\u061C', '\\u200e\\u200f\\u061c'],
    ['pass\u200Bwd\u200C\u200D\u2060\uFEFF', 'pass\\u200bwd\\u200c\\u200d\\u2060\\ufeff'],
    ['lone \uD800 high', 'lone \\ud800 high'],
    ['lone \uDC00 low', 'lone \\udc00 low'],
    ['\u2028\u2029', '\\u2028\\u2029'],
  ];
  for (const [input, shown] of cases) assert.equal(cleanForDisplay(input), shown, JSON.stringify(input));
  // Ordinary text, including non-Latin letters, emoji (a valid surrogate pair) and RTL letters, is untouched.
  for (const ok of ['naïve café', '日本語', 'emoji 😀 ok', 'שלום', 'a-b_c.d']) assert.equal(cleanForDisplay(ok), ok);
});
