/**
 * Issue #11, defect 1: a leftover temp file of an interrupted run that is *longer*
 * than the source is now was reused as is. The receiver offered no resume (the
 * leftover is no prefix), kept the temp file, never truncated it, and the commit only
 * ever extends: a 5-byte source over a 100-byte leftover was published as 100 bytes,
 * counted committed, exit 0.
 *
 * The rule now: what is published under a final name has exactly the declared size
 * and the verified content, whatever was on disk before. The receiver truncates a
 * leftover it does not resume from, and the writer checks the size on the open file
 * before the rename (FERRY_E_INTEGRITY otherwise), for network receive and local copy.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { isFerryError } from '../src/core/errors.js';
import { SafeWriter } from '../src/fs/safe-writer.js';
import { tempNameFor } from '../src/fs/temp-names.js';
import { runCopy } from '../src/modes/copy.js';
import { runMemorySession } from './support/transfer-harness.js';
import { cleanupTmpDirs, makeTree, tmpDir } from './support/tree.js';

after(cleanupTmpDirs);

const NOW = 1_700_000_000_000_000_000n;
const LEFTOVER = Buffer.alloc(100, 0x41);

async function withLeftover(dst: string, rel: string, content: Buffer): Promise<string> {
  const temp = path.join(dst, path.dirname(rel), tempNameFor(path.basename(rel)));
  await fsp.mkdir(path.dirname(temp), { recursive: true });
  await fsp.writeFile(temp, content);
  return temp;
}

test('issue 11.1: a temp file longer than the source is not published over (network receive)', async () => {
  const root = await tmpDir('ferry-i11-');
  const src = path.join(root, 'src');
  const dst = path.join(root, 'dst');
  await makeTree(src, { 'a.txt': 'hello', 'sub/b.bin': Buffer.alloc(300 * 1024, 7) });
  // The leftover starts with the source's bytes and goes on: still no prefix of it.
  await withLeftover(dst, 'a.txt', Buffer.concat([Buffer.from('hello'), LEFTOVER]));
  await withLeftover(dst, 'sub/b.bin', Buffer.alloc(400 * 1024, 9));
  const r = await runMemorySession(`${src}/`, dst);
  assert.ok(!(r.sender instanceof Error), String(r.sender));
  assert.ok(!(r.receiver instanceof Error), String(r.receiver));
  assert.equal(r.receiver.summary.committed, 2);
  assert.equal(r.receiver.summary.failed, 0);
  assert.equal(await fsp.readFile(path.join(dst, 'a.txt'), 'utf8'), 'hello');
  assert.ok((await fsp.readFile(path.join(dst, 'sub/b.bin'))).equals(Buffer.alloc(300 * 1024, 7)));
});

test('issue 11.1: a shorter leftover that is not a prefix is replaced, not resumed', async () => {
  const root = await tmpDir('ferry-i11-');
  const src = path.join(root, 'src');
  const dst = path.join(root, 'dst');
  await makeTree(src, { 'a.txt': 'hello world' });
  await withLeftover(dst, 'a.txt', Buffer.from('HELLO'));
  const r = await runMemorySession(`${src}/`, dst);
  assert.ok(!(r.receiver instanceof Error), String(r.receiver));
  assert.equal(await fsp.readFile(path.join(dst, 'a.txt'), 'utf8'), 'hello world');
});

test('issue 11.1: the writer refuses to publish a temp file whose size is not the declared size (FERRY_E_INTEGRITY)', async () => {
  const root = await tmpDir('ferry-i11-');
  const dst = path.join(root, 'dst');
  await fsp.mkdir(dst);
  await withLeftover(dst, 'a.txt', LEFTOVER);
  const w = await SafeWriter.open(dst);
  const t = await w.beginFile({ kind: 'file', path: 'a.txt', size: 5, mode: 0o644, mtimeNs: NOW }, { resume: true });
  await t.write(Buffer.from('hello'), 0);
  await assert.rejects(t.commit(), (e: unknown) => isFerryError(e, 'FERRY_E_INTEGRITY') && /a\.txt/.test(e.message));
  await assert.rejects(fsp.lstat(path.join(dst, 'a.txt')), { code: 'ENOENT' });
});

test('issue 11.1: local copy publishes the source, not a longer leftover temp file', async () => {
  const root = await tmpDir('ferry-i11-');
  const src = path.join(root, 'src');
  const dst = path.join(root, 'dst');
  await makeTree(src, { 'a.txt': 'hello', 'd/b.txt': 'world!' });
  await withLeftover(dst, 'a.txt', LEFTOVER);
  await withLeftover(dst, 'd/b.txt', LEFTOVER);
  for (const readWrite of [false, true]) {
    const c = await runCopy({ src: `${src}/`, dst, readWrite });
    assert.deepEqual(c.errors, []);
    assert.equal(await fsp.readFile(path.join(dst, 'a.txt'), 'utf8'), 'hello');
    assert.equal(await fsp.readFile(path.join(dst, 'd/b.txt'), 'utf8'), 'world!');
    await fsp.rm(path.join(dst, 'a.txt'));
    await withLeftover(dst, 'a.txt', LEFTOVER);
  }
});
