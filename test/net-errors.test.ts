/**
 * Per-file failures across the wire: the receiver's disk fills up (the sender must
 * exit non-zero with the receiver's error text), and a source file changes while
 * it is being sent (reported failed, never published with content that was not a
 * snapshot of the source).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import { lastJson, transfer } from './support/net-harness.js';
import { runMemorySession } from './support/transfer-harness.js';
import { cleanupTmpDirs, makeTree, smallTmpfs, tmpDir } from './support/tree.js';

after(cleanupTmpDirs);

test('receiver disk full: the sender exits 1 and prints the receiver\'s FERRY_E_NOSPC', async (t) => {
  const root = await tmpDir('ferry-full-');
  const src = path.join(root, 'src');
  const spec: Record<string, Buffer> = {};
  for (let i = 0; i < 6; i++) spec[`f${i}.bin`] = Buffer.alloc(400 * 1024, i + 1);
  await makeTree(src, spec);
  const tmpfs = await smallTmpfs(t, root, '1m');
  if (!tmpfs) return;
  const mnt = tmpfs.dir;
  try {
    const r = await transfer(`${src}/`, mnt, ['--json'], ['--json']);
    assert.equal(r.send.code, 1, r.send.stderr);
    assert.equal(r.recv.code, 1, r.recv.stderr);
    assert.match(r.send.stderr, /FERRY_E_NOSPC: receiver: .*no space left/);
    const j = lastJson(r.send.stdout);
    assert.ok((j['failed'] as number) >= 1);
    assert.ok((j['committed'] as number) >= 1);
    // Whatever is under a final name is complete.
    for (const name of await fsp.readdir(mnt)) {
      if (name.startsWith('.ferry-')) assert.fail(`temp file left behind: ${name}`);
      assert.equal((await fsp.stat(path.join(mnt, name))).size, 400 * 1024);
    }
  } finally {
    tmpfs.unmount();
  }
});

test('a source file growing while it is sent is reported FERRY_E_CHANGED and not published', async () => {
  const root = await tmpDir('ferry-chg-');
  const src = path.join(root, 'src');
  await makeTree(src, { 'growing.bin': Buffer.alloc(4 << 20, 1), 'stable.txt': 'stable' });
  const dst = path.join(root, 'dst');
  let sent = 0;
  let grown = false;
  const r = await runMemorySession(`${src}/`, dst, {
    chunkSize: 64 * 1024,
    events: {
      // Deterministic: after the first MiB has been read and sent, the file grows.
      onBytes: (n) => {
        sent += n;
        if (!grown && sent >= 1 << 20) {
          grown = true;
          appendFileSync(path.join(src, 'growing.bin'), 'more data');
        }
      },
    },
  });
  if (r.sender instanceof Error) throw r.sender;
  if (r.receiver instanceof Error) throw r.receiver;
  assert.ok(grown);
  assert.deepEqual(r.sender.failures.map((e) => e.code), ['FERRY_E_CHANGED']);
  assert.equal(r.sender.summary.failed, 1);
  assert.equal(r.sender.summary.committed, 1);
  assert.deepEqual((await fsp.readdir(dst)).sort(), ['stable.txt']);
});
