import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { cleanupTmpDirs, compareTrees, makeTree, tmpDir, type TreeSpec } from './support/tree.js';
import { lastJson, startRecv, sendTo, transfer } from './support/net-harness.js';

after(cleanupTmpDirs);

const big = Buffer.alloc(3 * 1024 * 1024 + 17);
for (let i = 0; i < big.length; i += 4096) big.writeUInt32LE(i * 2654435761 >>> 0, i);

function spec(): TreeSpec {
  const s: TreeSpec = {
    'empty-file': '',
    'one-byte': 'x',
    'private.txt': { type: 'file', content: 'secret stuff', mode: 0o600, mtime: 1_600_000_000_123_456_000n },
    'script.sh': { type: 'file', content: '#!/bin/sh\necho hi\n', mode: 0o755 },
    'readonly.txt': { type: 'file', content: 'ro', mode: 0o444 },
    'empty-dir/': { type: 'dir' },
    'nested/empty/deeper/': { type: 'dir', mode: 0o750 },
    'data/big.bin': big,
    'data/link-rel': { type: 'symlink', target: '../one-byte' },
    'data/dangling': { type: 'symlink', target: '/does/not/exist' },
    'data/hard': { type: 'hardlink', target: 'one-byte' },
    'sparse.img': { type: 'sparse', size: 8 * 1024 * 1024, data: [{ offset: 4 * 1024 * 1024, content: 'middle' }] },
    'setuid-bin': { type: 'file', content: 'suid', mode: 0o4755 },
  };
  for (let i = 0; i < 200; i++) s[`many/f${String(i).padStart(3, '0')}.dat`] = Buffer.alloc(100 + ((i * 97) % 5000), i & 0xff);
  return s;
}

test('send/recv over loopback: every entry type and metadata; -P 1 and -P 4 identical; re-run skips', async () => {
  const root = await tmpDir('ferry-net-');
  const src = path.join(root, 'src');
  await makeTree(src, spec());
  for (const p of ['1', '4']) {
    const dst = path.join(root, `dst${p}`);
    const r = await transfer(`${src}/`, dst, ['-P', p, '--json'], ['--json']);
    assert.equal(r.send.code, 0, r.send.stderr);
    assert.equal(r.recv.code, 0, r.recv.stderr);
    const diffs = await compareTrees(src, dst, { checkSparse: true, ignore: (rel) => rel === 'setuid-bin' });
    assert.deepEqual(diffs, []);
    // setuid is stripped by default (SECURITY.md "Threat model", fs/safe-writer.ts).
    assert.equal((await fsp.stat(path.join(dst, 'setuid-bin'))).mode & 0o7777, 0o755);
    const sj = lastJson(r.send.stdout);
    const rj = lastJson(r.recv.stdout);
    assert.equal(sj['exitCode'], 0);
    assert.equal(sj['streams'], Number(p));
    assert.equal(sj['committed'], rj['committed']);
    assert.equal(sj['bytes'], rj['bytes']);
    assert.equal(sj['failed'], 0);
    assert.equal(sj['cipher'], 'aes-128-gcm');
  }
  assert.deepEqual(await compareTrees(path.join(root, 'dst1'), path.join(root, 'dst4')), []);
  // A second run finds everything up to date and sends no file bytes.
  const again = await transfer(`${src}/`, path.join(root, 'dst1'), ['--json']);
  assert.equal(again.send.code, 0, again.send.stderr);
  const j = lastJson(again.send.stdout);
  assert.equal(j['committed'], 0);
  assert.equal(j['bytesSent'], 0);
  assert.ok((j['skipped'] as number) > 200);
});

test('a no-op re-run with -P 4 ends cleanly: streams that join after the summary are ended, not cut', async () => {
  // With nothing to send the receiver decides from the manifest alone and sends its
  // summary while the sender is still opening its extra streams. Those used to be
  // cut on arrival, and the sender failed with FERRY_E_INTEGRITY or ECONNRESET.
  const root = await tmpDir('ferry-net-noop-P-');
  const src = path.join(root, 'src');
  const dst = path.join(root, 'dst');
  await makeTree(src, { 'a.bin': Buffer.alloc(200_000, 1), 'b.bin': Buffer.alloc(300_000, 2) });
  const first = await transfer(`${src}/`, dst, ['-P', '4']);
  assert.equal(first.send.code, 0, first.send.stderr);
  for (let i = 0; i < 4; i++) {
    const r = await transfer(`${src}/`, dst, ['-P', '4', '--json'], ['--json']);
    assert.equal(r.send.code, 0, `run ${i}: ${r.send.stderr}`);
    assert.equal(r.recv.code, 0, `run ${i}: ${r.recv.stderr}`);
    const j = lastJson(r.send.stdout);
    assert.equal(j['committed'], 0);
    assert.equal(j['skipped'], 2);
  }
  assert.deepEqual(await compareTrees(src, dst), []);
});

test('SRC without a trailing slash arrives as DST/<name>; --delete, --exclude and --checksum', async () => {
  const root = await tmpDir('ferry-net-');
  const src = path.join(root, 'tree');
  await makeTree(src, { 'a.txt': 'aaaa', 'b.log': 'bbbb', 'sub/c.txt': 'cccc' });
  const dst = path.join(root, 'dst');
  let r = await transfer(src, dst, ['--exclude', '*.log']);
  assert.equal(r.send.code, 0, r.send.stderr);
  assert.equal(await fsp.readFile(path.join(dst, 'tree/a.txt'), 'utf8'), 'aaaa');
  await assert.rejects(fsp.stat(path.join(dst, 'tree/b.log')));
  // Extra entries in DST: removed only with --delete, excluded ones spared.
  await fsp.writeFile(path.join(dst, 'tree/extra.txt'), 'x');
  await fsp.writeFile(path.join(dst, 'tree/keep.log'), 'x');
  // Same size and mtime but different content: only --checksum sees it.
  await fsp.writeFile(path.join(dst, 'tree/a.txt'), 'AAAA');
  await fsp.utimes(path.join(src, 'a.txt'), 1_700_000_000, 1_700_000_000);
  await fsp.utimes(path.join(dst, 'tree/a.txt'), 1_700_000_000, 1_700_000_000);
  r = await transfer(src, dst, ['--exclude', '*.log', '--json']);
  assert.equal(lastJson(r.send.stdout)['committed'], 0);
  assert.equal(await fsp.readFile(path.join(dst, 'tree/a.txt'), 'utf8'), 'AAAA');
  r = await transfer(src, dst, ['--exclude', '*.log', '--delete', '--checksum', '--json']);
  assert.equal(r.send.code, 0, r.send.stderr);
  const j = lastJson(r.send.stdout);
  assert.equal(j['committed'], 1);
  assert.equal(j['deleted'], 1);
  assert.equal(await fsp.readFile(path.join(dst, 'tree/a.txt'), 'utf8'), 'aaaa');
  await assert.rejects(fsp.stat(path.join(dst, 'tree/extra.txt')));
  assert.equal(await fsp.readFile(path.join(dst, 'tree/keep.log'), 'utf8'), 'x');
});

test('--dry-run writes nothing and reports what would be sent', async () => {
  const root = await tmpDir('ferry-net-');
  const src = path.join(root, 'src');
  await makeTree(src, { 'a.txt': 'aaaa', 'sub/b.txt': 'bb' });
  const dst = path.join(root, 'dst');
  const r = await transfer(`${src}/`, dst, ['--dry-run', '--json']);
  assert.equal(r.send.code, 0, r.send.stderr);
  assert.equal(lastJson(r.send.stdout)['committed'], 2);
  await assert.rejects(fsp.stat(dst));
});

test('wrong secret: exit 3 on both sides, nothing written', async () => {
  const root = await tmpDir('ferry-net-');
  const src = path.join(root, 'src');
  await makeTree(src, { 'a.txt': 'aaaa' });
  const dst = path.join(root, 'dst');
  const rv = await startRecv(dst, ['--max-auth-failures', '1']);
  const s = sendTo(`${src}/`, rv.port, [], { FERRY_SECRET: 'a-completely-different-secret' });
  const [sr, rr] = await Promise.all([s.done, rv.done]);
  assert.equal(sr.code, 3, sr.stderr);
  assert.equal(rr.code, 3, rr.stderr);
  assert.match(sr.stderr, /FERRY_E_AUTH/);
  assert.match(rr.stderr, /FERRY_E_AUTH/);
  await assert.rejects(fsp.stat(dst));
});

test('a failed authentication does not end a waiting recv; the right secret then succeeds', async () => {
  const root = await tmpDir('ferry-net-');
  const src = path.join(root, 'src');
  await makeTree(src, { 'a.txt': 'aaaa' });
  const dst = path.join(root, 'dst');
  const rv = await startRecv(dst, [], { FERRY_TEST_AUTH_BACKOFF_MS: '10' });
  const bad = await sendTo(`${src}/`, rv.port, [], { FERRY_SECRET: 'wrong-secret-wrong-secret' }).done;
  assert.equal(bad.code, 3);
  await assert.rejects(fsp.stat(path.join(dst, 'a.txt')));
  const good = await sendTo(`${src}/`, rv.port).done;
  assert.equal(good.code, 0, good.stderr);
  const rr = await rv.done;
  assert.equal(rr.code, 0, rr.stderr);
  assert.match(rr.stderr, /failed attempt 1 of 3/);
  assert.equal(await fsp.readFile(path.join(dst, 'a.txt'), 'utf8'), 'aaaa');
});

test('usage errors exit 2', async () => {
  const { runFerry } = await import('./support/tree.js');
  for (const args of [['send'], ['send', 'a', 'nohostport'], ['recv', 'dst'], ['send', 'a', 'h:1', '-P', '0'], ['recv', 'd', '--listen', 'x:y']]) {
    const r = await runFerry(args, { env: { FERRY_SECRET: 'x-y-z-w-v-u-t' } });
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /FERRY_E_USAGE/);
  }
});

test('recv --json announces where it listens; the summary names the cipher and the record layer', async () => {
  const root = await tmpDir('ferry-net-');
  const src = path.join(root, 'src');
  await makeTree(src, { 'a.txt': 'aaaa', 'b/c.txt': 'cc' });
  const dst = path.join(root, 'dst');
  const r = await transfer(`${src}/`, dst, ['--json'], ['--json']);
  assert.equal(r.send.code, 0, r.send.stderr);
  assert.equal(r.recv.code, 0, r.recv.stderr);
  const sj = lastJson(r.send.stdout);
  assert.equal(sj['cipher'], 'aes-128-gcm');
  const native = sj['native'] as Record<string, unknown>;
  assert.equal(native['records'], process.env.FERRY_NATIVE === '0' ? 'js' : native['records']);
  assert.match(String(native['records']), /^(native|js)$/);
  assert.match(String(native['ktls']), /^(native|js)$/);
  assert.equal((lastJson(r.recv.stdout)['native'] as Record<string, unknown>)['records'], native['records']);
  const first = JSON.parse(r.recv.stdout.split('\n')[0]!) as Record<string, unknown>;
  assert.equal(first['event'], 'listening');
  assert.equal(typeof first['port'], 'number');
  assert.deepEqual(await compareTrees(src, dst), []);
});

test('--keep-serving serves sessions one after another', async () => {
  const root = await tmpDir('ferry-net-');
  const a = path.join(root, 'a');
  const b = path.join(root, 'b');
  await makeTree(a, { 'one.txt': '1' });
  await makeTree(b, { 'two.txt': '2' });
  const dst = path.join(root, 'dst');
  const rv = await startRecv(dst, ['--keep-serving']);
  try {
    const [s1, s2] = await Promise.all([sendTo(`${a}/`, rv.port).done, sendTo(`${b}/`, rv.port).done]);
    assert.equal(s1.code, 0, s1.stderr);
    assert.equal(s2.code, 0, s2.stderr);
    assert.equal(await fsp.readFile(path.join(dst, 'one.txt'), 'utf8'), '1');
    assert.equal(await fsp.readFile(path.join(dst, 'two.txt'), 'utf8'), '2');
    assert.equal(rv.child.exitCode, null, 'recv still serving');
  } finally {
    rv.child.kill('SIGTERM');
    await rv.done;
  }
});
