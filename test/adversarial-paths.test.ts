/**
 * Issue #11, path attacks: a hostile sender that completed a valid handshake
 * (test/support/hostile-peer.ts) against the real receiver (modes/recv.ts over
 * loopback TCP), one test per attack. Each asserts the error code and that nothing
 * was written outside DST. The lexical rules themselves are unit-tested in
 * path-safety.test.ts; the first attacks of this family (`../x`, an absolute path, a
 * symlink then a file through it, a symlink planted on a directory, a hard link to a
 * path never sent) are in transfer-malicious.test.ts over an in-memory channel.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { tempNameFor } from '../src/fs/temp-names.js';
import { Action, MsgType, SessionFlags, TRANSFER_VERSION, encodeDecisions, encodeError, encodeSession } from '../src/wire/messages.js';
import { connectAsSender, entry, hostileReceiver, hostileSender, scriptedSend } from './support/hostile-peer.js';
import { startRecv, TEST_SECRET } from './support/net-harness.js';
import { cleanupTmpDirs, makeTree, tmpDir } from './support/tree.js';

after(cleanupTmpDirs);

interface Box {
  root: string;
  dst: string;
  outside: string;
}

/** root/{dst, outside/secret.txt}: anything new outside dst is an escape. */
async function box(): Promise<Box> {
  const root = await tmpDir('ferry-adv-paths-');
  const dst = path.join(root, 'dst');
  const outside = path.join(root, 'outside');
  await fsp.mkdir(dst);
  await fsp.mkdir(outside);
  await fsp.writeFile(path.join(outside, 'secret.txt'), 'SECRET');
  return { root, dst, outside };
}

/** Nothing outside dst changed: root holds exactly dst and outside, outside exactly secret.txt with its content. */
async function assertContained(b: Box): Promise<void> {
  assert.deepEqual((await fsp.readdir(b.root)).sort(), ['dst', 'outside']);
  assert.deepEqual(await fsp.readdir(b.outside), ['secret.txt']);
  const st = await fsp.lstat(path.join(b.outside, 'secret.txt'));
  assert.ok(st.isFile() && st.size === 6 && (await fsp.readFile(path.join(b.outside, 'secret.txt'), 'utf8')) === 'SECRET', `outside/secret.txt was replaced (now ${st.size} bytes)`);
}

async function listDst(dst: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fsp.readdir(dst, { withFileTypes: true, recursive: true })) {
    out.push(path.relative(dst, path.join(e.parentPath ?? (e as unknown as { path: string }).path, e.name)));
  }
  return out.sort();
}

const refused: [string, string, string][] = [
  // [attack, path, expected code]
  ['".." alone', '..', 'FERRY_E_PATH'],
  ['"a/../../x" (escape through a listed directory)', 'a/../../x', 'FERRY_E_PATH'],
  ['"a/.." (resolves to the root)', 'a/..', 'FERRY_E_PATH'],
  ['absolute path into /tmp', '/tmp/ferry-adv-escape', 'FERRY_E_PATH'],
  ['NUL inside a name', 'a\0../../x', 'FERRY_E_PATH'],
  ['empty path', '', 'FERRY_E_PATH'],
  ['"." component', 'a/./b', 'FERRY_E_PATH'],
  ['"." alone', '.', 'FERRY_E_PATH'],
  ['empty component (double slash)', 'a//b', 'FERRY_E_PATH'],
  ['trailing slash', 'a/', 'FERRY_E_PATH'],
];

for (const [attack, p, code] of refused) {
  test(`path attack: ${attack} is refused (${code}) and nothing is written outside DST`, async () => {
    const b = await box();
    const h = await hostileSender(b.dst);
    // "a" is a listed directory, so only the lexical check can stop the entry.
    const r = await scriptedSend(h.peer, [entry(0, 'dir', 'a'), entry(1, 'file', p, { size: 4 })]);
    assert.equal(r.error?.code, code, JSON.stringify(r.error));
    assert.equal((await h.sessionError())?.code, code);
    await assertContained(b);
    assert.deepEqual(await listDst(b.dst), [], 'nothing of a refused batch is written');
  });
}

test('path attack: backslashes are ordinary name characters, never separators (file stays inside DST)', async () => {
  const b = await box();
  const h = await hostileSender(b.dst);
  const name = '..\\..\\outside\\secret.txt';
  const r = await scriptedSend(h.peer, [entry(0, 'file', name, { size: 4 })], new Map([[0, Buffer.from('evil')]]));
  assert.ok(r.summary, JSON.stringify(r.error));
  assert.equal((await h.sessionError()), undefined);
  assert.deepEqual(await listDst(b.dst), [name]);
  assert.equal(await fsp.readFile(path.join(b.dst, name), 'utf8'), 'evil');
  await assertContained(b);
});

test('path attack: a symlink pointing outside DST is created as data, never followed by a later entry', async () => {
  const b = await box();
  const h = await hostileSender(b.dst);
  const r = await scriptedSend(h.peer, [
    entry(0, 'symlink', 'up', { target: '../outside' }),
    entry(1, 'symlink', 'abs', { target: b.outside }),
    entry(2, 'file', 'up2', { size: 4 }),
  ]);
  assert.ok(r.summary, JSON.stringify(r.error));
  assert.equal(await fsp.readlink(path.join(b.dst, 'up')), '../outside');
  assert.equal(await fsp.readlink(path.join(b.dst, 'abs')), b.outside);
  await assertContained(b);
});

test('path attack: a symlink, then a directory of the same name, then a file under it is refused', async () => {
  const b = await box();
  const h = await hostileSender(b.dst);
  const r = await scriptedSend(h.peer, [
    entry(0, 'symlink', 'evil', { target: b.outside }),
    entry(1, 'dir', 'evil'),
    entry(2, 'file', 'evil/pwned.txt', { size: 4 }),
  ]);
  assert.equal(r.error?.code, 'FERRY_E_PROTOCOL', JSON.stringify(r.error));
  await assertContained(b);
  assert.deepEqual(await listDst(b.dst), []);
});

for (const [attack, target] of [
  ['a relative path out of DST', '../outside/secret.txt'],
  ['an absolute path', '/etc/passwd'],
] as const) {
  test(`path attack: a hard link to ${attack} is refused (FERRY_E_PATH)`, async () => {
    const b = await box();
    const h = await hostileSender(b.dst);
    const r = await scriptedSend(h.peer, [entry(0, 'hardlink', 'x', { target })]);
    assert.equal(r.error?.code, 'FERRY_E_PATH', JSON.stringify(r.error));
    await assertContained(b);
    assert.deepEqual(await listDst(b.dst), []);
  });
}

test('path attack: a file under an NFD name whose NFC twin is the listed directory is refused (no normalisation)', async () => {
  const b = await box();
  const h = await hostileSender(b.dst);
  const nfc = 'caf\u00e9';
  const nfd = 'cafe\u0301';
  const r = await scriptedSend(h.peer, [entry(0, 'dir', nfc), entry(1, 'file', `${nfd}/x`, { size: 4 })]);
  assert.equal(r.error?.code, 'FERRY_E_PATH', JSON.stringify(r.error));
  await assertContained(b);
});

test('path attack: names equal after Unicode normalisation (NFC symlink to outside, NFD directory) stay apart', async () => {
  const b = await box();
  const h = await hostileSender(b.dst);
  const nfc = 'caf\u00e9';
  const nfd = 'cafe\u0301';
  const r = await scriptedSend(
    h.peer,
    [entry(0, 'symlink', nfc, { target: b.outside }), entry(1, 'dir', nfd), entry(2, 'file', `${nfd}/secret.txt`, { size: 4 })],
    new Map([[2, Buffer.from('evil')]]),
  );
  assert.ok(r.summary, JSON.stringify(r.error));
  assert.equal((await fsp.lstat(path.join(b.dst, nfc))).isSymbolicLink(), true);
  assert.equal((await fsp.lstat(path.join(b.dst, nfd))).isDirectory(), true);
  assert.equal(await fsp.readFile(path.join(b.dst, nfd, 'secret.txt'), 'utf8'), 'evil');
  await assertContained(b);
});

test('path attack: a symlink planted in DST at a file\'s final name is replaced, its target untouched', async () => {
  const b = await box();
  await fsp.symlink(path.join(b.outside, 'secret.txt'), path.join(b.dst, 'f.txt'));
  const h = await hostileSender(b.dst);
  const r = await scriptedSend(h.peer, [entry(0, 'file', 'f.txt', { size: 4 })], new Map([[0, Buffer.from('evil')]]));
  assert.ok(r.summary, JSON.stringify(r.error));
  assert.equal((await fsp.lstat(path.join(b.dst, 'f.txt'))).isFile(), true);
  assert.equal(await fsp.readFile(path.join(b.dst, 'f.txt'), 'utf8'), 'evil');
  await assertContained(b);
});

test('path attack: a symlink planted in DST at the temp name is neither resumed (no hash oracle) nor written through', async () => {
  const b = await box();
  await fsp.symlink(path.join(b.outside, 'secret.txt'), path.join(b.dst, tempNameFor('f.txt')));
  const h = await hostileSender(b.dst);
  const r = await scriptedSend(h.peer, [entry(0, 'file', 'f.txt', { size: 10 })], new Map([[0, Buffer.from('0123456789')]]));
  assert.ok(r.summary, JSON.stringify(r.error));
  assert.deepEqual(r.decisions.map((d) => d.action), [Action.SEND], 'no RESUME offered from a file outside DST');
  assert.equal(await fsp.readFile(path.join(b.dst, 'f.txt'), 'utf8'), '0123456789');
  assert.deepEqual(await listDst(b.dst), ['f.txt']);
  await assertContained(b);
});

test('path attack: a temp file planted in DST as a hard link to a file outside is neither resumed nor written', async () => {
  const b = await box();
  await fsp.link(path.join(b.outside, 'secret.txt'), path.join(b.dst, tempNameFor('f.txt')));
  const h = await hostileSender(b.dst);
  const r = await scriptedSend(h.peer, [entry(0, 'file', 'f.txt', { size: 10 })], new Map([[0, Buffer.from('0123456789')]]));
  assert.ok(r.summary, JSON.stringify(r.error));
  assert.deepEqual(r.decisions.map((d) => d.action), [Action.SEND]);
  assert.deepEqual(await listDst(b.dst), ['f.txt']);
  await assertContained(b);
});

test('path attack: --delete removes a symlink planted in DST, never what it points to', async () => {
  const b = await box();
  await fsp.symlink(b.outside, path.join(b.dst, 'sub'));
  const h = await hostileSender(b.dst, { session: { flags: SessionFlags.DELETE } });
  const r = await scriptedSend(h.peer, [entry(0, 'file', 'keep.txt', { size: 4 })]);
  assert.ok(r.summary, JSON.stringify(r.error));
  assert.deepEqual(await listDst(b.dst), ['keep.txt']);
  await assertContained(b);
});

test('path attack: a hostile sender naming a directory "sub" over a planted symlink to outside writes inside DST', async () => {
  const b = await box();
  await fsp.symlink(b.outside, path.join(b.dst, 'sub'));
  const h = await hostileSender(b.dst);
  // Large enough (300 KiB) to take the TempFile path, not the small-file fast path.
  const r = await scriptedSend(h.peer, [entry(0, 'dir', 'sub'), entry(1, 'file', 'sub/secret.txt', { size: 300 * 1024 })]);
  assert.ok(r.summary, JSON.stringify(r.error));
  assert.equal((await fsp.lstat(path.join(b.dst, 'sub'))).isDirectory(), true);
  await assertContained(b);
});

for (const size of [4, 300 * 1024]) {
  // Found by this suite: the SafeWriter checked parents with lstat and then wrote by path,
  // so a swap after the check was followed. It now writes relative to the directory
  // descriptors it verified (fs/dir-handles); the other windows are in adversarial-dst-swap.test.ts.
  test(`path attack: a DST parent swapped for a symlink to outside between decisions and data (${size} B file) writes nothing outside`, async () => {
    const b = await box();
    const h = await hostileSender(b.dst);
    await scriptedSend(h.peer, [entry(0, 'dir', 'd'), entry(1, 'file', 'd/secret.txt', { size })], new Map(), {
      onDecisions: async () => {
        // A local attacker with write access to DST swaps the directory while the transfer runs.
        await fsp.rename(path.join(b.dst, 'd'), path.join(b.dst, 'd.real'));
        await fsp.symlink(b.outside, path.join(b.dst, 'd'));
      },
    });
    const err = await h.sessionError();
    await assertContained(b);
    // The file went into the real directory (inside DST), or its failure was reported.
    const there = await fsp.readFile(path.join(b.dst, 'd.real', 'secret.txt')).catch(() => null);
    assert.ok((there !== null && there.length === size) || err !== undefined, `neither written inside DST nor reported: ${JSON.stringify(await listDst(b.dst))}`);
  });
}

test('hostile receiver: the sender never reads outside SRC whatever the receiver asks (decisions carry only indexes)', async () => {
  const root = await tmpDir('ferry-adv-paths-');
  const src = path.join(root, 'src');
  await makeTree(src, { 'a.txt': 'aaaa' });
  await fsp.writeFile(path.join(root, 'secret.txt'), 'SECRET');
  const r = await hostileReceiver(`${src}/`);
  await r.peer.send(MsgType.SESSION_OK, Buffer.alloc(16));
  const m = await r.peer.next();
  assert.equal(m?.type, MsgType.MANIFEST);
  // The receiver can only name manifest indexes: ask for one past the manifest.
  await r.peer.send(MsgType.DECISIONS, encodeDecisions([{ index: 1, action: Action.SEND, offset: 0 }]));
  await assert.rejects(r.outcome, (e: Error & { code?: string }) => e.code === 'FERRY_E_PROTOCOL');
});

test('path attack (sender side): a source parent swapped for a symlink after the walk never sends what it points to', async () => {
  const root = await tmpDir('ferry-adv-paths-');
  const src = path.join(root, 'src');
  const outside = path.join(root, 'outside');
  await makeTree(src, { 'd/secret.txt': 'AAAAAA' });
  await makeTree(outside, { 'secret.txt': 'SECRET' });
  // Same size and mtime, so only the file's identity can tell them apart.
  await fsp.utimes(path.join(src, 'd/secret.txt'), 1_700_000_000, 1_700_000_000);
  await fsp.utimes(path.join(outside, 'secret.txt'), 1_700_000_000, 1_700_000_000);
  const r = await hostileReceiver(`${src}/`);
  await r.peer.send(MsgType.SESSION_OK, Buffer.alloc(16));
  const m = await r.peer.next();
  assert.equal(m?.type, MsgType.MANIFEST);
  const { decodeManifest } = await import('../src/wire/messages.js');
  const es = decodeManifest(m!.payload, false);
  const f = es.find((e) => e.path === 'd/secret.txt')!;
  await fsp.rename(path.join(src, 'd'), path.join(src, 'd.real'));
  await fsp.symlink(outside, path.join(src, 'd'));
  await r.peer.send(MsgType.DECISIONS, encodeDecisions([{ index: f.index, action: Action.SEND, offset: 0 }]));
  const frames = [];
  for (let x = await r.peer.next(3000).catch(() => null); x !== null; x = await r.peer.next(1000).catch(() => null)) {
    frames.push(x);
    if (x.type === MsgType.MANIFEST_END) continue;
  }
  r.peer.destroy();
  await r.outcome.catch(() => undefined);
  for (const x of frames) assert.ok(!x.payload.includes(Buffer.from('SECRET')), 'the sender sent the content of a file outside SRC');
});

test('path attack: a manifest name in ferry\'s temp-file pattern (another file\'s temp name) is refused', async () => {
  const b = await box();
  const h = await hostileSender(b.dst);
  const r = await scriptedSend(h.peer, [entry(0, 'file', 'f.txt', { size: 4 }), entry(1, 'file', tempNameFor('f.txt'), { size: 4 })]);
  assert.equal(r.error?.code, 'FERRY_E_PATH', JSON.stringify(r.error));
  await assertContained(b);
});

test('hostile sender: control characters in its ERROR message never reach the receiver\'s terminal raw', async () => {
  const root = await tmpDir('ferry-adv-paths-');
  const rv = await startRecv(path.join(root, 'dst'), [], {}, 20_000);
  const p = await connectAsSender(rv.port, TEST_SECRET);
  await p.send(MsgType.SESSION, encodeSession({ version: TRANSFER_VERSION, flags: 0, streams: 1, chunkSize: 65536, excludes: [] }));
  await p.next();
  await p.send(MsgType.ERROR, encodeError({ code: 'FERRY_E_WRITE', message: 'x\u001b]0;pwned\u0007\u001b[2J\rforged line' }));
  await p.end();
  const res = await rv.done;
  assert.ok(res.code !== 0 && res.code !== null, `exit ${res.code} ${res.signal}: ${JSON.stringify(res.stderr)}`);
  assert.match(res.stderr, /x\\x1b\]0;pwned/, 'shown escaped');
  assert.ok(!/[\u0000-\u0008\u000b-\u001f\u007f]/.test(res.stderr), `raw control characters on stderr: ${JSON.stringify(res.stderr)}`);
});
