/**
 * rsync's option spellings in the ssh mode (issue #14): push maps them onto the local
 * sender (the remote receiver learns policy and filters from SESSION), pull sends
 * the sender's share to `ferry --server` in the bootstrap request (modes/ssh-bootstrap
 * parseExtras). A real sshd on loopback, as in ssh-mode.test.ts.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { parseExtras } from '../src/modes/ssh-bootstrap.js';
import { startSshd, type Sshd } from './support/sshd.js';
import { findTool, isCI } from './support/tools.js';
import { FERRY_BIN, cleanupTmpDirs, makeTree, runFerry, tmpDir, type RunResult } from './support/tree.js';

after(cleanupTmpDirs);

const OLD = 1_500_000_000_000_000_000n;
const NEW = 1_700_000_000_000_000_000n;
const read = (p: string): Promise<string> => fsp.readFile(p, 'utf8');
const exists = (p: string): Promise<boolean> => fsp.lstat(p).then(() => true, () => false);

test('bootstrap: the sender-side options are checked field by field', () => {
  assert.deepEqual(parseExtras({ recursive: true, bwlimit: 1024, filters: [{ include: true, pattern: 'a' }] }), {
    recursive: true,
    bwlimit: 1024,
    filters: [{ include: true, pattern: 'a' }],
  });
  assert.throws(() => parseExtras({ removeSourceFiles: 'yes' }), /removeSourceFiles must be a boolean/);
  assert.throws(() => parseExtras({ bwlimit: -1 }), /bwlimit/);
  assert.throws(() => parseExtras({ filters: [{ include: 1, pattern: 'a' }] }), /bad rule/);
  assert.throws(() => parseExtras({ policy: { sizeOnly: true } }), /policy is malformed/);
});

const skip = findTool('sshd') === undefined && !isCI() ? 'needs sshd, ssh, ssh-keygen' : false;

describe('ssh mode with rsync options', { skip, timeout: 300_000 }, () => {
  let sshd: Sshd;
  before(async () => {
    sshd = await startSshd();
  });
  after(async () => {
    await sshd?.stop();
  });
  const ferry = (args: string[]): Promise<RunResult> =>
    runFerry(['-e', sshd.sshCommand, '--remote-ferry', FERRY_BIN, '--progress=never', ...args], { timeoutMs: 120_000 });
  const host = (p: string): string => `127.0.0.1:${p}`;

  test('push: --include order, -u and --files-from reach the remote receiver', async () => {
    const base = await tmpDir();
    const src = path.join(base, 'src');
    const dst = path.join(base, 'dst');
    await makeTree(src, { 'a.txt': 'a', 'b.log': 'b', 'kept.txt': { type: 'file', content: 'src', mtime: OLD } });
    await makeTree(dst, { 'kept.txt': { type: 'file', content: 'newer dst', mtime: NEW } });
    const r = await ferry(['-u', '--include=*.txt', '--exclude=*', `${src}/`, host(dst)]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual((await fsp.readdir(dst)).sort(), ['a.txt', 'kept.txt']);
    assert.equal(await read(path.join(dst, 'kept.txt')), 'newer dst');
    await fsp.writeFile(path.join(base, 'list'), 'b.log\n');
    const f = await ferry([`--files-from=${path.join(base, 'list')}`, src, host(path.join(base, 'd2'))]);
    assert.equal(f.code, 0, f.stderr);
    assert.deepEqual(await fsp.readdir(path.join(base, 'd2')), ['b.log']);
  });

  test('pull: the remote sender filters and removes its confirmed source files; --files-from is refused', async () => {
    const base = await tmpDir();
    const src = path.join(base, 'src');
    await makeTree(src, { 'a.txt': 'a', 'b.log': 'b', 'd/c.txt': 'c' });
    const dst = path.join(base, 'pulled');
    const r = await ferry(['--remove-source-files', '--exclude=*.log', `${host(src)}/`, dst]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await read(path.join(dst, 'd/c.txt')), 'c');
    assert.ok(!(await exists(path.join(dst, 'b.log'))));
    assert.deepEqual((await fsp.readdir(src)).sort(), ['b.log', 'd'], 'what was sent and confirmed is gone; the excluded file stays');
    await fsp.writeFile(path.join(base, 'list'), 'b.log\n');
    const f = await ferry([`--files-from=${path.join(base, 'list')}`, host(src), path.join(base, 'p2')]);
    assert.equal(f.code, 2);
    assert.match(f.stderr, /--files-from is not available when pulling over ssh/);
  });
});
