/**
 * Issue #14, "Dishonest output": a network dry run (`ferry send -n --delete`, and the
 * ssh mode `ferry -n --delete SRC host:DST`) must count exactly what the real run then
 * does (files, bytes, symlinks, hard links, deletions), list each deletion under `-v`
 * on the sending side ("deleting PATH", like rsync), and change nothing on disk.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { lastJson, transfer } from './support/net-harness.js';
import { startSshd, type Sshd } from './support/sshd.js';
import { findTool, isCI } from './support/tools.js';
import { FERRY_BIN, cleanupTmpDirs, compareTrees, makeTree, runFerry, snapshotTree, tmpDir, type TreeSpec } from './support/tree.js';

after(cleanupTmpDirs);

const T0 = 1_600_000_000_000_000_000n;

const SRC: TreeSpec = {
  'a.txt': 'hello',
  'same.txt': { type: 'file', content: 'unchanged', mtime: T0 },
  'changed.txt': { type: 'file', content: 'new content', mtime: T0 + 5_000_000_000n },
  'sub/b.bin': Buffer.alloc(300_000, 7),
  'sub/c.txt': 'c',
  'link': { type: 'symlink', target: 'a.txt' },
  'hard': { type: 'hardlink', target: 'a.txt' },
  'newdir/': { type: 'dir' },
};

const DST: TreeSpec = {
  'same.txt': { type: 'file', content: 'unchanged', mtime: T0 },
  'changed.txt': { type: 'file', content: 'old', mtime: T0 },
  'extra.txt': 'delete me',
  'olddir/x': 'x',
  'olddir/y/z': 'z',
  'sub/extra2': 'e',
  'notes.keep': 'spared by --exclude',
};

const COUNTED = ['committed', 'skipped', 'failed', 'deleted', 'dirs', 'symlinks', 'hardlinks', 'bytes'] as const;

function counts(j: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(COUNTED.map((k) => [k, j[k]]));
}

/** The `deleting PATH` lines of a stderr, sorted. */
function deletions(stderr: string): string[] {
  return stderr
    .split('\n')
    .filter((l) => l.startsWith('deleting '))
    .map((l) => l.slice('deleting '.length))
    .sort();
}

const EXPECTED_DELETIONS = ['extra.txt', 'olddir/', 'sub/extra2'];

async function setup(): Promise<{ src: string; dst: string }> {
  const base = await tmpDir('ferry-dry-');
  const src = path.join(base, 'src');
  const dst = path.join(base, 'dst');
  await makeTree(src, SRC);
  await makeTree(dst, DST);
  return { src, dst };
}

test('send -n --delete counts and lists exactly what the real run does, and changes nothing', async () => {
  const { src, dst } = await setup();
  const before = await snapshotTree(dst);
  const opts = ['--delete', '--exclude', '*.keep', '--json', '-v'];
  const dry = await transfer(`${src}/`, dst, ['-n', ...opts], ['--json']);
  assert.equal(dry.send.code, 0, dry.send.stderr);
  assert.equal(dry.recv.code, 0, dry.recv.stderr);
  assert.deepEqual(await snapshotTree(dst), before, 'the dry run changed DST');
  const dryJson = lastJson(dry.send.stdout);
  assert.equal(dryJson['dryRun'], true);
  assert.deepEqual(deletions(dry.send.stderr), EXPECTED_DELETIONS, dry.send.stderr);

  const real = await transfer(`${src}/`, dst, opts, ['--json']);
  assert.equal(real.send.code, 0, real.send.stderr);
  const realJson = lastJson(real.send.stdout);
  assert.deepEqual(counts(dryJson), counts(realJson));
  assert.deepEqual(counts(lastJson(dry.recv.stdout)), counts(lastJson(real.recv.stdout)));
  assert.equal(realJson['deleted'], 3);
  assert.deepEqual(deletions(real.send.stderr), EXPECTED_DELETIONS, real.send.stderr);
  // The summary lines say the same numbers.
  const summary = (s: string): string => /(?:would send|sent) .*?, failed \d+/.exec(s)?.[0].replace(/^would send|^sent/, '') ?? `no summary in ${s}`;
  assert.equal(summary(dry.send.stderr), summary(real.send.stderr));
  assert.deepEqual(await compareTrees(src, dst, { ignore: (rel) => rel === 'notes.keep' }), []);
});

const sshSkip = !(findTool('sshd') && findTool('ssh') && findTool('ssh-keygen')) && !isCI() ? 'needs sshd, ssh, ssh-keygen' : false;

describe('the ssh mode: -n --delete is as honest, push and pull', { skip: sshSkip, timeout: 300_000 }, () => {
  let sshd: Sshd;
  before(async () => {
    sshd = await startSshd();
  });
  after(async () => {
    await sshd?.stop();
  });
  const ferry = (args: string[]) => runFerry(['-e', sshd.sshCommand, '--remote-ferry', FERRY_BIN, '--progress=never', ...args], { timeoutMs: 120_000 });

  for (const direction of ['push', 'pull'] as const) {
    test(direction, async () => {
      const { src, dst } = await setup();
      const operands = direction === 'push' ? [`${src}/`, `127.0.0.1:${dst}`] : [`127.0.0.1:${src}/`, dst];
      const before = await snapshotTree(dst);
      const opts = ['--delete', '--exclude', '*.keep', '--json', '-v'];
      const dry = await ferry(['-n', ...opts, ...operands]);
      assert.equal(dry.code, 0, dry.stderr);
      assert.deepEqual(await snapshotTree(dst), before, 'the dry run changed DST');
      assert.deepEqual(deletions(dry.stderr), EXPECTED_DELETIONS, dry.stderr);
      const real = await ferry([...opts, ...operands]);
      assert.equal(real.code, 0, real.stderr);
      assert.deepEqual(counts(lastJson(dry.stdout)), counts(lastJson(real.stdout)));
      assert.equal(lastJson(real.stdout)['deleted'], 3);
    });
  }
});
