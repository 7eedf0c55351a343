/**
 * rsync's option spellings over the network (issue #14): `ferry send` / `ferry recv`
 * end to end, the SESSION extension that carries the update policy and ordered
 * filters, and the --bwlimit token bucket. The ssh mode's share (options mapped onto
 * send/recv on either side) is in ssh-mode.test.ts.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { tempNameFor } from '../src/fs/temp-names.js';
import { TokenBucket, parseRate } from '../src/transfer/token-bucket.js';
import { decodeSession, encodeSession } from '../src/wire/messages.js';
import { lastJson, startRecv, transfer } from './support/net-harness.js';
import { cleanupTmpDirs, makeTree, runFerry, tmpDir, type TreeSpec } from './support/tree.js';

after(cleanupTmpDirs);

const OLD = 1_500_000_000_000_000_000n;
const MID = 1_600_000_000_000_000_000n;
const NEW = 1_700_000_000_000_000_000n;

async function setup(spec: TreeSpec, dstSpec?: TreeSpec): Promise<{ src: string; dst: string; base: string }> {
  const base = await tmpDir('ferry-rsnet-');
  const src = path.join(base, 'src');
  const dst = path.join(base, 'dst');
  await makeTree(src, spec);
  if (dstSpec) await makeTree(dst, dstSpec);
  else await fsp.mkdir(dst);
  return { src, dst, base };
}
const read = (p: string): Promise<string> => fsp.readFile(p, 'utf8');
const exists = (p: string): Promise<boolean> => fsp.lstat(p).then(() => true, () => false);

describe('wire: SESSION extension', () => {
  test('absent unless used, so a plain session is what older receivers expect', () => {
    const plain = { version: 2, flags: 0, streams: 1, chunkSize: 65536, excludes: ['*.tmp'] };
    const bytes = encodeSession(plain);
    assert.deepEqual(encodeSession({ ...plain, policy: 0, filters: [] }), bytes);
    assert.deepEqual(decodeSession(bytes), plain);
    const ext = { ...plain, excludes: [], policy: 5, partialDir: '.partial', filters: [{ include: true, pattern: '*.txt' }, { include: false, pattern: '*' }] };
    assert.deepEqual(decodeSession(encodeSession(ext)), ext);
  });
  test('a bad filter kind is a protocol error', () => {
    const b = encodeSession({ version: 2, flags: 0, streams: 1, chunkSize: 65536, excludes: [], policy: 0, filters: [{ include: true, pattern: 'x' }] });
    const bad = Buffer.from(b);
    bad[bad.length - 4] = 7; // the kind byte of the only rule: then "x" (length + char) and the empty partial dir (one 0)
    assert.throws(() => decodeSession(bad), /filter kind 7/);
  });
});

describe('--bwlimit: token bucket and rate syntax', () => {
  test('RATE is KiB/s by default, with B/K/M/G suffixes, like rsync', () => {
    assert.equal(parseRate('100'), 100 * 1024);
    assert.equal(parseRate('1.5M'), 1.5 * 1024 * 1024);
    assert.equal(parseRate('512K'), 512 * 1024);
    assert.equal(parseRate('2g'), 2 * 1024 ** 3);
    assert.equal(parseRate('1000B'), 1000);
    assert.equal(parseRate('0'), 0);
    assert.equal(parseRate('fast'), null);
  });
  test('bytes released by time t never exceed burst + rate × t (simulated clock)', () => {
    const rate = 100_000;
    const b = new TokenBucket(rate, 0, 10_000);
    let now = 0;
    let sent = 0;
    for (let i = 0; i < 50; i++) {
      now += b.take(30_000, now); // wait as told, then "send"
      sent += 30_000;
      assert.ok(sent <= 10_000 + (rate * now) / 1000 + 1e-6, `at ${now} ms: ${sent} bytes`);
    }
    // And it does not hold back more than needed: 1.5 MB at 100 kB/s is about 15 s.
    assert.ok(now >= 14_800 && now <= 15_000, String(now));
  });
});

describe('ferry send/recv with rsync options', () => {
  test('--size-only, --ignore-existing and -u are applied by the receiver', async () => {
    const spec: TreeSpec = {
      'same-size': { type: 'file', content: 'NEW!', mtime: NEW },
      'newer-in-dst': { type: 'file', content: 'src', mtime: MID },
      'older-in-dst': { type: 'file', content: 'src', mtime: MID },
      'fresh': 'fresh',
    };
    const dstSpec: TreeSpec = {
      'same-size': { type: 'file', content: 'old.', mtime: OLD },
      'newer-in-dst': { type: 'file', content: 'dst copy', mtime: NEW },
      'older-in-dst': { type: 'file', content: 'dst copy', mtime: OLD },
    };
    {
      const { src, dst } = await setup(spec, dstSpec);
      const r = await transfer(`${src}/`, dst, ['--size-only', '--json']);
      assert.equal(r.send.code, 0, r.send.stderr);
      assert.equal(await read(path.join(dst, 'same-size')), 'old.');
      assert.equal(await read(path.join(dst, 'older-in-dst')), 'src');
      assert.equal(lastJson(r.send.stdout)['skipped'], 1);
    }
    {
      const { src, dst } = await setup(spec, dstSpec);
      const r = await transfer(`${src}/`, dst, ['-u']);
      assert.equal(r.send.code, 0, r.send.stderr);
      assert.equal(await read(path.join(dst, 'newer-in-dst')), 'dst copy');
      assert.equal(await read(path.join(dst, 'older-in-dst')), 'src');
      assert.equal(await read(path.join(dst, 'same-size')), 'NEW!');
    }
    {
      const { src, dst } = await setup(spec, dstSpec);
      const r = await transfer(`${src}/`, dst, ['--ignore-existing']);
      assert.equal(r.send.code, 0, r.send.stderr);
      assert.equal(await read(path.join(dst, 'older-in-dst')), 'dst copy');
      assert.equal(await read(path.join(dst, 'fresh')), 'fresh');
    }
  });

  test('--include/--exclude in order, and --delete spares what the rules exclude', async () => {
    const { src, dst } = await setup({ 'a.txt': 'a', 'b.log': 'b', 'd/c.txt': 'c' }, { 'keep.log': 'mine', 'gone.txt': 'x' });
    const r = await transfer(`${src}/`, dst, ['--include=*/', '--include=*.txt', '--exclude=*', '--delete']);
    assert.equal(r.send.code, 0, r.send.stderr);
    assert.equal(r.recv.code, 0, r.recv.stderr);
    assert.deepEqual((await fsp.readdir(dst)).sort(), ['a.txt', 'd', 'keep.log']);
    assert.equal(await read(path.join(dst, 'd/c.txt')), 'c');
  });

  test('--files-from and -r on the sending side', async () => {
    const { src, dst, base } = await setup({ 'a/b/c': 'c', 'a/other': 'o', 'tree/x/y': 'y' });
    await fsp.writeFile(path.join(base, 'list'), 'a/b/c\ntree\n');
    const r = await transfer(src, dst, [`--files-from=${path.join(base, 'list')}`, '-r']);
    assert.equal(r.send.code, 0, r.send.stderr);
    assert.equal(await read(path.join(dst, 'a/b/c')), 'c');
    assert.ok(!(await exists(path.join(dst, 'a/other'))));
    assert.equal(await read(path.join(dst, 'tree/x/y')), 'y');
  });

  test('--remove-source-files deletes only what the receiver confirmed; -n deletes nothing', async () => {
    const { src, dst } = await setup({ 'a': 'a', 'd/b': 'b' });
    const dry = await transfer(`${src}/`, dst, ['-n', '--remove-source-files']);
    assert.equal(dry.send.code, 0, dry.send.stderr);
    assert.ok(await exists(path.join(src, 'a')));
    const r = await transfer(`${src}/`, dst, ['--remove-source-files']);
    assert.equal(r.send.code, 0, r.send.stderr);
    assert.equal(await read(path.join(dst, 'd/b')), 'b');
    assert.deepEqual(await fsp.readdir(src), ['d']);
    assert.deepEqual(await fsp.readdir(path.join(src, 'd')), []);
    assert.match(r.send.stderr, /removed 2 source file/);
  });

  test('-L sends what links point to; --stats on both ends', async () => {
    const { src, dst } = await setup({ 'data': 'payload', 'l': { type: 'symlink', target: 'data' } });
    const r = await transfer(`${src}/`, dst, ['-L', '--stats'], ['--stats']);
    assert.equal(r.send.code, 0, r.send.stderr);
    assert.ok((await fsp.lstat(path.join(dst, 'l'))).isFile());
    assert.match(r.send.stdout, /^Number of regular files transferred: 2$/m);
    assert.match(r.recv.stdout, /^Total transferred file size: 14 bytes$/m);
  });

  test('--inplace: the receiver rewrites existing files under their own name', async () => {
    const { src, dst } = await setup({ 'a': 'new content over the wire' }, { 'a': 'old', 'a2': { type: 'hardlink', target: 'a' } });
    const before = (await fsp.stat(path.join(dst, 'a'))).ino;
    const r = await transfer(`${src}/`, dst, ['--inplace']);
    assert.equal(r.send.code, 0, r.send.stderr);
    assert.equal(r.recv.code, 0, r.recv.stderr);
    assert.equal((await fsp.stat(path.join(dst, 'a'))).ino, before);
    assert.equal(await read(path.join(dst, 'a2')), 'new content over the wire');
  });

  test('--partial-dir: a partial file kept in DIR by a cut run is resumed from there, then DIR goes', async () => {
    const big = Buffer.alloc(3 * 1024 * 1024);
    for (let i = 0; i < big.length; i += 4096) big.writeUInt32LE((i * 2654435761) >>> 0, i);
    const { src, dst } = await setup({ 'sub/big': big }, { 'sub/.part/': { type: 'dir' } });
    // What an interrupted run leaves: the first MiB under the deterministic temp name, in DIR.
    await fsp.writeFile(path.join(dst, 'sub/.part', tempNameFor('big')), big.subarray(0, 1024 * 1024));
    const r = await transfer(`${src}/`, dst, ['--partial-dir=.part', '--json']);
    assert.equal(r.send.code, 0, r.send.stderr);
    assert.equal(r.recv.code, 0, r.recv.stderr);
    assert.equal(lastJson(r.send.stdout)['resumedBytes'], 1024 * 1024);
    assert.ok((await fsp.readFile(path.join(dst, 'sub/big'))).equals(big));
    assert.ok(!(await exists(path.join(dst, 'sub/.part'))));
  });

  test('--bwlimit paces the data (lower bound only: load can only make it slower)', async () => {
    const { src, dst } = await setup({ 'blob': Buffer.alloc(256 * 1024, 3) });
    const r = await transfer(`${src}/`, dst, ['--bwlimit=64', '--json']);
    assert.equal(r.send.code, 0, r.send.stderr);
    // 256 KiB at 64 KiB/s with at most 64 KiB of burst: at least 3 s of pacing.
    assert.ok((lastJson(r.send.stdout)['seconds'] as number) >= 2.9, r.send.stdout);
    assert.equal((await fsp.stat(path.join(dst, 'blob'))).size, 256 * 1024);
  });

  test('what the sender decides is refused on recv, with the reason; --link-dest is local only', async () => {
    const { src, dst } = await setup({ 'a': 'a' });
    const r = await runFerry(['recv', dst, '--listen', '127.0.0.1:0', '--size-only']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--size-only is chosen by the sending side/);
    const rcv = await startRecv(dst);
    const s = await runFerry(['send', `${src}/`, `127.0.0.1:${rcv.port}`, '--link-dest=/tmp'], { env: { FERRY_SECRET: 'correct-horse-battery-staple-42' } });
    assert.equal(s.code, 2);
    assert.match(s.stderr, /--link-dest is for local copies/);
    rcv.child.kill();
    await rcv.done;
  });
});
